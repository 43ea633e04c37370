package main

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/switchboard-rt/switchboard/internal/config"
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
