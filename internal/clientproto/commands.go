package clientproto

import (
	"context"
	"errors"
	"strings"
	"time"

	"github.com/centrifugal/protocol"

	"github.com/switchboard-rt/switchboard/internal/auth"
	"github.com/switchboard-rt/switchboard/internal/hub"
)

// disconnectError makes a command handler close the connection.
type disconnectError struct{ d hub.Disconnect }

func (e *disconnectError) Error() string { return e.d.Reason }

func disconnect(d hub.Disconnect) error { return &disconnectError{d} }

func methodOf(c *protocol.Command) string {
	switch {
	case c.Connect != nil:
		return "connect"
	case c.Subscribe != nil:
		return "subscribe"
	case c.Unsubscribe != nil:
		return "unsubscribe"
	case c.Publish != nil:
		return "publish"
	case c.Presence != nil:
		return "presence"
	case c.PresenceStats != nil:
		return "presence_stats"
	case c.History != nil:
		return "history"
	case c.Ping != nil:
		return "ping"
	case c.Send != nil:
		return "send"
	case c.Rpc != nil:
		return "rpc"
	case c.Refresh != nil:
		return "refresh"
	case c.SubRefresh != nil:
		return "sub_refresh"
	case c.Id == 0:
		return "pong"
	}
	return "unknown"
}

// handleCommand runs one command; it returns false when the connection is
// being closed and further commands must be ignored.
func (s *Session) handleCommand(cmd *protocol.Command) bool {
	method := methodOf(cmd)
	m := s.srv.metrics
	m.commands.WithLabelValues(method).Inc()
	s.mu.Lock()
	state, closing := s.state, s.closeSent
	if method == "pong" {
		s.pongWait = false
		s.mu.Unlock()
		return true
	}
	limited := !s.rate.Allow(float64(s.srv.cfg.CommandRateLimit), s.srv.cfg.CommandRateLimit, s.srv.clock.Now())
	s.mu.Unlock()
	if closing || state == stateClosed {
		return false
	}
	if (state == stateConnecting) != (method == "connect") || method == "unknown" {
		s.Disconnect(hub.DisconnectBadRequest)
		return false
	}
	if limited {
		s.replyError(cmd.Id, method, hub.ErrTooManyRequests)
		return true
	}
	start := time.Now()
	reply, err := s.dispatch(cmd, method)
	m.commandTime.WithLabelValues(method).Observe(time.Since(start).Seconds())
	if err != nil {
		var de *disconnectError
		if errors.As(err, &de) {
			s.Disconnect(de.d)
			return false
		}
		s.replyError(cmd.Id, method, err)
		return true
	}
	if reply != nil && cmd.Id != 0 {
		reply.Id = cmd.Id
		s.enqueueReply(reply)
	}
	return true
}

func (s *Session) replyError(id uint32, method string, err error) {
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		s.srv.metrics.timeouts.WithLabelValues(method).Inc()
		s.srv.log.Warn("command timed out (is the broker slow?)", "method", method, "client", s.id,
			"timeout", s.srv.cfg.CommandTimeout, "error", err)
	case hub.IsInternal(err):
		s.srv.log.Error("command failed", "method", method, "client", s.id, "error", err)
	}
	pe := protoError(err)
	s.srv.metrics.errors.WithLabelValues(method, codeLabel(pe.Code)).Inc()
	if id == 0 {
		return
	}
	s.enqueueReply(&protocol.Reply{Id: id, Error: pe})
}

func (s *Session) encode(r *protocol.Reply) []byte {
	b, err := s.format.encodeReply(r)
	if err != nil {
		// Only invalid JSON payloads (binary data to a JSON client) get here.
		s.srv.log.Warn("encode reply failed", "client", s.id, "error", err)
		return nil
	}
	return b
}

func (s *Session) enqueueReply(r *protocol.Reply) {
	b := s.encode(r)
	s.mu.Lock()
	defer s.mu.Unlock()
	if b == nil {
		s.disconnectLocked(hub.DisconnectInappropriateProtocol)
		return
	}
	s.enqueueLocked(b)
}

