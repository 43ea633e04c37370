package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
	"gopkg.in/yaml.v3"
)

// Limits on configuration documents, so hostile input cannot exhaust memory
// or stack.
const (
	// MaxConfigSize is the largest configuration document accepted, in bytes.
	MaxConfigSize = 4 << 20
	maxDepth      = 64
	maxNodes      = 200_000
)

// The generic tree every format is converted to before it is checked
// against the Config schema: map[string]any, []any, string, bool,
// json.Number (integers and finite floats) and nil.

// parseTree decodes data in format ("json", "yaml" or "toml") into a
// generic tree whose root is an object.
func parseTree(data []byte, format string) (map[string]any, error) {
	if len(data) > MaxConfigSize {
		return nil, fmt.Errorf("config document is %d bytes, larger than the %d byte limit", len(data), MaxConfigSize)
	}
	switch format {
	case "json":
		return parseJSON(data)
	case "yaml", "yml":
		return parseYAML(data)
	case "toml":
		return parseTOML(data)
	default:
		return nil, fmt.Errorf("unknown config format %q (use json, yaml or toml)", format)
	}
}

// ---- JSON ----

type jsonParser struct {
	dec   *json.Decoder
	data  []byte
	nodes int
}

func parseJSON(data []byte) (map[string]any, error) {
	p := &jsonParser{dec: json.NewDecoder(bytes.NewReader(data)), data: data}
	p.dec.UseNumber()
	v, err := p.value(0)
	if err != nil {
		return nil, p.wrap(err)
	}
	if _, err := p.dec.Token(); err != io.EOF {
		if err == nil {
			err = errors.New("unexpected data after the top-level object")
		}
		return nil, p.wrap(err)
	}
	m, ok := v.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("json: top level must be an object, got %s", describe(v))
	}
	return m, nil
}

func (p *jsonParser) wrap(err error) error {
	var se *json.SyntaxError
	off := p.dec.InputOffset()
	if errors.As(err, &se) {
		off = se.Offset
	}
	if err == io.EOF || err == io.ErrUnexpectedEOF {
		err = errors.New("unexpected end of input")
		off = int64(len(p.data))
	}
	line, col := lineCol(p.data, off)
	return fmt.Errorf("json: line %d, column %d: %w", line, col, err)
}

func lineCol(data []byte, off int64) (int, int) {
	if off > int64(len(data)) {
		off = int64(len(data))
	}
	if off < 0 {
		off = 0
	}
	pre := data[:off]
	line := bytes.Count(pre, []byte{'\n'}) + 1
	col := int(off) - bytes.LastIndexByte(pre, '\n')
	return line, col
}

func (p *jsonParser) value(depth int) (any, error) {
	if depth > maxDepth {
		return nil, fmt.Errorf("nesting deeper than %d levels", maxDepth)
	}
	p.nodes++
	if p.nodes > maxNodes {
		return nil, fmt.Errorf("more than %d values", maxNodes)
	}
	tok, err := p.dec.Token()
	if err != nil {
		return nil, err
	}
	switch t := tok.(type) {
	case json.Delim:
		switch t {
		case '{':
			m := map[string]any{}
			for p.dec.More() {
				kt, err := p.dec.Token()
				if err != nil {
					return nil, err
				}
				k, ok := kt.(string)
				if !ok {
					return nil, fmt.Errorf("object key is not a string")
				}
				if _, dup := m[k]; dup {
					return nil, fmt.Errorf("duplicate key %q", k)
				}
				v, err := p.value(depth + 1)
				if err != nil {
					return nil, err
				}
				m[k] = v
			}
			if _, err := p.dec.Token(); err != nil { // '}'
				return nil, err
			}
			return m, nil
		case '[':
			l := []any{}
			for p.dec.More() {
				v, err := p.value(depth + 1)
				if err != nil {
					return nil, err
				}
				l = append(l, v)
			}
			if _, err := p.dec.Token(); err != nil { // ']'
				return nil, err
			}
			return l, nil
		default:
			return nil, fmt.Errorf("unexpected %q", rune(t))
		}
	case json.Number, string, bool, nil:
		return t, nil
	default:
		return nil, fmt.Errorf("unexpected token %v", tok)
	}
}

// ---- YAML ----

type yamlConv struct{ nodes int }

func parseYAML(data []byte) (map[string]any, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if err == io.EOF { // empty document
			return map[string]any{}, nil
		}
		return nil, fmt.Errorf("yaml: %s", strings.TrimPrefix(err.Error(), "yaml: "))
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); err != io.EOF {
		if err != nil {
			return nil, fmt.Errorf("yaml: %s", strings.TrimPrefix(err.Error(), "yaml: "))
		}
		return nil, fmt.Errorf("yaml: line %d: more than one document", extra.Line)
	}
	c := &yamlConv{}
	v, err := c.node(&doc, 0)
	if err != nil {
		return nil, err
	}
	if v == nil {
		return map[string]any{}, nil
	}
	m, ok := v.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("yaml: top level must be a mapping, got %s", describe(v))
	}
	return m, nil
}

