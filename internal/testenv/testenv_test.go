package testenv

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestRedisURLFromEnv(t *testing.T) {
	t.Setenv(RedisEnv, "redis://127.0.0.1:1/0")
	require.Equal(t, "redis://127.0.0.1:1/0", RedisURL(t))
}

func TestPostgresURLFromEnv(t *testing.T) {
	t.Setenv(PostgresEnv, "postgres://x@127.0.0.1:1/test")
	require.Equal(t, "postgres://x@127.0.0.1:1/test", PostgresURL(t))
}

func TestUnsetSkipsWithReason(t *testing.T) {
	t.Setenv(RedisEnv, "")
	var skipped bool
	t.Run("inner", func(t *testing.T) {
		defer func() { skipped = t.Skipped() }()
		RedisURL(t)
		t.Error("RedisURL returned although the variable is unset")
	})
	require.True(t, skipped, "an unset variable must skip the test")
}
