package config

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"sort"
	"strings"
)

// ReservedEnv lists SWITCHBOARD_* variables that ApplyEnv ignores because
// something else reads them (for example the command line's config file
// flag). Variables starting with SWITCHBOARD_TEST_ (test harness settings)
// are always ignored. Modify it only before the first ApplyEnv or Load call.
var ReservedEnv = []string{"SWITCHBOARD_CONFIG"}

const testEnvPrefix = "SWITCHBOARD_TEST_"

// ApplyEnv overlays SWITCHBOARD_* variables from environ ("NAME=value"
// entries, as os.Environ returns) onto c. Every scalar and list key has one:
// its key path upper-cased with "." replaced by "_", after the prefix, e.g.
// SWITCHBOARD_HTTP_SERVER_PORT=9000 or SWITCHBOARD_CLIENT_TOKEN_HMAC_SECRET_KEY.
//
// Values: strings as is; integers, booleans (strconv.ParseBool) and
// durations ("25s" or integer seconds) parsed; byte sizes accept "512MB";
// lists are comma-separated ("a,b") or a JSON array ("[\"a\",\"b\"]");
// runner.command is split like a shell command line. An empty value sets the
// key's zero value. Namespaces cannot be set by environment.
//
// A SWITCHBOARD_* variable that maps to no key, or has a bad value, is an
// error naming it; all such errors are returned joined. Variables in
// ReservedEnv and SWITCHBOARD_TEST_* are ignored. c is not validated.
func ApplyEnv(c *Config, environ []string) error {
	schemaLeaves()
	vals := map[string]string{}
	for _, kv := range environ {
		name, val, ok := strings.Cut(kv, "=")
		if !ok || !strings.HasPrefix(name, EnvPrefix) {
			continue
		}
		vals[name] = val // later entries win, like the process environment
	}
	names := make([]string, 0, len(vals))
	for n := range vals {
		names = append(names, n)
	}
	sort.Strings(names)

	d := &decoder{}
	root := reflect.ValueOf(c).Elem()
	for _, name := range names {
		if strings.HasPrefix(name, testEnvPrefix) || isReserved(name) {
			continue
		}
		l, ok := envIndex[name]
		if !ok {
			d.add(unknownEnvError(name))
			continue
		}
		val := vals[name]
		where := fmt.Sprintf("%s (%s)", name, l.path)
		dst := root.FieldByIndex(l.index)
		if val == "" {
			dst.Set(reflect.Zero(dst.Type()))
			continue
		}
		if dst.Kind() == reflect.Slice {
			list, err := envList(val, l.field.opt)
			if err != nil {
				d.fail(where, "%v", err)
				continue
			}
			dst.Set(reflect.ValueOf(list).Convert(dst.Type()))
			continue
		}
		d.value(where, l.path, val, dst, l.field.opt)
	}
	return d.err()
}

func isReserved(name string) bool {
	for _, r := range ReservedEnv {
		if r == name {
			return true
		}
	}
	return false
}

func envList(val, opt string) ([]string, error) {
	t := strings.TrimSpace(val)
	if strings.HasPrefix(t, "[") {
		var l []string
		if err := json.Unmarshal([]byte(t), &l); err != nil {
			return nil, fmt.Errorf("invalid JSON list of strings: %v", err)
		}
		return l, nil
	}
	if opt == "argv" {
		return SplitCommand(val)
	}
	var out []string
	for _, p := range strings.Split(val, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out, nil
}

func unknownEnvError(name string) error {
	if strings.HasPrefix(name, EnvPrefix+"CHANNEL_NAMESPACES") {
		return fmt.Errorf("environment variable %s: channel namespaces cannot be set by environment; use the config file", name)
	}
	msg := fmt.Sprintf("unknown environment variable %s", name)
	best, bestD := "", 1<<30
	for n := range envIndex {
		if dd := osaDistance(name, n); dd < bestD || (dd == bestD && n < best) {
			best, bestD = n, dd
		}
	}
	if best != "" && bestD <= 3 {
		return fmt.Errorf("%s (did you mean %s?)", msg, best)
	}
	// A shortened name ("SWITCHBOARD_PORT"): suggest the variables it ends.
	var tails []string
	if rest := strings.TrimPrefix(name, EnvPrefix); rest != "" {
		for n := range envIndex {
			if strings.HasSuffix(n, "_"+rest) {
				tails = append(tails, n)
			}
		}
	}
	if len(tails) > 0 && len(tails) <= 3 {
		sort.Strings(tails)
		msg += fmt.Sprintf(" (did you mean %s?)", strings.Join(tails, " or "))
	}
	return errors.New(msg)
}
