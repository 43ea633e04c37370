package redis

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestClientOption(t *testing.T) {
	o, err := ClientOption("redis://u:p@h:6380/2")
	require.NoError(t, err)
	require.Equal(t, []string{"h:6380"}, o.InitAddress)
	require.Equal(t, 2, o.SelectDB)
	require.Equal(t, "p", o.Password)
	require.True(t, o.DisableCache && o.DisableRetry && o.AlwaysPipelining)
	require.Equal(t, DefaultDialTimeout, o.Dialer.Timeout)

	o, err = ClientOption("rediss://h")
	require.NoError(t, err)
	require.NotNil(t, o.TLSConfig)

	o, err = ClientOption("unix:///tmp/redis.sock")
	require.NoError(t, err)
	require.Equal(t, []string{"/tmp/redis.sock"}, o.InitAddress)

	o, err = ClientOption("redis+sentinel://:mpass@s1:26379,s2/3?sentinel_master_name=mymaster&sentinel_password=spass&addr=s3:26380")
	require.NoError(t, err)
	require.Equal(t, []string{"s1:26379", "s2:26379", "s3:26380"}, o.InitAddress)
	require.Equal(t, "mymaster", o.Sentinel.MasterSet)
	require.Equal(t, "spass", o.Sentinel.Password)
	require.Equal(t, "mpass", o.Password)
	require.Equal(t, 3, o.SelectDB)
	require.Nil(t, o.TLSConfig)

	for addr, want := range map[string]string{
		"http://h":            "scheme",
		"redis+sentinel://s1": "sentinel_master_name",
		"redis+sentinel://?sentinel_master_name=m":    "no sentinel host",
		"redis+sentinel://s/x?sentinel_master_name=m": "invalid database",
		"redis://h/x": "invalid database",
		"redis://%zz": "redis address",
	} {
		_, err := ClientOption(addr)
		require.ErrorContains(t, err, want, addr)
	}
}
