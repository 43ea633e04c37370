// Command switchboard is the Switchboard realtime gateway: a
// Centrifugo-compatible hub, circles, a worker gateway and their tools in
// one binary.
package main

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/debug"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/alecthomas/kong"

	"github.com/switchboard-rt/switchboard/internal/auth"
	"github.com/switchboard-rt/switchboard/internal/bench"
	"github.com/switchboard-rt/switchboard/internal/config"
	"github.com/switchboard-rt/switchboard/internal/playcli"
)

// buildVersion is set with -ldflags "-X main.buildVersion=v1.2.3".
var buildVersion = ""

func version() string {
	if buildVersion != "" {
		return buildVersion
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return "dev"
}

// versionText is `switchboard version`'s output: the version line, then the
// module, its VCS revision (with "(modified)" for a dirty tree) and commit
// time, and the Go version, as far as the build info records them.
func versionText(v string, bi *debug.BuildInfo) string {
	var b strings.Builder
	fmt.Fprintf(&b, "switchboard %s\n", v)
	if bi == nil {
		b.WriteString("build info: not available\n")
		return b.String()
	}
	fmt.Fprintf(&b, "module: %s %s\n", bi.Main.Path, bi.Main.Version)
	set := map[string]string{}
	for _, s := range bi.Settings {
		set[s.Key] = s.Value
	}
	if rev := set["vcs.revision"]; rev != "" {
		if set["vcs.modified"] == "true" {
			rev += " (modified)"
		}
		fmt.Fprintf(&b, "revision: %s\n", rev)
		if t := set["vcs.time"]; t != "" {
			fmt.Fprintf(&b, "commit time: %s\n", t)
		}
	} else {
		b.WriteString("revision: unknown (built without VCS information; see go build -buildvcs)\n")
	}
	fmt.Fprintf(&b, "go: %s\n", bi.GoVersion)
	return b.String()
}

// CLI is the command line of the switchboard binary.
type CLI struct {
	Serve       ServeCmd       `cmd:"" default:"withargs" help:"Run the server (default command)."`
	Version     VersionCmd     `cmd:"" help:"Print the version."`
	Checkconfig CheckconfigCmd `cmd:"" help:"Validate a configuration file."`
	Gentoken    GentokenCmd    `cmd:"" help:"Print an HS256 connection token for a user."`
	Genconfig   GenconfigCmd   `cmd:"" help:"Write a starter configuration with random secrets."`
	Keygen      KeygenCmd      `cmd:"" help:"Print a new secp256k1 private key and both public key encodings."`
	Play        PlayCmd        `cmd:"" help:"Run a script on a circle (authenticating with a key file)."`
	Bench       bench.Cmd      `cmd:"" help:"Load-test a Centrifugo-compatible server (conns, fanout, rpc, relay, scheduler, plot)."`
	Node        NodeCmd        `cmd:"" help:"Run a compute node for the scheduler (runs chunks through a worker command)."`
	RelayCert   RelayCertCmd   `cmd:"" name:"relay-cert" help:"Write a self-signed relay certificate browsers accept by hash (ECDSA P-256, at most 14 days)."`
	Sandbox     SandboxCmd     `cmd:"" name:"sandbox-worker" hidden:"" help:"Run circle plays for the server (started by it)."`
}

// KeygenCmd prints a new key pair (the output is itself a valid key file),
// or writes it to a file with mode 0600 and prints only the public keys.
type KeygenCmd struct {
	Output string `short:"o" help:"Write the key file here (mode 0600) and print only the public keys."`
	Force  bool   `help:"Overwrite an existing --output file."`
}

// Run generates the key pair and writes it out.
func (k *KeygenCmd) Run(out *output) error {
	if k.Force && k.Output == "" {
		return usageError(errors.New("--force needs -o/--output"))
	}
	kp, err := playcli.GenerateKeyPair()
	if err != nil {
		return err
	}
	if k.Output == "" {
		if isTerminal(out.stdout) {
			fmt.Fprintln(out.stderr, "switchboard: warning: printing a private key on a terminal; use -o FILE to write it to a file with mode 0600 instead")
		}
		_, err := io.WriteString(out.stdout, kp.KeyFile())
		return err
	}
	if err := writeNew(k.Output, []byte(kp.KeyFile()), k.Force, privateMode); err != nil {
		return err
	}
	_, err = fmt.Fprintf(out.stdout, "wrote private key to %s (mode 0600)\n%s", k.Output, kp.PublicText())
	return err
}

// isTerminal reports whether w is a character device (a terminal).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// PlayCmd runs a script on a circle.
type PlayCmd struct {
	URL     string        `required:"" help:"Circle URL, ws://host:port/{circle_key}."`
	KeyFile string        `name:"key-file" help:"Private key file (from keygen); omit to play unauthenticated."`
	Timeout time.Duration `default:"60s" help:"Limit for the whole run."`
	Script  string        `arg:"" optional:"" help:"Script file, or - (default) for standard input."`
}

// Run connects, authenticates, plays and prints the result.
func (p *PlayCmd) Run(ctx context.Context, out *output) error {
	f, err := playcli.OpenScript(p.Script, os.Stdin)
	if err != nil {
		return withExit(err)
	}
	defer f.Close()
	ctx, cancel := context.WithTimeout(ctx, p.Timeout)
	defer cancel()
	return withExit(playcli.Play(ctx, p.URL, p.KeyFile, f, out.stdout))
}

// withExit attaches playcli's exit status (2 for usage errors) to err.
func withExit(err error) error {
	if err == nil {
		return nil
	}
	return &exitStatusError{code: playcli.ExitCode(err), err: err}
}

// ServeCmd runs the server.
type ServeCmd struct {
	Config    string `short:"c" env:"SWITCHBOARD_CONFIG" help:"Configuration file (JSON, YAML or TOML)." type:"path"`
	Dev       bool   `help:"Development mode: generate and print a secret, an API key, a token and a curl line; add open chat and bench namespaces. Not for production."`
	Host      string `help:"Listen address (overrides http_server.address)."`
	Port      int    `help:"Listen port (overrides http_server.port; without it, the configuration's)." default:"-1" placeholder:"PORT"`
	LogFormat string `help:"Log format: text or json (overrides log.format)."`
	LogLevel  string `help:"Log level: trace, debug, info, warn, error (overrides log.level)."`
	Debug     bool   `short:"d" help:"Debug logging (same as --log-level debug)."`
	Verbose   int    `short:"v" type:"counter" help:"More logging: -v debug, -vv trace."`

	Keys       []string `short:"k" name:"key" sep:"none" help:"Host a circle for this secp256k1 public key (hex); repeatable (adds to circles.keys)."`
	PublicKeys string   `name:"public-keys" help:"Comma-separated circle keys (adds to circles.keys)."`
	EnableAuth bool     `name:"enable-auth" help:"Require signature authentication before play (circles.enable_auth)."`
	RedisURL   string   `name:"redis-url" help:"The shared Redis: sets engine.redis.address and circles.redis_url (circle plays go through Redis queues)."`
	Engine     string   `name:"engine" help:"Engine: memory or redis (engine.type); redis needs --redis-url or engine.redis.address."`

	Worker  string `name:"worker" help:"Worker command for the worker gateway, e.g. \"node worker.js\" (runner.command)."`
	Workers int    `name:"workers" help:"Worker processes (runner.workers)."`

	Scheduler bool `name:"scheduler" help:"Run the compute scheduler and its API (scheduler.enabled; needs client.token.hmac_secret_key)."`
	RelayPort int  `name:"relay-port" help:"Start the game relay on this UDP port (relay.enabled, port of relay.address; without it, as the configuration says)." default:"-1" placeholder:"PORT"`
}

// loadConfig reads file + env, then applies flags on top; with --dev it
// then fills what is missing (see applyDev). Every error is a usage or
// configuration error (exit status 2).
func (s *ServeCmd) loadConfig() (config.Config, devInfo, error) {
	cfg, err := s.mergeConfig()
	if err != nil {
		return cfg, devInfo{}, usageError(err)
	}
	var info devInfo
	if s.Dev {
		if info, err = applyDev(&cfg, rand.Reader); err != nil {
			return cfg, info, err
		}
	}
	if err := cfg.Validate(); err != nil {
		return cfg, info, usageError(err)
	}
	return cfg, info, nil
}

func (s *ServeCmd) mergeConfig() (config.Config, error) {
	cfg, err := config.Load(s.Config)
	if err != nil {
		return cfg, err
	}
	if s.Host != "" {
		cfg.HTTPServer.Address = s.Host
	}
	if s.Port >= 0 {
		if s.Port > 65535 {
			return cfg, fmt.Errorf("--port: %d is out of range 0-65535", s.Port)
		}
		cfg.HTTPServer.Port = s.Port
	}
	if err := relayPort(&cfg, s.RelayPort); err != nil {
		return cfg, err
	}
	if s.LogFormat != "" {
		cfg.Log.Format = s.LogFormat
	}
	if s.LogLevel != "" {
		cfg.Log.Level = s.LogLevel
	}
	if s.Debug || s.Verbose == 1 {
		cfg.Log.Level = "debug"
	}
	if s.Verbose > 1 {
		cfg.Log.Level = "trace"
	}
	cfg.Circles.Keys = append(cfg.Circles.Keys, s.Keys...)
	for _, k := range strings.Split(s.PublicKeys, ",") {
		if k = strings.TrimSpace(k); k != "" {
			cfg.Circles.Keys = append(cfg.Circles.Keys, k)
		}
	}
	if s.EnableAuth {
		cfg.Circles.EnableAuth = true
	}
	if s.Scheduler {
		cfg.Scheduler.Enabled = true
	}
	if err := s.applyRedis(&cfg); err != nil {
		return cfg, err
	}
	if s.Worker != "" {
		argv, err := config.SplitCommand(s.Worker)
		if err != nil {
			return cfg, fmt.Errorf("--worker: %w", err)
		}
		cfg.Runner.Command = argv
	}
	if s.Workers != 0 {
		if s.Workers < 0 {
			return cfg, fmt.Errorf("--workers: %d must be at least 1", s.Workers)
		}
		if len(cfg.Runner.Command) == 0 {
			return cfg, errors.New("--workers needs --worker (or runner.command in the configuration): there is no worker command to run")
		}
		cfg.Runner.Workers = s.Workers
	}
	return cfg, nil
}

// Run starts the server and blocks until a signal or a fatal error. The
// first SIGINT/SIGTERM shuts down gracefully; a second forces exit.
func (s *ServeCmd) Run(out *output) error {
	cfg, dev, err := s.loadConfig()
	if err != nil {
		return err
	}
	logger, err := newLogger(cfg.Log.Format, cfg.Log.Level)
	if err != nil {
		return usageError(err)
	}
	m := &Main{Config: cfg, Logger: logger}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := m.Run(ctx); err != nil {
		return err
	}
	wsURL := "ws://" + m.Addr() + "/connection/websocket"
	fmt.Fprintln(out.stdout, listeningLine(version(), m.URL(), wsURL))
	if s.Dev {
		logger.Warn("development mode (--dev): not for production; secrets are printed on standard output")
		if err := printDevBanner(out.stdout, cfg, dev, m.URL(), wsURL, m.devRelay(), time.Now()); err != nil {
			logger.Error("dev banner", "error", err)
		}
	}

	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sigs)
	select {
	case err := <-m.serveErrCh():
		// Serving failed: stop every component all the same.
		sctx, scancel := context.WithTimeout(context.Background(), time.Duration(cfg.Shutdown.Timeout))
		defer scancel()
		return errors.Join(err, m.Shutdown(sctx))
	case sig := <-sigs:
		logger.Info("shutting down", "signal", sig.String(), "timeout", time.Duration(cfg.Shutdown.Timeout))
	}
	go func() {
		<-sigs
		logger.Error("second signal: forcing exit")
		os.Exit(1)
	}()
	sctx, scancel := context.WithTimeout(context.Background(), time.Duration(cfg.Shutdown.Timeout))
	defer scancel()
	if err := m.Shutdown(sctx); err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	logger.Info("stopped")
	return nil
}

