package hub

import (
	"os"
	"regexp"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/switchboard-rt/switchboard/internal/errs"
)

// Every disconnect of the table is listed in Disconnects, once, with a
// Centrifugo code; DisconnectByCode finds it.
func TestDisconnectTable(t *testing.T) {
	src, err := os.ReadFile("errors.go")
	require.NoError(t, err)
	defined := regexp.MustCompile(`(?m)^\t(Disconnect\w+)\s*=\s*Disconnect\{`).FindAllSubmatch(src, -1)
	require.Len(t, Disconnects, len(defined), "a disconnect is missing from Disconnects")
	seen := map[uint32]bool{}
	for _, d := range Disconnects {
		require.False(t, seen[d.Code], "code %d twice", d.Code)
		seen[d.Code] = true
		require.True(t, d.Code >= MinDisconnectCode && d.Code <= MaxDisconnectCode, d.Reason)
		require.NotEmpty(t, d.Reason)
		got, ok := DisconnectByCode(d.Code)
		require.True(t, ok)
		require.Equal(t, d, got)
		require.Equal(t, d.Code < 3500, d.Reconnect(), d.Reason)
	}
	for _, code := range []uint32{3010, 3012, 3506, 3508} {
		_, ok := DisconnectByCode(code)
		require.True(t, ok, "%d", code)
	}
}

func TestSentinelsAreDistinct(t *testing.T) {
	for i, a := range Sentinels {
		require.NotZero(t, a.Code)
		for j, b := range Sentinels {
			if i != j {
				require.NotErrorIs(t, a, b, "%q matches %q", a.Message, b.Message)
			}
		}
	}
	require.Equal(t, errs.NotFound, errs.CodeOf(ErrNoClient))
}

func TestIsInternal(t *testing.T) {
	require.True(t, IsInternal(ErrInternal))
	require.True(t, IsInternal(os.ErrNotExist))
	require.False(t, IsInternal(ErrBadRequest))
	require.False(t, IsInternal(&AppError{Code: 1000, Message: "app"}))
	require.False(t, IsInternal(nil))
}
