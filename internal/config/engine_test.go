package config

import (
	"strings"
	"testing"
	"time"
)

func TestEngineKeys(t *testing.T) {
	c := mustParse(t, `{"engine":{"type":"redis","redis":{"address":"redis+sentinel://s1:26379,s2:26379?sentinel_master_name=m","prefix":"app","presence_ttl":"30s"}},
		"channel":{"history_meta_ttl":"1h"}}`, "json")
	rc, on := c.RedisEngine()
	if !on {
		t.Fatal("engine.type redis does not select the Redis engine")
	}
	if rc.Address != "redis+sentinel://s1:26379,s2:26379?sentinel_master_name=m" || rc.Prefix != "app" ||
		rc.PresenceTTL != 30*time.Second || rc.MetaTTL != time.Hour {
		t.Errorf("RedisEngine() = %+v", rc)
	}
	if c.MemoryMetaTTL() != time.Hour {
		t.Errorf("MemoryMetaTTL = %v", c.MemoryMetaTTL())
	}

	// broker.type redis selects it too, with broker.redis_url as the address.
	c = mustParse(t, `{"broker":{"type":"redis","redis_url":"redis://h:6380/1"}}`, "json")
	rc, on = c.RedisEngine()
	if !on || rc.Address != "redis://h:6380/1" {
		t.Errorf("broker.type redis: on=%v address=%q", on, rc.Address)
	}
	if _, on := Default().RedisEngine(); on {
		t.Error("the default engine is not memory")
	}
}

func TestEngineValidation(t *testing.T) {
	cases := []struct{ doc, want string }{
		{`{"engine":{"type":"nats"}}`, `engine.type: unknown engine "nats"`},
		{`{"engine":{"redis":{"address":"http://h"}}}`, "engine.redis.address: redis address: scheme"},
		{`{"engine":{"redis":{"address":"redis+sentinel://h"}}}`, "engine.redis.address: redis address: redis+sentinel needs sentinel_master_name"},
		{`{"engine":{"redis":{"prefix":"a{b}"}}}`, "engine.redis.prefix"},
		{`{"engine":{"redis":{"presence_ttl":"0s"}}}`, "engine.redis.presence_ttl"},
		{`{"channel":{"history_meta_ttl":"-1s"}}`, "channel.history_meta_ttl"},
		{`{"engine":{"type":"redis","redis":{"address":"redis://a"}},"broker":{"type":"redis","redis_url":"redis://b"}}`, "engine.redis.address: differs from broker.redis_url"},
		{`{"engine":{"redis":{"address":"redis://u:secret@h:1/%zz"}}}`, "engine.redis.address"},
	}
	for _, tc := range cases {
		_, err := Parse([]byte(tc.doc), "json")
		wantErr(t, err, tc.want)
		if err != nil && strings.Contains(err.Error(), "secret") {
			t.Errorf("%s: the error shows the password: %v", tc.doc, err)
		}
	}
}
