package relay

import (
	"testing"

	"github.com/stretchr/testify/require"
)

// A bad max_frame given to New directly is reported alone: the settings
// bounded by it (max_type_name, queue_limit) are not blamed for it.
func TestConfigBadMaxFrameReportedAlone(t *testing.T) {
	_, err := New(Config{Address: "127.0.0.1:0", MaxFrame: MaxMaxFrame + 1})
	require.ErrorContains(t, err, "max_frame")
	require.NotContains(t, err.Error(), "max_type_name")
	require.NotContains(t, err.Error(), "queue_limit")
	_, err = New(Config{Address: "127.0.0.1:0", QueueLimit: -1})
	require.ErrorContains(t, err, "queue_limit: -1 is negative")
}
