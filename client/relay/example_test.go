//go:build !js

package relay_test

import (
	"context"
	"encoding/hex"
	"fmt"
	"log"
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

// Dial a relay that runs with its development certificate (or one from
// `switchboard relay-cert`), pinned by the SHA-256 the server logs.
func ExampleDial() {
	pin, err := hex.DecodeString("<64 hex digits from the server's log>")
	if err != nil || len(pin) != 32 {
		log.Fatal("bad pin")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := relay.Dial(ctx, "127.0.0.1:5000", relay.Options{CertHashes: [][32]byte{[32]byte(pin)}, Name: "bot-1"})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	fmt.Println("node", c.NodeID(), "limits", c.Limits().EventRate, "events/s")
}

// Join creates the room when asked; Members lists who is in it.
func ExampleClient_Join() {
	var c *relay.Client // from Dial
	ctx := context.Background()
	room, err := c.Join(ctx, "lobby", relay.JoinOptions{Create: true, MaxMembers: 8, Metadata: []byte(`{"name":"ann"}`)})
	if err != nil {
		log.Fatal(err) // *relay.RequestError: room full, not found…
	}
	for _, m := range room.Members() {
		fmt.Println(m.NodeID, string(m.Metadata))
	}
	defer room.Leave(ctx)
}

// Reliable events arrive in order; targets restrict them to some members.
func ExampleRoom_Send() {
	var room *relay.Room // from Join
	if err := room.Send(3, []byte("score 1:0")); err != nil {
		log.Print(err) // relay.ErrReconnecting between connections
	}
	_ = room.Send(4, []byte("only for you"), room.Members()[0].NodeID)
}

// Unreliable events go in datagrams: positions at a fixed rate, where a
// lost one is replaced by the next.
func ExampleRoom_SendUnreliable() {
	var room *relay.Room // from Join
	t := time.NewTicker(time.Second / 30)
	defer t.Stop()
	for i := 0; i < 90; i++ {
		<-t.C
		_ = room.SendUnreliable(1, []byte(fmt.Sprintf(`{"x":%d}`, i)))
	}
}

// Events is one channel for every room, closed when the client ends.
func ExampleClient_Events() {
	var c *relay.Client // from Dial
	for ev := range c.Events() {
		if ev.Unreliable {
			continue // positions
		}
		fmt.Printf("%s: %d sent op %d (%d bytes)\n", ev.Room, ev.Sender, ev.OpCode, len(ev.Payload))
	}
	fmt.Println("ended:", c.Err())
}

// Presence tells who joins and leaves the rooms joined.
func ExampleClient_Presence() {
	var c *relay.Client // from Dial
	for p := range c.Presence() {
		for _, m := range p.Joins {
			fmt.Println(p.Room, "joined:", m.NodeID)
		}
		for _, n := range p.Leaves {
			fmt.Println(p.Room, "left:", n)
		}
	}
}

// With Reconnect, a lost connection is redialled with backoff: within the
// relay's grace window the session is resumed (the others see nothing),
// after it the rooms are rejoined. OnState reports each step.
func ExampleOptions_reconnect() {
	ctx := context.Background()
	c, err := relay.Dial(ctx, "game.example.com:5000", relay.Options{
		Token:      "<hub connection JWT>",
		Reconnect:  true,
		MinBackoff: 200 * time.Millisecond,
		MaxBackoff: 5 * time.Second,
		OnState: func(sc relay.StateChange) {
			switch sc.State {
			case relay.StateReconnecting:
				log.Printf("connection lost (%v); attempt %d in %s", sc.Err, sc.Attempt, sc.Delay)
			case relay.StateResumed:
				log.Print("back, same session")
			case relay.StateRejoined:
				log.Printf("new session, rooms rejoined; lost: %v", sc.Lost)
			case relay.StateClosed:
				log.Printf("closed: %v", sc.Err)
			}
		},
	})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	room, _ := c.Join(ctx, "table-1", relay.JoinOptions{Create: true})
	_ = room.Send(1, []byte("hello")) // the same Room works after a reconnection
}