// commandContext returns the context of the command about to run: it ends
// at the command deadline or when the connection goes, whichever is first.
func (s *Session) commandContext() (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithTimeout(context.Background(), s.srv.cfg.CommandTimeout)
	s.mu.Lock()
	if s.closeSent || s.state == stateClosed {
		cancel()
	} else {
		s.cmdCancel = cancel
	}
	s.mu.Unlock()
	return ctx, func() {
		s.mu.Lock()
		s.cmdCancel = nil
		s.mu.Unlock()
		cancel()
	}
}

// cancelCommandLocked ends the running command's context; s.mu is held.
func (s *Session) cancelCommandLocked() {
	if s.cmdCancel != nil {
		s.cmdCancel()
	}
}

func (s *Session) dispatch(cmd *protocol.Command, method string) (*protocol.Reply, error) {
	ctx, done := s.commandContext()
	defer done()
	switch method {
	case "connect":
		return nil, s.connect(ctx, cmd)
	case "subscribe":
		return nil, s.subscribeCmd(ctx, cmd)
	case "unsubscribe":
		return s.unsubscribeCmd(ctx, cmd.Unsubscribe)
	case "publish":
		return s.publish(ctx, cmd.Publish)
	case "presence":
		return s.presence(ctx, cmd.Presence)
	case "presence_stats":
		return s.presenceStats(ctx, cmd.PresenceStats)
	case "history":
		return s.history(ctx, cmd.History)
	case "ping":
		return &protocol.Reply{Ping: &protocol.PingResult{}}, nil
	case "send":
		// Asynchronous messages need a server-side consumer; none is
		// configured, so they are counted (commands metric) and dropped.
		// Malformed ones count as errors (send has no reply).
		if len(cmd.Send.Data) > 0 && !s.dataAccepted(cmd.Send.Data) {
			return nil, hub.ErrBadRequest
		}
		return nil, nil
	case "rpc":
		return nil, s.rpc(cmd)
	case "refresh":
		return s.refresh(cmd.Refresh)
	case "sub_refresh":
		return s.subRefresh(cmd.SubRefresh)
	}
	return nil, hub.ErrMethodNotFound
}

func (s *Session) connect(ctx context.Context, cmd *protocol.Command) error {
	cfg := &s.srv.cfg
	req := cmd.Connect
	var claims auth.ConnectClaims
	if req.Token != "" {
		c, err := cfg.Tokens.VerifyConnect(req.Token)
		if err != nil {
			if he, ok := errTokenToHub(err); ok {
				return he
			}
			s.srv.log.Debug("invalid connect token", "error", err)
			return disconnect(hub.DisconnectInvalidToken)
		}
		claims = c
	} else if !cfg.AllowAnonymous {
		return hub.ErrUnauthorized
	}
	now := s.srv.clock.Now()
	s.id = newClientID()
	s.user = claims.User
	s.connInfo = claims.Info
	// Held from registration on, so no server API push can be queued
	// before the connect reply.
	s.opMu.Lock()
	defer s.opMu.Unlock()
	if err := cfg.Hub.AddClient(s); err != nil {
		if errors.Is(err, hub.ErrLimitExceeded) {
			return disconnect(hub.DisconnectConnectionLimit)
		}
		if errors.Is(err, hub.ErrNotAvailable) {
			return disconnect(hub.DisconnectShutdown)
		}
		return err
	}
	s.mu.Lock()
	s.state = stateConnected
	s.expireAt = claims.ExpireAt
	if cfg.PingInterval > 0 {
		s.timerKind = timerPing
		s.timer.Reset(cfg.PingInterval)
	} else {
		s.timerKind = timerCheck
		s.timer.Reset(expiryCheckInterval(cfg))
	}
	s.mu.Unlock()

	res := &protocol.ConnectResult{Client: s.id, Version: cfg.Version}
	if cfg.PingInterval > 0 {
		res.Ping, res.Pong = uint32(cfg.PingInterval/time.Second), cfg.PongTimeout > 0
	}
	if claims.ExpireAt > 0 {
		res.Expires, res.Ttl = true, ttlSeconds(claims.ExpireAt, now)
	}
	var started []string
	for _, ch := range claims.Channels {
		opts, err := cfg.Hub.ChannelOptions(ch)
		if err != nil {
			s.srv.log.Warn("skip server-side subscription", "channel", ch, "error", err)
			continue
		}
		p := subscribeParams{serverSide: true}
		if r := req.Subs[ch]; r != nil {
			p.recover, p.epoch, p.offset = r.Recover, r.Epoch, r.Offset
		}
		sr, err := s.beginSubscribe(ctx, ch, opts, p)
		if err != nil {
			s.srv.log.Warn("server-side subscription failed", "channel", ch, "error", err)
			continue
		}
		if res.Subs == nil {
			res.Subs = map[string]*protocol.SubscribeResult{}
		}
		res.Subs[ch] = sr
		started = append(started, ch)
	}
	s.finishSubscribe([][]byte{s.encode(&protocol.Reply{Id: cmd.Id, Connect: res})}, started)
	return nil
}

