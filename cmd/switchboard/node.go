package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/switchboard-rt/switchboard/internal/config"
	"github.com/switchboard-rt/switchboard/internal/node"
)

// NodeCmd runs a compute node: `switchboard node --server URL --worker CMD`.
type NodeCmd struct {
	Server       string        `required:"" help:"Scheduler URL, http://HOST:PORT (the Switchboard server running with --scheduler)."`
	Worker       string        `required:"" help:"Worker command run for every chunk over the stdio worker protocol, e.g. \"python3 sim.py\"."`
	WorkerDir    string        `name:"worker-dir" help:"Working directory of the worker processes (default: this one)." type:"path"`
	Parallel     int           `help:"Chunks run at once and worker processes (default: the number of CPUs; the node's maxParallel may lower it)."`
	KeyFile      string        `name:"key-file" help:"Ed25519 key file (PEM; created with mode 0600 when missing). Default: <user config dir>/switchboard/node.key." type:"path"`
	Task         string        `default:"chunk" help:"Worker task id each chunk runs as."`
	ChunkTimeout time.Duration `name:"chunk-timeout" default:"1h" help:"Longest run of one chunk; a worker that overruns is killed and the chunk handed back."`
	Heartbeat    time.Duration `default:"10s" help:"Heartbeat interval."`
	Grace        time.Duration `default:"30s" help:"On SIGTERM, how long running chunks may finish before they are handed back."`
	Hostname     string        `help:"Hostname reported to the scheduler (default: this machine's)."`
	LogFormat    string        `name:"log-format" default:"text" enum:"text,json" help:"Log format: text or json."`
	LogLevel     string        `name:"log-level" default:"info" help:"Log level: trace, debug, info, warn, error."`
}

// Run starts the node and serves chunks until SIGINT/SIGTERM; the first
// signal finishes or hands back running chunks within --grace, a second
// forces exit.
func (c *NodeCmd) Run(ctx context.Context, out *output) error {
	argv, err := config.SplitCommand(c.Worker)
	if err != nil {
		return usageError(fmt.Errorf("--worker: %w", err))
	}
	if len(argv) == 0 {
		return usageError(errors.New("--worker: empty command"))
	}
	if !strings.ContainsRune(argv[0], os.PathSeparator) {
		// A worker that cannot start would fail every chunk it is given.
		if _, err := exec.LookPath(argv[0]); err != nil {
			return usageError(fmt.Errorf("--worker: %w", err))
		}
	}
	if c.Parallel < 0 {
		return usageError(fmt.Errorf("--parallel: %d must be at least 1", c.Parallel))
	}
	for _, d := range []struct {
		flag string
		v    time.Duration
	}{{"--chunk-timeout", c.ChunkTimeout}, {"--heartbeat", c.Heartbeat}, {"--grace", c.Grace}} {
		if d.v <= 0 {
			return usageError(fmt.Errorf("%s: %s must be positive", d.flag, d.v))
		}
	}
	logger, err := newLogger(c.LogFormat, c.LogLevel)
	if err != nil {
		return usageError(err)
	}
	path := c.KeyFile
	if path == "" {
		if path, err = node.DefaultKeyFile(); err != nil {
			return usageError(err)
		}
	}
	key, created, err := node.LoadOrCreateKey(path)
	if err != nil {
		return usageError(fmt.Errorf("--key-file: %w", err))
	}
	if created {
		fmt.Fprintf(out.stdout, "created node key %s (mode 0600)\n", path)
	}
	n, err := node.New(node.Config{
		Server: c.Server, Key: key, Worker: argv, WorkerDir: c.WorkerDir, TaskID: c.Task,
		Parallel: c.Parallel, ChunkTimeout: c.ChunkTimeout, HeartbeatInterval: c.Heartbeat,
		ShutdownGrace: c.Grace, Hostname: c.Hostname, Version: version(),
		Out: out.stdout, Logger: logger,
	})
	if err != nil {
		return usageError(err)
	}
	runErr := n.Run(ctx)
	if runErr == nil {
		logger.Info("shutting down", "grace", c.Grace)
	}
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sigs)
	go func() {
		if _, ok := <-sigs; ok {
			logger.Error("second signal: forcing exit")
			os.Exit(1)
		}
	}()
	sctx, cancel := context.WithTimeout(context.Background(), c.Grace+15*time.Second)
	defer cancel()
	if err := n.Shutdown(sctx); err != nil && runErr == nil {
		return fmt.Errorf("node shutdown: %w", err)
	}
	if runErr != nil {
		return runErr
	}
	logger.Info("stopped")
	return nil
}
