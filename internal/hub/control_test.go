package hub

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestControlMessagesRoundTrip(t *testing.T) {
	for _, m := range []*controlMessage{
		{Type: ctlAnnounce, Node: "n1", Info: &NodeInfo{ID: "n1", Name: "a", Version: "v", NumClients: 3, Uptime: time.Minute}},
		{Type: ctlLeave, Node: "n1"},
		{Type: ctlSubscribe, Node: "n1", Cmd: &userCommand{User: "u", Channel: "c", ChanInfo: []byte{0, 0xff},
			RecoverSince: &StreamPosition{Offset: 4, Epoch: "e"}, Timeout: 100}},
		{Type: ctlUnsubscribe, Node: "n1", Cmd: &userCommand{User: "u", Client: "c1", Channel: "c"}},
		{Type: ctlDisconnect, Node: "n1", Cmd: &userCommand{User: "u", Code: 3503, Reason: "r", Whitelist: []string{"c2"}}},
		{Type: ctlRefresh, Node: "n1", Cmd: &userCommand{User: "u", ExpireAt: 5, Expired: true, Info: []byte(`{}`)}},
		{Type: ctlSurvey, Node: "n1", Survey: &surveyMessage{ID: 9, Op: surveyChannels}},
		{Type: ctlReply, Node: "n1", Survey: &surveyMessage{ID: 9, Data: []byte(`{"a":1}`)}},
	} {
		b, err := encodeControl(m)
		require.NoError(t, err)
		got, err := decodeControl(b)
		require.NoError(t, err, string(b))
		require.Equal(t, m, got)
	}
}

func TestControlDecoderRejects(t *testing.T) {
	for _, s := range []string{
		``, `[]`, `{"t":"leave"}`, `{"t":"nope","n":"x"}`,
		`{"t":"node","n":"x"}`, `{"t":"node","n":"x","i":{"id":"y"}}`, `{"t":"node","n":"x","i":{"id":"x","clients":-1}}`,
		`{"t":"subscribe","n":"x","c":{"u":"u"}}`, `{"t":"refresh","n":"x","c":{}}`,
		`{"t":"disconnect","n":"x","c":{"u":"u","code":5000}}`, `{"t":"refresh","n":"x","c":{"u":"u","to":-1}}`,
		`{"t":"survey","n":"x","s":{"id":1}}`, `{"t":"reply","n":"x","s":{"id":0}}`,
	} {
		_, err := decodeControl([]byte(s))
		require.Error(t, err, s)
	}
}

// FuzzDecodeControl: the decoder never panics, and what it accepts
// encodes and decodes to the same message.
func FuzzDecodeControl(f *testing.F) {
	for _, s := range []string{
		`{"t":"node","n":"x","i":{"id":"x","name":"a","clients":1,"uptime":5}}`,
		`{"t":"leave","n":"x"}`,
		`{"t":"subscribe","n":"x","c":{"u":"u","ch":"c","ci":"AP8=","rs":{"offset":1,"epoch":"e"},"to":5}}`,
		`{"t":"disconnect","n":"x","c":{"u":"u","code":3000,"wl":["a"]}}`,
		`{"t":"survey","n":"x","s":{"id":1,"op":"channels"}}`,
		`{"t":"reply","n":"x","s":{"id":1,"d":{"a":1}}}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := decodeControl(data)
		if err != nil {
			return
		}
		b, err := encodeControl(m)
		require.NoError(t, err)
		again, err := decodeControl(b)
		require.NoError(t, err)
		b2, err := encodeControl(again)
		require.NoError(t, err)
		require.Equal(t, string(b), string(b2))
	})
}
