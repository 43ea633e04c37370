package hub

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// ControlPlane carries messages between the hubs of the nodes (processes)
// that share one engine: node announcements, leaves, commands addressed to
// a user's connections wherever they are, and surveys. The hub encodes and
// decodes the messages; a plane moves opaque bytes. The memory engine's
// plane is an in-process loopback (memory.ControlNetwork); the Redis
// engine's uses PUB/SUB channels. package controltest checks this contract.
//
// Contract:
//   - Delivery is at most once and unacknowledged: a node that is down,
//     reconnecting or slow may miss messages. The hub copes: announcements
//     repeat, a silent node drops out after the TTL, a survey ends at its
//     deadline with the answers it has, a command missed by a node is lost
//     (as in Centrifugo).
//   - Messages from one sender to one receiver arrive in the order they
//     were sent, Broadcast and Send alike (a leave is never overtaken by an
//     earlier announcement).
//   - Bytes arrive unchanged, whatever their size (a survey answer grows
//     with the node's channel count).
//   - A nil error from Broadcast or Send means the message was handed to
//     the transport, not that anyone received it. An error means it was
//     not sent: ctx ended, or the transport is unavailable. Send to a node
//     that does not exist is not an error; nobody receives the message.
//   - HandleControl may be called concurrently, and from inside another
//     node's Broadcast or Send (an in-process plane delivers synchronously).
//     It returns promptly, but it may Send an answer (bounded by a
//     timeout), so a plane must not call it on a goroutine its sends wait
//     for. The hub does not keep data after it returns.
type ControlPlane interface {
	// Run starts delivering to h every message broadcast by any node,
	// this one included, and every message sent to node. The hub calls
	// it once, with its node id, before sending anything.
	Run(node string, h ControlHandler) error
	// Broadcast sends data to every node, this one included.
	Broadcast(ctx context.Context, data []byte) error
	// Send sends data to one node.
	Send(ctx context.Context, node string, data []byte) error
}

// ControlHandler receives control messages. The Hub implements it.
type ControlHandler interface {
	HandleControl(data []byte)
}

// NodeInfo describes a node, as its announcements carry it.
type NodeInfo struct {
	ID          string        `json:"id"`
	Name        string        `json:"name"`
	Version     string        `json:"version,omitempty"`
	NumClients  int           `json:"clients"`
	NumUsers    int           `json:"users"`
	NumChannels int           `json:"channels"`
	NumSubs     int           `json:"subs"`
	Uptime      time.Duration `json:"uptime"`
}

// Control message types.
const (
	ctlAnnounce    = "node"
	ctlLeave       = "leave"
	ctlSubscribe   = "subscribe"
	ctlUnsubscribe = "unsubscribe"
	ctlDisconnect  = "disconnect"
	ctlRefresh     = "refresh"
	ctlSurvey      = "survey"
	ctlReply       = "reply"
)

// Survey operations.
const surveyChannels = "channels"

// maxNodeID bounds node ids (and names) in control messages.
const maxNodeID = 256

// controlMessage is the wire form of every control message (JSON).
type controlMessage struct {
	Type   string         `json:"t"`
	Node   string         `json:"n"` // the sender's id
	Info   *NodeInfo      `json:"i,omitempty"`
	Cmd    *userCommand   `json:"c,omitempty"`
	Survey *surveyMessage `json:"s,omitempty"`
}

// userCommand acts on a user's connections (one client's when Client is
// set). Timeout is the sender's remaining deadline in milliseconds.
type userCommand struct {
	User         string          `json:"u"`
	Client       string          `json:"cl,omitempty"`
	Channel      string          `json:"ch,omitempty"`
	ChanInfo     []byte          `json:"ci,omitempty"`
	RecoverSince *StreamPosition `json:"rs,omitempty"`
	Code         uint32          `json:"code,omitempty"`
	Reason       string          `json:"reason,omitempty"`
	Whitelist    []string        `json:"wl,omitempty"`
	ExpireAt     int64           `json:"exp,omitempty"`
	Expired      bool            `json:"expired,omitempty"`
	Info         []byte          `json:"info,omitempty"`
	Timeout      int64           `json:"to,omitempty"`
}

// surveyMessage is a survey request (Op set) or a node's answer to one.
type surveyMessage struct {
	ID   uint64          `json:"id"`
	Op   string          `json:"op,omitempty"`
	Data json.RawMessage `json:"d,omitempty"`
}

func encodeControl(m *controlMessage) ([]byte, error) {
	b, err := json.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("hub: encode control message: %w", err)
	}
	return b, nil
}

// decodeControl parses and validates a control message.
func decodeControl(data []byte) (*controlMessage, error) {
	var m controlMessage
	if err := json.Unmarshal(data, &m); err != nil {
		return nil, fmt.Errorf("hub: control message: %w", err)
	}
	if m.Node == "" || len(m.Node) > maxNodeID {
		return nil, errors.New("hub: control message: sender id missing or too long")
	}
	switch m.Type {
	case ctlAnnounce:
		if m.Info == nil || m.Info.ID != m.Node || len(m.Info.Name) > maxNodeID {
			return nil, errors.New("hub: control message: announcement without a valid node")
		}
		if m.Info.NumClients < 0 || m.Info.NumUsers < 0 || m.Info.NumChannels < 0 || m.Info.NumSubs < 0 || m.Info.Uptime < 0 {
			return nil, errors.New("hub: control message: negative node figures")
		}
	case ctlLeave:
	case ctlSubscribe, ctlUnsubscribe, ctlDisconnect, ctlRefresh:
		c := m.Cmd
		if c == nil || c.User == "" {
			return nil, fmt.Errorf("hub: control message: %s without a user", m.Type)
		}
		if (m.Type == ctlSubscribe || m.Type == ctlUnsubscribe) && c.Channel == "" {
			return nil, fmt.Errorf("hub: control message: %s without a channel", m.Type)
		}
		if m.Type == ctlDisconnect && (c.Code < MinDisconnectCode || c.Code > MaxDisconnectCode) {
			return nil, fmt.Errorf("hub: control message: disconnect code %d outside %d-%d", c.Code, MinDisconnectCode, MaxDisconnectCode)
		}
		if c.Timeout < 0 {
			return nil, errors.New("hub: control message: negative timeout")
		}
	case ctlSurvey:
		if m.Survey == nil || m.Survey.ID == 0 || m.Survey.Op == "" {
			return nil, errors.New("hub: control message: survey without id or operation")
		}
	case ctlReply:
		if m.Survey == nil || m.Survey.ID == 0 {
			return nil, errors.New("hub: control message: survey reply without id")
		}
	default:
		return nil, fmt.Errorf("hub: control message: unknown type %q", m.Type)
	}
	return &m, nil
}
