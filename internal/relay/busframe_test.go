package relay

import (
	"encoding/hex"
	"strings"
	"testing"

	"github.com/google/uuid"
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

	req := &busRequest{ID: "r1", Op: opResume, Token: "t", User: "u"}
	m, err = decodeBusMessage(busJSONFrame(busAsk, "proc-c", req))
	require.NoError(t, err)
	require.Equal(t, byte(busAsk), m.kind)
	require.Equal(t, "proc-c", m.origin)
	require.JSONEq(t, `{"i":"r1","o":"resume","k":"t","u":"u"}`, string(m.body))

	for name, data := range map[string][]byte{
		"ask without body": []byte("1an\x01a"), "answer without body": []byte("1rn\x01a"),
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
	f.Add(busJSONFrame(busAnswer, "p", &busReply{ID: "x", Session: &handedSession{Node: 1, SID: "s", Rooms: []string{"r"}}}))
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := decodeBusMessage(data)
		if err != nil {
			return
		}
		require.NotEmpty(t, m.origin)
		n := 0
		for _, set := range []bool{m.frame != nil, m.member != nil, m.body != nil} {
			if set {
				n++
			}
		}
		require.Equal(t, 1, n, "exactly one of frame, member, body")
	})
}

func TestResumeTokenOrigin(t *testing.T) {
	s := newTestServer(t, nil)
	tok := s.newResumeToken()
	require.Len(t, tok, 32, "one process: no origin")
	_, ok := tokenOrigin(tok)
	require.False(t, ok)

	c := newTestServer(t, func(c *Config) { c.Bus = nopBus{} })
	tok = c.newResumeToken()
	require.Len(t, tok, 32+len(tokenSep)+len(c.cluster.origin), "random part, separator, then the origin")
	origin, ok := tokenOrigin(tok)
	require.True(t, ok)
	require.Equal(t, c.cluster.origin, origin)
	require.NotEqual(t, tok, c.newResumeToken(), "random part")
	for _, bad := range []string{"", "nope", tok[:32], tok[:33], strings.Repeat("g", 32) + tokenSep + c.cluster.origin,
		tok[:33] + strings.Repeat("x", maxOrigin+1), tok[:33] + "relay:room", tok[:33] + "ABCD", tok[:33] + "a b"} {
		_, ok := tokenOrigin(bad)
		require.False(t, ok, bad)
	}

	// A hub node id is 32 hex digits: a token naming one is not read as
	// an earlier version's (UUID origin first), and an earlier version's
	// 64 hex digits are not read as a random part and a hub id.
	hubID := strings.Repeat("ab", 16)
	origin, ok = tokenOrigin(strings.Repeat("0", 32) + tokenSep + hubID)
	require.True(t, ok)
	require.Equal(t, hubID, origin)
	old := uuid.MustParse("6ba7b810-9dad-11d1-80b4-00c04fd430c8")
	origin, ok = tokenOrigin(hex.EncodeToString(old[:]) + strings.Repeat("0", 32))
	require.True(t, ok, "an earlier version's token, in a rolling upgrade")
	require.Equal(t, old.String(), origin)
}

// A resume token, whatever a client sends, never panics tokenOrigin, and
// an origin it accepts is always a valid one (validOrigin: no topic
// other than a process's can be named).
func FuzzTokenOrigin(f *testing.F) {
	f.Add(strings.Repeat("0", 32) + tokenSep + strings.Repeat("ab", 16))
	f.Add(strings.Repeat("0", 32) + tokenSep + "6ba7b810-9dad-11d1-80b4-00c04fd430c8")
	f.Add(strings.Repeat("1", 64))
	f.Add(strings.Repeat("0", 32) + tokenSep + "relay:arena")
	f.Add("")
	f.Fuzz(func(t *testing.T, token string) {
		origin, ok := tokenOrigin(token)
		if ok && !validOrigin(origin) {
			t.Fatalf("token %q: invalid origin %q accepted", token, origin)
		}
		if ok && len(origin) > maxOrigin {
			t.Fatalf("token %q: origin of %d bytes", token, len(origin))
		}
		for i := 0; ok && i < len(origin); i++ {
			if c := origin[i]; !strings.ContainsRune("0123456789abcdef-", rune(c)) {
				t.Fatalf("token %q: origin %q has %q", token, origin, c)
			}
		}
	})
}
