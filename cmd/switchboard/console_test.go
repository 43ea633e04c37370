package main

import (
	"strconv"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/require"

	"github.com/switchboard-rt/switchboard/internal/config"
)

const (
	testAdminPassword = "correct horse battery staple"
	testAdminSecret   = "console-session-secret-0123456789"
)

func consoleConfig() config.Config {
	cfg := testConfig()
	cfg.Admin = config.Admin{Enabled: true, Password: testAdminPassword, Secret: testAdminSecret}
	return cfg
}

// The administrator signs in (a wrong password first shows the error),
// and the hub figures update live: a second client's connection appears
// without a reload.
func TestConsoleAdminHubFigures(t *testing.T) {
	ctx := newBrowser(t, 60*time.Second)
	m := startServer(t, consoleConfig())

	require.NoError(t, chromedp.Do(ctx,
		chromedp.Navigate(m.URL()+"/console"),
		chromedp.WaitVisible("#login-admin"),
		chromedp.SendKeys("#password", "not the password"),
		chromedp.Click("#login-admin-submit"),
		chromedp.WaitVisible("#login-error"),
	))
	require.Equal(t, "wrong password", text(t, ctx, "#login-error"))
	screenshot(t, ctx, "login-error.png")

	require.NoError(t, chromedp.Do(ctx,
		fill("#password", testAdminPassword),
		chromedp.Click("#login-admin-submit"),
		chromedp.WaitVisible("#hub-panel"),
		chromedp.WaitVisible(`#conn[data-state="connected"]`),
	))
	waitJS(t, ctx, `document.getElementById("hub-connections").textContent === "1"`)

	gc := newGoClient(t, m, "bob", false, token(t, "bob", time.Hour))
	require.NoError(t, gc.Connect())
	waitJS(t, ctx, `document.getElementById("hub-connections").textContent === "2"`)
	n, err := strconv.Atoi(text(t, ctx, "#hub-cluster"))
	require.NoError(t, err)
	require.Equal(t, 1, n)
	screenshot(t, ctx, "hub.png")
}