type subscribeParams struct {
	recover     bool
	epoch       string
	offset      uint64
	recoverable bool
	positioned  bool
	joinLeave   bool
	chanInfo    []byte
	expireAt    int64
	serverSide  bool
}

func (s *Session) subscribeCmd(ctx context.Context, cmd *protocol.Command) error {
	req := cmd.Subscribe
	ch := req.Channel
	h := s.srv.cfg.Hub
	opts, err := h.ChannelOptions(ch)
	if err != nil {
		return err
	}
	p := subscribeParams{recover: req.Recover, epoch: req.Epoch, offset: req.Offset,
		recoverable: req.Recoverable, positioned: req.Positioned, joinLeave: req.JoinLeave}
	if req.Token != "" {
		c, err := s.srv.cfg.Tokens.VerifySubscribe(req.Token)
		if err != nil {
			if he, ok := errTokenToHub(err); ok {
				return he
			}
			return hub.ErrPermissionDenied
		}
		if c.Channel != ch || c.User != s.user {
			return hub.ErrPermissionDenied
		}
		p.chanInfo, p.expireAt = c.Info, c.ExpireAt
	} else if limited, ok := hub.UserAllowed(ch, s.user); limited {
		if !opts.AllowUserLimitedChannels || !ok {
			return hub.ErrPermissionDenied
		}
	} else if !opts.AllowSubscribeForClient || (s.user == "" && !opts.AllowSubscribeForAnonymous) {
		return hub.ErrPermissionDenied
	}
	s.opMu.Lock()
	defer s.opMu.Unlock()
	res, err := s.beginSubscribe(ctx, ch, opts, p)
	if err != nil {
		return err
	}
	s.finishSubscribe([][]byte{s.encode(&protocol.Reply{Id: cmd.Id, Subscribe: res})}, []string{ch})
	return nil
}

