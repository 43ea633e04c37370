package config

import (
	"reflect"
	"sort"
	"strings"
	"sync"
)

// fieldInfo describes one configuration key of a struct, embedded structs
// without a key of their own flattened into their parent.
type fieldInfo struct {
	name  string // key name (json tag)
	index []int  // reflect index path
	opt   string // cfg tag: "argv", "bytesize" or ""
	typ   reflect.Type
}

var fieldsCache sync.Map // reflect.Type -> []fieldInfo

// fieldsOf lists the keys of struct type t in declaration order.
func fieldsOf(t reflect.Type) []fieldInfo {
	if v, ok := fieldsCache.Load(t); ok {
		return v.([]fieldInfo)
	}
	var out []fieldInfo
	for i := 0; i < t.NumField(); i++ {
		sf := t.Field(i)
		tag := sf.Tag.Get("json")
		name, _, _ := strings.Cut(tag, ",")
		if name == "-" || !sf.IsExported() {
			continue
		}
		if sf.Anonymous && name == "" && sf.Type.Kind() == reflect.Struct {
			for _, sub := range fieldsOf(sf.Type) {
				sub.index = append([]int{i}, sub.index...)
				out = append(out, sub)
			}
			continue
		}
		if name == "" {
			continue
		}
		out = append(out, fieldInfo{name: name, index: []int{i}, opt: sf.Tag.Get("cfg"), typ: sf.Type})
	}
	fieldsCache.Store(t, out)
	return out
}

func fieldByName(t reflect.Type, name string) (fieldInfo, bool) {
	for _, f := range fieldsOf(t) {
		if f.name == name {
			return f, true
		}
	}
	return fieldInfo{}, false
}

// leaf is one settable key of the whole schema.
type leaf struct {
	path  string // generic key path, namespaces as "channel.namespaces[]"
	field fieldInfo
	// envName is SWITCHBOARD_ + upper-cased path with "." -> "_"; empty for
	// keys inside lists of objects (namespaces), which env cannot set.
	envName string
	index   []int // full reflect index path from Config
}

var (
	leavesOnce sync.Once
	allLeaves  []leaf
	envIndex   map[string]leaf
)

// EnvPrefix starts every Switchboard environment variable ApplyEnv reads
// (CentrifugoEnvPrefix names the aliases).
const EnvPrefix = "SWITCHBOARD_"

func schemaLeaves() []leaf {
	leavesOnce.Do(func() {
		var walk func(t reflect.Type, prefix string, index []int, inList bool)
		walk = func(t reflect.Type, prefix string, index []int, inList bool) {
			for _, f := range fieldsOf(t) {
				p := f.name
				if prefix != "" {
					p = prefix + "." + f.name
				}
				idx := append(append([]int{}, index...), f.index...)
				switch {
				case isStruct(f.typ):
					walk(f.typ, p, idx, inList)
				case f.typ.Kind() == reflect.Slice && isStruct(f.typ.Elem()):
					walk(f.typ.Elem(), p+"[]", nil, true)
				default:
					l := leaf{path: p, field: f, index: idx}
					if !inList {
						l.envName = EnvPrefix + strings.ToUpper(strings.ReplaceAll(p, ".", "_"))
					}
					allLeaves = append(allLeaves, l)
				}
			}
		}
		walk(reflect.TypeOf(Config{}), "", nil, false)
		envIndex = map[string]leaf{}
		for _, l := range allLeaves {
			if l.envName == "" {
				continue
			}
			if _, dup := envIndex[l.envName]; dup {
				panic("config: duplicate environment variable " + l.envName)
			}
			envIndex[l.envName] = l
		}
	})
	return allLeaves
}

// Keys returns every configuration key path in schema order; keys of
// namespace entries appear as "channel.namespaces[].name" etc.
func Keys() []string {
	ls := schemaLeaves()
	out := make([]string, len(ls))
	for i, l := range ls {
		out[i] = l.path
	}
	return out
}

// EnvVars returns every environment variable ApplyEnv understands, mapped
// to the key path it sets.
func EnvVars() map[string]string {
	schemaLeaves()
	out := make(map[string]string, len(envIndex))
	for k, l := range envIndex {
		out[k] = l.path
	}
	return out
}

// ---- suggestions ----

// suggest proposes known key paths for an unknown key at gpath: a close
// sibling by edit distance first, else keys elsewhere in the schema with the
// same name or whose flattened path ends with it (Centrifugo v5 flat keys
// such as "token_hmac_secret_key" or "client_channel_limit").
func suggest(t reflect.Type, path, key string) []string {
	lk := strings.ToLower(key)
	best, bestD := "", 1<<30
	for _, f := range fieldsOf(t) {
		d := osaDistance(lk, f.name)
		if d < bestD {
			best, bestD = f.name, d
		}
	}
	limit := len(lk) / 3
	if limit < 1 {
		limit = 1
	}
	if limit > 3 {
		limit = 3
	}
	if best != "" && bestD <= limit {
		return []string{joinPath(path, best)}
	}
	// A truncated or extended sibling ("hmac_secret" for "hmac_secret_key").
	if len(lk) >= 4 {
		for _, f := range fieldsOf(t) {
			if len(f.name) >= 4 && (strings.HasPrefix(f.name, lk) || strings.HasPrefix(lk, f.name)) {
				return []string{joinPath(path, f.name)}
			}
		}
	}
	var exact, tail []string
	for _, l := range schemaLeaves() {
		p := l.path
		flat := strings.ReplaceAll(strings.ReplaceAll(p, "[]", ""), ".", "_")
		switch {
		case flat == lk:
			exact = append(exact, p)
		case l.field.name == lk || strings.HasSuffix(flat, "_"+lk):
			tail = append(tail, p)
		}
	}
	if len(exact) > 0 {
		return exact
	}
	// Prefer paths outside namespace lists (channel.without_namespace.x over
	// channel.namespaces[].x).
	sort.SliceStable(tail, func(i, j int) bool {
		return !strings.Contains(tail[i], "[]") && strings.Contains(tail[j], "[]")
	})
	if len(tail) > 3 {
		tail = tail[:3]
	}
	return tail
}

func joinPath(a, b string) string {
	if a == "" {
		return b
	}
	return a + "." + b
}

// osaDistance is the optimal string alignment distance (Levenshtein plus
// adjacent transpositions).
func osaDistance(a, b string) int {
	ra, rb := []rune(a), []rune(b)
	if len(ra) > 64 || len(rb) > 64 {
		if a == b {
			return 0
		}
		return 1 << 20
	}
	d := make([][]int, len(ra)+1)
	for i := range d {
		d[i] = make([]int, len(rb)+1)
		d[i][0] = i
	}
	for j := 0; j <= len(rb); j++ {
		d[0][j] = j
	}
	for i := 1; i <= len(ra); i++ {
		for j := 1; j <= len(rb); j++ {
			cost := 1
			if ra[i-1] == rb[j-1] {
				cost = 0
			}
			d[i][j] = min(d[i-1][j]+1, d[i][j-1]+1, d[i-1][j-1]+cost)
			if i > 1 && j > 1 && ra[i-1] == rb[j-2] && ra[i-2] == rb[j-1] {
				d[i][j] = min(d[i][j], d[i-2][j-2]+1)
			}
		}
	}
	return d[len(ra)][len(rb)]
}