// listeningLine is serve's first line of output. The version comes last
// and labelled, so an unversioned build's "dev" does not read like --dev.
func listeningLine(v, httpURL, wsURL string) string {
	return fmt.Sprintf("switchboard listening on %s (WebSocket %s; version %s)", httpURL, wsURL, v)
}

func (m *Main) serveErrCh() <-chan error { return m.serveErr }

// VersionCmd prints the version.
type VersionCmd struct{}

// Run prints the version and build information.
func (VersionCmd) Run(out *output) error {
	bi, _ := debug.ReadBuildInfo()
	_, err := io.WriteString(out.stdout, versionText(version(), bi))
	return err
}

// CheckconfigCmd validates a configuration file.
type CheckconfigCmd struct {
	Config string `short:"c" required:"" env:"SWITCHBOARD_CONFIG" help:"Configuration file to check." type:"path"`
}

// Run loads and validates the file (with the environment), and reads the
// files it names as serve would.
func (c *CheckconfigCmd) Run(out *output) error {
	cfg, err := config.Load(c.Config)
	if err != nil {
		return usageError(err)
	}
	if _, err := cfg.RelayCertificate(); err != nil {
		return usageError(fmt.Errorf("config %s: %w", c.Config, err))
	}
	fmt.Fprintf(out.stdout, "%s: configuration is valid\n", c.Config)
	if len(cfg.NoEffect) > 0 {
		fmt.Fprintf(out.stdout, "accepted without effect in Switchboard: %s\n", strings.Join(cfg.NoEffect, ", "))
	}
	return nil
}