// beginSubscribe registers the subscription in syncing mode (pushes are
// held), records presence and join, and computes the subscribe result with
// recovery. The caller holds opMu and must call finishSubscribe.
func (s *Session) beginSubscribe(ctx context.Context, ch string, opts hub.ChannelOptions, p subscribeParams) (*protocol.SubscribeResult, error) {
	h := s.srv.cfg.Hub
	sub := &subscription{s: s, opts: opts, info: p.chanInfo, expireAt: p.expireAt, serverSide: p.serverSide, syncing: true,
		joinLeave: opts.JoinLeave && (p.joinLeave || opts.ForcePushJoinLeave)}
	s.mu.Lock()
	switch {
	case s.state != stateConnected:
		s.mu.Unlock()
		return nil, hub.ErrNotAvailable
	case s.subs[ch] != nil:
		s.mu.Unlock()
		return nil, hub.ErrAlreadySubscribed
	case len(s.subs) >= s.srv.cfg.ChannelLimit:
		s.mu.Unlock()
		return nil, hub.ErrLimitExceeded
	}
	if s.subs == nil {
		s.subs = map[string]*subscription{}
	}
	// The decoder's strings alias the whole inbound message (token
	// included): the kept key gets its own copy.
	ch = strings.Clone(ch)
	s.subs[ch] = sub
	s.mu.Unlock()
	if err := s.awaitRelease(ctx, ch); err != nil {
		s.mu.Lock()
		if s.subs[ch] == sub {
			delete(s.subs, ch)
		}
		sub.removed = true
		s.mu.Unlock()
		return nil, err
	}

	res, err := s.setupSubscription(ctx, ch, sub, p)
	if err != nil {
		s.mu.Lock()
		if s.subs[ch] == sub {
			delete(s.subs, ch)
		}
		sub.removed = true
		s.mu.Unlock()
		h.RemoveSubscriber(ch, sub)
		if opts.Presence {
			_ = h.RemovePresence(ctx, ch, s.id, s.user)
		}
		return nil, err
	}
	return res, nil
}

func (s *Session) setupSubscription(ctx context.Context, ch string, sub *subscription, p subscribeParams) (*protocol.SubscribeResult, error) {
	h := s.srv.cfg.Hub
	opts := sub.opts
	if err := h.AddSubscriberContext(ctx, ch, sub, sub.joinLeave); err != nil {
		return nil, err
	}
	if opts.Presence {
		if err := h.AddPresence(ctx, ch, s.clientInfo(sub.info)); err != nil {
			return nil, err
		}
	}
	if opts.JoinLeave {
		if err := h.PublishJoin(ctx, ch, s.clientInfo(sub.info)); err != nil {
			return nil, err
		}
	}
	res := &protocol.SubscribeResult{Data: nil}
	if p.expireAt > 0 {
		res.Expires, res.Ttl = true, ttlSeconds(p.expireAt, s.srv.clock.Now())
	}
	if !opts.HistoryEnabled() {
		return res, nil
	}
	recoverable := opts.ForceRecovery || p.recoverable
	positioned := recoverable || opts.ForcePositioning || p.positioned
	if !positioned {
		return res, nil
	}
	if p.recover && recoverable {
		limit := s.srv.cfg.HistoryMaxLimit
		hr, err := h.History(ctx, ch, hub.HistoryOptions{Since: &hub.StreamPosition{Offset: p.offset, Epoch: p.epoch}, Limit: limit + 1})
		if err != nil {
			return nil, err
		}
		pubs := hr.Publications
		sameEpoch := hr.Position.Epoch == p.epoch
		recovered := sameEpoch && len(pubs) <= limit &&
			((len(pubs) == 0 && hr.Position.Offset == p.offset) || (len(pubs) > 0 && pubs[0].Offset == p.offset+1))
		if !sameEpoch || len(pubs) > limit {
			// Not recoverable: a partial window would leave a silent gap.
			pubs = nil
		}
		res.Publications = s.protoPubs(pubs)
		res.Recovered, res.WasRecovering = recovered, true
		res.Epoch, res.Offset = hr.Position.Epoch, hr.Position.Offset
	} else {
		hr, err := h.History(ctx, ch, hub.HistoryOptions{Limit: 0})
		if err != nil {
			return nil, err
		}
		res.Epoch, res.Offset = hr.Position.Epoch, hr.Position.Offset
	}
	res.Recoverable, res.Positioned = recoverable, positioned
	s.mu.Lock()
	sub.positioned = true
	sub.epoch, sub.offset = res.Epoch, res.Offset
	sub.buffer = filterBuffer(sub.buffer, res.Offset)
	s.mu.Unlock()
	return res, nil
}

// filterBuffer drops held publications already covered by a position.
func filterBuffer(buf []pending, upto uint64) []pending {
	out := buf[:0]
	for _, p := range buf {
		if p.offset == 0 || p.offset > upto {
			out = append(out, p)
		}
	}
	return out
}

