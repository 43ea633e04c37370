package client_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"time"

	"github.com/switchboard-rt/switchboard/client"
	"github.com/switchboard-rt/switchboard/protocol/circles"
)

func ExampleParsePrivateKey() {
	k, err := client.ParsePrivateKey("0x0000000000000000000000000000000000000000000000000000000000000001")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(k.PublicKeyCompressed())
	// Output: 0279be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798
}

func ExampleDial() {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	c, err := client.Dial(ctx, client.Config{
		URL:        "ws://127.0.0.1:8080/02a1b2c3d4e5f6789abcdef0123456789abcdef0123456789abcdef0123456789ab",
		PrivateKey: "4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318",
		OnStatusChange: func(ch client.StatusChange) {
			log.Printf("%s: %s -> %s (%v)", ch.URL, ch.From, ch.To, ch.Err)
		},
	})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()

	out, err := c.Play(ctx, "x = 40\nx + 2")
	var rpcErr *circles.Error
	switch {
	case errors.As(err, &rpcErr) && rpcErr.Code == circles.CodeExecution:
		log.Printf("script failed: %s", rpcErr.DataString())
	case errors.Is(err, client.ErrConnectionLost), errors.Is(err, client.ErrNotConnected):
		// The Conn reconnects by itself; wait and retry.
		if werr := c.WaitReady(ctx); werr != nil {
			log.Fatal(werr)
		}
		if out, err = c.Play(ctx, "x = 40\nx + 2"); err != nil {
			log.Fatal(err)
		}
	case err != nil:
		log.Fatal(err)
	}
	fmt.Print(out)
}

func ExampleNewManagerBuilder() {
	m, err := client.NewManagerBuilder().
		PrivateKey("4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318").
		AddServer("ws://10.0.0.1:8080/02a1b2c3d4e5f6789abcdef0123456789abcdef0123456789abcdef0123456789ab").
		AddServer("ws://10.0.0.2:8080/03b2c3d4e5f6789abcdef0123456789abcdef0123456789abcdef0123456789abc1").
		Config(client.Config{Backoff: client.Backoff{Initial: time.Second, Max: time.Minute}}).
		Build()
	if err != nil {
		log.Fatal(err) // invalid key or URL
	}
	defer m.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	failures, err := m.Connect(ctx)
	if err != nil {
		log.Fatal(err) // every server failed
	}
	for url, ferr := range failures {
		log.Printf("%s unavailable for now (retrying in the background): %v", url, ferr)
	}
	for _, url := range m.Ready() {
		out, err := m.Play(ctx, url, `print("hi")`)
		fmt.Println(url, out, err)
	}
}