// GentokenCmd prints a connection token.
type GentokenCmd struct {
	User   string        `required:"" help:"User ID (the token's sub claim)."`
	TTL    time.Duration `default:"1h" help:"Token lifetime (0 = never expires)."`
	Config string        `short:"c" env:"SWITCHBOARD_CONFIG" help:"Take the secret from this configuration file." type:"path"`
	Secret string        `help:"HMAC secret (instead of --config)."`
}

// Run signs and prints the token.
func (g *GentokenCmd) Run(out *output) error {
	secret := g.Secret
	if secret == "" {
		cfg, err := config.Load(g.Config)
		if err != nil {
			return usageError(err)
		}
		secret = cfg.Client.Token.HMACSecretKey
	}
	if secret == "" {
		return usageError(errors.New("no secret: pass --secret or a --config with client.token.hmac_secret_key"))
	}
	if g.TTL < 0 {
		return usageError(errors.New("--ttl: must not be negative"))
	}
	tok, err := auth.SignConnect(secret, g.User, g.TTL, time.Now())
	if err != nil {
		return err
	}
	fmt.Fprintln(out.stdout, tok)
	return nil
}

// GenconfigCmd writes a starter configuration.
type GenconfigCmd struct {
	Output string `short:"o" default:"config.json" help:"File to write (\"-\" = standard output, refused when it is a non-empty file)."`
	Force  bool   `help:"Overwrite an existing file."`
}

