package bench

// Cmd is the `switchboard bench` command group, meant to be embedded in the CLI's kong
// grammar. Each subcommand's Run takes the context bound with
// kong.BindTo(ctx, (*context.Context)(nil)); cancelling it (Ctrl-C) stops the run cleanly and
// prints the partial result.
type Cmd struct {
	Conns  ConnsCmd  `cmd:"" help:"Open N connections subscribed to K channels each; report connect rate, failures and server memory per connection."`
	Fanout FanoutCmd `cmd:"" help:"Publish to S subscribers over C channels; report deliveries/s, latency percentiles, loss and duplicates."`
	RPC    RPCCmd    `cmd:"" name:"rpc" help:"Time round trips of client rpc or publish commands."`
	Plot   PlotCmd   `cmd:"" help:"Render SVG charts from a file of bench JSON results."`
	Relay  RelayCmd  `cmd:"" help:"Load the game relay: clients in rooms sending events; report deliveries/s, latency percentiles and loss."`
	// Scheduler times POST /jobs → the chunk at an online node (issue 11).
	Scheduler SchedulerCmd `cmd:"" help:"Time POST /jobs until the job's chunk reaches an online node over the hub (serve --scheduler)."`
}

// Validate hooks let kong report bad flag values as parse (usage) errors,
// before anything runs; Run validates again for direct callers.

// Validate checks the flags.
func (c *ConnsCmd) Validate() error { return c.validate() }

// Validate checks the flags.
func (c *FanoutCmd) Validate() error { return c.validate() }

// Validate checks the flags.
func (c *RPCCmd) Validate() error { return c.validate() }