// finishSubscribe queues frames (the subscribe reply or push, and any
// recovered publications) and then the pushes held while the listed
// subscriptions were set up.
func (s *Session) finishSubscribe(frames [][]byte, channels []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, frame := range frames {
		if frame == nil {
			s.disconnectLocked(hub.DisconnectInappropriateProtocol)
			return
		}
		s.enqueueLocked(frame)
	}
	for _, ch := range channels {
		sub := s.subs[ch]
		if sub == nil {
			continue
		}
		buf := sub.buffer
		sub.buffer, sub.buffered = nil, 0
		sub.syncing = false
		// Held publications follow the position in offset order; a
		// duplicate is dropped, a gap ends the subscription.
		for _, p := range buf {
			if sub.removed {
				break
			}
			if sub.advanceLocked(ch, p.offset) {
				s.enqueueLocked(p.frame)
			}
		}
	}
}

// protoPubs converts publications for this session's format. A JSON
// client cannot carry binary payloads: those are left out (and counted)
// rather than failing the whole reply.
func (s *Session) protoPubs(in []*hub.Publication) []*protocol.Publication {
	out := make([]*protocol.Publication, 0, len(in))
	for _, p := range in {
		if s.fmtIdx == FormatJSON && !jsonSafe(p) {
			s.srv.metrics.skippedBinary.Inc()
			continue
		}
		out = append(out, pubToProto(p))
	}
	return out
}

func jsonSafe(p *hub.Publication) bool {
	if !hub.IsJSONText(p.Data) {
		return false
	}
	if i := p.Info; i != nil {
		if (len(i.ConnInfo) > 0 && !hub.IsJSONText(i.ConnInfo)) || (len(i.ChanInfo) > 0 && !hub.IsJSONText(i.ChanInfo)) {
			return false
		}
	}
	return true
}

// dataAccepted tells whether a client's payload (publish, rpc, send data)
// is acceptable for its format: a JSON client's data must be JSON text
// (valid UTF-8 too), so that it can never poison a JSON subscriber or a
// channel's history. Protobuf clients may send binary, as in Centrifugo.
func (s *Session) dataAccepted(data []byte) bool {
	return s.fmtIdx != FormatJSON || hub.IsJSONText(data)
}

var _ hub.UndeliverableSubscriber = (*subscription)(nil)

// Undeliverable implements hub.UndeliverableSubscriber. As Centrifugo
// does, a JSON client that cannot be sent a publication (binary data
// from a Protobuf client or b64data) is disconnected with 3506 rather than
// silently missing it. History and recovery leave such publications out.
func (sub *subscription) Undeliverable(string, uint64) {
	s := sub.s
	s.mu.Lock()
	defer s.mu.Unlock()
	if sub.removed {
		return
	}
	s.disconnectLocked(hub.DisconnectInappropriateProtocol)
}

func (s *Session) unsubscribeCmd(ctx context.Context, req *protocol.UnsubscribeRequest) (*protocol.Reply, error) {
	s.opMu.Lock()
	defer s.opMu.Unlock()
	s.removeSubscription(req.Channel)
	return &protocol.Reply{Unsubscribe: &protocol.UnsubscribeResult{}}, nil
}

func (s *Session) removeSubscription(ch string) bool {
	s.mu.Lock()
	sub := s.subs[ch]
	delete(s.subs, ch)
	if sub != nil {
		sub.removed = true
	}
	s.mu.Unlock()
	if sub == nil {
		return false
	}
	s.releaseSubscription(ch, sub)
	return true
}

func (s *Session) subscribed(ch string) (*subscription, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	sub, ok := s.subs[ch]
	return sub, ok
}

func allowedFor(subscriber, client, anonymous bool, isSubscribed bool, user string) bool {
	if subscriber && isSubscribed {
		return true
	}
	return client && (user != "" || anonymous)
}

