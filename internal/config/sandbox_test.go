package config

import (
	"strings"
	"testing"
	"time"
)

func TestSandboxKeys(t *testing.T) {
	c := mustParse(t, `{"circles":{"sandboxes":3,"max_memory":"64MiB","max_cpu":"5s","store_max_keys":7,"store_max_bytes":"1MiB"}}`, "json")
	ci := c.Circles
	if ci.Sandboxes != 3 || ci.MaxMemory != 64<<20 || ci.MaxCPU.Std() != 5*time.Second || ci.StoreMaxKeys != 7 || ci.StoreMaxBytes != 1<<20 {
		t.Errorf("circles = %+v", ci)
	}
	d := Default().Circles
	if d.Sandboxes != 2 || d.MaxMemory != 256<<20 || d.MaxCPU.Std() != 30*time.Second || d.StoreMaxKeys != 10000 || d.StoreMaxBytes != 16<<20 {
		t.Errorf("defaults = %+v", d)
	}
	for _, tc := range []struct {
		mod  func(*Circles)
		want string
	}{
		{func(c *Circles) { c.Sandboxes = 0 }, "circles.sandboxes: must be 1 to 256"},
		{func(c *Circles) { c.MaxMemory = 1 << 20 }, "circles.max_memory: must be at least 16 MiB"},
		{func(c *Circles) { c.MaxCPU = Duration(time.Millisecond) }, "circles.max_cpu: must be at least 1s"},
		{func(c *Circles) { c.StoreMaxKeys = 0 }, "circles.store_max_keys: must be positive"},
		{func(c *Circles) { c.StoreMaxBytes = -1 }, "circles.store_max_bytes: must be positive"},
	} {
		c := Default()
		tc.mod(&c.Circles)
		err := c.Validate()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("got %v, want %q", err, tc.want)
		}
	}
}
