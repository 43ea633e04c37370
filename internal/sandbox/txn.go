package sandbox

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/switchboard-rt/switchboard/internal/script"
	"github.com/switchboard-rt/switchboard/internal/worker"
)

// Call methods a sandbox sends to the parent, and their parameters.
const (
	methodGet     = "store.get"
	methodSet     = "store.set"
	methodDelete  = "store.delete"
	methodKeys    = "store.keys"
	methodPublish = "publish"
)

type callParams struct {
	Key     string          `json:"key,omitempty"`
	Value   *string         `json:"value,omitempty"`
	Prefix  string          `json:"prefix,omitempty"`
	Limit   int             `json:"limit,omitempty"`
	Channel string          `json:"channel,omitempty"`
	Data    json.RawMessage `json:"data,omitempty"`
}

type getResult struct {
	Value string `json:"value"`
	Found bool   `json:"found"`
}

// txn serves one play's calls: reads see the play's own staged writes,
// writes are staged (at most the quota's bytes) and handed to Apply by
// the Runner when the play succeeds. It is safe for concurrent use.
type txn struct {
	r      *Runner
	circle string

	mu       sync.Mutex
	done     bool
	staged   map[string]*string // nil value: deleted
	order    []string           // first-write order of staged keys
	based    bool               // baseKeys/baseBytes loaded
	baseKeys int
	baseB    int64
	dKeys    int   // key count change of the staged writes
	dBytes   int64 // byte count change of the staged writes
}

func newTxn(r *Runner, circle string) *txn {
	return &txn{r: r, circle: circle, staged: map[string]*string{}}
}

// finish stops accepting calls and returns the staged writes.
func (t *txn) finish() []script.Write {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.done = true
	w := make([]script.Write, 0, len(t.order))
	for _, k := range t.order {
		w = append(w, script.Write{Key: k, Value: t.staged[k]})
	}
	return w
}

var errFinished = &worker.Error{Code: worker.CodeCanceled, Message: "the play has ended"}

// storeErr is an error fit for the script: a quota passes on, a store
// failure is logged and reported without details.
func (t *txn) storeErr(op string, err error) error {
	if errors.Is(err, errFinished) {
		return err
	}
	var se *script.Error
	if errors.As(err, &se) {
		return &worker.Error{Code: string(se.Kind), Message: se.Msg}
	}
	t.r.log.Error("store operation failed", "op", op, "circle", t.circle, "err", err)
	return fmt.Errorf("%s: store unavailable", op)
}

// HandleCall implements worker.CallHandler.
func (t *txn) HandleCall(ctx context.Context, method string, raw json.RawMessage) (json.RawMessage, error) {
	var p callParams
	if len(raw) > 0 {
		if err := json.Unmarshal(raw, &p); err != nil {
			return nil, fmt.Errorf("%s: malformed parameters", method)
		}
	}
	if method == methodPublish {
		return t.publish(ctx, p)
	}
	if t.r.cfg.Store == nil {
		return nil, fmt.Errorf("%s: no key-value store configured", method)
	}
	if method == methodKeys {
		return t.keys(ctx, p)
	}
	if p.Key == "" || len(p.Key) > t.r.eng.MaxKeySize {
		return nil, fmt.Errorf("%s: key must be 1 to %d bytes", method, t.r.eng.MaxKeySize)
	}
	switch method {
	case methodGet:
		v, ok, err := t.get(ctx, p.Key)
		if err != nil {
			return nil, t.storeErr(method, err)
		}
		return json.Marshal(getResult{Value: v, Found: ok})
	case methodSet, methodDelete:
		if method == methodSet && (p.Value == nil || len(*p.Value) > t.r.eng.MaxValueSize) {
			return nil, fmt.Errorf("%s: value must be a string of at most %d bytes", method, t.r.eng.MaxValueSize)
		}
		if method == methodDelete {
			p.Value = nil
		}
		existed, err := t.stage(ctx, p.Key, p.Value)
		if err != nil {
			return nil, t.storeErr(method, err)
		}
		return json.Marshal(existed)
	}
	return nil, &worker.Error{Code: worker.CodeNotFound, Message: "unknown method " + method}
}