func (s *Session) publish(ctx context.Context, req *protocol.PublishRequest) (*protocol.Reply, error) {
	h := s.srv.cfg.Hub
	opts, err := h.ChannelOptions(req.Channel)
	if err != nil {
		return nil, err
	}
	sub, ok := s.subscribed(req.Channel)
	if !allowedFor(opts.AllowPublishForSubscriber, opts.AllowPublishForClient, opts.AllowPublishForAnonymous, ok, s.user) {
		return nil, hub.ErrPermissionDenied
	}
	if err := opts.CheckPublicationData(req.Data); err != nil {
		return nil, err
	}
	if !s.dataAccepted(req.Data) {
		return nil, hub.ErrBadRequest
	}
	var chanInfo []byte
	if sub != nil {
		chanInfo = sub.info
	}
	data := append([]byte(nil), req.Data...)
	pub := &hub.Publication{Data: data, Info: s.clientInfo(chanInfo)}
	if _, err := h.PublishWithOptions(ctx, req.Channel, pub, opts, false); err != nil {
		return nil, err
	}
	return &protocol.Reply{Publish: &protocol.PublishResult{}}, nil
}

// checkPresence tells whether the client may read channel's presence.
func (s *Session) checkPresence(ch string) error {
	opts, err := s.srv.cfg.Hub.ChannelOptions(ch)
	if err != nil {
		return err
	}
	if !opts.Presence {
		return hub.ErrNotAvailable
	}
	_, ok := s.subscribed(ch)
	if !allowedFor(opts.AllowPresenceForSubscriber, opts.AllowPresenceForClient, opts.AllowPresenceForAnonymous, ok, s.user) {
		return hub.ErrPermissionDenied
	}
	return nil
}

func (s *Session) presence(ctx context.Context, req *protocol.PresenceRequest) (*protocol.Reply, error) {
	h := s.srv.cfg.Hub
	if err := s.checkPresence(req.Channel); err != nil {
		return nil, err
	}
	p, err := h.Presence(ctx, req.Channel)
	if err != nil {
		return nil, err
	}
	out := make(map[string]*protocol.ClientInfo, len(p))
	for k, v := range p {
		out[k] = infoToProto(v)
	}
	return &protocol.Reply{Presence: &protocol.PresenceResult{Presence: out}}, nil
}

func (s *Session) presenceStats(ctx context.Context, req *protocol.PresenceStatsRequest) (*protocol.Reply, error) {
	h := s.srv.cfg.Hub
	if err := s.checkPresence(req.Channel); err != nil {
		return nil, err
	}
	st, err := h.PresenceStats(ctx, req.Channel)
	if err != nil {
		return nil, err
	}
	return &protocol.Reply{PresenceStats: &protocol.PresenceStatsResult{NumClients: uint32(st.NumClients), NumUsers: uint32(st.NumUsers)}}, nil
}

func (s *Session) history(ctx context.Context, req *protocol.HistoryRequest) (*protocol.Reply, error) {
	h := s.srv.cfg.Hub
	opts, err := h.ChannelOptions(req.Channel)
	if err != nil {
		return nil, err
	}
	if !opts.HistoryEnabled() {
		return nil, hub.ErrNotAvailable
	}
	_, ok := s.subscribed(req.Channel)
	if !allowedFor(opts.AllowHistoryForSubscriber, opts.AllowHistoryForClient, opts.AllowHistoryForAnonymous, ok, s.user) {
		return nil, hub.ErrPermissionDenied
	}
	limit := int(req.Limit)
	if limit < 0 || limit > s.srv.cfg.HistoryMaxLimit {
		limit = s.srv.cfg.HistoryMaxLimit
	}
	ho := hub.HistoryOptions{Limit: limit, Reverse: req.Reverse}
	if req.Since != nil {
		ho.Since = &hub.StreamPosition{Offset: req.Since.Offset, Epoch: req.Since.Epoch}
	}
	hr, err := h.History(ctx, req.Channel, ho)
	if err != nil {
		return nil, err
	}
	if req.Since != nil && req.Since.Epoch != "" && req.Since.Epoch != hr.Position.Epoch {
		return nil, hub.ErrUnrecoverablePosition
	}
	return &protocol.Reply{History: &protocol.HistoryResult{Publications: s.protoPubs(hr.Publications), Epoch: hr.Position.Epoch, Offset: hr.Position.Offset}}, nil
}

