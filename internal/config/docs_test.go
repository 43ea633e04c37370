package config

import (
	"encoding/json"
	"fmt"
	"os"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// The reference in docs/config.md must name every key with its default and
// both environment variable names, classify every Centrifugo key of the
// table, and its examples must load.
func TestDocsReference(t *testing.T) {
	b, err := os.ReadFile("../../docs/config.md")
	if err != nil {
		t.Skipf("docs/config.md not found: %v", err)
	}
	doc := string(b)
	for _, k := range Keys() {
		// Channel options are documented once, by their own name.
		name := k
		for _, prefix := range []string{"channel.namespaces[].", "channel.without_namespace."} {
			if strings.HasPrefix(k, prefix) {
				name = strings.TrimPrefix(k, prefix)
			}
		}
		if !strings.Contains(doc, "`"+name+"`") {
			t.Errorf("docs/config.md does not document %s", k)
		}
	}
	for name, key := range EnvVars() {
		alias := CentrifugoEnvPrefix + strings.TrimPrefix(name, EnvPrefix)
		if !strings.Contains(doc, "| `"+key+"` | `"+name+"` | `"+alias+"` |") {
			t.Errorf("docs/config.md lacks the environment row of %s (%s, %s)", key, name, alias)
		}
	}
	for k := range centrifugoKeys {
		if !strings.Contains(doc, "`"+k+"`") {
			t.Errorf("docs/config.md does not classify the Centrifugo key %s", k)
		}
	}

	// The default column of every key table matches Default().
	def := Default()
	root := reflect.ValueOf(def)
	leaves := map[string]leaf{}
	for _, l := range schemaLeaves() {
		leaves[l.path] = l
	}
	row := regexp.MustCompile("(?m)^\\| `([a-z_.]+)` \\| [a-z ]+ \\| `([^`]*)` \\|")
	checked := 0
	for _, m := range row.FindAllStringSubmatch(doc, -1) {
		l, ok := leaves[m[1]]
		if !ok {
			continue
		}
		checked++
		if got := docValue(root.FieldByIndex(l.index)); got != m[2] {
			t.Errorf("docs/config.md: %s default is `%s`, Default() has `%s`", m[1], m[2], got)
		}
	}
	if checked < 50 {
		t.Errorf("checked %d defaults, want at least 50", checked)
	}

	re := regexp.MustCompile("(?s)```(json|yaml|toml)\n(.*?)```")
	n := 0
	for _, m := range re.FindAllStringSubmatch(doc, -1) {
		n++
		if _, err := Parse([]byte(m[2]), m[1]); err != nil {
			t.Errorf("%s example does not load: %v\n%s", m[1], err, m[2])
		}
	}
	if n < 3 {
		t.Errorf("found %d examples, want at least 3", n)
	}
}

// docValue renders a default as the reference writes it.
func docValue(v reflect.Value) string {
	switch x := v.Interface().(type) {
	case Duration:
		if x == 0 {
			return "0"
		}
		return x.String()
	case string:
		return strconv.Quote(x)
	case []string:
		if len(x) == 0 {
			return "[]"
		}
		b, _ := json.Marshal(x)
		return strings.ReplaceAll(string(b), ",", ", ")
	}
	return fmt.Sprint(v.Interface())
}
