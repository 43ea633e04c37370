package dispatch

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/redis/rueidis"

	"github.com/switchboard-rt/switchboard/internal/script"
)

// Redis layout (rhailib compatible); documented in docs/circles.md.
const (
	TasksKeyPrefix   = "rhai_tasks:"        // list of task ids per circle
	DetailsKeyPrefix = "rhai_task_details:" // hash per task
	ReplyKeyPrefix   = "rhai_reply:"        // list per task, one reply element

	FieldTaskID    = "task_id"
	FieldScript    = "script"
	FieldStatus    = "status"
	FieldOutput    = "output"
	FieldError     = "error"
	FieldCallerID  = "caller_id"
	FieldContextID = "context_id"
	FieldReplyTo   = "reply_to_queue"
	FieldCreatedAt = "created_at"
	FieldUpdatedAt = "updated_at"
	FieldTimeout   = "timeout"

	StatusPending    = "pending"
	StatusProcessing = "processing"
	StatusCompleted  = "completed"
	StatusError      = "error"
)

// Defaults of RedisConfig.
const (
	DefaultDetailsTTL   = time.Hour
	DefaultReplyTimeout = 60 * time.Second
	DefaultPollInterval = time.Second
)

// TasksKey returns the name of circle's task list.
func TasksKey(circle string) string { return TasksKeyPrefix + circle }

// DetailsKey returns the name of a task's details hash.
func DetailsKey(taskID string) string { return DetailsKeyPrefix + taskID }

// ReplyKey returns the name of a task's reply list.
func ReplyKey(taskID string) string { return ReplyKeyPrefix + taskID }

// Reply is the JSON document a worker pushes onto the reply list.
type Reply struct {
	TaskID string `json:"task_id"`
	Status string `json:"status"`
	Output string `json:"output"`
	Error  string `json:"error"`
}

