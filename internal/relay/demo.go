package relay

import (
	"crypto/x509"
	_ "embed"
	"encoding/json"
	"net"
	"net/http"
	"strconv"
)

// The browser demo: a page joining a room over WebTransport, and the
// endpoint telling it where the relay is.

//go:embed demo/index.html
var demoPage []byte

// DemoPath and InfoPath are where the HTTP server serves DemoHandler and
// InfoHandler.
const (
	DemoPath = "/relay/demo"
	InfoPath = "/relay/info"
)

// Info is what InfoHandler answers: the WebTransport URL of the relay for
// the host the page was loaded from, and the SHA-256 (hex) of its
// certificate when browsers accept it pinned by hash (valid at most 14
// days), else "".
type Info struct {
	URL      string `json:"url"`
	CertHash string `json:"certHash"`
}

// Info returns the relay's Info for a page loaded from host (a Host
// header: the relay is assumed on the same host name).
func (s *Server) Info(host string) Info {
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	port := 0
	if a, ok := s.Addr().(*net.UDPAddr); ok {
		port = a.Port
	}
	in := Info{URL: "https://" + net.JoinHostPort(host, strconv.Itoa(port)) + WebTransportPath}
	if leaf, err := x509.ParseCertificate(s.cert.Certificate[0]); err == nil && leaf.NotAfter.Sub(leaf.NotBefore) <= MaxBrowserCertValidity {
		in.CertHash = Fingerprint(&s.cert)
	}
	return in
}

// InfoHandler answers GET with the Info for the request's host as JSON.
func (s *Server) InfoHandler() http.Handler {
	return getOnly(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		_ = json.NewEncoder(w).Encode(s.Info(r.Host))
	})
}

// DemoHandler serves the demo page (embedded; it loads nothing else).
func DemoHandler() http.Handler {
	return getOnly(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("Content-Security-Policy", "default-src 'self'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self' https:")
		_, _ = w.Write(demoPage)
	})
}

// getOnly serves GET and HEAD with h and refuses other methods.
func getOnly(h http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			refuseHTTP(w, errMethod)
			return
		}
		h(w, r)
	})
}
