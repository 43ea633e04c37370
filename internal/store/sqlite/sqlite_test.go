package sqlite

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestStorePersistsAndScopes(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s, err := Open(ctx, Config{Dir: dir})
	require.NoError(t, err)
	require.NoError(t, s.Set(ctx, "a", "k1", "v1"))
	require.NoError(t, s.Set(ctx, "a", "k2", "v2"))
	require.NoError(t, s.Set(ctx, "a", "k1", "v1b"))
	require.NoError(t, s.Set(ctx, "b", "k1", "other"))
	require.NoError(t, s.Set(ctx, "a", "l\xff", "x"))
	require.NoError(t, s.Close())

	s, err = Open(ctx, Config{Dir: dir})
	require.NoError(t, err)
	defer s.Close()
	v, ok, err := s.Get(ctx, "a", "k1")
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, "v1b", v)
	v, _, _ = s.Get(ctx, "b", "k1")
	require.Equal(t, "other", v)
	_, ok, err = s.Get(ctx, "c", "k1")
	require.NoError(t, err)
	require.False(t, ok)

	keys, err := s.Keys(ctx, "a", "k", 0)
	require.NoError(t, err)
	require.Equal(t, []string{"k1", "k2"}, keys)
	keys, _ = s.Keys(ctx, "a", "", 2)
	require.Equal(t, []string{"k1", "k2"}, keys)
	keys, _ = s.Keys(ctx, "a", "l\xff", 0)
	require.Equal(t, []string{"l\xff"}, keys)
	keys, _ = s.Keys(ctx, "zz", "", 0)
	require.Empty(t, keys)

	existed, err := s.Delete(ctx, "a", "k1")
	require.NoError(t, err)
	require.True(t, existed)
	existed, _ = s.Delete(ctx, "a", "k1")
	require.False(t, existed)
}

func TestOpenErrors(t *testing.T) {
	_, err := Open(context.Background(), Config{})
	require.Error(t, err)
	s, err := Open(context.Background(), Config{Path: ":memory:"})
	require.NoError(t, err)
	require.NoError(t, s.Close())
}

func TestPrefixUpperBound(t *testing.T) {
	u, ok := prefixUpperBound("ab")
	require.True(t, ok)
	require.Equal(t, "ac", u)
	u, ok = prefixUpperBound("a\xff")
	require.True(t, ok)
	require.Equal(t, "b", u)
	_, ok = prefixUpperBound("\xff\xff")
	require.False(t, ok)
	_, ok = prefixUpperBound("")
	require.False(t, ok)
}
