package hub

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"time"
)

// HandleControl implements ControlHandler: it applies a message from
// another node. Malformed messages are logged and dropped; the node's own
// broadcasts are ignored (the sender has applied them already), except
// that the echo of its own announcement is recorded (RegistryComplete).
func (h *Hub) HandleControl(data []byte) {
	c := h.cluster
	m, err := decodeControl(data)
	if err != nil {
		c.received.WithLabelValues("unknown", "malformed").Inc()
		h.log.Warn("control message dropped", "error", err, "size", len(data))
		return
	}
	if m.Node == c.cfg.NodeID {
		if m.Type == ctlAnnounce {
			c.echo() // the plane delivers to this node (RegistryComplete)
		}
		return
	}
	c.received.WithLabelValues(m.Type, "received").Inc()
	switch m.Type {
	case ctlAnnounce:
		if c.heard(m.Info) {
			// Answer a newcomer at once so that it lists this node before
			// the next announcement.
			ctx, cancel := context.WithTimeout(context.Background(), c.cfg.AnnounceInterval)
			defer cancel()
			if err := c.send(ctx, m.Node, &controlMessage{Type: ctlAnnounce, Info: c.self()}); err != nil {
				h.log.Warn("announcement to a new node failed", "node", m.Node, "error", err)
			}
		}
	case ctlLeave:
		c.forget(m.Node)
	case ctlSubscribe, ctlUnsubscribe, ctlDisconnect, ctlRefresh:
		c.command(m)
	case ctlSurvey:
		c.answer(m)
	case ctlReply:
		c.reply(m)
	}
}

