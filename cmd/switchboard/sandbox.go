package main

import (
	"fmt"
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/switchboard-rt/switchboard/internal/config"
	"github.com/switchboard-rt/switchboard/internal/sandbox"
	"github.com/switchboard-rt/switchboard/internal/script"
)

// SandboxCmd is the process the server starts to run circle plays
// (hidden: it reads its settings from the environment the server gives it
// and speaks the worker line protocol on stdin/stdout).
type SandboxCmd struct{}

// Run serves plays until the server closes stdin.
func (SandboxCmd) Run() error {
	if code := sandbox.ChildMain(); code != 0 {
		return &exitStatusError{code: code, err: fmt.Errorf("sandbox-worker exited with status %d", code)}
	}
	return nil
}

// newSandbox starts the pool of sandbox processes that runs the circles'
// plays with the limits of c, the store and the publisher in this process.
func newSandbox(c config.Circles, st sandbox.Store, pub script.Publisher, log *slog.Logger, reg prometheus.Registerer) (*sandbox.Runner, error) {
	r, err := sandbox.New(sandbox.Config{
		Workers: c.Sandboxes, MaxMemory: c.MaxMemory, MaxCPU: c.MaxCPU.Std(),
		Engine: script.Config{Timeout: c.ScriptTimeout.Std(), MaxSteps: c.MaxSteps,
			MaxScriptSize: c.MaxScriptSize, MaxOutputSize: c.MaxOutputSize},
		Quota: script.Quota{MaxKeys: c.StoreMaxKeys, MaxBytes: c.StoreMaxBytes},
		Store: st, Publisher: pub, Logger: log, Metrics: reg,
	})
	if err != nil {
		return nil, fmt.Errorf("circles: sandbox: %w", err)
	}
	return r, nil
}
