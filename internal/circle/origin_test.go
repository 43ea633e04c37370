package circle_test

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/stretchr/testify/require"

	"github.com/switchboard-rt/switchboard/internal/circle"
	"github.com/switchboard-rt/switchboard/internal/origin"
)

// TestOriginPolicy is the regression test of issue 9: an empty list used to
// accept any origin on /{circle_key} and "*" used to reject every browser.
func TestOriginPolicy(t *testing.T) {
	c := newKey(t)
	for _, tc := range []struct {
		name    string
		allowed []string
		origins map[string]bool
	}{
		{"any", []string{"*"}, map[string]bool{"https://anything.example": true, "null": true, "": true}},
		{"wildcard", []string{"https://*.example.com"}, map[string]bool{
			"https://app.example.com": true, "https://a.b.example.com": true,
			"https://example.com": false, "http://app.example.com": false, "https://evil-example.com": false, "": true}},
		{"exact", []string{"https://good.example"}, map[string]bool{
			"https://good.example": true, "https://evil.example": false, "http://good.example": false, "": true}},
		{"empty", nil, map[string]bool{"https://good.example": false, "SAME": true, "": true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			chk, err := origin.New(tc.allowed)
			require.NoError(t, err)
			s := newStack(t, stackOpts{keys: []string{c.comp}, cfg: func(cfg *circle.Config) { cfg.Origins = chk }})
			for o, want := range tc.origins {
				if o == "SAME" {
					o = s.ts.URL // http://127.0.0.1:PORT, the Host the dialer sends
				}
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				h := http.Header{}
				if o != "" {
					h.Set("Origin", o)
				}
				ws, resp, err := websocket.Dial(ctx, s.url+"/"+c.comp, &websocket.DialOptions{HTTPHeader: h})
				cancel()
				if want {
					require.NoError(t, err, o)
					cl := &client{t: t, c: ws}
					cl.mustResult("ping", nil, nil)
					ws.CloseNow()
					continue
				}
				require.Error(t, err, o)
				require.Equal(t, http.StatusForbidden, resp.StatusCode, o)
				b, _ := io.ReadAll(resp.Body)
				require.JSONEq(t, `{"error":"Forbidden","message":"origin not allowed"}`, string(b), o)
				require.True(t, strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json"))
			}
		})
	}
}
