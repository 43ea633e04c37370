package sqlite

import (
	"context"
	"errors"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/switchboard-rt/switchboard/internal/script"
)

func ptr(s string) *string { return &s }

func TestApplyIsAtomicUnderQuota(t *testing.T) {
	ctx := context.Background()
	s, err := Open(ctx, Config{Path: ":memory:"})
	require.NoError(t, err)
	defer s.Close()
	q := script.Quota{MaxKeys: 3, MaxBytes: 100}

	require.NoError(t, s.Apply(ctx, "c", []script.Write{{Key: "a", Value: ptr("1")}, {Key: "b", Value: ptr("22")}}, q))
	keys, bytes, err := s.Usage(ctx, "c")
	require.NoError(t, err)
	require.Equal(t, 2, keys)
	require.EqualValues(t, 1+1+1+2, bytes)

	// Too many keys: nothing of the batch is written.
	err = s.Apply(ctx, "c", []script.Write{{Key: "c", Value: ptr("x")}, {Key: "d", Value: ptr("x")}}, q)
	var se *script.Error
	require.True(t, errors.As(err, &se), "%v", err)
	require.Equal(t, script.KindQuota, se.Kind)
	require.Contains(t, se.Msg, "4 keys, limit 3")
	_, ok, err := s.Get(ctx, "c", "c")
	require.NoError(t, err)
	require.False(t, ok, "a rejected batch wrote a key")

	// Too many bytes.
	err = s.Apply(ctx, "c", []script.Write{{Key: "a", Value: ptr(string(make([]byte, 200)))}}, q)
	require.True(t, errors.As(err, &se))
	require.Contains(t, se.Msg, "limit 100")
	v, _, _ := s.Get(ctx, "c", "a")
	require.Equal(t, "1", v)

	// Deletes and shrinking writes always pass, other circles are apart.
	require.NoError(t, s.Apply(ctx, "c", []script.Write{{Key: "a"}, {Key: "b", Value: ptr("2")}}, q))
	require.NoError(t, s.Apply(ctx, "other", []script.Write{{Key: "a", Value: ptr("1")}, {Key: "b", Value: ptr("1")}, {Key: "c", Value: ptr("1")}}, q))
	keys, _, err = s.Usage(ctx, "c")
	require.NoError(t, err)
	require.Equal(t, 1, keys)
}
