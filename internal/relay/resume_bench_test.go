package relay

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/switchboard-rt/switchboard/internal/broker/redis"
	"github.com/switchboard-rt/switchboard/internal/hub"
	"github.com/switchboard-rt/switchboard/internal/relay/relaytest"
	"github.com/switchboard-rt/switchboard/internal/testenv"
	wire "github.com/switchboard-rt/switchboard/protocol/relay"
)

// What a resume costs, from the new connection's dial to its JOINED, when
// the session was parked on the same process and when it was parked on
// another one (the claim and the handover through Redis added). Two relays
// on the Redis of SWITCHBOARD_TEST_REDIS_URL; a second member keeps the
// room on the first.
func BenchmarkResume(b *testing.B) {
	prefix := fmt.Sprintf("sbbench.resume.%d", time.Now().UnixNano())
	server := func() *testServer {
		br, err := redis.New(redis.Config{Address: testenv.RedisURL(b), Prefix: prefix})
		require.NoError(b, err)
		return startTestServer(b, hub.Config{Broker: br, Presence: br}, true, nil)
	}
	s1, s2 := server(), server()
	for _, c := range []struct {
		name  string
		cross bool
	}{{"same process", false}, {"other process", true}} {
		b.Run(c.name, func(b *testing.B) {
			keeper := relaytest.DialNative(b, s1.Addr().String(), &wire.Hello{})
			keeper.Join("bench")
			defer keeper.Close()
			cur := relaytest.DialNative(b, s1.Addr().String(), &wire.Hello{})
			cur.Join("bench")
			at := s1
			b.ResetTimer()
			for range b.N {
				b.StopTimer()
				token, before := cur.Welcome.ResumeToken, parkedCount(at)
				require.NoError(b, cur.QC.CloseWithError(1, "network lost"))
				require.Eventually(b, func() bool { return parkedCount(at) == before+1 }, testenv.Wait, time.Millisecond)
				if c.cross { // every resume crosses: s1, s2, s1, …
					at = map[*testServer]*testServer{s1: s2, s2: s1}[at]
				}
				b.StartTimer()
				next := relaytest.DialNative(b, at.Addr().String(), &wire.Hello{ResumeToken: token})
				nextSkippingPresence[*wire.Joined](b, next, "JOINED")
				b.StopTimer()
				require.True(b, next.Welcome.Resumed)
				cur = next
				b.StartTimer()
			}
			b.StopTimer()
			cur.Close()
		})
	}
}
