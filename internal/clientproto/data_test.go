package clientproto

import (
	"context"
	"encoding/binary"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/centrifugal/protocol"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/switchboard-rt/switchboard/internal/hub"
	"github.com/switchboard-rt/switchboard/internal/testenv"
)

// requireText asserts that every frame a JSON session wrote is UTF-8.
func requireText(t *testing.T, ft *fakeTransport) {
	t.Helper()
	ft.mu.Lock()
	defer ft.mu.Unlock()
	for _, w := range ft.writes {
		require.True(t, utf8.Valid(w), "JSON frame is not UTF-8: %q", w)
	}
}

func protobufFrame(t *testing.T, cmds ...*protocol.Command) []byte {
	t.Helper()
	var out []byte
	for _, c := range cmds {
		b, err := c.MarshalVT()
		require.NoError(t, err)
		out = binary.AppendUvarint(out, uint64(len(b)))
		out = append(out, b...)
	}
	return out
}

func TestJSONClientCannotPublishInvalidData(t *testing.T) {
	rpc := blockingRPC{started: make(chan struct{})}
	h := newHarness(t, func(c *Config) { c.RPC = rpc })
	s, ft := h.session(FormatJSON)
	s.HandleMessage([]byte(`{"id":1,"connect":{"token":"` + tok(t, "u1") + `"}}` + "\n" + `{"id":2,"subscribe":{"channel":"chat:p"}}`))
	require.Eventually(t, hasMessage(ft, `"id":2,"subscribe":{`), testenv.Wait, testenv.Tick, "subscribe reply")

	for i, cmd := range []string{
		"{\"id\":3,\"publish\":{\"channel\":\"chat:p\",\"data\":\"\xff\"}}",
		"{\"id\":4,\"publish\":{\"channel\":\"chat:p\",\"data\":{\"a\":\"\xc3\"}}}",
		"{\"id\":5,\"rpc\":{\"method\":\"echo\",\"data\":\"\xed\xa0\x80\"}}",
	} {
		s.HandleMessage([]byte(cmd))
		want := `{"id":` + string(rune('3'+i)) + `,"error":{"code":107,"message":"bad request"}}`
		require.Eventually(t, hasMessage(ft, want), testenv.Wait, testenv.Tick, want)
	}
	// send has no reply: the bad one is dropped, the connection stays.
	s.HandleMessage([]byte("{\"send\":{\"data\":\"\xff\"}}"))
	// Valid data still works after all of that, and is all history holds.
	s.HandleMessage([]byte(`{"id":6,"publish":{"channel":"chat:p","data":{"ok":"✓"}}}` + "\n" +
		`{"id":7,"history":{"channel":"chat:p","limit":10}}`))
	require.Eventually(t, hasMessage(ft, `"id":7,"history":{"publications":[{"data":{"ok":"✓"}`), testenv.Wait, testenv.Tick, "history")
	hr, err := h.hub.History(context.Background(), "chat:p", hub.HistoryOptions{Limit: -1})
	require.NoError(t, err)
	require.Len(t, hr.Publications, 1)
	require.Nil(t, ft.disconnect())
	requireText(t, ft)
}

func TestProtobufClientMayPublishBinary(t *testing.T) {
	h := newHarness(t, nil)
	js, jft := h.session(FormatJSON)
	js.HandleMessage([]byte(`{"id":1,"connect":{"token":"` + tok(t, "j") + `"}}` + "\n" + `{"id":2,"subscribe":{"channel":"chat:bin"}}`))
	require.Eventually(t, hasMessage(jft, `"id":2,"subscribe":{`), testenv.Wait, testenv.Tick, "JSON subscribe reply")

	pb, pft := h.session(FormatProtobuf)
	pb.HandleMessage(protobufFrame(t,
		&protocol.Command{Id: 1, Connect: &protocol.ConnectRequest{Token: tok(t, "p")}},
		&protocol.Command{Id: 2, Subscribe: &protocol.SubscribeRequest{Channel: "chat:bin"}},
		&protocol.Command{Id: 3, Publish: &protocol.PublishRequest{Channel: "chat:bin", Data: []byte{0xff, 0x00}}},
	))
	require.Eventually(t, func() bool { return hasPushData(t, pft, []byte{0xff, 0x00}) }, testenv.Wait, testenv.Tick, "binary publication to the Protobuf subscriber")
	require.Nil(t, pft.disconnect())

	// As in Centrifugo, the JSON subscriber cannot receive it and is
	// disconnected with 3506, without a frame that is not UTF-8.
	require.Eventually(t, func() bool { return jft.disconnect() != nil }, testenv.Wait, testenv.Tick, "JSON subscriber disconnected")
	require.Equal(t, hub.DisconnectInappropriateProtocol, *jft.disconnect())
	requireText(t, jft)
}

// protobufReplies decodes every reply a Protobuf session wrote. It runs
// in Eventually conditions, so it asserts (no FailNow).
func protobufReplies(t *testing.T, ft *fakeTransport) []*protocol.Reply {
	ft.mu.Lock()
	defer ft.mu.Unlock()
	var out []*protocol.Reply
	for _, w := range ft.writes {
		for len(w) > 0 {
			l, n := binary.Uvarint(w)
			if !assert.Positive(t, n) {
				return out
			}
			rep := &protocol.Reply{}
			if !assert.NoError(t, rep.UnmarshalVT(w[n:n+int(l)])) {
				return out
			}
			out = append(out, rep)
			w = w[n+int(l):]
		}
	}
	return out
}

