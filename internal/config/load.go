package config

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
)

// Load builds the server configuration: Default, overlaid with the file at
// path (format chosen by extension: .json, .yaml, .yml or .toml), overlaid
// with the SWITCHBOARD_* environment (see ApplyEnv), then validated. path ""
// means defaults plus environment only. The error lists every problem found,
// each naming its key path or variable.
func Load(path string) (Config, error) {
	return load(path, os.Environ())
}

func load(path string, environ []string) (Config, error) {
	c := Default()
	if path != "" {
		format, err := formatOf(path)
		if err != nil {
			return Config{}, err
		}
		data, err := readLimited(path)
		if err != nil {
			return Config{}, err
		}
		tree, err := parseTree(data, format)
		if err != nil {
			return Config{}, fmt.Errorf("config %s: %w", path, err)
		}
		if err := overlay(&c, tree); err != nil {
			return Config{}, fmt.Errorf("config %s:\n%w", path, err)
		}
	}
	if err := ApplyEnv(&c, environ); err != nil {
		return Config{}, fmt.Errorf("config environment:\n%w", err)
	}
	if err := c.Validate(); err != nil {
		if path == "" {
			return Config{}, fmt.Errorf("config:\n%w", err)
		}
		return Config{}, fmt.Errorf("config %s:\n%w", path, err)
	}
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

func readLimited(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxConfigSize+1))
	if err != nil {
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	if len(data) > MaxConfigSize {
		return nil, fmt.Errorf("config %s: larger than the %d byte limit", path, MaxConfigSize)
	}
	return data, nil
}

// Parse decodes a configuration document in format ("json", "yaml"/"yml" or
// "toml") over Default and validates it, with the same strict rules as Load.
// It does not read the environment.
func Parse(data []byte, format string) (Config, error) {
	c := Default()
	tree, err := parseTree(data, strings.ToLower(format))
	if err != nil {
		return Config{}, err
	}
	if err := overlay(&c, tree); err != nil {
		return Config{}, err
	}
	if err := c.Validate(); err != nil {
		return Config{}, err
	}
	return c, nil
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
