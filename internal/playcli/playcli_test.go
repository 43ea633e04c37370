package playcli_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/switchboard-rt/switchboard/client"
	"github.com/switchboard-rt/switchboard/client/circletest"
	"github.com/switchboard-rt/switchboard/internal/playcli"
	"github.com/switchboard-rt/switchboard/protocol/circles"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func keygenFile(t *testing.T) (path string, fields map[string]string) {
	t.Helper()
	var buf bytes.Buffer
	if err := playcli.Keygen(&buf); err != nil {
		t.Fatal(err)
	}
	fields = map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
		name, value, ok := strings.Cut(line, ": ")
		if !ok {
			t.Fatalf("keygen line %q", line)
		}
		fields[name] = value
	}
	path = filepath.Join(t.TempDir(), "key")
	if err := os.WriteFile(path, buf.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	return path, fields
}

func TestKeygen(t *testing.T) {
	_, f := keygenFile(t)
	if len(f["private_key"]) != 64 || len(f["public_key_compressed"]) != 66 || len(f["public_key_uncompressed"]) != 130 {
		t.Fatalf("keygen output %v", f)
	}
	k, err := client.ParsePrivateKey(f["private_key"])
	if err != nil {
		t.Fatal(err)
	}
	if k.PublicKeyCompressed() != f["public_key_compressed"] || k.PublicKeyUncompressed() != f["public_key_uncompressed"] {
		t.Fatal("public keys do not match the private key")
	}
}

func TestReadKeyFile(t *testing.T) {
	dir := t.TempDir()
	k, _ := client.GeneratePrivateKey()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	tests := []struct {
		name    string
		path    string
		wantErr bool
	}{
		{"bare hex", write("a", k.Hex()+"\n"), false},
		{"0x hex with comment", write("b", "# my key\n0x"+k.Hex()+"\n"), false},
		{"keygen output", write("c", "private_key: "+k.Hex()+"\npublic_key_compressed: x\n"), false},
		{"empty", write("d", "\n"), true},
		{"garbage", write("e", "hello"), true},
		{"missing", filepath.Join(dir, "nope"), true},
		{"too big", write("f", strings.Repeat("a", 70<<10)), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := playcli.ReadKeyFile(tt.path)
			if tt.wantErr {
				if !errors.Is(err, playcli.ErrUsage) || playcli.ExitCode(err) != 2 {
					t.Fatalf("err = %v, want a usage error", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if p, _ := client.ParsePrivateKey(got); p == nil || p.Hex() != k.Hex() {
				t.Fatalf("key %q", got)
			}
		})
	}
}

func TestPlay(t *testing.T) {
	srv := circletest.NewServer(t)
	keyFile, fields := keygenFile(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	var out bytes.Buffer
	if err := playcli.Play(ctx, srv.URL(), keyFile, strings.NewReader("caller"), &out); err != nil {
		t.Fatal(err)
	}
	if out.String() != fields["public_key_uncompressed"]+"\n" {
		t.Fatalf("output %q", out.String())
	}
	if srv.Auths() != 1 {
		t.Fatalf("auths = %d", srv.Auths())
	}

	out.Reset()
	err := playcli.Play(ctx, srv.URL(), keyFile, strings.NewReader("fail:division by zero"), &out)
	var rpcErr *circles.Error
	if !errors.As(err, &rpcErr) || rpcErr.Code != circles.CodeExecution || !strings.Contains(err.Error(), "division by zero") {
		t.Fatalf("failing script: %v", err)
	}
	if playcli.ExitCode(err) != 1 || out.Len() != 0 {
		t.Fatalf("exit %d, output %q", playcli.ExitCode(err), out.String())
	}

	// Without a key file the server refuses to play.
	err = playcli.Play(ctx, srv.URL(), "", strings.NewReader("echo:x"), &out)
	if !errors.As(err, &rpcErr) || rpcErr.Code != circles.CodeAuthRequired {
		t.Fatalf("play without key: %v", err)
	}
}

func TestPlayUsageErrors(t *testing.T) {
	ctx := context.Background()
	keyFile, _ := keygenFile(t)
	tests := []struct {
		name    string
		url     string
		keyFile string
		script  string
	}{
		{"bad url", "http://x/y", keyFile, "1"},
		{"missing key file", "ws://127.0.0.1:1/k", filepath.Join(t.TempDir(), "nope"), "1"},
		{"script too big", "ws://127.0.0.1:1/k", keyFile, strings.Repeat("x", playcli.MaxScriptSize+1)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := playcli.Play(ctx, tt.url, tt.keyFile, strings.NewReader(tt.script), &bytes.Buffer{})
			if playcli.ExitCode(err) != 2 {
				t.Fatalf("err = %v (exit %d), want usage error", err, playcli.ExitCode(err))
			}
		})
	}
}

func TestPlayServerDown(t *testing.T) {
	srv := circletest.NewServer(t)
	u := srv.URL()
	srv.Stop()
	err := playcli.Play(context.Background(), u, "", strings.NewReader("1"), &bytes.Buffer{})
	if err == nil || playcli.ExitCode(err) != 1 {
		t.Fatalf("err = %v", err)
	}
}

func TestOpenScript(t *testing.T) {
	rc, err := playcli.OpenScript("-", strings.NewReader("stdin script"))
	if err != nil {
		t.Fatal(err)
	}
	b := new(bytes.Buffer)
	_, _ = b.ReadFrom(rc)
	rc.Close()
	if b.String() != "stdin script" {
		t.Fatalf("got %q", b.String())
	}
	p := filepath.Join(t.TempDir(), "s.star")
	if err := os.WriteFile(p, []byte("print(1)"), 0o600); err != nil {
		t.Fatal(err)
	}
	rc, err = playcli.OpenScript(p, nil)
	if err != nil {
		t.Fatal(err)
	}
	rc.Close()
	if _, err := playcli.OpenScript(p+".missing", nil); playcli.ExitCode(err) != 2 {
		t.Fatalf("missing script: %v", err)
	}
}
