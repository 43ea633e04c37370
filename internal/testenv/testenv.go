// Package testenv answers where the integration tests find the real
// services. Each helper skips the calling test, saying why, when its
// variable is unset; .ci/run sets them all.
package testenv

import (
	"os"
	"testing"
	"time"
)

// How tests poll for a condition with require.Eventually: Wait is
// generous because the test machines are shared and loaded; a condition
// that holds returns at the next Tick, so a long Wait costs nothing.
const (
	Wait = 10 * time.Second
	Tick = 5 * time.Millisecond
)

// Environment variables naming the services of the integration tests.
const (
	RedisEnv    = "SWITCHBOARD_TEST_REDIS_URL"
	PostgresEnv = "SWITCHBOARD_TEST_POSTGRES_URL"
)

// RedisURL returns the Redis URL for integration tests, or skips tb when
// SWITCHBOARD_TEST_REDIS_URL is unset.
func RedisURL(tb testing.TB) string {
	tb.Helper()
	return lookup(tb, RedisEnv, "Redis")
}

// PostgresURL returns the PostgreSQL URL for integration tests, or skips
// tb when SWITCHBOARD_TEST_POSTGRES_URL is unset.
func PostgresURL(tb testing.TB) string {
	tb.Helper()
	return lookup(tb, PostgresEnv, "PostgreSQL")
}

func lookup(tb testing.TB, env, service string) string {
	tb.Helper()
	u := os.Getenv(env)
	if u == "" {
		tb.Skipf("%s is not set; skipping %s integration test (.ci/run sets it)", env, service)
	}
	return u
}
