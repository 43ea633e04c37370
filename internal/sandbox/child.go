package sandbox

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/switchboard-rt/switchboard/internal/script"
)

// Child exit statuses (2 is the Go runtime's own, on a failed allocation).
const (
	exitUsage    = 4 // bad EnvConfig or a protocol violation by the parent
	watchdogTick = 5 * time.Millisecond
	// maxParentLine bounds a line from the parent: a task (the script),
	// or a call reply (a value, or a keys() listing).
	maxParentLine = 32 << 20
)

// ChildMain runs a sandbox process: it reads EnvConfig, limits itself and
// serves plays on stdin/stdout until stdin closes or the parent sends
// "shutdown". It returns the exit status.
func ChildMain() int {
	var cc childConfig
	if err := json.Unmarshal([]byte(os.Getenv(EnvConfig)), &cc); err != nil || cc.MaxMemory <= 0 || cc.MaxCPU <= 0 {
		fmt.Fprintf(os.Stderr, "sandbox-worker: %s must hold the sandbox settings (it is started by the server, not by hand)\n", EnvConfig)
		return exitUsage
	}
	if err := limitSelf(cc); err != nil {
		fmt.Fprintf(os.Stderr, "sandbox-worker: %v\n", err)
		return exitUsage
	}
	c, err := newChild(cc, os.Stdout)
	if err != nil {
		fmt.Fprintf(os.Stderr, "sandbox-worker: %v\n", err)
		return exitUsage
	}
	return c.serve(os.Stdin)
}

// parentMsg is a line from the parent (the worker pool).
type parentMsg struct {
	Type   string          `json:"type"`
	ID     *uint64         `json:"id"`
	TaskID string          `json:"taskId"`
	Input  json.RawMessage `json:"input"`
	Call   *uint64         `json:"call"`
	OK     *bool           `json:"ok"`
	Result json.RawMessage `json:"result"`
	Error  *struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

// decodeParentLine parses and checks one line from the parent.
func decodeParentLine(line []byte) (parentMsg, error) {
	var m parentMsg
	if err := json.Unmarshal(line, &m); err != nil {
		return m, fmt.Errorf("invalid JSON: %w", err)
	}
	if m.ID == nil {
		return m, errors.New("message without id")
	}
	switch m.Type {
	case "ping", "cancel", "shutdown":
	case "task":
		if m.TaskID == "" {
			return m, errors.New("task without taskId")
		}
	case "callReply":
		if m.Call == nil || m.OK == nil {
			return m, errors.New("call reply without call or ok")
		}
		if !*m.OK && m.Error == nil {
			return m, errors.New("failed call reply without error")
		}
	default:
		return m, fmt.Errorf("unknown message type %q", m.Type)
	}
	return m, nil
}

type callReply struct {
	result json.RawMessage
	err    error
}

type play struct {
	cancel context.CancelCauseFunc
}

// child serves plays. The reader (serve) owns the loop; each play runs on
// its own goroutine, waited for by serve.
type child struct {
	cfg childConfig
	eng *script.Engine

	outMu sync.Mutex
	out   io.Writer

	mu       sync.Mutex
	plays    map[uint64]*play
	calls    map[uint64]chan callReply
	nextCall atomic.Uint64
	xcpu     int // SIGXCPU received during the current plays
	wg       sync.WaitGroup
}

func newChild(cc childConfig, out io.Writer) (*child, error) {
	c := &child{cfg: cc, out: out, plays: map[uint64]*play{}, calls: map[uint64]chan callReply{}}
	rs := remote{c}
	eng, err := script.New(script.Config{
		Timeout: cc.Timeout, MaxSteps: cc.MaxSteps, MaxScriptSize: cc.MaxScriptSize,
		MaxOutputSize: cc.MaxOutputSize, MaxKeySize: cc.MaxKeySize, MaxValueSize: cc.MaxValueSize,
		MaxKeys: cc.MaxKeys, MaxPublishes: cc.MaxPublishes, Store: rs, Publisher: rs,
	})
	if err != nil {
		return nil, err
	}
	c.eng = eng
	return c, nil
}

func (c *child) memErr() *script.Error {
	return &script.Error{Kind: script.KindMemory, Msg: fmt.Sprintf("memory limit exceeded (%s)", mib(c.cfg.MaxMemory))}
}

func (c *child) cpuErr() *script.Error {
	return &script.Error{Kind: script.KindCPU, Msg: fmt.Sprintf("cpu limit exceeded (%s)", c.cfg.MaxCPU)}
}

func (c *child) serve(in io.Reader) int {
	stop := make(chan struct{})
	var bg sync.WaitGroup
	bg.Add(2)
	go func() { defer bg.Done(); c.watchMemory(stop) }()
	go func() { defer bg.Done(); c.watchCPU(stop) }()
	defer func() {
		c.cancelAll(errors.New("sandbox stopping"))
		c.wg.Wait()
		close(stop)
		bg.Wait()
	}()

	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 0, 64<<10), maxParentLine)
	for sc.Scan() {
		line := sc.Bytes()
		if len(line) == 0 {
			continue
		}
		m, err := decodeParentLine(line)
		if err != nil {
			fmt.Fprintf(os.Stderr, "sandbox-worker: bad line from the server: %v\n", err)
			return exitUsage
		}
		id := *m.ID
		switch m.Type {
		case "ping":
			c.writeLine([]byte(`{"id":` + strconv.FormatUint(id, 10) + `,"ok":true}`))
		case "cancel":
			c.mu.Lock()
			if p := c.plays[id]; p != nil {
				p.cancel(nil)
			}
			c.mu.Unlock()
		case "shutdown":
			return 0
		case "callReply":
			r := callReply{result: m.Result}
			if !*m.OK {
				r.err = callError(m.Error.Code, m.Error.Message)
			}
			c.mu.Lock()
			ch := c.calls[*m.Call]
			delete(c.calls, *m.Call)
			c.mu.Unlock()
			if ch != nil {
				ch <- r
			}
		case "task":
			c.startPlay(id, m)
		}
	}
	if err := sc.Err(); err != nil {
		fmt.Fprintf(os.Stderr, "sandbox-worker: read: %v\n", err)
		return exitUsage
	}
	return 0
}

