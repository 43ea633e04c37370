package config

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"strings"

	"github.com/knadh/koanf/providers/file"
	"github.com/knadh/koanf/providers/rawbytes"
	"github.com/knadh/koanf/v2"
)

// Load builds the server configuration: Default, overlaid with the file at
// path (format chosen by extension: .json, .yaml, .yml or .toml), overlaid
// with the environment (see ApplyEnv), then validated. path "" means
// defaults plus environment only. The error lists every problem found,
// each naming its key path or variable. Keys accepted without effect are
// listed in Config.NoEffect, for one startup warning.
func Load(path string) (Config, error) {
	return load(path, os.Environ())
}

func load(path string, environ []string) (Config, error) {
	c := Default()
	fp := &problems{}
	if path != "" {
		format, err := formatOf(path)
		if err != nil {
			return Config{}, err
		}
		if st, err := os.Stat(path); err != nil {
			return Config{}, fmt.Errorf("config: %w", err)
		} else if st.Size() > MaxConfigSize {
			return Config{}, fmt.Errorf("config %s: larger than the %d byte limit", path, MaxConfigSize)
		}
		if err := c.overlay(file.Provider(path), format, fp); err != nil {
			return Config{}, fmt.Errorf("config %s:\n%w", path, err)
		}
	}
	ep := &problems{}
	source, err := applyEnvTo(&c, environ, ep)
	if err != nil {
		return Config{}, fmt.Errorf("config environment:\n%w", err)
	}
	// Every problem at once: the values refused by decoding, then what
	// Validate finds in the keys that decoded.
	valid := nameSources(dropRefused(c.Validate(), fp.refused, ep.refused), source)
	var sections []error
	if err := errors.Join(fp.err(), valid); err != nil {
		if path == "" {
			sections = append(sections, fmt.Errorf("config:\n%w", err))
		} else {
			sections = append(sections, fmt.Errorf("config %s:\n%w", path, err))
		}
	}
	if err := ep.err(); err != nil {
		sections = append(sections, fmt.Errorf("config environment:\n%w", err))
	}
	if len(sections) > 0 {
		return Config{}, errors.Join(sections...)
	}
	c.sources = source
	return c, nil
}

func formatOf(path string) (string, error) {
	switch ext := strings.ToLower(filepath.Ext(path)); ext {
	case ".json":
		return "json", nil
	case ".yaml", ".yml":
		return "yaml", nil
	case ".toml":
		return "toml", nil
	case "":
		return "", fmt.Errorf("config %s: no file extension; use .json, .yaml, .yml or .toml", path)
	default:
		return "", fmt.Errorf("config %s: unsupported extension %q; use .json, .yaml, .yml or .toml", path, ext)
	}
}

// Parse decodes a configuration document in format ("json", "yaml"/"yml" or
// "toml") over Default and validates it, with the same strict rules as Load.
// It does not read the environment.
func Parse(data []byte, format string) (Config, error) {
	if len(data) > MaxConfigSize {
		return Config{}, fmt.Errorf("config document is %d bytes, larger than the %d byte limit", len(data), MaxConfigSize)
	}
	c := Default()
	p := &problems{}
	if err := c.overlay(rawbytes.Provider(data), strings.ToLower(format), p); err != nil {
		return Config{}, err
	}
	if err := errors.Join(p.err(), dropRefused(c.Validate(), p.refused)); err != nil {
		return Config{}, err
	}
	return c, nil
}

// overlay loads one document through koanf and decodes it onto c: the
// keys are checked first (unknown keys, Centrifugo classification), then
// decoded; every problem with a key or value is added to p (a refused
// value leaves the key as it was), and the error returned is a document
// that does not parse.
func (c *Config) overlay(prov koanf.Provider, format string, p *problems) error {
	parser, err := parserFor(format)
	if err != nil {
		return err
	}
	k := koanf.New(".")
	if err := k.Load(prov, parser); err != nil {
		return err
	}
	cl := &classifier{p: p}
	cl.object(reflect.TypeOf(Config{}), "", "", k.Raw())
	convertTagged(k, p)
	unmarshal(k, c, p, nil)
	c.addNoEffect(cl.noEffect...)
	c.normalize()
	return nil
}

