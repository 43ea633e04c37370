//go:build !js

package relay

import (
	"testing"

	"github.com/stretchr/testify/require"

	wire "github.com/switchboard-rt/switchboard/protocol/relay"
)

// News that repeats a member of the JOINED list (two joins at once), or
// a leave of a member not listed, leave the list right.
func TestApplyPresenceIdempotent(t *testing.T) {
	r := &Room{members: []wire.Member{{NodeID: 1}, {NodeID: 2}}}
	r.applyPresence(&wire.Presence{Joins: []wire.Member{{NodeID: 2, Metadata: []byte("m")}}})
	require.Equal(t, []wire.Member{{NodeID: 1}, {NodeID: 2, Metadata: []byte("m")}}, r.members)
	r.applyPresence(&wire.Presence{Leaves: []wire.NodeID{9}, Joins: []wire.Member{{NodeID: 3}}})
	require.Equal(t, []wire.NodeID{1, 2, 3}, []wire.NodeID{r.members[0].NodeID, r.members[1].NodeID, r.members[2].NodeID})
	r.applyPresence(&wire.Presence{Leaves: []wire.NodeID{2, 3}})
	require.Equal(t, []wire.Member{{NodeID: 1}}, r.members)
}
