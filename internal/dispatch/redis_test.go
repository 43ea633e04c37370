package dispatch

import (
	"context"
	"encoding/json"
	"errors"
	"strconv"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/rueidis"
	"github.com/stretchr/testify/require"

	"github.com/switchboard-rt/switchboard/internal/script"
	"github.com/switchboard-rt/switchboard/internal/testenv"
)

func newTestClient(tb testing.TB, url string) rueidis.Client {
	tb.Helper()
	opt, err := rueidis.ParseURL(url)
	require.NoError(tb, err)
	opt.DisableCache = true
	c, err := rueidis.NewClient(opt)
	require.NoError(tb, err)
	tb.Cleanup(c.Close)
	return c
}

func uniqueCircle() string { return "test-" + uuid.NewString() }

func TestRedisBuiltInWorkers(t *testing.T) {
	url := testenv.RedisURL(t)
	a, b := uniqueCircle(), uniqueCircle()
	r := &blockRunner{release: make(chan struct{})}
	d, err := NewRedis(context.Background(), RedisConfig{
		URL: url, Circles: []string{a, b}, PollInterval: 100 * time.Millisecond,
		Config: Config{Concurrency: 1, Metrics: prometheus.NewRegistry()},
	}, r)
	require.NoError(t, err)
	defer d.Shutdown(context.Background())

	ctx := context.Background()
	out, err := d.Play(ctx, a, "caller", "hello")
	require.NoError(t, err)
	require.Equal(t, a+":caller:hello", out)

	_, err = d.Play(ctx, a, "", "fail")
	var we *WorkerError
	require.True(t, errors.As(err, &we), err)
	require.Contains(t, we.Msg, "boom")

	// a blocked circle does not delay another
	errc := make(chan error, 1)
	go func() { _, err := d.Play(ctx, a, "", "block"); errc <- err }()
	require.Eventually(t, func() bool { return r.Running() == 1 }, testenv.Wait, testenv.Tick, "circle a's play runs")
	out, err = d.Play(ctx, b, "", "x")
	require.NoError(t, err)
	require.Equal(t, b+"::x", out)
	close(r.release)
	require.NoError(t, <-errc)

	// details hash is kept with a TTL
	c := newTestClient(t, url)
	n, err := c.Do(ctx, c.B().Exists().Key(TasksKey(a)).Build()).AsInt64()
	require.NoError(t, err)
	require.Zero(t, n, "queue drained")
}

// externalWorker consumes circle's queue directly, as a worker in another
// language would, following docs/circles.md. With idOnly it pushes just the
// task id as the reply element.
func externalWorker(ctx context.Context, c rueidis.Client, circle string, idOnly bool) error {
	b := c.B()
	vals, err := c.Do(ctx, b.Blpop().Key("rhai_tasks:"+circle).Timeout(5).Build()).AsStrSlice()
	if err != nil {
		return err
	}
	id := vals[1]
	h, err := c.Do(ctx, b.Hgetall().Key("rhai_task_details:"+id).Build()).AsStrMap()
	if err != nil {
		return err
	}
	if h["status"] != "pending" || h["context_id"] != circle || h["reply_to_queue"] != "rhai_reply:"+id {
		return errors.New("unexpected task hash")
	}
	for _, f := range []string{"task_id", "script", "caller_id", "created_at", "updated_at", "timeout", "output", "error"} {
		if _, ok := h[f]; !ok {
			return errors.New("missing field " + f)
		}
	}
	ttl, err := c.Do(ctx, b.Ttl().Key("rhai_task_details:"+id).Build()).AsInt64()
	if err != nil || ttl <= 0 {
		return errors.New("details without TTL")
	}
	out := "external(" + h["caller_id"] + "): " + h["script"]
	now := strconv.FormatInt(time.Now().Unix(), 10)
	if err := c.Do(ctx, b.Hset().Key("rhai_task_details:"+id).FieldValue().
		FieldValue("status", "completed").FieldValue("output", out).FieldValue("updated_at", now).Build()).Error(); err != nil {
		return err
	}
	elem := id
	if !idOnly {
		p, _ := json.Marshal(map[string]string{"task_id": id, "status": "completed", "output": out, "error": ""})
		elem = string(p)
	}
	return c.Do(ctx, b.Rpush().Key(h["reply_to_queue"]).Element(elem).Build()).Error()
}

func TestRedisExternalWorker(t *testing.T) {
	url := testenv.RedisURL(t)
	circle := uniqueCircle()
	d, err := NewRedis(context.Background(), RedisConfig{URL: url, Circles: []string{circle}, DisableWorkers: true}, nil)
	require.NoError(t, err)
	defer d.Shutdown(context.Background())
	c := newTestClient(t, url)

	for _, idOnly := range []bool{false, true} {
		errc := make(chan error, 1)
		go func() { errc <- externalWorker(context.Background(), c, circle, idOnly) }()
		out, err := d.Play(context.Background(), circle, "pk", "print(1)")
		require.NoError(t, err)
		require.Equal(t, "external(pk): print(1)", out)
		require.NoError(t, <-errc)
	}
}

func TestRedisNoWorkerTimesOut(t *testing.T) {
	url := testenv.RedisURL(t)
	circle := uniqueCircle()
	d, err := NewRedis(context.Background(), RedisConfig{URL: url, DisableWorkers: true, ReplyTimeout: 300 * time.Millisecond}, nil)
	require.NoError(t, err)
	_, err = d.Play(context.Background(), circle, "", "x")
	require.ErrorIs(t, err, ErrNoReply)

	// the stale task is skipped by a worker started later: it replies with an error
	r := &blockRunner{}
	now := time.Now().Add(10 * time.Second)
	w, err := NewRedis(context.Background(), RedisConfig{URL: url, Circles: []string{circle}, PollInterval: 100 * time.Millisecond, Now: func() time.Time { return now }}, r)
	require.NoError(t, err)
	c := newTestClient(t, url)
	require.Eventually(t, func() bool {
		n, _ := c.Do(context.Background(), c.B().Llen().Key(TasksKey(circle)).Build()).AsInt64()
		return n == 0
	}, testenv.Wait, testenv.Tick, "the later worker takes the stale task off the queue")
	require.NoError(t, w.Shutdown(context.Background()))
	require.NoError(t, d.Shutdown(context.Background()))
	_, err = d.Play(context.Background(), circle, "", "x")
	require.ErrorIs(t, err, ErrClosed)
}

func TestRedisBadURL(t *testing.T) {
	_, err := NewRedis(context.Background(), RedisConfig{URL: "http://nope"}, &blockRunner{})
	require.Error(t, err)
	_, err = NewRedis(context.Background(), RedisConfig{URL: "redis://127.0.0.1:6379"}, nil)
	require.Error(t, err)
}

var _ Runner = (*blockRunner)(nil)
var _ = script.Request{}
