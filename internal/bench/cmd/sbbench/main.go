// Command sbbench runs the bench command group on its own (the same code as
// `switchboard bench`), for measuring any Centrifugo-compatible server without building the
// whole switchboard binary.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/alecthomas/kong"

	"github.com/switchboard-rt/switchboard/internal/bench"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var cli bench.Cmd
	k := kong.Parse(&cli,
		kong.Name("sbbench"),
		kong.Description("Load tool for Centrifugo-compatible servers (same as `switchboard bench`)."),
		kong.BindTo(ctx, (*context.Context)(nil)),
		kong.UsageOnError(),
	)
	k.FatalIfErrorf(k.Run())
}
