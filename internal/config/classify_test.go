package config

import (
	"bufio"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
)

// centrifugoV6Keys reads testdata/centrifugo_v6_keys.txt: every Centrifugo
// v6 key path with its default ("" when none).
func centrifugoV6Keys(t *testing.T) map[string]string {
	t.Helper()
	f, err := os.Open(filepath.Join("testdata", "centrifugo_v6_keys.txt"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	out := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, def, _ := strings.Cut(line, "\t")
		out[k] = def
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if len(out) < 1000 {
		t.Fatalf("only %d Centrifugo keys read", len(out))
	}
	return out
}

// switchboardKey reports whether the generic Centrifugo path is a
// Switchboard key or object.
func switchboardKey(path string) bool {
	path = strings.TrimSuffix(path, "[]")
	for _, k := range Keys() {
		if k == path || strings.HasPrefix(k, path+".") || strings.HasPrefix(k, path+"[]") {
			return true
		}
	}
	return false
}

// covering returns the table entry that classifies path: its own, or the
// nearest enclosing section's.
func covering(path string) (string, centrifugoKey, bool) {
	for p := path; p != ""; {
		if k, ok := lookupKey(p); ok && (p == path || k.class == section) {
			return p, k, true
		}
		i := strings.LastIndexAny(p, ".[")
		if i < 0 {
			break
		}
		p = p[:i]
	}
	return "", centrifugoKey{}, false
}

// Every Centrifugo v6 key is a Switchboard key or classified by the table;
// the table names only Centrifugo keys (or legacy ones) and never shadows
// a Switchboard key.
func TestCentrifugoKeysClassified(t *testing.T) {
	keys := centrifugoV6Keys(t)
	counts := map[string]int{}
	for k := range keys {
		_, rule, covered := covering(k)
		switch {
		case switchboardKey(k):
			if _, own := lookupKey(k); own {
				t.Errorf("%s is a Switchboard key and in the Centrifugo table", k)
			}
			counts["supported"]++
		case covered:
			counts[[]string{"no effect", "off only", "section", "fixed", "legacy"}[rule.class]]++
		default:
			t.Errorf("Centrifugo key %s is not classified", k)
		}
	}
	for k, rule := range centrifugoKeys {
		if rule.class == legacy {
			if _, ok := keys[k]; ok {
				t.Errorf("%s is a v6 key but classified legacy", k)
			}
			continue
		}
		_, exact := keys[k]
		prefix := false
		for ck := range keys {
			prefix = prefix || strings.HasPrefix(ck, k+".") || strings.HasPrefix(ck, k+"[]")
		}
		if !exact && !prefix {
			t.Errorf("table entry %s is not a Centrifugo v6 key", k)
		}
		if rule.class == section && !prefix {
			t.Errorf("table entry %s is a section but has no keys inside", k)
		}
	}
	t.Logf("Centrifugo v6 keys: %v", counts)
}

// setPath stores v at a generic path in doc, creating objects and
// one-element lists on the way.
func setPath(doc map[string]any, path string, v any) {
	parts := strings.Split(path, ".")
	m := doc
	for i, part := range parts {
		name, isList := strings.CutSuffix(part, "[]")
		last := i == len(parts)-1
		switch {
		case last && !isList:
			if _, exists := m[name]; !exists {
				m[name] = v
			}
			return
		case isList:
			l, _ := m[name].([]any)
			if len(l) == 0 {
				l = []any{map[string]any{}}
				m[name] = l
			}
			if last {
				return
			}
			m = l[0].(map[string]any)
		default:
			sub, ok := m[name].(map[string]any)
			if !ok {
				sub = map[string]any{}
				m[name] = sub
			}
			m = sub
		}
	}
}

func defaultValue(def string) any {
	switch def {
	case "":
		return nil
	case "[]":
		return []any{}
	case "{}":
		return map[string]any{}
	}
	return def
}

// A Centrifugo configuration with every v6 key at its default starts
// Switchboard: each such key is supported or without effect.
func TestCentrifugoDefaultsLoad(t *testing.T) {
	keys := centrifugoV6Keys(t)
	doc := map[string]any{}
	paths := make([]string, 0, len(keys))
	for k := range keys {
		paths = append(paths, k)
	}
	slices.Sort(paths) // parents before children
	setPath(doc, "channel.namespaces[].name", "ns")
	for _, k := range paths {
		setPath(doc, k, defaultValue(keys[k]))
	}
	b, err := json.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	c, err := Parse(b, "json")
	if err != nil {
		t.Fatalf("Centrifugo defaults do not load: %v", err)
	}
	for _, want := range []string{"admin.insecure", "usage_stats.disabled", "engine.redis.connect_timeout", "channel.namespaces[0].delta_publish", "websocket.write_buffer_size"} {
		if !slices.Contains(c.NoEffect, want) {
			t.Errorf("NoEffect lacks %s", want)
		}
	}
	for _, k := range c.NoEffect {
		if switchboardKey(strings.NewReplacer("[0]", "[]").Replace(k)) {
			t.Errorf("Switchboard key %s listed as without effect", k)
		}
	}
}

// Each key that turns a missing feature on is an error naming it.
func TestCentrifugoFeaturesOn(t *testing.T) {
	for path, rule := range centrifugoKeys {
		var doc map[string]any
		want := path
		switch {
		case rule.class == offOnly:
			doc = map[string]any{}
			setPath(doc, path, "on")
		case rule.class == section && rule.gate != nil && reflect.ValueOf(rule.gate).Pointer() == reflect.ValueOf(enabledGate).Pointer():
			doc = map[string]any{}
			setPath(doc, path+".enabled", true)
			want = path + ".enabled"
		case rule.class == section && rule.gate != nil && reflect.ValueOf(rule.gate).Pointer() == reflect.ValueOf(engineGate).Pointer():
			doc = map[string]any{}
			setPath(doc, path+".enabled", true)
			setPath(doc, path+".type", "redis")
			want = path + ".type"
		case rule.class == legacy:
			doc = map[string]any{}
			setPath(doc, path, map[string]any{})
		default:
			continue
		}
		if strings.Contains(path, "[]") && !strings.HasPrefix(path, "channel.") {
			continue // inside a list of a section: checked below
		}
		want = strings.ReplaceAll(want, "[]", "[0]")
		if strings.HasPrefix(want, "channel.namespaces") {
			continue
		}
		b, _ := json.Marshal(doc)
		_, err := Parse(b, "json")
		if err == nil || !strings.Contains(err.Error(), `key "`+want+`" is a Centrifugo feature not supported by Switchboard`) {
			t.Errorf("%s: %s: got %v", path, b, err)
		}
	}
	for _, tc := range []struct{ doc, key string }{
		{`{"rpc":{"namespaces":[{"name":"x","proxy_enabled":true}]}}`, "rpc.namespaces[0].proxy_enabled"},
		{`{"consumers":[{"name":"x","enabled":true}]}`, "consumers[0].enabled"},
		{`{"broker":{"type":"redis","redis":{"address":"redis://x"}}}`, "broker.redis"},
		{`{"channel":{"namespaces":[{"name":"ab","subscription_type":"map"}]}}`, "channel.namespaces[0].subscription_type"},
	} {
		_, err := Parse([]byte(tc.doc), "json")
		wantErr(t, err, `key "`+tc.key+`" is a Centrifugo feature not supported by Switchboard`)
	}
}

// The keys of the issue: they only switch off or tune missing features.
func TestNoEffectKeysLoad(t *testing.T) {
	c := mustParse(t, `{"usage_stats":{"disabled":true},"admin":{"enabled":false,"password":"p","secret":"s","insecure":false},
		"prometheus":{"enabled":true},"health":{"enabled":true},"log":{"level":"warn"},
		"engine":{"type":"memory","redis":{"address":"redis://x"}},"broker":{"redis":{"address":"redis://x"}},
		"websocket":{"write_buffer_size":4096,"compression":false},"client":{"history_max_publication_limit":300},
		"channel":{"namespaces":[{"name":"ab","delta_publish":false,"subscribe_proxy_name":"p"}]}}`, "json")
	want := []string{"admin.insecure", "broker.redis.address",
		"channel.namespaces[0].delta_publish", "channel.namespaces[0].subscribe_proxy_name",
		"client.history_max_publication_limit", "health.enabled",
		"prometheus.enabled", "usage_stats.disabled", "websocket.compression", "websocket.write_buffer_size"}
	if !reflect.DeepEqual(c.NoEffect, want) {
		t.Errorf("NoEffect = %q\nwant %q", c.NoEffect, want)
	}
	if c.Log.Level != "warn" {
		t.Errorf("log.level = %q", c.Log.Level)
	}
	_, err := Parse([]byte(`{"prometheus":{"handler_prefix":"/m"}}`), "json")
	wantErr(t, err, `prometheus.handler_prefix: Switchboard fixes this to "/metrics"`)
}
