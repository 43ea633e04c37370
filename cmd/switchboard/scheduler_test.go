package main

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/switchboard-rt/switchboard/internal/config"
	"github.com/switchboard-rt/switchboard/internal/scheduler"
)

func TestSchedulerNamespaces(t *testing.T) {
	cfg := testConfig()
	ns := cfg.Channel.HubNamespaces()
	require.NoError(t, schedulerNamespaces(cfg, &ns))
	require.NotContains(t, ns.Named, "chunks", "off: nothing added")

	cfg.Scheduler.Enabled = true
	require.NoError(t, schedulerNamespaces(cfg, &ns))
	for _, name := range []string{"chunks", "nodes", "jobs", "scheduler"} {
		o := ns.Named[name]
		require.True(t, o.HistorySize > 0 && o.HistoryTTL > 0 && o.ForceRecovery, name)
		require.False(t, o.AllowSubscribeForClient || o.AllowPublishForClient || o.AllowPublishForSubscriber, name)
	}
	require.True(t, ns.Named["nodes"].Presence && ns.Named["nodes"].JoinLeave)
	require.GreaterOrEqual(t, ns.Named["chunks"].HistorySize, 1000)
	require.GreaterOrEqual(t, ns.Named["chunks"].HistoryTTL, 24*time.Hour)

	for _, tc := range []struct {
		opts config.NamespaceOptions
		name string
		want string
	}{
		{config.NamespaceOptions{}, "chunks", "channel.namespaces chunks: the scheduler needs history"},
		{config.NamespaceOptions{HistorySize: 10, HistoryTTL: config.Duration(time.Hour)}, "nodes", "needs presence and join_leave"},
		{config.NamespaceOptions{HistorySize: 10, HistoryTTL: config.Duration(time.Hour), AllowSubscribeForClient: true}, "jobs", "must not let clients subscribe or publish"},
	} {
		c := testConfig()
		c.Scheduler.Enabled = true
		c.Channel.Namespaces = append(c.Channel.Namespaces, config.Namespace{Name: tc.name, NamespaceOptions: tc.opts})
		ns := c.Channel.HubNamespaces()
		err := schedulerNamespaces(c, &ns)
		require.ErrorContains(t, err, tc.want)
		require.Equal(t, 2, exitStatus(err))
	}
}

func TestServeSchedulerFlag(t *testing.T) {
	t.Setenv("SWITCHBOARD_CLIENT_TOKEN_HMAC_SECRET_KEY", "s")
	s := ServeCmd{Port: -1, Scheduler: true}
	cfg, _, err := s.loadConfig()
	require.NoError(t, err)
	require.True(t, cfg.Scheduler.Enabled)

	t.Setenv("SWITCHBOARD_CLIENT_TOKEN_HMAC_SECRET_KEY", "")
	_, _, err = s.loadConfig()
	require.ErrorContains(t, err, "scheduler.enabled: needs client.token.hmac_secret_key")
	require.Equal(t, 2, exitStatus(err))
}

// `switchboard bench scheduler` against the whole server (Main with the
// scheduler on port 0), as a separate process: it reports the latency
// percentiles of every job and exits 0 (any failed step exits non-zero).
func TestBenchSchedulerAgainstServer(t *testing.T) {
	m := startServer(t, schedulerConfig(t))
	p := startProgram(t, "bench", "scheduler", "--server", m.URL(), "--hmac-secret", testSecret, "--jobs", "20", "--timeout", "10s")
	lines := p.readUntil(t, func(l string) bool { return strings.HasPrefix(l, "scheduler: ") })
	last := lines[len(lines)-1]
	require.Regexp(t, `^scheduler: 20 jobs, POST /jobs → chunk at the node: p50 [0-9.]+ ms, p90 [0-9.]+ ms, p99 [0-9.]+ ms, max [0-9.]+ ms$`, last)
	select {
	case <-p.exited:
	case <-time.After(30 * time.Second):
		t.Fatal("bench scheduler did not exit after its report")
	}
	require.Equal(t, 0, p.cmd.ProcessState.ExitCode(), "stderr: %s", p.stderr.String())

	// Every job completed: nothing failed or left pending.
	jobs := m.sched
	require.NotNil(t, jobs)
	list, err := jobs.Jobs(t.Context(), scheduler.Viewer{UserID: "bench"}, scheduler.JobQuery{Limit: 100})
	require.NoError(t, err)
	require.Len(t, list, 20)
	for _, j := range list {
		require.Equal(t, scheduler.JobCompleted, j.Status, "%s", j.ID)
	}
}