// callError turns a failed call reply into the error the engine sees: a
// quota stays a *script.Error (it fails the play), the rest is plain text.
func callError(code, msg string) error {
	if code == string(script.KindQuota) {
		return &script.Error{Kind: script.KindQuota, Msg: msg}
	}
	return errors.New(msg)
}

func (c *child) startPlay(id uint64, m parentMsg) {
	var in playInput
	if m.TaskID != "play" {
		c.reply(id, "", &script.Error{Kind: script.KindSandbox, Msg: "unknown task " + strconv.Quote(m.TaskID)})
		return
	}
	if err := json.Unmarshal(m.Input, &in); err != nil {
		c.reply(id, "", &script.Error{Kind: script.KindSandbox, Msg: "malformed play"})
		return
	}
	ctx, cancel := context.WithCancelCause(context.WithValue(context.Background(), playKey{}, id))
	c.mu.Lock()
	c.plays[id] = &play{cancel: cancel}
	c.xcpu = 0
	c.mu.Unlock()
	setCPULimit(c.cfg.MaxCPU)
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		out, err := c.runPlay(ctx, in)
		c.mu.Lock()
		delete(c.plays, id)
		c.mu.Unlock()
		cancel(nil)
		c.reply(id, out, err)
	}()
}

func (c *child) runPlay(ctx context.Context, in playInput) (out string, err error) {
	defer func() {
		if v := recover(); v != nil {
			fmt.Fprintf(os.Stderr, "sandbox-worker: play panicked: %v\n%s", v, debug.Stack())
			out, err = "", &script.Error{Kind: script.KindSandbox, Msg: "sandbox failed"}
		}
	}()
	return c.eng.Run(ctx, script.Request{Circle: in.Circle, Caller: in.Caller, Script: in.Script})
}

func (c *child) cancelAll(cause error) {
	c.mu.Lock()
	for _, p := range c.plays {
		p.cancel(cause)
	}
	c.mu.Unlock()
}

func (c *child) playing() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.plays) > 0
}

// watchMemory samples the heap while plays run and cancels them when it
// passes the cap (after a GC confirms the excess is live).
func (c *child) watchMemory(stop <-chan struct{}) {
	s := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	heap := func() int64 {
		metrics.Read(s)
		if s[0].Value.Kind() != metrics.KindUint64 {
			return 0
		}
		return int64(s[0].Value.Uint64())
	}
	t := time.NewTicker(watchdogTick)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
		}
		if !c.playing() || heap() <= c.cfg.MaxMemory {
			continue
		}
		runtime.GC()
		if heap() > c.cfg.MaxMemory {
			c.cancelAll(c.memErr())
		}
	}
}

