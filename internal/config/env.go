package config

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"reflect"
	"sort"
	"strings"

	"github.com/knadh/koanf/providers/env/v2"
	"github.com/knadh/koanf/v2"
)

// ReservedEnv lists SWITCHBOARD_* variables that ApplyEnv ignores because
// something else reads them (for example the command line's config file
// flag). Variables starting with SWITCHBOARD_TEST_ (test harness settings)
// are always ignored. Modify it only before the first ApplyEnv or Load call.
var ReservedEnv = []string{"SWITCHBOARD_CONFIG"}

const testEnvPrefix = "SWITCHBOARD_TEST_"

// CentrifugoEnvPrefix starts the Centrifugo v6 environment variables that
// ApplyEnv accepts as aliases of the SWITCHBOARD_* ones.
const CentrifugoEnvPrefix = "CENTRIFUGO_"

// ApplyEnv overlays environment variables from environ ("NAME=value"
// entries, as os.Environ returns) onto c. Every scalar and list key has one:
// its key path upper-cased with "." replaced by "_", after the prefix, e.g.
// SWITCHBOARD_HTTP_SERVER_PORT=9000 or SWITCHBOARD_CLIENT_TOKEN_HMAC_SECRET_KEY.
// Centrifugo v6's names for the same keys (CENTRIFUGO_HTTP_SERVER_PORT,
// CENTRIFUGO_CLIENT_TOKEN_HMAC_SECRET_KEY, ...) are aliases; when both are
// set, SWITCHBOARD_* wins.
//
// Values: strings as is; integers, booleans (strconv.ParseBool) and
// durations ("25s" or integer seconds) parsed; byte sizes accept "512MB";
// lists are comma-separated ("a,b") or a JSON array ("[\"a\",\"b\"]");
// runner.command is split like a shell command line. An empty value sets the
// key's zero value. Namespaces cannot be set by environment.
//
// A SWITCHBOARD_* variable that maps to no key, or has a bad value, is an
// error naming it; all such errors are returned joined. A CENTRIFUGO_*
// variable that maps to no Switchboard key is listed in c.NoEffect.
// Variables in ReservedEnv and SWITCHBOARD_TEST_* are ignored. c is not
// validated.
func ApplyEnv(c *Config, environ []string) error {
	_, err := applyEnv(c, environ)
	return err
}

// applyEnv is ApplyEnv; it also returns the variable that set each key
// path, so that validation can name it.
func applyEnv(c *Config, environ []string) (map[string]string, error) {
	p := &problems{}
	source, err := applyEnvTo(c, environ, p)
	if err != nil {
		return nil, err
	}
	return source, p.err()
}

// applyEnvTo is applyEnv adding the variables' problems to p; the error
// returned is one of the environment itself.
func applyEnvTo(c *Config, environ []string, p *problems) (map[string]string, error) {
	schemaLeaves()
	source := map[string]string{}
	own := map[string]bool{} // SWITCHBOARD_* names set, which beat their aliases
	for _, kv := range environ {
		if name, _, ok := strings.Cut(kv, "="); ok && strings.HasPrefix(name, EnvPrefix) {
			own[name] = true
		}
	}
	for _, prefix := range []string{CentrifugoEnvPrefix, EnvPrefix} { // the last one wins
		setBy := map[string]string{} // key path -> variable
		var stray []string
		prov := env.Provider(".", env.Opt{
			Prefix:      prefix,
			EnvironFunc: func() []string { return environ },
			TransformFunc: func(name, val string) (string, any) {
				if strings.HasPrefix(name, testEnvPrefix) || isReserved(name) {
					return "", nil
				}
				own := own[EnvPrefix+strings.TrimPrefix(name, prefix)]
				if prefix != EnvPrefix && own {
					return "", nil
				}
				l, ok := envIndex[EnvPrefix+strings.TrimPrefix(name, prefix)]
				if !ok {
					if prefix == EnvPrefix {
						p.add(unknownEnvError(name))
					} else {
						stray = append(stray, name)
					}
					return "", nil
				}
				v, err := envValue(l, val)
				if err != nil {
					p.refuse(l.path, fmt.Errorf("%s (%s): %w", name, l.path, err))
					return "", nil
				}
				setBy[l.path] = name
				return l.path, v
			},
		})
		k := koanf.New(".")
		if err := k.Load(prov, nil); err != nil {
			return nil, fmt.Errorf("environment: %w", err)
		}
		unmarshal(k, c, p, func(path string) string { return fmt.Sprintf("%s (%s)", setBy[path], path) })
		c.addNoEffect(stray...)
		maps.Copy(source, setBy)
	}
	c.normalize()
	return source, nil
}

// envValue converts a variable's text for the key l: lists and tagged keys
// here, scalars by the decode hook; "" is the key's zero value.
func envValue(l leaf, val string) (any, error) {
	t := l.field.typ
	if val == "" {
		if t.Kind() == reflect.Slice {
			return []string{}, nil
		}
		return reflect.Zero(t).Interface(), nil
	}
	if t.Kind() == reflect.Slice {
		return envList(val, l.field.opt)
	}
	if l.field.opt != "" {
		return taggedValue(l.field.opt, val)
	}
	return val, nil
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
