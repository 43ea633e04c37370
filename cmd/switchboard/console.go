package main

import (
	"fmt"

	"github.com/switchboard-rt/switchboard/internal/auth"
	"github.com/switchboard-rt/switchboard/internal/config"
	"github.com/switchboard-rt/switchboard/internal/console"
	"github.com/switchboard-rt/switchboard/internal/hub"
)

// consoleNamespace is the namespace of the console's feeds
// (scheduler:hub, and the scheduler's scheduler:jobs / scheduler:nodes).
const consoleNamespace = "scheduler"

// addConsoleNamespace makes sure the hub feed has its namespace when the
// console runs: the scheduler's own definition wins; without one it is a
// namespace with no history and no client permissions (the page is
// subscribed server-side by its token). A configured one must not let
// clients subscribe, or anyone could read the administrator's feeds (an
// error naming it, exit status 2).
func addConsoleNamespace(cfg config.Config, ns *hub.Namespaces) error {
	if !cfg.Admin.Enabled {
		return nil
	}
	o, ok := ns.Named[consoleNamespace]
	if !ok {
		ns.Named[consoleNamespace] = hub.ChannelOptions{}
		return nil
	}
	if o.AllowSubscribeForClient || o.AllowSubscribeForAnonymous {
		return usageError(fmt.Errorf("channel.namespaces %s: must not let clients subscribe (the console's feeds are in it)", consoleNamespace))
	}
	return nil
}

// console wires the web console (admin.enabled) and returns its routes;
// it lists jobs and nodes through m.sched when the scheduler runs. The
// console's hub feed starts here and stops with the other components.
func (m *Main) console(tokens *auth.TokenVerifier) ([]route, error) {
	a := m.Config.Admin
	if !a.Enabled {
		return nil, nil
	}
	var sched console.Scheduler
	if m.sched != nil {
		sched = m.sched
	}
	t := m.Config.Client.Token
	cc := a.ConsoleConfig()
	cc.Signer, cc.Tokens = auth.NewTokenSigner(t.HMACSecretKey, t.Audience, t.Issuer), tokens
	cc.Hub, cc.Scheduler, cc.Logger, cc.Registerer = m.hub, sched, m.Logger, m.registry
	c, err := console.New(cc)
	if err != nil {
		return nil, fmt.Errorf("admin: %w", err)
	}
	c.Start()
	m.closers = append(m.closers, c.Shutdown)
	return []route{{pattern: console.Prefix, handler: c}, {pattern: console.Prefix + "/", handler: c}}, nil
}
