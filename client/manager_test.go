package client_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/switchboard-rt/switchboard/client"
	"github.com/switchboard-rt/switchboard/client/circletest"
)

func TestManagerBuilderErrors(t *testing.T) {
	good := mustKey(t).Hex()
	tests := []struct {
		name  string
		build func() *client.ManagerBuilder
		want  []error
	}{
		{"no servers", func() *client.ManagerBuilder { return client.NewManagerBuilder().PrivateKey(good) }, nil},
		{"bad key", func() *client.ManagerBuilder {
			return client.NewManagerBuilder().PrivateKey("xyz").AddServer("ws://h:1/k")
		}, []error{client.ErrInvalidKey}},
		{"empty key", func() *client.ManagerBuilder {
			return client.NewManagerBuilder().PrivateKey("").AddServer("ws://h:1/k")
		}, []error{client.ErrInvalidKey}},
		{"bad url", func() *client.ManagerBuilder {
			return client.NewManagerBuilder().PrivateKey(good).AddServer("http://h:1/k")
		}, []error{client.ErrInvalidURL}},
		{"duplicate url", func() *client.ManagerBuilder {
			return client.NewManagerBuilder().AddServer("ws://h:1/k").AddServer("ws://h:1/k")
		}, []error{client.ErrInvalidURL}},
		{"key and url both bad", func() *client.ManagerBuilder {
			return client.NewManagerBuilder().PrivateKey("00").AddServer("::")
		}, []error{client.ErrInvalidKey, client.ErrInvalidURL}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := tt.build().Build()
			if err == nil {
				m.Close()
				t.Fatal("Build succeeded")
			}
			for _, w := range tt.want {
				if !errors.Is(err, w) {
					t.Fatalf("Build: %v, want %v", err, w)
				}
			}
		})
	}
}

func TestManagerPartialConnect(t *testing.T) {
	a := circletest.NewServer(t)
	b := circletest.NewServer(t)
	down := circletest.NewServer(t)
	downURL := down.URL()
	down.Stop()

	rec := &statusRecorder{}
	m, err := client.NewManagerBuilder().
		PrivateKey(mustKey(t).Hex()).
		AddServer(a.URL()).
		AddServer(b.URL()).
		AddServer(downURL).
		Config(client.Config{Backoff: client.Backoff{Initial: 10 * time.Millisecond, Max: 20 * time.Millisecond}, KeepAliveInterval: -1}).
		OnStatusChange(rec.record).
		Build()
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	ctx := testCtx(t)
	failures, err := m.Connect(ctx)
	if err != nil {
		t.Fatalf("partial failure returned an error: %v", err)
	}
	if len(failures) != 1 || failures[downURL] == nil {
		t.Fatalf("failures = %v, want only %s", failures, downURL)
	}
	for _, u := range []string{a.URL(), b.URL()} {
		if st, ok := m.Status(u); !ok || st != client.Authenticated {
			t.Fatalf("status(%s) = %v, %v", u, st, ok)
		}
	}
	if got := m.Ready(); len(got) != 2 {
		t.Fatalf("ready = %v", got)
	}
	out, err := m.Play(ctx, b.URL(), "echo:from-b")
	if err != nil || out != "from-b" {
		t.Fatalf("play b = %q, %v", out, err)
	}
	if _, err := m.Play(ctx, downURL, "echo:x"); !errors.Is(err, client.ErrNotConnected) {
		t.Fatalf("play on down server: %v", err)
	}
	if _, err := m.Play(ctx, "ws://nowhere/k", "x"); !errors.Is(err, client.ErrUnknownServer) {
		t.Fatalf("play on unknown server: %v", err)
	}
	if _, ok := m.Status("ws://nowhere/k"); ok {
		t.Fatal("status of unknown server reported ok")
	}
	if st := m.Statuses(); len(st) != 3 {
		t.Fatalf("statuses = %v", st)
	}
	if !strings.Contains(m.String(), "authenticated") {
		t.Fatalf("String() = %s", m.String())
	}
	m.Close()
	for u, st := range m.Statuses() {
		if st != client.Closed {
			t.Fatalf("%s is %v after Close", u, st)
		}
	}
}

func TestManagerAllFail(t *testing.T) {
	down := circletest.NewServer(t)
	u := down.URL()
	down.Stop()
	m, err := client.NewManagerBuilder().AddServer(u).
		Config(client.Config{Backoff: client.Backoff{Initial: 10 * time.Millisecond}}).Build()
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	failures, err := m.Connect(testCtx(t))
	if !errors.Is(err, client.ErrAllFailed) || len(failures) != 1 {
		t.Fatalf("connect: %v, failures %v", err, failures)
	}
}