// Run writes the configuration.
func (g *GenconfigCmd) Run(out *output) error {
	data, err := config.Generate()
	if err != nil {
		return err
	}
	if g.Output == "-" {
		if err := refuseNonEmpty(out.stdout, g.Force); err != nil {
			return err
		}
		_, err := out.stdout.Write(data)
		return err
	}
	if err := sameAsStdout(out.stdout, g.Output); err != nil {
		return err
	}
	if err := writeNew(g.Output, data, g.Force, privateMode); err != nil {
		return err
	}
	fmt.Fprintf(out.stdout, "wrote %s\n", g.Output)
	return nil
}

// refuseNonEmpty is a usage error when w is a regular file that already
// holds data: `genconfig -o - >> config.json` would append a second
// document to it (a `>` redirect has already truncated it; nothing can
// save that file, which is why -o is the default). force skips the check.
func refuseNonEmpty(w io.Writer, force bool) error {
	f, ok := w.(*os.File)
	if !ok || force {
		return nil
	}
	st, err := f.Stat()
	if err != nil || !st.Mode().IsRegular() || st.Size() == 0 {
		return nil
	}
	return usageError(fmt.Errorf("standard output is a non-empty file (%d bytes); refusing to add to it: use -o FILE (refuses to overwrite) or --force", st.Size()))
}

// sameAsStdout is a usage error when standard output is redirected into
// path itself (`genconfig > config.json`): the shell has truncated the file
// before genconfig ran, and its own "wrote" line would land in it.
func sameAsStdout(w io.Writer, path string) error {
	f, ok := w.(*os.File)
	if !ok {
		return nil
	}
	so, err := f.Stat()
	if err != nil || !so.Mode().IsRegular() {
		return nil
	}
	if st, err := os.Stat(path); err == nil && os.SameFile(so, st) {
		return usageError(fmt.Errorf("standard output is redirected into %s, the file genconfig writes (the redirect has already emptied it): run `switchboard genconfig -o %s --force` without the redirect, or `-o -` to print", path, path))
	}
	return nil
}