// get reads key as the play sees it.
func (t *txn) get(ctx context.Context, key string) (string, bool, error) {
	t.mu.Lock()
	if t.done {
		t.mu.Unlock()
		return "", false, errFinished
	}
	v, staged := t.staged[key]
	t.mu.Unlock()
	if staged {
		if v == nil {
			return "", false, nil
		}
		return *v, true, nil
	}
	return t.r.cfg.Store.Get(ctx, t.circle, key)
}

// stage records a write (nil value: delete) after checking that the
// circle, with every write of the play, stays within the quota. It reports
// whether key existed before.
func (t *txn) stage(ctx context.Context, key string, value *string) (bool, error) {
	old, existed, err := t.get(ctx, key)
	if err != nil {
		return false, err
	}
	t.mu.Lock()
	based := t.based
	t.mu.Unlock()
	if !based {
		k, b, err := t.r.cfg.Store.Usage(ctx, t.circle)
		if err != nil {
			return false, err
		}
		t.mu.Lock()
		if !t.based {
			t.based, t.baseKeys, t.baseB = true, k, b
		}
		t.mu.Unlock()
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.done {
		return false, errFinished
	}
	dk, db := 0, int64(0)
	if existed {
		dk--
		db -= int64(len(key) + len(old))
	}
	if value != nil {
		dk++
		db += int64(len(key) + len(*value))
	}
	before := t.baseKeys + t.dKeys
	beforeB := t.baseB + t.dBytes
	if err := t.r.cfg.Quota.Check(before, before+dk, beforeB, beforeB+db); err != nil {
		return false, err
	}
	t.dKeys += dk
	t.dBytes += db
	if _, ok := t.staged[key]; !ok {
		t.order = append(t.order, key)
	}
	if value != nil {
		v := *value
		value = &v
	}
	t.staged[key] = value
	return existed, nil
}

// keys lists the play's view: stored keys with the staged writes applied.
func (t *txn) keys(ctx context.Context, p callParams) (json.RawMessage, error) {
	limit := p.Limit
	if limit <= 0 || limit > t.r.eng.MaxKeys {
		limit = t.r.eng.MaxKeys
	}
	if len(p.Prefix) > t.r.eng.MaxKeySize {
		return nil, fmt.Errorf("%s: prefix is %d bytes, limit %d", methodKeys, len(p.Prefix), t.r.eng.MaxKeySize)
	}
	t.mu.Lock()
	if t.done {
		t.mu.Unlock()
		return nil, errFinished
	}
	deleted := 0
	var added []string
	for k, v := range t.staged {
		if !strings.HasPrefix(k, p.Prefix) {
			continue
		}
		if v == nil {
			deleted++
		} else {
			added = append(added, k)
		}
	}
	t.mu.Unlock()
	stored, err := t.r.cfg.Store.Keys(ctx, t.circle, p.Prefix, limit+deleted)
	if err != nil {
		return nil, t.storeErr(methodKeys, err)
	}
	t.mu.Lock()
	out := slices.DeleteFunc(stored, func(k string) bool { v, ok := t.staged[k]; return ok && v == nil })
	t.mu.Unlock()
	out = append(out, added...)
	slices.Sort(out)
	out = slices.Compact(out)
	if len(out) > limit {
		out = out[:limit]
	}
	return json.Marshal(out)
}

func (t *txn) publish(ctx context.Context, p callParams) (json.RawMessage, error) {
	if t.r.cfg.Publisher == nil {
		return nil, errors.New("publish: publishing is not available on this server")
	}
	if p.Channel == "" || len(p.Channel) > script.DefaultMaxChannelLen || !json.Valid(p.Data) {
		return nil, errors.New("publish: invalid channel or data")
	}
	t.mu.Lock()
	done := t.done
	t.mu.Unlock()
	if done {
		return nil, errFinished
	}
	if err := t.r.cfg.Publisher.Publish(ctx, t.circle, p.Channel, p.Data); err != nil {
		t.r.log.Warn("script publish failed", "circle", t.circle, "err", err)
		return nil, fmt.Errorf("publish: %v", err)
	}
	return nil, nil
}
