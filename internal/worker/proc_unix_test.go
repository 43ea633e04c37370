//go:build linux

package worker

import (
	"os"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestRSSBytes(t *testing.T) {
	rss, err := rssBytes(os.Getpid())
	require.NoError(t, err)
	require.Greater(t, rss, int64(1<<20))
	_, err = rssBytes(-1)
	require.Error(t, err)
}