// File modes of what the commands write: secrets (keys, a configuration
// with secrets) and public files (a certificate).
const (
	privateMode os.FileMode = 0o600
	publicMode  os.FileMode = 0o644
)

// writeNew writes data to a new file with mode perm (less the umask); an
// existing file is a usage error unless force is set (then it is truncated
// and rewritten; a secret's file (privateMode) is first made mode perm).
// A failed write removes the file it created.
func writeNew(path string, data []byte, force bool, perm os.FileMode) error {
	flags := os.O_WRONLY | os.O_CREATE | os.O_EXCL
	if force {
		flags = os.O_WRONLY | os.O_CREATE | os.O_TRUNC
	}
	f, err := os.OpenFile(path, flags, perm)
	if err != nil {
		if errors.Is(err, os.ErrExist) {
			return existsError(path)
		}
		return err
	}
	if force && perm == privateMode {
		err = f.Chmod(perm) // an existing file may be readable by others
	}
	if err == nil {
		_, err = f.Write(data)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil && !force {
		os.Remove(path)
	}
	return err
}

// existsError is the usage error for a file a command will not overwrite.
func existsError(path string) error {
	return usageError(fmt.Errorf("%s exists; use --force to overwrite", path))
}

type output struct {
	stdout io.Writer
	stderr io.Writer
}

// run parses args and runs the command; it returns the exit status.
func run(args []string, stdout, stderr io.Writer) int {
	// Commands other than serve (which traps signals itself) stop on the
	// first interrupt through this context.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if len(args) == 0 || args[0] == "serve" || strings.HasPrefix(args[0], "-") {
		stop() // serve: first signal graceful, second forced, handled in ServeCmd.Run
	}
	var cli CLI
	out := &output{stdout: stdout, stderr: stderr}
	exitCode := -1
	parser, err := kong.New(&cli,
		kong.Name("switchboard"),
		kong.Description("Realtime gateway: Centrifugo-compatible hub, circles and worker gateway in one binary."),
		kong.Writers(stdout, stderr),
		kong.Exit(func(code int) { exitCode = code; panic(exitSignal{}) }),
		kong.UsageOnError(),
		kong.Bind(out),
		kong.BindTo(ctx, (*context.Context)(nil)),
	)
	if err != nil {
		fmt.Fprintln(stderr, "switchboard:", err)
		return 2
	}
	code := func() (code int) {
		defer func() {
			if r := recover(); r != nil {
				if _, ok := r.(exitSignal); !ok {
					panic(r)
				}
				code = exitCode
			}
		}()
		kctx, err := parser.Parse(args)
		if err != nil {
			fmt.Fprintln(stderr, "switchboard:", untruncated(err))
			return 2
		}
		if err := kctx.Run(); err != nil {
			fmt.Fprintln(stderr, "switchboard:", strings.TrimSpace(err.Error()))
			return exitStatus(err)
		}
		return 0
	}()
	return code
}

type exitSignal struct{}

// untruncated replaces kong's "expected one of a, b, c, d, e, ..." (a
// command group run without its subcommand; kong lists five) by the list
// of every subcommand.
func untruncated(err error) error {
	var pe *kong.ParseError
	if !errors.As(err, &pe) || pe.Context == nil || !strings.HasPrefix(err.Error(), "expected one of ") ||
		!strings.HasSuffix(err.Error(), ", ...") {
		return err
	}
	node := pe.Context.Selected()
	if node == nil {
		node = pe.Context.Model.Node
	}
	var names []string
	for _, child := range node.Children {
		if !child.Hidden && child.Argument == nil {
			names = append(names, strconv.Quote(child.Name))
		}
	}
	if len(names) == 0 {
		return err
	}
	return fmt.Errorf("expected one of %s", strings.Join(names, ", "))
}

// exitStatusError carries a specific exit status.
type exitStatusError struct {
	code int
	err  error
}

func (e *exitStatusError) Error() string { return e.err.Error() }
func (e *exitStatusError) Unwrap() error { return e.err }

// usageError marks err as a usage or configuration error (exit status 2).
func usageError(err error) error {
	if err == nil {
		return nil
	}
	var es *exitStatusError
	if errors.As(err, &es) {
		return err
	}
	return &exitStatusError{code: 2, err: err}
}

func exitStatus(err error) int {
	var es *exitStatusError
	if errors.As(err, &es) {
		return es.code
	}
	return 1
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}
