// Command benchgateway serves the worker gateway alone (pool + HTTP
// handler) for scripts/bench-worker-gateway.sh. It is test tooling, not
// part of the switchboard binary.
package main

import (
	"context"
	"flag"
	"log"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"runtime/pprof"
	"strings"
	"syscall"
	"time"

	"github.com/switchboard-rt/switchboard/internal/gateway"
	"github.com/switchboard-rt/switchboard/internal/worker"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:7070", "listen address")
	command := flag.String("worker", "node sdk/worker-node/examples/worker.js", "worker command")
	workers := flag.Int("workers", 1, "worker processes")
	token := flag.String("token", "secret", "runner token")
	cpuprofile := flag.String("cpuprofile", "", "write a CPU profile to this file until exit")
	flag.Parse()
	if *cpuprofile != "" {
		f, err := os.Create(*cpuprofile)
		if err != nil {
			log.Fatal(err)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			log.Fatal(err)
		}
		defer pprof.StopCPUProfile()
	}

	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	pool, err := worker.New(worker.Config{Command: strings.Fields(*command), Workers: *workers, Logger: logger})
	if err != nil {
		log.Fatal(err)
	}
	h, err := gateway.New(gateway.Config{Token: *token, Logger: logger}, pool)
	if err != nil {
		log.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle(h.BasePath()+"/", h)
	srv := &http.Server{Addr: *addr, Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		if err := srv.ListenAndServe(); err != nil && err != http.ErrServerClosed {
			log.Fatal(err)
		}
	}()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	<-ctx.Done()
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = srv.Shutdown(sctx)
	_ = pool.Shutdown(sctx)
}