// RedisConfig configures a Redis dispatcher. Zero values mean the defaults.
type RedisConfig struct {
	Config
	// URL is the Redis URL (redis://[user:pass@]host:port/db); used when
	// Client is nil.
	URL string
	// Client, when set, is used instead of dialing URL and is not closed by
	// Shutdown.
	Client rueidis.Client
	// Circles are the circle keys (canonical) to run workers for.
	Circles []string
	// DisableWorkers makes the server only enqueue: external workers must
	// consume the queues.
	DisableWorkers bool
	// DetailsTTL is how long task hashes and reply lists live; zero means
	// DefaultDetailsTTL.
	DetailsTTL time.Duration
	// ReplyTimeout bounds the wait for a reply when ctx has no deadline
	// (otherwise the deadline rules); zero means DefaultReplyTimeout. The
	// wait is written to the task (field "timeout", seconds) so workers
	// can skip tasks whose caller has given up.
	ReplyTimeout time.Duration
	// PollInterval is the BLPOP timeout of the built-in workers, which
	// bounds how fast they notice Shutdown; zero means DefaultPollInterval.
	PollInterval time.Duration
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Redis dispatches plays through Redis queues and runs the built-in
// workers. It is safe for concurrent use; Shutdown stops it.
type Redis struct {
	cfg        RedisConfig
	client     rueidis.Client
	owned      bool
	runner     Runner
	log        *slog.Logger
	m          *metrics
	pollCtx    context.Context // cancelled when Shutdown starts
	stopPoll   context.CancelFunc
	hardCtx    context.Context // cancelled when Shutdown's deadline passes
	hardCancel context.CancelFunc
	wg         sync.WaitGroup
	mu         sync.Mutex
	closed     bool
}

// NewRedis connects to Redis (unless cfg.Client is set), checks it with a
// PING and starts cfg.Concurrency workers per circle (unless
// cfg.DisableWorkers). runner may be nil only when DisableWorkers is set.
func NewRedis(ctx context.Context, cfg RedisConfig, runner Runner) (*Redis, error) {
	cfg.setDefaults()
	if cfg.DetailsTTL <= 0 {
		cfg.DetailsTTL = DefaultDetailsTTL
	}
	if cfg.ReplyTimeout <= 0 {
		cfg.ReplyTimeout = DefaultReplyTimeout
	}
	if cfg.PollInterval <= 0 {
		cfg.PollInterval = DefaultPollInterval
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if runner == nil && !cfg.DisableWorkers {
		return nil, errors.New("dispatch: redis workers need a runner")
	}
	m, err := newMetrics(cfg.Metrics, "redis")
	if err != nil {
		return nil, err
	}
	r := &Redis{cfg: cfg, client: cfg.Client, runner: runner, log: cfg.Logger.With("component", "dispatch"), m: m}
	if r.client == nil {
		opt, err := rueidis.ParseURL(cfg.URL)
		if err != nil {
			return nil, fmt.Errorf("dispatch: redis url: %w", err)
		}
		opt.DisableCache = true
		r.client, err = rueidis.NewClient(opt)
		if err != nil {
			return nil, fmt.Errorf("dispatch: redis connect: %w", err)
		}
		r.owned = true
	}
	if err := r.client.Do(ctx, r.client.B().Ping().Build()).Error(); err != nil {
		if r.owned {
			r.client.Close()
		}
		return nil, fmt.Errorf("dispatch: redis ping: %w", err)
	}
	r.pollCtx, r.stopPoll = context.WithCancel(context.Background())
	r.hardCtx, r.hardCancel = context.WithCancel(context.Background())
	if !cfg.DisableWorkers {
		for _, c := range cfg.Circles {
			for i := 0; i < cfg.Concurrency; i++ {
				r.wg.Add(1)
				go r.worker(c)
			}
		}
	}
	return r, nil
}

// Play writes the task, pushes it on circle's queue and waits for the
// reply until ctx's deadline (or ReplyTimeout when ctx has none) passes
// (ErrNoReply) or ctx is cancelled. A worker's
// failure is returned as *WorkerError.
func (r *Redis) Play(ctx context.Context, circle, caller, src string) (string, error) {
	out, err := r.play(ctx, circle, caller, src)
	r.m.result(err)
	return out, err
}

func (r *Redis) play(ctx context.Context, circle, caller, src string) (string, error) {
	r.mu.Lock()
	closed := r.closed
	r.mu.Unlock()
	if closed {
		return "", ErrClosed
	}
	r.m.queued.Inc()
	defer r.m.queued.Dec()

	wait := r.cfg.ReplyTimeout
	if dl, ok := ctx.Deadline(); ok {
		wait = time.Until(dl)
	}
	if wait <= 0 {
		return "", context.DeadlineExceeded
	}
	id := uuid.NewString()
	now := strconv.FormatInt(r.cfg.Now().Unix(), 10)
	b := r.client.B()
	ttl := int64(r.cfg.DetailsTTL / time.Second)
	cmds := rueidis.Commands{
		b.Hset().Key(DetailsKey(id)).FieldValue().
			FieldValue(FieldTaskID, id).
			FieldValue(FieldScript, src).
			FieldValue(FieldStatus, StatusPending).
			FieldValue(FieldOutput, "").
			FieldValue(FieldError, "").
			FieldValue(FieldCallerID, caller).
			FieldValue(FieldContextID, circle).
			FieldValue(FieldReplyTo, ReplyKey(id)).
			FieldValue(FieldCreatedAt, now).
			FieldValue(FieldUpdatedAt, now).
			FieldValue(FieldTimeout, strconv.FormatInt(int64((wait+time.Second-1)/time.Second), 10)).
			Build(),
		b.Expire().Key(DetailsKey(id)).Seconds(ttl).Build(),
		b.Rpush().Key(TasksKey(circle)).Element(id).Build(),
	}
	for _, res := range r.client.DoMulti(ctx, cmds...) {
		if err := res.Error(); err != nil {
			return "", fmt.Errorf("dispatch: enqueue: %w", err)
		}
	}

	wctx, cancel := context.WithTimeout(ctx, wait+time.Second) // the BLPOP timeout fires first
	defer cancel()
	vals, err := r.client.Do(wctx, b.Blpop().Key(ReplyKey(id)).Timeout(wait.Seconds()).Build()).AsStrSlice()
	if rueidis.IsRedisNil(err) {
		return "", ErrNoReply
	}
	if err != nil {
		if ctx.Err() != nil {
			return "", ctx.Err()
		}
		return "", fmt.Errorf("dispatch: await reply: %w", err)
	}
	if len(vals) != 2 {
		return "", fmt.Errorf("dispatch: await reply: unexpected BLPOP reply of %d elements", len(vals))
	}
	var rep Reply
	if json.Unmarshal([]byte(vals[1]), &rep) != nil || rep.Status == "" {
		// A worker that pushes something else (e.g. the task id): read the hash.
		h, err := r.client.Do(ctx, b.Hgetall().Key(DetailsKey(id)).Build()).AsStrMap()
		if err != nil {
			return "", fmt.Errorf("dispatch: read task: %w", err)
		}
		rep = Reply{TaskID: id, Status: h[FieldStatus], Output: h[FieldOutput], Error: h[FieldError]}
	}
	switch rep.Status {
	case StatusCompleted:
		return rep.Output, nil
	case StatusError:
		return "", &WorkerError{Msg: rep.Error}
	}
	return "", fmt.Errorf("dispatch: task %s replied with status %q", id, rep.Status)
}

func (r *Redis) worker(circle string) {
	defer r.wg.Done()
	log := r.log.With("circle", circle)
	for r.pollCtx.Err() == nil {
		vals, err := r.client.Do(r.pollCtx, r.client.B().Blpop().Key(TasksKey(circle)).Timeout(r.cfg.PollInterval.Seconds()).Build()).AsStrSlice()
		if rueidis.IsRedisNil(err) {
			continue
		}
		if err != nil {
			if r.pollCtx.Err() != nil {
				return
			}
			log.Warn("redis worker poll failed", "err", err)
			select { // back off; Redis may be restarting
			case <-time.After(r.cfg.PollInterval):
			case <-r.pollCtx.Done():
				return
			}
			continue
		}
		if len(vals) == 2 {
			r.process(log, circle, vals[1])
		}
	}
}

// process runs one task taken from the queue and replies.
func (r *Redis) process(log *slog.Logger, circle, id string) {
	ctx := r.hardCtx
	b := r.client.B()
	h, err := r.client.Do(ctx, b.Hgetall().Key(DetailsKey(id)).Build()).AsStrMap()
	if err != nil {
		log.Warn("redis worker read task failed", "task", id, "err", err)
		return
	}
	if len(h) == 0 {
		log.Warn("redis worker skipped task without details", "task", id)
		return
	}
	if h[FieldStatus] != StatusPending {
		log.Warn("redis worker skipped task not pending", "task", id, "status", h[FieldStatus])
		return
	}
	now := r.cfg.Now()
	created, _ := strconv.ParseInt(h[FieldCreatedAt], 10, 64)
	timeout, _ := strconv.ParseInt(h[FieldTimeout], 10, 64)
	if created > 0 && timeout > 0 && now.Unix() > created+timeout {
		r.finish(log, id, h[FieldReplyTo], Reply{TaskID: id, Status: StatusError, Error: "task expired before a worker took it"})
		return
	}
	if err := r.client.Do(ctx, b.Hset().Key(DetailsKey(id)).FieldValue().
		FieldValue(FieldStatus, StatusProcessing).
		FieldValue(FieldUpdatedAt, strconv.FormatInt(now.Unix(), 10)).Build()).Error(); err != nil {
		log.Warn("redis worker update task failed", "task", id, "err", err)
		return
	}
	ctxID := h[FieldContextID]
	if ctxID == "" {
		ctxID = circle
	}
	out, err := r.runner.Run(ctx, script.Request{Circle: ctxID, Caller: h[FieldCallerID], Script: h[FieldScript]})
	rep := Reply{TaskID: id, Status: StatusCompleted, Output: out}
	if err != nil {
		msg, ok := ClientMessage(err)
		if !ok {
			log.Error("redis worker run failed", "task", id, "err", err)
			msg = "internal error"
		}
		rep = Reply{TaskID: id, Status: StatusError, Error: msg}
	}
	r.finish(log, id, h[FieldReplyTo], rep)
}

func (r *Redis) finish(log *slog.Logger, id, replyTo string, rep Reply) {
	if replyTo == "" {
		replyTo = ReplyKey(id)
	}
	// Use a fresh context: the reply must go out even when the run was
	// cancelled by Shutdown.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	b := r.client.B()
	payload, _ := json.Marshal(rep)
	ttl := int64(r.cfg.DetailsTTL / time.Second)
	cmds := rueidis.Commands{
		b.Hset().Key(DetailsKey(id)).FieldValue().
			FieldValue(FieldStatus, rep.Status).
			FieldValue(FieldOutput, rep.Output).
			FieldValue(FieldError, rep.Error).
			FieldValue(FieldUpdatedAt, strconv.FormatInt(r.cfg.Now().Unix(), 10)).Build(),
		b.Expire().Key(DetailsKey(id)).Seconds(ttl).Build(),
		b.Rpush().Key(replyTo).Element(string(payload)).Build(),
		b.Expire().Key(replyTo).Seconds(ttl).Build(),
	}
	for _, res := range r.client.DoMulti(ctx, cmds...) {
		if err := res.Error(); err != nil {
			log.Warn("redis worker reply failed", "task", id, "err", err)
			return
		}
	}
}

// Shutdown stops the workers from taking new tasks, lets running scripts
// finish until ctx ends (then cancels them; they reply with an error),
// waits for the workers and closes the Redis client if it owns it. Plays
// after Shutdown fail with ErrClosed. It is idempotent.
func (r *Redis) Shutdown(ctx context.Context) error {
	r.mu.Lock()
	first := !r.closed
	r.closed = true
	r.mu.Unlock()
	r.stopPoll()
	done := make(chan struct{})
	go func() { r.wg.Wait(); close(done) }()
	var err error
	select {
	case <-done:
	case <-ctx.Done():
		err = ctx.Err()
		r.hardCancel()
		<-done
	}
	r.hardCancel()
	if first && r.owned {
		r.client.Close()
	}
	return err
}
