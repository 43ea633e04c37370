// Package config loads, defaults and validates the Switchboard server
// configuration.
//
// A configuration is read from a JSON, YAML or TOML file (the same snake_case
// key names in all three, compatible with Centrifugo v6 for the keys
// Switchboard supports), overlaid with SWITCHBOARD_* environment variables and
// validated. Loading is strict: unknown keys, keys of Centrifugo features that
// Switchboard does not implement, values of the wrong type and invalid values
// are all reported by their full key path, every problem at once.
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