func (s *Session) rpc(cmd *protocol.Command) error {
	handler := s.srv.cfg.RPC
	if len(cmd.Rpc.Data) > 0 && !s.dataAccepted(cmd.Rpc.Data) {
		return hub.ErrBadRequest
	}
	if handler == nil {
		return hub.ErrMethodNotFound
	}
	s.mu.Lock()
	if s.rpcs >= s.srv.cfg.MaxRPCInFlight {
		s.mu.Unlock()
		return hub.ErrTooManyRequests
	}
	if s.state == stateClosed {
		s.mu.Unlock()
		return hub.ErrNotAvailable
	}
	if s.rpcCtx == nil {
		s.rpcCtx, s.rpcCancel = context.WithCancel(context.Background())
	}
	ctx := s.rpcCtx
	s.rpcs++
	s.wg.Add(1)
	s.mu.Unlock()
	req := hub.RPCRequest{Client: s.id, User: s.user, Method: cmd.Rpc.Method, Data: append([]byte(nil), cmd.Rpc.Data...)}
	id := cmd.Id
	go func() {
		defer s.wg.Done()
		start := time.Now()
		data, err := handler.HandleRPC(ctx, req)
		s.srv.metrics.commandTime.WithLabelValues("rpc").Observe(time.Since(start).Seconds())
		s.mu.Lock()
		s.rpcs--
		s.mu.Unlock()
		if err != nil {
			s.replyError(id, "rpc", err)
			return
		}
		if id != 0 {
			s.enqueueReply(&protocol.Reply{Id: id, Rpc: &protocol.RPCResult{Data: data}})
		}
	}()
	return nil
}

func (s *Session) refresh(req *protocol.RefreshRequest) (*protocol.Reply, error) {
	c, err := s.srv.cfg.Tokens.VerifyConnect(req.Token)
	if err != nil {
		if he, ok := errTokenToHub(err); ok {
			return nil, he
		}
		return nil, disconnect(hub.DisconnectInvalidToken)
	}
	if c.User != s.user {
		return nil, disconnect(hub.DisconnectInvalidToken)
	}
	s.mu.Lock()
	s.expireAt = c.ExpireAt
	if c.Info != nil {
		s.connInfo = c.Info
	}
	s.mu.Unlock()
	res := &protocol.RefreshResult{Client: s.id, Version: s.srv.cfg.Version}
	if c.ExpireAt > 0 {
		res.Expires, res.Ttl = true, ttlSeconds(c.ExpireAt, s.srv.clock.Now())
	}
	return &protocol.Reply{Refresh: res}, nil
}

func (s *Session) subRefresh(req *protocol.SubRefreshRequest) (*protocol.Reply, error) {
	c, err := s.srv.cfg.Tokens.VerifySubscribe(req.Token)
	if err != nil {
		if he, ok := errTokenToHub(err); ok {
			return nil, he
		}
		return nil, hub.ErrPermissionDenied
	}
	if c.Channel != req.Channel || c.User != s.user {
		return nil, hub.ErrPermissionDenied
	}
	s.mu.Lock()
	sub := s.subs[req.Channel]
	if sub != nil {
		sub.expireAt = c.ExpireAt
	}
	s.mu.Unlock()
	if sub == nil {
		return nil, hub.ErrBadRequest
	}
	res := &protocol.SubRefreshResult{}
	if c.ExpireAt > 0 {
		res.Expires, res.Ttl = true, ttlSeconds(c.ExpireAt, s.srv.clock.Now())
	}
	return &protocol.Reply{SubRefresh: res}, nil
}
