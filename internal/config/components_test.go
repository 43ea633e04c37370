package config

import (
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/switchboard-rt/switchboard/internal/gateway"
	"github.com/switchboard-rt/switchboard/internal/hub"
	"github.com/switchboard-rt/switchboard/internal/worker"
)

// leafFields lists the settable leaves of struct type t by Go field path
// ("Allow.Tasks"); Duration and time.Duration are leaves.
func leafFields(t reflect.Type, prefix string) []string {
	var out []string
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		name := prefix + f.Name
		if f.Anonymous {
			name = prefix
		}
		if f.Type.Kind() == reflect.Struct && f.Type != durationType && f.Type != reflect.TypeOf(time.Duration(0)) {
			if !f.Anonymous {
				name += "."
			}
			out = append(out, leafFields(f.Type, name)...)
			continue
		}
		out = append(out, name)
	}
	return out
}

// nonZero sets the field at path of v (a pointer to struct) to a non-zero
// value of its type.
func nonZero(t *testing.T, v reflect.Value, path string) {
	t.Helper()
	f := v.Elem()
	for _, part := range splitPath(path) {
		f = f.FieldByName(part)
	}
	switch f.Kind() {
	case reflect.Bool:
		f.SetBool(true)
	case reflect.Int, reflect.Int64:
		f.SetInt(7)
	case reflect.Uint64:
		f.SetUint(7)
	case reflect.Float64:
		f.SetFloat(7.5)
	case reflect.String:
		f.SetString("x")
	case reflect.Slice:
		f.Set(reflect.ValueOf([]string{"x"}))
	default:
		t.Fatalf("%s: unhandled kind %s", path, f.Kind())
	}
}

func splitPath(p string) []string {
	var out []string
	start := 0
	for i := 0; i <= len(p); i++ {
		if i == len(p) || p[i] == '.' {
			out = append(out, p[start:i])
			start = i + 1
		}
	}
	return out
}

// changed lists the leaves of v that are not zero.
func changed(v reflect.Value, fields []string) []string {
	var out []string
	for _, path := range fields {
		f := v
		for _, part := range splitPath(path) {
			f = f.FieldByName(part)
		}
		if !f.IsZero() {
			out = append(out, path)
		}
	}
	return out
}

// checkMapping sets each source leaf alone and checks that the conversion
// changes exactly the destination leaves named by want, and that every
// destination leaf is reached by some source leaf or listed in unmapped.
func checkMapping[S any](t *testing.T, want map[string][]string, unmapped []string, convert func(S) []reflect.Value) {
	t.Helper()
	src := leafFields(reflect.TypeOf(*new(S)), "")
	var zero S
	outs := convert(zero)
	var dstFields [][]string
	for _, o := range outs {
		dstFields = append(dstFields, leafFields(o.Type(), ""))
	}
	reached := map[string]bool{}
	for _, path := range src {
		if _, ok := want[path]; !ok {
			t.Errorf("source field %s has no mapping: add it to the conversion and this test", path)
			continue
		}
		var s S
		nonZero(t, reflect.ValueOf(&s), path)
		var got []string
		for i, o := range convert(s) {
			got = append(got, changed(o, dstFields[i])...)
		}
		if !slices.Equal(got, want[path]) {
			t.Errorf("%s sets %v, want %v", path, got, want[path])
		}
		for _, g := range got {
			reached[g] = true
		}
	}
	for _, fields := range dstFields {
		for _, f := range fields {
			if !reached[f] && !slices.Contains(unmapped, f) {
				t.Errorf("destination field %s is not fed by the configuration (map it, or list it as unmapped)", f)
			}
		}
	}
}

func same(fields []string) map[string][]string {
	m := map[string][]string{}
	for _, f := range fields {
		m[f] = []string{f}
	}
	return m
}

func TestNamespaceOptionsMapping(t *testing.T) {
	checkMapping(t, same(leafFields(reflect.TypeOf(hub.ChannelOptions{}), "")), nil,
		func(o NamespaceOptions) []reflect.Value { return []reflect.Value{reflect.ValueOf(o.HubOptions())} })

	c := Channel{MaxLength: 9, WithoutNamespace: NamespaceOptions{Presence: true},
		Namespaces: []Namespace{{Name: "chat", NamespaceOptions: NamespaceOptions{HistorySize: 5, HistoryTTL: Duration(time.Minute)}}}}
	ns := c.HubNamespaces()
	if !ns.Default.Presence || ns.MaxLength != 9 || len(ns.Named) != 1 || ns.Named["chat"].HistoryTTL != time.Minute {
		t.Errorf("HubNamespaces = %+v", ns)
	}
}

