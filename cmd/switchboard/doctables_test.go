package main

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// tableSeparator is a Markdown table's second line (| --- | :-: |).
var tableSeparator = regexp.MustCompile(`^\s*\|[\s:|-]+\|\s*$`)

// A blank line ends a Markdown table: rows after one render as text.
// Every table of the README and docs/ is in one piece (a table right
// after another starts with its own header and separator).
func TestDocTablesHaveNoBlankLines(t *testing.T) {
	docs, err := filepath.Glob(filepath.Join("..", "..", "docs", "*.md"))
	require.NoError(t, err)
	docs = append(docs, filepath.Join("..", "..", "README.md"))
	for _, path := range docs {
		b, err := os.ReadFile(path)
		require.NoError(t, err)
		lines := strings.Split(string(b), "\n")
		isRow := func(i int) bool { return strings.HasPrefix(strings.TrimSpace(lines[i]), "|") }
		for i := 1; i < len(lines); i++ {
			if strings.TrimSpace(lines[i]) != "" || !isRow(i-1) {
				continue
			}
			j := i
			for j < len(lines) && strings.TrimSpace(lines[j]) == "" {
				j++
			}
			if j < len(lines) && isRow(j) && (j+1 >= len(lines) || !tableSeparator.MatchString(lines[j+1])) {
				t.Errorf("%s:%d: a blank line splits a table (the rows from line %d render as text)", path, i+1, j+1)
			}
		}
	}
}