func hasPushData(t *testing.T, ft *fakeTransport, data []byte) bool {
	for _, rep := range protobufReplies(t, ft) {
		if rep.Push != nil && rep.Push.Pub != nil && string(rep.Push.Pub.Data) == string(data) {
			return true
		}
	}
	return false
}

func TestNotUTF8PublicationLeftOutOfJSONHistoryAndRecovery(t *testing.T) {
	h := newHarness(t, nil)
	ctx := context.Background()
	// Valid JSON to encoding/json, but not UTF-8: what a Protobuf client may publish.
	_, err := h.hub.Publish(ctx, "chat:r", []byte("\"\xff\""), nil, nil)
	require.NoError(t, err)
	_, err = h.hub.Publish(ctx, "chat:r", []byte(`{"n":2}`), nil, nil)
	require.NoError(t, err)
	s, ft := h.session(FormatJSON)
	s.HandleMessage([]byte(`{"id":1,"connect":{"token":"` + tok(t, "u1") + `"}}` + "\n" +
		`{"id":2,"history":{"channel":"chat:r","limit":10}}`))
	require.Eventually(t, hasMessage(ft, `"id":2,"error":{"code":103`), testenv.Wait, testenv.Tick, "history needs a subscription")
	s.HandleMessage([]byte(`{"id":3,"subscribe":{"channel":"chat:r","recover":true,"offset":0,"epoch":"` + epochOf(t, h, "chat:r") + `"}}` + "\n" +
		`{"id":4,"history":{"channel":"chat:r","limit":10}}`))
	require.Eventually(t, hasMessage(ft, `"id":3,"subscribe":{`), testenv.Wait, testenv.Tick, "subscribe reply")
	require.Eventually(t, hasMessage(ft, `"id":4,"history":{"publications":[{"data":{"n":2}`), testenv.Wait, testenv.Tick, "history without the non-text one")
	require.True(t, hasMessage(ft, `"publications":[{"data":{"n":2},"offset":2}]`)(), "recovered without the non-text one: %q", ft.messages())
	require.Nil(t, ft.disconnect())
	requireText(t, ft)
}

func epochOf(t *testing.T, h *harness, ch string) string {
	hr, err := h.hub.History(context.Background(), ch, hub.HistoryOptions{})
	require.NoError(t, err)
	return hr.Position.Epoch
}

func TestReplyThatIsNotTextIsNeverWritten(t *testing.T) {
	rpc := blockingRPC{started: make(chan struct{})}
	h := newHarness(t, func(c *Config) { c.RPC = rpc })
	s, ft := h.session(FormatProtobuf)
	// A Protobuf client may send binary rpc data; the handler echoes it.
	s.HandleMessage(protobufFrame(t,
		&protocol.Command{Id: 1, Connect: &protocol.ConnectRequest{Token: tok(t, "u1")}},
		&protocol.Command{Id: 2, Rpc: &protocol.RPCRequest{Method: "echo", Data: []byte{0xff}}}))
	require.Eventually(t, func() bool {
		for _, rep := range protobufReplies(t, ft) {
			if rep.Id == 2 && rep.Rpc != nil && string(rep.Rpc.Data) == "\xff" {
				return true
			}
		}
		return false
	}, testenv.Wait, testenv.Tick, "binary rpc reply")
	require.Nil(t, ft.disconnect())

	// A JSON client whose reply would not be UTF-8 gets no such frame: it
	// is disconnected with 3506, as Centrifugo does for unencodable replies.
	h2 := newHarness(t, func(c *Config) { c.RPC = badRPC{} })
	js, jft := h2.session(FormatJSON)
	js.HandleMessage([]byte(`{"id":1,"connect":{"token":"` + tok(t, "u1") + `"}}` + "\n" + `{"id":2,"rpc":{"method":"x","data":{}}}`))
	require.Eventually(t, func() bool { return jft.disconnect() != nil }, testenv.Wait, testenv.Tick, "JSON client disconnected")
	require.Equal(t, hub.DisconnectInappropriateProtocol, *jft.disconnect())
	require.False(t, hasMessage(jft, `"id":2`)())
	requireText(t, jft)

	_, err := jsonCodec{}.encodeReply(&protocol.Reply{Id: 1, Rpc: &protocol.RPCResult{Data: []byte("\"\xff\"")}})
	require.ErrorIs(t, err, errNotText)
	_, err = jsonCodec{}.EncodePublication("chat:a", &hub.Publication{Data: []byte("{\"a\":\"\xff\"}")})
	require.ErrorIs(t, err, errNotText)
}

// badRPC answers JSON that is not UTF-8, as a faulty handler might.
type badRPC struct{}

func (badRPC) HandleRPC(context.Context, hub.RPCRequest) ([]byte, error) {
	return []byte("\"\xff\""), nil
}

// BenchmarkJSONPublicationEncode measures the UTF-8 check of every JSON
// frame: "unchecked" is the protocol encoder alone.
func BenchmarkJSONPublicationEncode(b *testing.B) {
	data := []byte(`{"text":"` + strings.Repeat("héllo wörld ", 20) + `","n":12345}`)
	push := &protocol.Reply{Push: &protocol.Push{Channel: "chat:index", Pub: &protocol.Publication{Data: data, Offset: 42}}}
	b.Run("unchecked", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			if _, err := protocol.NewJSONReplyEncoder().Encode(push); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("checked", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			if _, err := (jsonCodec{}).encodeReply(push); err != nil {
				b.Fatal(err)
			}
		}
	})
}