func TestRunnerMapping(t *testing.T) {
	want := map[string][]string{
		"Command": {"Command"}, "Workers": {"Workers"}, "Timeout": {"Timeout"}, "MaxInFlight": {"MaxInFlight"},
		"QueueSize": {"QueueSize"}, "QueueTimeout": {"QueueTimeout"}, "MaxJobs": {"MaxJobs"}, "TTL": {"TTL"},
		"IdleTTL": {"IdleTTL"}, "MaxMemory": {"MaxMemory"}, "PingInterval": {"PingInterval"},
		"Allow.Tasks": {"AllowTasks"}, "Allow.Events": {"AllowEvents"},
		"BasePath": {"BasePath"}, "Token": {"Token"}, "TokenHeader": {"TokenHeader"},
		"CORS.Origins": {}, "MaxBody": {"MaxBody"},
	}
	unmapped := []string{"Env", "Dir", "MaxMessageSize", "StopGrace", "Logger", "Registerer", "RetryAfter", "Origins", "KillOnTimeout", "Clock"}
	checkMapping(t, want, unmapped, func(r Runner) []reflect.Value {
		return []reflect.Value{reflect.ValueOf(r.WorkerConfig()), reflect.ValueOf(r.GatewayConfig())}
	})
	var _ worker.Config = Runner{}.WorkerConfig()
	var _ gateway.Config = Runner{}.GatewayConfig()
}

func TestSchedulerMapping(t *testing.T) {
	want := map[string][]string{
		"Enabled": {}, "DatabaseURL": {"URL"}, "DatabaseSchema": {"Schema"}, "DatabaseMaxConns": {"MaxConns"},
		"Lease": {"Lease"}, "MaxAttempts": {"MaxAttempts"}, "BackoffBase": {"BackoffBase"}, "BackoffMax": {"BackoffMax"},
		"ChunkSize": {"ChunkSize"}, "MaxIterations": {"MaxIterations"}, "MaxConfigBytes": {"MaxConfigBytes"},
		"AssignBatch": {"AssignBatch"}, "SweepInterval": {"SweepInterval"},
		"NodeTokenTTL": {"NodeTokenTTL"}, "HubURL": {"HubURL"}, "MaxBody": {"MaxBody", "MaxBody"},
		"SignatureSkew": {"Skew"}, "ReplayCacheSize": {"MaxReplay"}, "ProgressInterval": {"ProgressInterval"},
		"RegisterRate": {"RegisterRate"}, "RegisterBurst": {"RegisterBurst"},
	}
	unmapped := []string{"Store", "Publisher", "Presence", "Clock", "Logger", "Registerer",
		"Service", "Tokens", "Signer", "APIKey", "Nodes", "Timeout", "Now"}
	checkMapping(t, want, unmapped, func(s Scheduler) []reflect.Value {
		return []reflect.Value{reflect.ValueOf(s.ServiceConfig()), reflect.ValueOf(s.APIConfig()), reflect.ValueOf(s.NodeVerifierConfig()),
			reflect.ValueOf(s.PostgresConfig())}
	})
}

func TestAdminMapping(t *testing.T) {
	want := map[string][]string{
		"Enabled": {}, "Password": {"Password"}, "Secret": {"Secret"}, "SessionTTL": {"SessionTTL"},
		"TokenTTL": {"HubTokenTTL"}, "LoginFailures": {"LoginFailures"}, "LoginWindow": {"LoginWindow"},
	}
	unmapped := []string{"Signer", "Tokens", "Hub", "Scheduler", "FeedInterval", "LoginAddresses", "Clock", "Logger", "Registerer"}
	checkMapping(t, want, unmapped, func(a Admin) []reflect.Value { return []reflect.Value{reflect.ValueOf(a.ConsoleConfig())} })
}

func TestRelayMapping(t *testing.T) {
	want := same([]string{"Address", "DisableISSUN", "Auth", "MaxClients", "MaxClientsPerIP", "MaxFrame", "MaxTypeName", "EventRate",
		"EventBurst", "MaxRooms", "MaxMembers", "QueueLimit", "HandshakeTimeout", "IdleTimeout", "WriteTimeout",
		"HeartbeatInterval", "ResumeGrace", "BusQueue", "BusQueueBytes", "SyncInterval", "Mirror.Enabled", "Mirror.Rate", "Mirror.Burst",
		"Mirror.Queue", "Mirror.RoomPrefix"})
	want["Enabled"], want["CertFile"], want["KeyFile"] = []string{}, []string{}, []string{}
	unmapped := []string{"Certificate", "Verifier", "Pool", "Presence", "Sessions", "Bus", "MirrorTo", "Logger", "Registerer", "Clock",
		"Origins", "Nodes"} // Origins: the program passes client.allowed_origins; Nodes: the hub
	checkMapping(t, want, unmapped, func(r Relay) []reflect.Value { return []reflect.Value{reflect.ValueOf(r.RelayConfig())} })
}
