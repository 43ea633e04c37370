//go:build !js

package relay_test

import (
	"context"
	"fmt"
	"time"

	"github.com/switchboard-rt/switchboard/client/relay"
)

// A player joins a room, sends a move and prints what the others send.
func Example() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := relay.Dial(ctx, "game.example.com:5000", relay.Options{Token: "<hub connection JWT>"})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer c.Close()
	room, err := c.Join(ctx, "table-1", relay.JoinOptions{Create: true, MaxMembers: 2})
	if err != nil {
		fmt.Println(err)
		return
	}
	_ = room.Send(1, []byte(`{"paddle":0.5}`))      // reliable, in order
	_ = room.SendUnreliable(2, []byte(`{"x":0.1}`)) // may be lost, never waits
	for ev := range c.Events() {
		fmt.Println(ev.Room, ev.Sender, ev.OpCode, string(ev.Payload))
	}
}
