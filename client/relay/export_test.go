//go:build !js

package relay

// DropConnection closes c's current connection as a lost one would end
// (a non-zero code: the relay parks the session) without ending c.
func DropConnection(c *Client) {
	if s, err := c.current(); err == nil {
		s.l.close(1, "dropped by the test")
	}
}

// MuteHeartbeats stops c's current connection from answering the relay's
// heartbeats, so the relay closes it (GOAWAY no pong) and parks it.
func MuteHeartbeats(c *Client) {
	if s, err := c.current(); err == nil {
		s.muteHeartbeats.Store(true)
	}
}