// convertTagged applies the string forms of keys tagged cfg:"argv" (a
// command line) and cfg:"bytesize" ("512MB") before decoding.
func convertTagged(k *koanf.Koanf, p *problems) {
	for _, l := range schemaLeaves() {
		if l.field.opt == "" || l.envName == "" {
			continue
		}
		s, ok := k.Get(l.path).(string)
		if !ok {
			continue
		}
		v, err := taggedValue(l.field.opt, s)
		if err != nil {
			p.refuse(l.path, fmt.Errorf("%s: %w", l.path, err))
			k.Delete(l.path)
			continue
		}
		if err := k.Set(l.path, v); err != nil {
			p.add(fmt.Errorf("%s: %w", l.path, err))
		}
	}
}

func taggedValue(opt, s string) (any, error) {
	switch opt {
	case "argv":
		return SplitCommand(s)
	case "bytesize":
		return ParseByteSize(s)
	}
	return s, nil
}

func (c *Config) addNoEffect(keys ...string) {
	if len(keys) == 0 {
		return
	}
	c.NoEffect = append(c.NoEffect, keys...)
	sort.Strings(c.NoEffect)
	c.NoEffect = slices.Compact(c.NoEffect)
}

// normalize turns empty lists into nil, so an empty list in a file or an
// empty environment variable means the same as an absent key.
func (c *Config) normalize() {
	root := reflect.ValueOf(c).Elem()
	for _, l := range schemaLeaves() {
		if l.envName == "" {
			continue
		}
		if f := root.FieldByIndex(l.index); f.Kind() == reflect.Slice && f.Len() == 0 && !f.IsNil() {
			f.SetZero()
		}
	}
	if len(c.Channel.Namespaces) == 0 {
		c.Channel.Namespaces = nil
	}
}

// Generate returns a working starter configuration as indented JSON: random
// 32-byte hex secrets (crypto/rand) for client.token.hmac_secret_key and
// http_api.key, allowed origin http://localhost:8080, and an example
// namespace "chat" with presence, join/leave, history and recovery. Only
// non-default keys are written; Load accepts the result unchanged.
func Generate() ([]byte, error) {
	secret, err := randomHex(32)
	if err != nil {
		return nil, err
	}
	apiKey, err := randomHex(32)
	if err != nil {
		return nil, err
	}
	// Local types keep the keys in a readable order.
	type ns struct {
		Name                       string `json:"name"`
		Presence                   bool   `json:"presence"`
		JoinLeave                  bool   `json:"join_leave"`
		HistorySize                int    `json:"history_size"`
		HistoryTTL                 string `json:"history_ttl"`
		ForceRecovery              bool   `json:"force_recovery"`
		AllowSubscribeForClient    bool   `json:"allow_subscribe_for_client"`
		AllowPublishForSubscriber  bool   `json:"allow_publish_for_subscriber"`
		AllowPresenceForSubscriber bool   `json:"allow_presence_for_subscriber"`
		AllowHistoryForSubscriber  bool   `json:"allow_history_for_subscriber"`
	}
	type starter struct {
		HTTPServer struct {
			Address string `json:"address"`
			Port    int    `json:"port"`
		} `json:"http_server"`
		Log struct {
			Level  string `json:"level"`
			Format string `json:"format"`
		} `json:"log"`
		Client struct {
			Token struct {
				HMACSecretKey string `json:"hmac_secret_key"`
			} `json:"token"`
			AllowedOrigins []string `json:"allowed_origins"`
		} `json:"client"`
		HTTPAPI struct {
			Key string `json:"key"`
		} `json:"http_api"`
		Channel struct {
			Namespaces []ns `json:"namespaces"`
		} `json:"channel"`
	}
	var doc starter
	doc.HTTPServer.Address = DefaultHTTPAddress
	doc.HTTPServer.Port = DefaultHTTPPort
	doc.Log.Level = DefaultLogLevel
	doc.Log.Format = DefaultLogFormat
	doc.Client.Token.HMACSecretKey = secret
	doc.Client.AllowedOrigins = []string{DefaultGeneratedOriginHTTP}
	doc.HTTPAPI.Key = apiKey
	doc.Channel.Namespaces = []ns{{
		Name: "chat", Presence: true, JoinLeave: true, HistorySize: 100, HistoryTTL: "300s", ForceRecovery: true,
		AllowSubscribeForClient: true, AllowPublishForSubscriber: true, AllowPresenceForSubscriber: true, AllowHistoryForSubscriber: true,
	}}
	out, err := json.MarshalIndent(doc, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("genconfig: %w", err)
	}
	return append(out, '\n'), nil
}

func randomHex(n int) (string, error) {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("genconfig: random: %w", err)
	}
	return hex.EncodeToString(b), nil
}
