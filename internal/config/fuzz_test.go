package config

import (
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

// FuzzParse feeds arbitrary documents to every format: Parse must return a
// Config or an error, never panic or hang.
func FuzzParse(f *testing.F) {
	for _, name := range []string{"centrifugo_v6.json", "centrifugo_v6.yaml", "centrifugo_v6.toml", "switchboard.yaml"} {
		b, err := os.ReadFile(filepath.Join("testdata", name))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b, uint8(0))
		f.Add(b, uint8(1))
		f.Add(b, uint8(2))
		f.Add(b[:len(b)/2], uint8(0)) // split in two, as a partial read
	}
	f.Add([]byte(`{"client":{"tokne":1},"channel":{"namespaces":[{"name":"x","histroy_size":"a"}]}}`), uint8(0))
	f.Add([]byte("a: &a [*a]\n"), uint8(1))
	f.Add([]byte("<<: {a: 1}\n"), uint8(1))
	f.Add([]byte("[[channel.namespaces]]\nname=1\n"), uint8(2))
	f.Add([]byte(`{"runner":{"command":"a 'b"}}`), uint8(0))
	formats := []string{"json", "yaml", "toml"}
	f.Fuzz(func(t *testing.T, data []byte, which uint8) {
		format := formats[int(which)%len(formats)]
		c, err := Parse(data, format)
		if err == nil {
			// Whatever parses must validate and look itself up.
			if verr := c.Validate(); verr != nil {
				t.Fatalf("Parse accepted an invalid config: %v", verr)
			}
			for _, ns := range c.Channel.Namespaces {
				if _, ok := c.Namespace(ns.Name); !ok {
					t.Fatalf("namespace %q not found", ns.Name)
				}
			}
		}
	})
}

// FuzzApplyEnv feeds arbitrary values to every environment variable kind:
// ApplyEnv must set the key or return an error naming the variable.
func FuzzApplyEnv(f *testing.F) {
	names := make([]string, 0, len(EnvVars()))
	for n := range EnvVars() {
		names = append(names, n)
	}
	sort.Strings(names)
	f.Add(uint16(0), "9000")
	f.Add(uint16(3), "a,b, c")
	f.Add(uint16(7), `["x","y"]`)
	f.Add(uint16(11), "1m30s")
	f.Add(uint16(13), `node "a b" 'c`)
	f.Add(uint16(17), "512MiB")
	f.Fuzz(func(t *testing.T, which uint16, value string) {
		name := names[int(which)%len(names)]
		c := Default()
		if err := ApplyEnv(&c, []string{name + "=" + value}); err != nil && !strings.Contains(err.Error(), name) {
			t.Fatalf("error does not name %s: %v", name, err)
		}
	})
}
