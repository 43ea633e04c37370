package config

import (
	"strings"
	"testing"
	"time"
)

func TestSchedulerKeys(t *testing.T) {
	c := mustParse(t, `{"client":{"token":{"hmac_secret_key":"s"}},"scheduler":{"enabled":true,"lease":"45s","max_attempts":3,
		"max_config_bytes":"32KiB","hub_url":"wss://hub.example/connection/websocket","database_url":"postgres://u@db:5432/sched"}}`, "json")
	s := c.Scheduler
	if !s.Enabled || s.Lease.Std() != 45*time.Second || s.MaxAttempts != 3 || s.MaxConfigBytes != 32<<10 ||
		s.HubURL != "wss://hub.example/connection/websocket" || s.DatabaseURL != "postgres://u@db:5432/sched" {
		t.Errorf("scheduler = %+v", s)
	}
	if d := Default().Scheduler; d.Enabled || d.Lease.Std() != 30*time.Second || d.MaxAttempts != 5 || d.NodeTokenTTL.Std() != 10*time.Minute ||
		d.SignatureSkew.Std() != 300*time.Second || d.MaxBody != 1<<20 {
		t.Errorf("defaults = %+v", d)
	}
	for _, tc := range []struct {
		mod  func(*Config)
		want string
	}{
		{func(c *Config) { c.Scheduler.Enabled = true }, "scheduler.enabled: needs client.token.hmac_secret_key"},
		{func(c *Config) { c.Scheduler.DatabaseURL = "mysql://x/y" }, "scheduler.database_url: must be a postgres://"},
		{func(c *Config) { c.Scheduler.Lease = Duration(time.Millisecond) }, "scheduler.lease: must be at least 1s"},
		{func(c *Config) { c.Scheduler.MaxAttempts = 0 }, "scheduler.max_attempts: must be positive"},
		{func(c *Config) { c.Scheduler.BackoffMax = Duration(time.Millisecond) }, "scheduler.backoff_max: 1ms must not be below scheduler.backoff_base"},
		{func(c *Config) { c.Scheduler.ChunkSize = -1 }, "scheduler.chunk_size: must be positive"},
		{func(c *Config) { c.Scheduler.MaxConfigBytes = 1 }, "scheduler.max_config_bytes: must be at least 2"},
		{func(c *Config) { c.Scheduler.SweepInterval = 0 }, "scheduler.sweep_interval: must not be 0"},
		{func(c *Config) { c.Scheduler.HubURL = "http://hub" }, "scheduler.hub_url: must be a ws:// or wss:// URL"},
		{func(c *Config) { c.Scheduler.MaxBody = 100 << 10; c.Scheduler.MaxConfigBytes = 200 << 10 }, "scheduler.max_body: 102400 must not be below scheduler.max_config_bytes"},
		{func(c *Config) { c.Scheduler.SignatureSkew = 0 }, "scheduler.signature_skew: must be at least 1s"},
		{func(c *Config) { c.Scheduler.ReplayCacheSize = 0 }, "scheduler.replay_cache_size: must be positive"},
		{func(c *Config) { c.Scheduler.ProgressInterval = 0 }, "scheduler.progress_interval: must not be 0"},
		{func(c *Config) { c.Scheduler.RegisterRate = 0 }, "scheduler.register_rate: must not be 0"},
		{func(c *Config) { c.Scheduler.RegisterBurst = 0 }, "scheduler.register_burst: must be positive"},
	} {
		c := Default()
		tc.mod(&c)
		err := c.Validate()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("got %v, want %q", err, tc.want)
		}
	}
}
