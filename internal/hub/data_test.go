package hub_test

import (
	"context"
	"errors"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/switchboard-rt/switchboard/internal/broker/memory"
	"github.com/switchboard-rt/switchboard/internal/hub"
)

func TestIsJSONText(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want bool
	}{
		{`{"a":1}`, true},
		{`"héllo ✓"`, true},
		{`"\udcff"`, true}, // an escaped lone surrogate is ASCII text
		{`42`, true},
		{"\"\xff\"", false},         // valid JSON to encoding/json, not UTF-8
		{"{\"a\":\"\xc3\"}", false}, // truncated sequence
		{"\"\xed\xa0\x80\"", false}, // encoded surrogate
		{`{"a":`, false},
		{"", false},
		{"\x00\x01", false},
	} {
		require.Equal(t, tc.want, hub.IsJSONText([]byte(tc.in)), "%q", tc.in)
	}
}

// failingCodec cannot encode publications whose data is not JSON text, as
// a JSON wire format cannot.
type failingCodec struct{ rawCodec }

func (c failingCodec) EncodePublication(ch string, p *hub.Publication) ([]byte, error) {
	if !hub.IsJSONText(p.Data) {
		return nil, errors.New("not JSON text")
	}
	return c.rawCodec.EncodePublication(ch, p)
}

type undeliverableSub struct {
	fakeSub
	mu2     sync.Mutex
	missing []uint64
}

func (u *undeliverableSub) Undeliverable(_ string, offset uint64) {
	u.mu2.Lock()
	u.missing = append(u.missing, offset)
	u.mu2.Unlock()
}

func TestFanoutReportsUndeliverablePushes(t *testing.T) {
	h, err := hub.New(hub.Config{Broker: memory.New(nil), Presence: memory.NewPresence(), Namespaces: chatNamespaces()})
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, h.Shutdown(context.Background())) })
	jsonID, err := h.RegisterFormat("json", failingCodec{rawCodec{"json"}})
	require.NoError(t, err)
	pbID, err := h.RegisterFormat("pb", rawCodec{"pb"})
	require.NoError(t, err)
	require.Equal(t, []hub.FormatID{0, 1}, []hub.FormatID{jsonID, pbID})

	js := &undeliverableSub{fakeSub: fakeSub{format: 0}}
	plain := &fakeSub{format: 0}
	pb := &fakeSub{format: 1}
	for _, s := range []hub.Subscriber{js, plain, pb} {
		require.NoError(t, h.AddSubscriber("chat:x", s, false))
	}
	ctx := context.Background()
	_, err = h.Publish(ctx, "chat:x", []byte{0xff, 0x00}, nil, nil)
	require.NoError(t, err)
	_, err = h.Publish(ctx, "chat:x", []byte(`{"ok":true}`), nil, nil)
	require.NoError(t, err)

	require.Equal(t, []string{"pb pub chat:x 1 \xff\x00", `pb pub chat:x 2 {"ok":true}`}, pb.frames())
	require.Equal(t, []string{`json pub chat:x 2 {"ok":true}`}, js.frames())
	require.Equal(t, []string{`json pub chat:x 2 {"ok":true}`}, plain.frames())
	js.mu2.Lock()
	defer js.mu2.Unlock()
	require.Equal(t, []uint64{1}, js.missing, "the JSON subscriber is told which push it could not get")
}

func TestCheckPublicationData(t *testing.T) {
	for _, tc := range []struct {
		format string
		data   string
		ok     bool
	}{
		{hub.DataFormatAny, `{"a":1}`, true},
		{hub.DataFormatAny, "\xff\x00", true}, // binary: for Protobuf subscribers
		{hub.DataFormatAny, "", false},
		{hub.DataFormatJSON, `[1]`, true},
		{hub.DataFormatJSON, "\"\xff\"", false},
		{hub.DataFormatJSON, `{`, false},
		{hub.DataFormatJSON, "", false},
		{hub.DataFormatJSONObject, ` {"a":1}`, true},
		{hub.DataFormatJSONObject, `[1]`, false},
		{hub.DataFormatJSONObject, "", false},
		{hub.DataFormatBinary, "", true},
		{hub.DataFormatBinary, "\xff", true},
	} {
		err := hub.ChannelOptions{PublicationDataFormat: tc.format}.CheckPublicationData([]byte(tc.data))
		if tc.ok {
			require.NoError(t, err, "%q %q", tc.format, tc.data)
		} else {
			require.ErrorIs(t, err, hub.ErrBadRequest, "%q %q", tc.format, tc.data)
		}
	}
}