// command queues a command of another node for the local connections it
// selects. One worker applies the queue in arrival order, so commands of
// one sender keep their order (unsubscribe then subscribe stays so); each
// is bounded by the sender's deadline. A full queue drops the command.
func (c *cluster) command(m *controlMessage) {
	if len(c.h.UserSessions(m.Cmd.User, m.Cmd.Client)) == 0 {
		return
	}
	timeout := c.cfg.CommandTimeout
	if t := time.Duration(m.Cmd.Timeout) * time.Millisecond; t > 0 && t < timeout {
		timeout = t
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.stopped {
		return
	}
	select {
	case c.queue <- queuedCommand{msg: m, timeout: timeout}:
	default:
		c.received.WithLabelValues(m.Type, "dropped").Inc()
		c.h.log.Warn("command from another node dropped: queue full", "command", m.Type, "from", m.Node,
			"user", m.Cmd.User, "queue", cap(c.queue))
	}
}

type queuedCommand struct {
	msg     *controlMessage
	timeout time.Duration
}

// work applies queued commands until stop closes the queue.
func (c *cluster) work() {
	defer close(c.done)
	for q := range c.queue {
		ctx, cancel := context.WithTimeout(context.Background(), q.timeout)
		if err := c.h.applyCommand(ctx, q.msg.Type, q.msg.Cmd); err != nil {
			c.h.log.Warn("command from another node failed here", "command", q.msg.Type, "from", q.msg.Node,
				"user", q.msg.Cmd.User, "error", err)
		}
		cancel()
	}
}

// applyCommand acts on the local connections cmd selects: subscriptions
// on its clients, disconnect and refresh on every session.
func (h *Hub) applyCommand(ctx context.Context, typ string, cmd *userCommand) error {
	switch typ {
	case ctlDisconnect:
		d := Disconnect{Code: cmd.Code, Reason: cmd.Reason}
		for _, s := range h.UserSessions(cmd.User, cmd.Client) {
			if !contains(cmd.Whitelist, s.ID()) {
				s.Disconnect(d)
			}
		}
		return nil
	case ctlRefresh:
		for _, s := range h.UserSessions(cmd.User, cmd.Client) {
			s.Refresh(cmd.ExpireAt, cmd.Expired, cmd.Info)
		}
		return nil
	}
	clients := h.UserClients(cmd.User, cmd.Client)
	switch typ {
	case ctlSubscribe:
		opts := ServerSubscribe{ChanInfo: cmd.ChanInfo, RecoverSince: cmd.RecoverSince}
		for _, cl := range clients {
			if err := cl.ServerSubscribe(ctx, cmd.Channel, opts); err != nil && !errors.Is(err, ErrAlreadySubscribed) {
				return err
			}
		}
	case ctlUnsubscribe:
		for _, cl := range clients {
			cl.ServerUnsubscribe(ctx, cmd.Channel, 0, "")
		}
	}
	return nil
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// everywhere applies cmd here (its error returned, as Centrifugo does) and
// then sends it to every other node, carrying ctx's remaining deadline.
func (h *Hub) everywhere(ctx context.Context, typ string, cmd *userCommand) error {
	if err := h.applyCommand(ctx, typ, cmd); err != nil {
		return err
	}
	if dl, ok := ctx.Deadline(); ok {
		cmd.Timeout = max(time.Until(dl).Milliseconds(), 1)
	}
	if err := h.cluster.broadcast(ctx, &controlMessage{Type: typ, Cmd: cmd}); err != nil {
		return fmt.Errorf("hub: %s on other nodes: %w", typ, err)
	}
	return nil
}

// SubscribeUser subscribes the connections of user (only client's when
// client is set) to channel, on every node. Connections already
// subscribed are left as they are. Errors are this node's; other nodes
// apply the command at most once and log their failures.
func (h *Hub) SubscribeUser(ctx context.Context, user, client, channel string, opts ServerSubscribe) error {
	return h.everywhere(ctx, ctlSubscribe, &userCommand{User: user, Client: client, Channel: channel,
		ChanInfo: opts.ChanInfo, RecoverSince: opts.RecoverSince})
}

// UnsubscribeUser removes channel from the connections of user (client's
// when set) on every node.
func (h *Hub) UnsubscribeUser(ctx context.Context, user, client, channel string) error {
	return h.everywhere(ctx, ctlUnsubscribe, &userCommand{User: user, Client: client, Channel: channel})
}

// DisconnectUser closes the connections of user (client's when set),
// clients and other sessions, on every node with d, except the ids in
// whitelist. d.Code must be in MinDisconnectCode-MaxDisconnectCode.
func (h *Hub) DisconnectUser(ctx context.Context, user, client string, d Disconnect, whitelist []string) error {
	if d.Code < MinDisconnectCode || d.Code > MaxDisconnectCode {
		return fmt.Errorf("%w: disconnect code must be in %d-%d", ErrBadRequest, MinDisconnectCode, MaxDisconnectCode)
	}
	return h.everywhere(ctx, ctlDisconnect, &userCommand{User: user, Client: client, Code: d.Code, Reason: d.Reason,
		Whitelist: whitelist})
}

// RefreshUser updates the expiry (or expires) the connections of user
// (client's when set), clients and other sessions, on every node; see
// Session.Refresh.
func (h *Hub) RefreshUser(ctx context.Context, user, client string, expireAt int64, expired bool, info []byte) error {
	return h.everywhere(ctx, ctlRefresh, &userCommand{User: user, Client: client, ExpireAt: expireAt, Expired: expired, Info: info})
}

type surveyReply struct {
	node string
	data json.RawMessage
}

type pendingSurvey struct {
	replies chan surveyReply // buffered for every expected node
}

// answer replies to another node's survey.
func (c *cluster) answer(m *controlMessage) {
	var data any
	switch m.Survey.Op {
	case surveyChannels:
		data = c.h.Channels()
	default:
		c.h.log.Warn("survey of an unknown operation ignored", "op", m.Survey.Op, "from", m.Node)
		return
	}
	b, err := json.Marshal(data)
	if err != nil {
		c.h.log.Error("survey answer cannot be encoded", "op", m.Survey.Op, "error", err)
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), c.cfg.SurveyTimeout)
	defer cancel()
	if err := c.send(ctx, m.Node, &controlMessage{Type: ctlReply, Survey: &surveyMessage{ID: m.Survey.ID, Data: b}}); err != nil {
		c.h.log.Warn("survey answer failed", "op", m.Survey.Op, "to", m.Node, "error", err)
	}
}

func (c *cluster) reply(m *controlMessage) {
	c.mu.Lock()
	p := c.surveys[m.Survey.ID]
	c.mu.Unlock()
	if p == nil {
		return // late: the survey ended
	}
	select {
	case p.replies <- surveyReply{node: m.Node, data: m.Survey.Data}:
	default: // more answers than expected nodes: a node that joined meanwhile
	}
}

// survey asks every other live node for op and returns their answers by
// node id. It ends when all have answered, or at ctx's end or after
// SurveyTimeout, whichever comes first; missing answers are logged and
// left out.
func (c *cluster) survey(ctx context.Context, op string) map[string]json.RawMessage {
	nodes := c.others()
	out := map[string]json.RawMessage{}
	if len(nodes) == 0 || c.cfg.Control == nil {
		return out
	}
	ctx, cancel := context.WithTimeout(ctx, c.cfg.SurveyTimeout)
	defer cancel()
	id := c.surveySeq.Add(1)
	p := &pendingSurvey{replies: make(chan surveyReply, 2*len(nodes)+1)}
	c.mu.Lock()
	c.surveys[id] = p
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		delete(c.surveys, id)
		c.mu.Unlock()
	}()
	if err := c.broadcast(ctx, &controlMessage{Type: ctlSurvey, Survey: &surveyMessage{ID: id, Op: op}}); err != nil {
		c.h.log.Warn("survey not sent: answering with this node only", "op", op, "error", err)
		return out
	}
	waiting := make(map[string]bool, len(nodes))
	for _, n := range nodes {
		waiting[n] = true
	}
	for len(waiting) > 0 {
		select {
		case r := <-p.replies:
			out[r.node] = r.data // a node that joined meanwhile counts too
			delete(waiting, r.node)
		case <-ctx.Done():
			missing := make([]string, 0, len(waiting))
			for n := range waiting {
				missing = append(missing, n)
			}
			sort.Strings(missing)
			c.incomplete.Inc()
			c.h.log.Warn("survey incomplete: nodes did not answer in time", "op", op, "missing", missing,
				"answered", len(out), "error", ctx.Err())
			return out
		}
	}
	return out
}

// ClusterChannels returns the channels with subscribers on any live node
// and their subscriber counts summed over the nodes. Nodes that do not
// answer before ctx ends are left out (and logged).
func (h *Hub) ClusterChannels(ctx context.Context) map[string]int {
	all := h.Channels()
	for node, raw := range h.cluster.survey(ctx, surveyChannels) {
		var counts map[string]int
		if err := json.Unmarshal(raw, &counts); err != nil {
			h.log.Warn("malformed channels answer ignored", "node", node, "error", err)
			continue
		}
		for ch, n := range counts {
			if n > 0 {
				all[ch] += n
			}
		}
	}
	return all
}
