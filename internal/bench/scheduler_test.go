package bench

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestSchedulerCmdValidate(t *testing.T) {
	ok := SchedulerCmd{Server: "http://127.0.0.1:1", Secret: "s", User: "u", Jobs: 1, Timeout: time.Second}
	require.NoError(t, ok.Validate())
	for flag, mod := range map[string]func(*SchedulerCmd){
		"--server":      func(c *SchedulerCmd) { c.Server = "ftp://x" },
		"--hmac-secret": func(c *SchedulerCmd) { c.Secret = "" },
		"--user":        func(c *SchedulerCmd) { c.User = "" },
		"--jobs":        func(c *SchedulerCmd) { c.Jobs = 0 },
		"--timeout":     func(c *SchedulerCmd) { c.Timeout = 0 },
	} {
		c := ok
		mod(&c)
		require.ErrorContains(t, c.Validate(), flag)
	}
	// A server that is not there: a clear error, no hang.
	c := ok
	c.Timeout = 2 * time.Second
	require.ErrorContains(t, c.Run(t.Context()), "POST /nodes/register")
}
