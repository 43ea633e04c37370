package testenv

import (
	"bufio"
	"fmt"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// RedisServer is a redis-server of the test's own on a free port, so the
// test may stop, kill and restart it (the shared Redis of RedisURL must
// never be). It is killed when the test ends.
type RedisServer struct {
	tb   testing.TB
	port int
	conf string   // config file, first on the command line ("" none)
	args []string // extra arguments, after the defaults so they win
	dir  string   // working directory: a replica's RDB lands here

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{}
}

// StartRedis starts a redis-server on a free port of 127.0.0.1 without
// persistence; args (for example "--appendonly", "yes") come after those
// defaults and so override them. A first argument not starting with "--"
// is a config file. It skips tb when redis-server is not on PATH.
func StartRedis(tb testing.TB, args ...string) *RedisServer {
	tb.Helper()
	s := NewRedisServer(tb, 0, args...)
	s.Start()
	return s
}

// NewRedisServer is StartRedis without the start, on port (0: a free
// one): the server does not run until Start.
func NewRedisServer(tb testing.TB, port int, args ...string) *RedisServer {
	tb.Helper()
	if _, err := exec.LookPath("redis-server"); err != nil {
		tb.Skip("redis-server is not on PATH; skipping a test that starts and kills its own Redis")
	}
	if port == 0 {
		port = FreePort(tb)
	}
	s := &RedisServer{tb: tb, port: port, dir: tb.TempDir()}
	if len(args) > 0 && !strings.HasPrefix(args[0], "--") {
		s.conf, args = args[0], args[1:]
	}
	s.args = args
	tb.Cleanup(s.Kill)
	return s
}

// FreePort returns a TCP port of 127.0.0.1 that was free a moment ago.
func FreePort(tb testing.TB) int {
	tb.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatalf("free port: %v", err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	if err := l.Close(); err != nil {
		tb.Fatalf("free port: %v", err)
	}
	return port
}

// Port is the server's TCP port; it stays the same across restarts.
func (s *RedisServer) Port() int { return s.port }

// Addr is host:port.
func (s *RedisServer) Addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port)) }

// URL is the redis:// URL of database 0.
func (s *RedisServer) URL() string { return "redis://" + s.Addr() + "/0" }

// Start runs the server (again, after Stop or Kill) and waits until it
// answers PING (loading a persisted data set included).
func (s *RedisServer) Start() {
	s.tb.Helper()
	var args []string
	if s.conf != "" {
		args = append(args, s.conf)
	}
	args = append(args, "--port", strconv.Itoa(s.port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--loglevel", "warning", "--dir", s.dir)
	args = append(args, s.args...)
	cmd := exec.Command("redis-server", args...)
	if err := cmd.Start(); err != nil {
		s.tb.Fatalf("start redis-server: %v", err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }() // ends when the process does
	s.mu.Lock()
	s.cmd, s.exited = cmd, exited
	s.mu.Unlock()
	deadline := time.Now().Add(Wait)
	for {
		if reply, err := s.Command("PING"); err == nil && reply == "+PONG" {
			return
		}
		select {
		case <-exited:
			s.tb.Fatalf("redis-server on port %d exited at start (%v)", s.port, cmd.ProcessState)
		default:
		}
		if time.Now().After(deadline) {
			s.tb.Fatalf("redis-server did not answer PING on port %d within %s", s.port, Wait)
		}
		time.Sleep(20 * time.Millisecond) // poll interval, not synchronisation
	}
}

// Stop ends the server with SIGTERM (it writes its append-only file and
// exits) and waits for it; Kill uses SIGKILL. Both are no-ops when it is
// not running.
func (s *RedisServer) Stop() { s.signal(syscall.SIGTERM) }

// Kill ends the server with SIGKILL and waits for it.
func (s *RedisServer) Kill() { s.signal(syscall.SIGKILL) }

func (s *RedisServer) signal(sig syscall.Signal) {
	s.mu.Lock()
	cmd, exited := s.cmd, s.exited
	s.cmd = nil
	s.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(sig)
	select {
	case <-exited:
	case <-time.After(Wait):
		_ = cmd.Process.Kill()
		<-exited
	}
}

// Command sends one command on a connection of its own and returns the
// first line of the reply ("+OK", "-ERR …", ":1", "$5"…).
func (s *RedisServer) Command(args ...string) (string, error) {
	c, err := net.DialTimeout("tcp", s.Addr(), time.Second)
	if err != nil {
		return "", err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(Wait))
	if _, err := c.Write(RESP(args...)); err != nil {
		return "", err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return "", err
	}
	return strings.TrimRight(line, "\r\n"), nil
}

// RESP encodes one command as a RESP array of bulk strings.
func RESP(args ...string) []byte {
	b := fmt.Appendf(nil, "*%d\r\n", len(args))
	for _, a := range args {
		b = fmt.Appendf(b, "$%d\r\n%s\r\n", len(a), a)
	}
	return b
}

// Freeze makes the server unresponsive for d with DEBUG SLEEP (start it
// with "--enable-debug-command", "local"), as a Redis slower than every
// deadline. It returns once the server has stopped answering; the channel
// receives the DEBUG SLEEP result when it answers again.
func (s *RedisServer) Freeze(d time.Duration) <-chan error {
	s.tb.Helper()
	done := make(chan error, 1)
	go func() { // ends when DEBUG SLEEP answers
		reply, err := s.Command("DEBUG", "SLEEP", strconv.FormatFloat(d.Seconds(), 'f', 3, 64))
		if err == nil && reply != "+OK" {
			err = fmt.Errorf("DEBUG SLEEP: %s", reply)
		}
		done <- err
	}()
	deadline := time.Now().Add(Wait)
	for {
		c, err := net.DialTimeout("tcp", s.Addr(), time.Second)
		if err != nil {
			s.tb.Fatalf("freeze: %v", err)
		}
		_ = c.SetDeadline(time.Now().Add(50 * time.Millisecond))
		_, _ = c.Write(RESP("PING"))
		_, err = bufio.NewReader(c).ReadString('\n')
		_ = c.Close()
		if err != nil {
			return done // no answer within 50ms: asleep
		}
		select {
		case err := <-done:
			s.tb.Fatalf("freeze: DEBUG SLEEP ended before the server stopped answering: %v", err)
		default:
		}
		if time.Now().After(deadline) {
			s.tb.Fatalf("freeze: the server still answers after %s", Wait)
		}
	}
}
