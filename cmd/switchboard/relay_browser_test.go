package main

import (
	"context"
	"crypto/sha256"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/require"

	clientrelay "github.com/switchboard-rt/switchboard/client/relay"
	"github.com/switchboard-rt/switchboard/internal/testenv"
	wire "github.com/switchboard-rt/switchboard/protocol/relay"
)

// The demo page (/relay/demo) in headless Chromium, QUIC on (no
// --disable-quic), the relay's development certificate passed by hash
// (serverCertificateHashes): it joins a room where a Go native client is,
// and events flow both ways, reliable and unreliable.
func TestRelayDemoPageInChromium(t *testing.T) {
	ctx := newBrowser(t, 3*time.Minute)
	cfg := testConfig()
	cfg.Relay.Enabled = true
	cfg.Relay.Address = "127.0.0.1:0"
	m := startServer(t, cfg)

	cert := m.relay.Certificate()
	pin := sha256.Sum256(cert.Certificate[0])
	dctx, cancel := context.WithTimeout(context.Background(), testenv.Wait)
	defer cancel()
	gc, err := clientrelay.Dial(dctx, m.RelayAddr(), clientrelay.Options{NodeID: 77, Name: "go", CertHashes: [][32]byte{pin}})
	require.NoError(t, err)
	t.Cleanup(func() { _ = gc.Close() })
	room, err := gc.Join(dctx, "demo", clientrelay.JoinOptions{Create: true, Metadata: []byte("go bot")})
	require.NoError(t, err)

	require.NoError(t, chromedp.Do(ctx,
		chromedp.Navigate(m.URL()+"/relay/demo"),
		chromedp.WaitVisible("#join"),
		fill("#room", "demo"),
		fill("#name", "chromium"),
		chromedp.Click("#join"),
	))
	// Joined, or failed: WebTransport may be unavailable to this Chromium.
	waitJS(t, ctx, `["joined", "error", "closed"].includes(window.relayDemo.status)`)
	if status := attr(t, ctx, "#status", "state"); status != "joined" {
		msg := text(t, ctx, "#status")
		if strings.Contains(msg, "WebTransport") || strings.Contains(msg, "handshake") || strings.Contains(msg, "QUIC") {
			t.Skipf("WebTransport does not work in headless Chromium here: the page says %q; TestWebTransportWithNativeInOneRoom (client/relay) stands in", msg)
		}
		t.Fatalf("the demo page did not join: %s", msg)
	}
	waitJS(t, ctx, `document.querySelectorAll("#members li").length === 2`)
	require.Contains(t, text(t, ctx, `#members li[data-node="77"]`), "go bot")

	// The browser's join reached the Go client as presence.
	var browser wire.NodeID
	select {
	case p := <-gc.Presence():
		require.Len(t, p.Joins, 1)
		browser = p.Joins[0].NodeID
		require.Equal(t, "chromium", string(p.Joins[0].Metadata))
	case <-time.After(testenv.Wait):
		t.Fatal("no presence for the browser")
	}

	// Go → browser, reliable then unreliable.
	require.NoError(t, room.Send(1, []byte("reliable from go")))
	waitJS(t, ctx, `window.relayDemo.events.some(e => !e.unreliable && e.text === "reliable from go" && e.sender === "77")`)
	require.Eventually(t, func() bool {
		_ = room.SendUnreliable(2, []byte("datagram from go"))
		ok, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`window.relayDemo.events.some(e => e.unreliable && e.text === "datagram from go")`))
		return err == nil && ok
	}, testenv.Wait, 50*time.Millisecond)

	// Browser → Go, reliable then unreliable.
	require.NoError(t, chromedp.Do(ctx, fill("#message", "reliable from chromium"), chromedp.Click("#send")))
	ev := nextRelayEvent(t, gc, func(e clientrelay.Event) bool { return !e.Unreliable })
	require.Equal(t, "reliable from chromium", string(ev.Payload))
	require.Equal(t, browser, ev.Sender)
	require.NoError(t, chromedp.Do(ctx, fill("#message", "datagram from chromium"), js(`document.getElementById("unreliable").checked = true`)))
	require.Eventually(t, func() bool {
		if _, err := chromedp.Run(ctx, chromedp.Click("#send")); err != nil {
			return false
		}
		select {
		case e := <-gc.Events():
			return e.Unreliable && string(e.Payload) == "datagram from chromium"
		case <-time.After(50 * time.Millisecond):
			return false
		}
	}, testenv.Wait, testenv.Tick)
	screenshot(t, ctx, "relay-demo.png")

	// Disconnecting leaves the room at once.
	require.NoError(t, chromedp.Do(ctx, chromedp.Click("#leave")))
	select {
	case p := <-gc.Presence():
		require.Equal(t, []wire.NodeID{browser}, p.Leaves)
	case <-time.After(testenv.Wait):
		t.Fatal("no leave for the browser")
	}
}

func nextRelayEvent(t *testing.T, c *clientrelay.Client, want func(clientrelay.Event) bool) clientrelay.Event {
	t.Helper()
	deadline := time.After(testenv.Wait)
	for {
		select {
		case e := <-c.Events():
			if want(e) {
				return e
			}
		case <-deadline:
			t.Fatal("no event")
		}
	}
}
