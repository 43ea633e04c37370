package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"

	ktoml "github.com/knadh/koanf/parsers/toml/v2"
	"github.com/knadh/koanf/v2"
	"github.com/pelletier/go-toml/v2"
	"go.yaml.in/yaml/v3"
)

// Limits on configuration documents, so hostile input cannot exhaust memory
// or stack.
const (
	// MaxConfigSize is the largest configuration document accepted, in bytes.
	MaxConfigSize = 4 << 20
	maxDepth      = 64
)

// parserFor returns the koanf parser of format ("json", "yaml"/"yml" or
// "toml"). JSON and YAML use small parsers of their own so that numbers
// keep their literal form (8080 vs 8080.0), duplicate JSON keys and extra
// YAML documents are errors, and syntax errors carry a line and column.
func parserFor(format string) (koanf.Parser, error) {
	switch format {
	case "json":
		return jsonParser{}, nil
	case "yaml", "yml":
		return yamlParser{}, nil
	case "toml":
		return tomlParser{}, nil
	default:
		return nil, fmt.Errorf("unknown config format %q (use json, yaml or toml)", format)
	}
}

type jsonParser struct{}

func (jsonParser) Marshal(map[string]any) ([]byte, error) { return nil, errors.New("not supported") }

// Unmarshal checks the document (syntax, duplicate keys, depth) in one token
// pass, then decodes it with numbers as json.Number.
func (jsonParser) Unmarshal(b []byte) (map[string]any, error) {
	if err := checkJSON(b); err != nil {
		return nil, err
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, jsonError(b, dec, err)
	}
	m, ok := v.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("json: top level must be an object, got %s", describe(v))
	}
	return m, nil
}

// checkJSON walks the tokens of b: one value, objects without duplicate
// keys, at most maxDepth levels.
func checkJSON(b []byte) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	type frame struct {
		keys   map[string]bool
		expect bool // next string token in this object is a key
	}
	var stack []*frame
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			if len(stack) > 0 {
				return jsonError(b, dec, io.ErrUnexpectedEOF)
			}
			return nil
		}
		if err != nil {
			return jsonError(b, dec, err)
		}
		var top *frame
		if len(stack) > 0 {
			top = stack[len(stack)-1]
		}
		if top != nil && top.keys != nil && top.expect {
			if k, isKey := tok.(string); isKey {
				if top.keys[k] {
					return jsonError(b, dec, fmt.Errorf("duplicate key %q", k))
				}
				top.keys[k] = true
				top.expect = false
				continue
			}
		}
		if top != nil && top.keys != nil {
			top.expect = true // a value was read; a key comes next
		}
		switch tok {
		case json.Delim('{'), json.Delim('['):
			if len(stack) >= maxDepth {
				return fmt.Errorf("json: nesting deeper than %d levels", maxDepth)
			}
			f := &frame{}
			if tok == json.Delim('{') {
				f.keys, f.expect = map[string]bool{}, true
			}
			stack = append(stack, f)
		case json.Delim('}'), json.Delim(']'):
			stack = stack[:len(stack)-1]
		}
		if len(stack) == 0 && dec.More() {
			return jsonError(b, dec, errors.New("unexpected data after the top-level object"))
		}
	}
}

// jsonError places err at a line and column of b.
func jsonError(b []byte, dec *json.Decoder, err error) error {
	off := dec.InputOffset()
	var se *json.SyntaxError
	if errors.As(err, &se) {
		off = se.Offset
	}
	if err == io.EOF || errors.Is(err, io.ErrUnexpectedEOF) {
		err = errors.New("unexpected end of input")
		off = int64(len(b))
	}
	line, col := lineCol(b, off)
	return fmt.Errorf("json: line %d, column %d: %w", line, col, err)
}

func lineCol(data []byte, off int64) (int, int) {
	off = min(max(off, 0), int64(len(data)))
	pre := data[:off]
	return bytes.Count(pre, []byte{'\n'}) + 1, int(off) - bytes.LastIndexByte(pre, '\n')
}

type yamlParser struct{}

func (yamlParser) Marshal(map[string]any) ([]byte, error) { return nil, errors.New("not supported") }

// Unmarshal decodes exactly one YAML document whose top level is a mapping
// (an empty document is an empty mapping).
func (yamlParser) Unmarshal(b []byte) (map[string]any, error) {
	dec := yaml.NewDecoder(bytes.NewReader(b))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil && err != io.EOF {
		return nil, fmt.Errorf("yaml: %s", strings.TrimPrefix(err.Error(), "yaml: "))
	}
	literalInts(&doc)
	var v any
	if err := doc.Decode(&v); err != nil {
		return nil, fmt.Errorf("yaml: %s", strings.TrimPrefix(err.Error(), "yaml: "))
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); err != io.EOF {
		if err != nil {
			return nil, fmt.Errorf("yaml: %s", strings.TrimPrefix(err.Error(), "yaml: "))
		}
		return nil, fmt.Errorf("yaml: line %d: more than one document", extra.Line)
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

// literalInts retags integers that are not plain decimals (000123, 0x1F,
// 0o17) as strings, so an unquoted key such as 000123 keeps its digits
// instead of becoming the octal number 83.
func literalInts(n *yaml.Node) {
	if n.Kind == yaml.ScalarNode && n.ShortTag() == "!!int" {
		v := strings.TrimLeft(n.Value, "+-")
		if len(v) > 1 && v[0] == '0' {
			n.Tag = "!!str"
		}
		return
	}
	for _, c := range n.Content { // alias nodes have no content: no blowup
		literalInts(c)
	}
}

// tomlParser is koanf's TOML parser with one "toml:" prefix on its
// errors, and the line and column when the library knows them.
type tomlParser struct{}

func (tomlParser) Marshal(map[string]any) ([]byte, error) { return nil, errors.New("not supported") }

func (tomlParser) Unmarshal(b []byte) (map[string]any, error) {
	m, err := ktoml.Parser().Unmarshal(b)
	if err != nil {
		msg := strings.TrimPrefix(err.Error(), "toml: ")
		var de *toml.DecodeError
		if errors.As(err, &de) {
			if row, col := de.Position(); row > 0 {
				return nil, fmt.Errorf("toml: line %d, column %d: %s", row, col, msg)
			}
		}
		return nil, fmt.Errorf("toml: %s", msg)
	}
	if m == nil {
		m = map[string]any{}
	}
	return m, nil
}
