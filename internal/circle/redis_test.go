package circle_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/rueidis"
	"github.com/stretchr/testify/require"

	"github.com/switchboard-rt/switchboard/internal/circle"
	"github.com/switchboard-rt/switchboard/internal/dispatch"
	"github.com/switchboard-rt/switchboard/internal/testenv"
	"github.com/switchboard-rt/switchboard/protocol/circles"
)

func redisPlayer(tb testing.TB, url string, circles []string, disableWorkers bool) func(dispatch.Runner) (circle.Player, func()) {
	return func(r dispatch.Runner) (circle.Player, func()) {
		d, err := dispatch.NewRedis(context.Background(), dispatch.RedisConfig{
			URL: url, Circles: circles, DisableWorkers: disableWorkers, PollInterval: 200 * time.Millisecond,
			Config: dispatch.Config{Metrics: prometheus.NewRegistry()},
		}, r)
		require.NoError(tb, err)
		return d, func() { require.NoError(tb, d.Shutdown(context.Background())) }
	}
}

func TestRedisModeBuiltInWorkers(t *testing.T) {
	url := testenv.RedisURL(t)
	a, b := newKey(t), newKey(t)
	s := newStack(t, stackOpts{keys: []string{a.comp, b.comp}, enableAuth: true, timeout: 300 * time.Millisecond,
		player: redisPlayer(t, url, []string{a.comp, b.comp}, false)})
	user := newKey(t)
	cl := dial(t, s.url+"/"+a.unc)
	code, _ := cl.errCode("play", map[string]string{"script": "1"})
	require.Equal(t, circles.CodeAuthRequired, code)
	cl.login(user)
	require.Equal(t, "42", cl.play("x = 40\nx + 2"))
	require.Equal(t, user.comp+"@"+a.comp, cl.play("CALLER_ID + '@' + CONTEXT_ID"))
	code, data := cl.errCode("play", map[string]string{"script": "while True:\n  pass"})
	require.Equal(t, circles.CodeExecution, code)
	require.Contains(t, data, "timeout")
}

// TestRedisModeExternalWorker runs the server with its workers disabled and
// a worker written here, consuming rhai_tasks:{circle} the way a worker in
// any language would (docs/circles.md).
func TestRedisModeExternalWorker(t *testing.T) {
	url := testenv.RedisURL(t)
	c := newKey(t)
	s := newStack(t, stackOpts{keys: []string{c.comp}, player: redisPlayer(t, url, []string{c.comp}, true)})

	opt, err := rueidis.ParseURL(url)
	require.NoError(t, err)
	opt.DisableCache = true
	rc, err := rueidis.NewClient(opt)
	require.NoError(t, err)
	defer rc.Close()

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { // the external worker: one task, then exit
		b := rc.B()
		vals, err := rc.Do(ctx, b.Blpop().Key("rhai_tasks:"+c.comp).Timeout(10).Build()).AsStrSlice()
		if err != nil {
			done <- err
			return
		}
		id := vals[1]
		h, err := rc.Do(ctx, b.Hgetall().Key("rhai_task_details:"+id).Build()).AsStrMap()
		if err != nil {
			done <- err
			return
		}
		rc.Do(ctx, b.Hset().Key("rhai_task_details:"+id).FieldValue().FieldValue("status", "processing").Build())
		out := "ran " + h["script"] + " for " + h["context_id"] + " by [" + h["caller_id"] + "]"
		rc.Do(ctx, b.Hset().Key("rhai_task_details:"+id).FieldValue().FieldValue("status", "completed").FieldValue("output", out).Build())
		reply, _ := json.Marshal(map[string]string{"task_id": id, "status": "completed", "output": out, "error": ""})
		done <- rc.Do(ctx, b.Rpush().Key(h["reply_to_queue"]).Element(string(reply)).Build()).Error()
	}()
	defer cancel()

	cl := dial(t, s.url+"/"+c.comp)
	require.Equal(t, "ran 1 + 1 for "+c.comp+" by []", cl.play("1 + 1"))
	require.NoError(t, <-done)

	// an error reply
	go func() {
		b := rc.B()
		vals, err := rc.Do(ctx, b.Blpop().Key("rhai_tasks:"+c.comp).Timeout(10).Build()).AsStrSlice()
		if err != nil {
			done <- err
			return
		}
		id := vals[1]
		rc.Do(ctx, b.Hset().Key("rhai_task_details:"+id).FieldValue().FieldValue("status", "error").FieldValue("error", "worker says no").Build())
		done <- rc.Do(ctx, b.Rpush().Key("rhai_reply:"+id).Element(id).Build()).Error()
	}()
	code, data := cl.errCode("play", map[string]string{"script": "x"})
	require.Equal(t, circles.CodeExecution, code)
	require.Contains(t, data, "worker says no")
	require.NoError(t, <-done)
}
