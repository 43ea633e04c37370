// Package config loads, defaults and validates the Switchboard server
// configuration.
//
// A configuration is read from a JSON, YAML or TOML file (the same snake_case
// key names in all three, compatible with Centrifugo v6 for the keys
// Switchboard supports), overlaid with environment variables (SWITCHBOARD_*,
// with Centrifugo's CENTRIFUGO_* names as aliases) and validated. Files and
// the environment are read through koanf and decoded with one mapstructure
// hook; the schema is the Config struct and its json tags.
//
// Loading is strict: unknown keys (with a did-you-mean suggestion), keys
// that would turn on a Centrifugo feature Switchboard does not implement,
// values of the wrong type and invalid values are all reported by their full
// key path, every problem at once. Centrifugo keys that only switch off or
// tune such a feature are accepted and listed in Config.NoEffect (see
// classify.go for the table of every Centrifugo v6 key).
//
// Defaults belong to the components (hub, clientproto, transport/ws,
// worker, gateway, script, dispatch); Default refers to their constants, and
// components.go holds the one conversion of each section into its
// component's configuration.
//
// Typical use from cmd:
//
//	cfg, err := config.Load(path) // "" = defaults + environment only
//	if err != nil { ... }         // err lists every problem, one per line
//
// The package reads no file or environment variable on its own except in
// Load (which reads the named file and os.Environ). Everything else works on
// values passed in, so it is safe for concurrent use.
package config
