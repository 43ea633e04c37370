package config

import (
	"os"
	"regexp"
	"strings"
	"testing"
)

// The reference in docs/config.md must name every key and its examples must
// load.
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
