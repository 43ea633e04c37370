// Command wasmsmoke exercises package client under GOOS=js GOARCH=wasm (run
// by TestWasmUnderNode with Node's WebSocket): dial and authenticate, play,
// survive a dropped connection by reconnecting and re-authenticating, close.
// The test drives it through stdout lines.
package main

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/switchboard-rt/switchboard/client"
)

func main() {
	if err := run(); err != nil {
		fmt.Println("error:", err)
		os.Exit(1)
	}
}

func run() error {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	reauth := make(chan struct{}, 8)
	authCount := 0
	c, err := client.Dial(ctx, client.Config{
		URL:               os.Getenv("SMOKE_URL"),
		PrivateKey:        os.Getenv("SMOKE_KEY"),
		KeepAliveInterval: 20 * time.Millisecond,
		Backoff:           client.Backoff{Initial: 10 * time.Millisecond, Max: 50 * time.Millisecond},
		OnStatusChange: func(ch client.StatusChange) {
			if ch.To == client.Authenticated {
				authCount++ // only the Conn's goroutine calls this
				if authCount > 1 {
					reauth <- struct{}{}
				}
			}
		},
	})
	if err != nil {
		return err
	}
	defer c.Close()
	out, err := c.Play(ctx, "caller")
	if err != nil {
		return err
	}
	fmt.Println("first", out)
	select {
	case <-reauth:
	case <-ctx.Done():
		return fmt.Errorf("no re-authentication: %w", ctx.Err())
	}
	if err := c.WaitReady(ctx); err != nil {
		return err
	}
	out, err = c.Play(ctx, "caller")
	if err != nil {
		return err
	}
	fmt.Println("second", out)
	c.Close()
	fmt.Println("closed", c.Status())
	return nil
}
