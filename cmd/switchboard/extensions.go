package main

import (
	"context"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/switchboard-rt/switchboard/internal/hub"
)

type route struct {
	pattern string
	handler http.Handler
}

// extensions wires the optional systems (worker gateway, circles) and
// returns their routes; it may set *rpc to the hub's rpc handler.
func (m *Main) extensions(ctx context.Context, reg prometheus.Registerer, rpc *hub.RPCHandler) ([]route, error) {
	return nil, nil
}
