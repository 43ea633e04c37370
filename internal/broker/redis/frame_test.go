package redis

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/switchboard-rt/switchboard/internal/hub"
)

func TestFrameRoundTrip(t *testing.T) {
	pubs := []*hub.Publication{
		{Data: []byte(`{"a":1}`)},
		{Data: []byte{}, Time: -5},
		{Data: []byte("x"), Time: 1700000000123, Info: &hub.ClientInfo{ClientID: "c", UserID: "u", ConnInfo: []byte(`{}`)}, Tags: map[string]string{"a": "b", "": ""}},
		{Data: []byte("y"), Info: &hub.ClientInfo{ChanInfo: []byte{}}},
	}
	for _, p := range pubs {
		got, err := decodePublication(appendPublication(nil, p))
		require.NoError(t, err)
		require.Equal(t, p, got)
		f, err := decodeFrame("1p42:EPOCH:" + string(appendPublication(nil, p)))
		require.NoError(t, err)
		require.Equal(t, hub.StreamPosition{Offset: 42, Epoch: "EPOCH"}, f.sp)
		require.Equal(t, uint64(42), f.pub.Offset)
		f, err = decodeFrame(string(pubFrame(appendPublication(nil, p))))
		require.NoError(t, err)
		require.Zero(t, f.sp)
	}
	for _, info := range []*hub.ClientInfo{nil, {ClientID: "c"}, {ClientID: "c", UserID: "u", ConnInfo: []byte("1"), ChanInfo: []byte("2")}} {
		f, err := decodeFrame(string(infoFrame(kindJoin, info)))
		require.NoError(t, err)
		require.Equal(t, byte(kindJoin), f.kind)
		require.Equal(t, info, f.info)
		got, err := decodeInfo(encodeInfo(info))
		require.NoError(t, err)
		require.Equal(t, info, got)
	}
}

func TestFrameErrors(t *testing.T) {
	good := string(appendPublication(nil, &hub.Publication{Data: []byte("x"), Tags: map[string]string{"k": "v"}}))
	for _, bad := range []string{"", "1", "2p0::", "1x", "1p", "1p0", "1pX::" + good, "1p0:e", "1p0::", "1p0::" + good + "z", "1p0::" + good[:len(good)-1], "1j", "1j\x02", "1j\x01\x05", "1l\x00z"} {
		_, err := decodeFrame(bad)
		require.ErrorIs(t, err, errFrame, "%q", bad)
	}
	// A tag count larger than the bytes that follow is rejected before allocation.
	_, err := decodePublication([]byte{0, 0, flagTags, 0xff, 0xff, 0x03})
	require.ErrorIs(t, err, errFrame)
}

func FuzzDecodeFrame(f *testing.F) {
	f.Add("1p3:ABC:" + string(appendPublication(nil, &hub.Publication{Data: []byte("hi"), Info: &hub.ClientInfo{ClientID: "c"}, Tags: map[string]string{"a": "b"}})))
	f.Add(string(infoFrame(kindLeave, &hub.ClientInfo{ClientID: "c", UserID: "u"})))
	f.Add("1p0::\x00\x00\x00")
	f.Fuzz(func(t *testing.T, msg string) {
		fr, err := decodeFrame(msg)
		if err != nil {
			require.ErrorIs(t, err, errFrame)
			return
		}
		if fr.kind == kindPub {
			// What decodes re-encodes to an equal publication.
			again, err := decodePublication(appendPublication(nil, fr.pub))
			require.NoError(t, err)
			again.Offset = fr.pub.Offset
			require.Equal(t, fr.pub, again)
		}
	})
}

func FuzzDecodeInfo(f *testing.F) {
	f.Add(encodeInfo(&hub.ClientInfo{ClientID: "c", UserID: "u", ConnInfo: []byte("{}")}))
	f.Fuzz(func(t *testing.T, b []byte) {
		info, err := decodeInfo(b)
		if err != nil {
			require.ErrorIs(t, err, errFrame)
			return
		}
		got, err := decodeInfo(encodeInfo(info))
		require.NoError(t, err)
		require.Equal(t, info, got)
	})
}