func (c *yamlConv) node(n *yaml.Node, depth int) (any, error) {
	if depth > maxDepth {
		return nil, fmt.Errorf("yaml: line %d: nesting deeper than %d levels", n.Line, maxDepth)
	}
	c.nodes++
	if c.nodes > maxNodes {
		return nil, fmt.Errorf("yaml: more than %d values (after alias expansion)", maxNodes)
	}
	switch n.Kind {
	case yaml.DocumentNode:
		if len(n.Content) == 0 {
			return nil, nil
		}
		return c.node(n.Content[0], depth)
	case yaml.AliasNode:
		if n.Alias == nil {
			return nil, fmt.Errorf("yaml: line %d: unknown alias", n.Line)
		}
		return c.node(n.Alias, depth+1)
	case yaml.SequenceNode:
		l := make([]any, 0, len(n.Content))
		for _, e := range n.Content {
			v, err := c.node(e, depth+1)
			if err != nil {
				return nil, err
			}
			l = append(l, v)
		}
		return l, nil
	case yaml.MappingNode:
		m := map[string]any{}
		var merges []*yaml.Node
		for i := 0; i+1 < len(n.Content); i += 2 {
			kn, vn := n.Content[i], n.Content[i+1]
			if kn.Kind == yaml.ScalarNode && kn.ShortTag() == "!!merge" {
				merges = append(merges, vn)
				continue
			}
			if kn.Kind != yaml.ScalarNode {
				return nil, fmt.Errorf("yaml: line %d: mapping key must be a scalar", kn.Line)
			}
			k := kn.Value
			if _, dup := m[k]; dup {
				return nil, fmt.Errorf("yaml: line %d: duplicate key %q", kn.Line, k)
			}
			v, err := c.node(vn, depth+1)
			if err != nil {
				return nil, err
			}
			m[k] = v
		}
		// Merge keys (<<: *anchor or <<: [*a, *b]): explicit keys win,
		// earlier merge sources win over later ones.
		for _, mn := range merges {
			srcs := []*yaml.Node{mn}
			if mn.Kind == yaml.SequenceNode {
				srcs = mn.Content
			}
			for _, s := range srcs {
				v, err := c.node(s, depth+1)
				if err != nil {
					return nil, err
				}
				sm, ok := v.(map[string]any)
				if !ok {
					return nil, fmt.Errorf("yaml: line %d: merge key value must be a mapping", s.Line)
				}
				for k, vv := range sm {
					if _, exists := m[k]; !exists {
						m[k] = vv
					}
				}
			}
		}
		return m, nil
	case yaml.ScalarNode:
		switch n.ShortTag() {
		case "!!null":
			return nil, nil
		case "!!bool":
			var b bool
			if err := n.Decode(&b); err != nil {
				return nil, fmt.Errorf("yaml: line %d: %v", n.Line, err)
			}
			return b, nil
		case "!!int":
			if _, err := strconv.ParseInt(n.Value, 10, 64); err == nil {
				return json.Number(n.Value), nil
			}
			var i int64
			if err := n.Decode(&i); err == nil {
				return json.Number(strconv.FormatInt(i, 10)), nil
			}
			var u uint64
			if err := n.Decode(&u); err == nil {
				return json.Number(strconv.FormatUint(u, 10)), nil
			}
			return nil, fmt.Errorf("yaml: line %d: integer %s out of range", n.Line, n.Value)
		case "!!float":
			var f float64
			if err := n.Decode(&f); err != nil {
				return nil, fmt.Errorf("yaml: line %d: %v", n.Line, err)
			}
			return floatNumber(f, fmt.Sprintf("yaml: line %d", n.Line))
		default: // !!str, !!timestamp, !!binary and custom tags: the text
			return n.Value, nil
		}
	default:
		return nil, fmt.Errorf("yaml: line %d: unsupported node", n.Line)
	}
}

// floatNumber renders a float so that it is never mistaken for an integer
// ("8080" from 8080.0 becomes "8080.0"), matching JSON, where 8080.0 is not
// an integer either.
func floatNumber(f float64, where string) (any, error) {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return nil, fmt.Errorf("%s: %v is not a finite number", where, f)
	}
	s := strconv.FormatFloat(f, 'g', -1, 64)
	if !strings.ContainsAny(s, ".e") {
		s += ".0"
	}
	return json.Number(s), nil
}

// ---- TOML ----

func parseTOML(data []byte) (m map[string]any, err error) {
	m = map[string]any{}
	if _, err := toml.Decode(string(data), &m); err != nil {
		var pe toml.ParseError
		if errors.As(err, &pe) {
			return nil, fmt.Errorf("toml: line %d: %s", pe.Position.Line, pe.Message)
		}
		return nil, fmt.Errorf("toml: %w", err)
	}
	nodes := 0
	v, err := tomlValue(m, 0, &nodes)
	if err != nil {
		return nil, err
	}
	return v.(map[string]any), nil
}

func tomlValue(v any, depth int, nodes *int) (any, error) {
	if depth > maxDepth {
		return nil, fmt.Errorf("toml: nesting deeper than %d levels", maxDepth)
	}
	*nodes++
	if *nodes > maxNodes {
		return nil, fmt.Errorf("toml: more than %d values", maxNodes)
	}
	switch x := v.(type) {
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			c, err := tomlValue(e, depth+1, nodes)
			if err != nil {
				return nil, err
			}
			out[k] = c
		}
		return out, nil
	case []map[string]any:
		out := make([]any, 0, len(x))
		for _, e := range x {
			c, err := tomlValue(e, depth+1, nodes)
			if err != nil {
				return nil, err
			}
			out = append(out, c)
		}
		return out, nil
	case []any:
		out := make([]any, 0, len(x))
		for _, e := range x {
			c, err := tomlValue(e, depth+1, nodes)
			if err != nil {
				return nil, err
			}
			out = append(out, c)
		}
		return out, nil
	case string, bool:
		return x, nil
	case int64:
		return json.Number(strconv.FormatInt(x, 10)), nil
	case float64:
		return floatNumber(x, "toml")
	case time.Time:
		return x.Format(time.RFC3339Nano), nil
	default:
		return nil, fmt.Errorf("toml: unsupported value of type %T", v)
	}
}
