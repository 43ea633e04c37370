package relay

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestBusMessageRoundTrip(t *testing.T) {
	frame := []byte{1, 2, 3, 4}
	m, err := decodeBusMessage(busFrame(busDatagram, transportNative, "proc-a", frame))
	require.NoError(t, err)
	require.Equal(t, &busMessage{kind: busDatagram, transport: transportNative, origin: "proc-a", frame: frame}, m)

	bm := &busMember{Node: 7, SID: "s1", User: "u", Meta: []byte{0, 1}, Label: "quic-issun"}
	m, err = decodeBusMessage(busMemberFrame(busJoin, transportISSUN, "proc-b", bm))
	require.NoError(t, err)
	require.Equal(t, &busMessage{kind: busJoin, transport: transportISSUN, origin: "proc-b", member: bm}, m)

	for name, data := range map[string][]byte{
		"empty": nil, "version": []byte("2ei\x01a"), "transport": []byte("1ex\x01a"),
		"no origin": []byte("1ei\x00"), "short origin": []byte("1ei\x05ab"), "no frame": []byte("1ei\x01a"),
		"kind": []byte("1zi\x01a{}"), "member json": []byte("1ji\x01a{"), "member sid": []byte("1ji\x01a{}"),
	} {
		_, err := decodeBusMessage(data)
		require.ErrorIs(t, err, errBusMessage, name)
	}
}

func FuzzBusMessage(f *testing.F) {
	f.Add(busFrame(busEvent, transportISSUN, "p", []byte{9}))
	f.Add(busMemberFrame(busLeave, transportNative, "p", &busMember{Node: 1, SID: "x"}))
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := decodeBusMessage(data)
		if err != nil {
			return
		}
		require.NotEmpty(t, m.origin)
		require.True(t, (m.frame != nil) != (m.member != nil))
	})
}
