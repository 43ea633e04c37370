package clientproto

import (
	"context"

	"github.com/centrifugal/protocol"

	"github.com/switchboard-rt/switchboard/internal/hub"
)

// Unsubscribe push code used when the server API removes a subscription.
const UnsubscribeCodeServer = 2000

var (
	_ hub.Client     = (*Session)(nil)
	_ hub.Subscriber = (*subscription)(nil)
)

// ServerSubscribe implements hub.Client: it subscribes the connection to
// channel and sends a subscribe push.
func (s *Session) ServerSubscribe(ctx context.Context, channel string, o hub.ServerSubscribe) error {
	opts, err := s.srv.cfg.Hub.ChannelOptions(channel)
	if err != nil {
		return err
	}
	p := subscribeParams{serverSide: true, chanInfo: o.ChanInfo}
	if o.RecoverSince != nil {
		p.recover, p.offset, p.epoch = true, o.RecoverSince.Offset, o.RecoverSince.Epoch
	}
	s.opMu.Lock()
	defer s.opMu.Unlock()
	res, err := s.beginSubscribe(ctx, channel, opts, p)
	if err != nil {
		return err
	}
	push := &protocol.Push{Channel: channel, Subscribe: &protocol.Subscribe{
		Recoverable: res.Recoverable, Epoch: res.Epoch, Offset: res.Offset, Positioned: res.Positioned, Data: res.Data}}
	frames := [][]byte{s.encode(&protocol.Reply{Push: push})}
	// The subscribe push has no room for publications: recovered ones
	// follow it as ordinary pushes, before anything held during setup.
	for _, p := range res.Publications {
		frames = append(frames, s.encode(&protocol.Reply{Push: &protocol.Push{Channel: channel, Pub: p}}))
	}
	s.finishSubscribe(frames, []string{channel})
	return nil
}

// ServerUnsubscribe implements hub.Client: it removes the subscription and
// sends an unsubscribe push (code 0 means UnsubscribeCodeServer).
func (s *Session) ServerUnsubscribe(_ context.Context, channel string, code uint32, reason string) {
	if code == 0 {
		code, reason = UnsubscribeCodeServer, "server unsubscribe"
	}
	s.opMu.Lock()
	defer s.opMu.Unlock()
	if !s.removeSubscription(channel) {
		return
	}
	s.enqueueReply(&protocol.Reply{Push: &protocol.Push{Channel: channel, Unsubscribe: &protocol.Unsubscribe{Code: code, Reason: reason}}})
}

// Refresh implements hub.Client: it sets a new expiry (unix seconds, 0 =
// none) and tells the client, or disconnects it at once when expired.
func (s *Session) Refresh(expireAt int64, expired bool, info []byte) {
	if expired {
		s.Disconnect(hub.DisconnectExpired)
		return
	}
	s.mu.Lock()
	s.expireAt = expireAt
	if info != nil {
		s.connInfo = info
	}
	s.mu.Unlock()
	push := &protocol.Refresh{}
	if expireAt > 0 {
		push.Expires, push.Ttl = true, ttlSeconds(expireAt, s.srv.clock.Now())
	}
	s.enqueueReply(&protocol.Reply{Push: &protocol.Push{Refresh: push}})
}