// watchCPU cancels the plays on SIGXCPU (the per-play RLIMIT_CPU) and
// exits when a second one arrives for the same plays: a play stuck in one
// long builtin call never reaches a cancellation point.
func (c *child) watchCPU(stop <-chan struct{}) {
	sig, done := notifyXCPU()
	defer done()
	for {
		select {
		case <-stop:
			return
		case <-sig:
		}
		c.mu.Lock()
		c.xcpu++
		n := c.xcpu
		c.mu.Unlock()
		if n > 1 {
			fmt.Fprintln(os.Stderr, "sandbox-worker: cpu limit exceeded; exiting")
			os.Exit(exitCPU)
		}
		c.cancelAll(c.cpuErr())
	}
}

func (c *child) writeLine(b []byte) {
	c.outMu.Lock()
	defer c.outMu.Unlock()
	b = append(b, '\n')
	if _, err := c.out.Write(b); err != nil {
		fmt.Fprintf(os.Stderr, "sandbox-worker: write: %v\n", err)
	}
}

type replyErr struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

type replyLine struct {
	ID     uint64      `json:"id"`
	OK     bool        `json:"ok"`
	Result *playOutput `json:"result,omitempty"`
	Error  *replyErr   `json:"error,omitempty"`
	// Recycle asks the pool for a fresh process: one that tripped the
	// memory or CPU limit keeps a grown heap or spent CPU time.
	Recycle bool `json:"recycle,omitempty"`
}

// reply sends a play's result; a *script.Error keeps its kind as the code.
func (c *child) reply(id uint64, out string, err error) {
	r := replyLine{ID: id, OK: err == nil}
	if err == nil {
		r.Result = &playOutput{Output: out}
	} else {
		var se *script.Error
		if !errors.As(err, &se) {
			se = &script.Error{Kind: script.KindSandbox, Msg: "sandbox failed"}
		}
		r.Error = &replyErr{Code: string(se.Kind), Message: se.Msg}
		r.Recycle = se.Kind == script.KindMemory || se.Kind == script.KindCPU
	}
	b, merr := json.Marshal(r)
	if merr != nil {
		b = []byte(`{"id":` + strconv.FormatUint(id, 10) + `,"ok":false,"error":{"code":"sandbox","message":"sandbox failed"}}`)
	}
	c.writeLine(b)
}

type playKey struct{}

type callLine struct {
	Type   string     `json:"type"`
	ID     uint64     `json:"id"`
	Call   uint64     `json:"call"`
	Method string     `json:"method"`
	Params callParams `json:"params"`
}

// call sends a call for the play in ctx and waits for the parent's reply.
func (c *child) call(ctx context.Context, method string, p callParams) (json.RawMessage, error) {
	id, ok := ctx.Value(playKey{}).(uint64)
	if !ok {
		return nil, errors.New("no play")
	}
	n := c.nextCall.Add(1)
	ch := make(chan callReply, 1)
	c.mu.Lock()
	c.calls[n] = ch
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		delete(c.calls, n)
		c.mu.Unlock()
	}()
	b, err := json.Marshal(callLine{Type: "call", ID: id, Call: n, Method: method, Params: p})
	if err != nil {
		return nil, err
	}
	c.writeLine(b)
	select {
	case r := <-ch:
		return r.result, r.err
	case <-ctx.Done():
		return nil, context.Cause(ctx)
	}
}

// remote is the script.Store and script.Publisher of the child: calls
// answered by the parent.
type remote struct{ c *child }

func (r remote) Get(ctx context.Context, _, key string) (string, bool, error) {
	res, err := r.c.call(ctx, methodGet, callParams{Key: key})
	if err != nil {
		return "", false, err
	}
	var g getResult
	if err := json.Unmarshal(res, &g); err != nil {
		return "", false, err
	}
	return g.Value, g.Found, nil
}

func (r remote) Set(ctx context.Context, _, key, value string) error {
	_, err := r.c.call(ctx, methodSet, callParams{Key: key, Value: &value})
	return err
}

func (r remote) Delete(ctx context.Context, _, key string) (bool, error) {
	res, err := r.c.call(ctx, methodDelete, callParams{Key: key})
	if err != nil {
		return false, err
	}
	var existed bool
	err = json.Unmarshal(res, &existed)
	return existed, err
}

func (r remote) Keys(ctx context.Context, _, prefix string, limit int) ([]string, error) {
	res, err := r.c.call(ctx, methodKeys, callParams{Prefix: prefix, Limit: limit})
	if err != nil {
		return nil, err
	}
	var keys []string
	err = json.Unmarshal(res, &keys)
	return keys, err
}

func (r remote) Publish(ctx context.Context, _, channel string, data []byte) error {
	_, err := r.c.call(ctx, methodPublish, callParams{Channel: channel, Data: data})
	return err
}
