package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/require"
)

// Browser tests run the pages in headless Chromium (Debian's chromium
// package; .ci/run installs it) driven by chromedp.

// screenshotsEnv names a directory where the browser tests save their
// screenshots (docs/console for the documentation); unset = a temporary
// directory.
const screenshotsEnv = "SWITCHBOARD_TEST_SCREENSHOTS"

// chromiumPath finds Chromium or skips the test.
func chromiumPath(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	t.Skip("chromium is not installed (apt-get install -y chromium); skipping the browser test")
	return ""
}

// newBrowser starts a headless Chromium with a fresh profile and returns a
// tab's context, bounded by timeout; the browser stops with the test.
// extra adds command-line flags.
func newBrowser(t *testing.T, timeout time.Duration, extra ...chromedp.ExecAllocatorOption) context.Context {
	t.Helper()
	path := chromiumPath(t)
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(path),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1440, 1000),
	}
	opts = append(opts, extra...)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelTab := chromedp.NewContext(actx)
	// The first run starts the browser; it lives as long as ctx, so only
	// the later actions get the deadline.
	require.NoError(t, chromedp.Do(ctx), "start chromium")
	tctx, cancelTimeout := context.WithTimeout(ctx, timeout)
	t.Cleanup(func() {
		cancelTimeout()
		// Cancelling the first tab closes the browser and waits for its
		// process to exit.
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		_ = chromedp.Cancel(cctx)
		cancel()
		cancelTab()
		cancelAlloc()
	})
	return tctx
}

// text returns the text of the first element matching sel, read in one
// evaluation (a live page may replace the element between two steps).
func text(t *testing.T, ctx context.Context, sel string) string {
	t.Helper()
	s, err := chromedp.Run(ctx, chromedp.Evaluate[*string](`(() => { const e = document.querySelector(`+jsString(sel)+`);
		return e ? e.textContent : null; })()`))
	require.NoError(t, err, "text of %s", sel)
	require.NotNil(t, s, "no element %s", sel)
	return *s
}

// fill sets the value of the form field sel (replacing what is there).
func fill(sel, value string) chromedp.Action[chromedp.Void] {
	js := fmt.Sprintf(`(() => { const e = document.querySelector(%s); if (!e) return false; e.value = %s;
		e.dispatchEvent(new Event("input", {bubbles: true})); return true; })()`, jsString(sel), jsString(value))
	return func(ctx context.Context, t *chromedp.Target) (chromedp.Void, error) {
		ok, err := chromedp.Evaluate[bool](js)(ctx, t)
		if err == nil && !ok {
			err = fmt.Errorf("fill: no element %s", sel)
		}
		return chromedp.Void{}, err
	}
}

// offline cuts the page off the network (new requests and WebSocket
// handshakes fail) or restores it.
func offline(on bool) chromedp.Action[chromedp.Void] {
	return func(ctx context.Context, t *chromedp.Target) (chromedp.Void, error) {
		if _, err := cdp.Call(ctx, t, network.Enable, network.EnableParams{}); err != nil {
			return chromedp.Void{}, err
		}
		var rules []*network.Conditions
		if on {
			rules = []*network.Conditions{{Offline: true, DownloadThroughput: -1, UploadThroughput: -1}}
		}
		_, err := cdp.Call(ctx, t, network.EmulateNetworkConditionsByRule, network.EmulateNetworkConditionsByRuleParams{MatchedNetworkConditions: rules})
		return chromedp.Void{}, err
	}
}

// attr returns the data-name attribute of the element sel ("" if unset).
func attr(t *testing.T, ctx context.Context, sel, name string) string {
	t.Helper()
	s, err := chromedp.Run(ctx, chromedp.Evaluate[string](`document.querySelector(`+jsString(sel)+`).dataset[`+jsString(name)+`] || ""`))
	require.NoError(t, err)
	return s
}

// js runs a JavaScript statement in the page.
func js(stmt string) chromedp.Action[chromedp.Void] {
	return func(ctx context.Context, t *chromedp.Target) (chromedp.Void, error) {
		_, err := chromedp.Evaluate[bool](`(() => { `+stmt+`; return true; })()`)(ctx, t)
		return chromedp.Void{}, err
	}
}

func jsString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// waitJS polls the JavaScript predicate until it is true (within 30 s:
// the test machines are shared and loaded).
func waitJS(t *testing.T, ctx context.Context, predicate string) {
	t.Helper()
	_, err := chromedp.Run(ctx, chromedp.Poll[bool](predicate, chromedp.WithPollingTimeout(30*time.Second)))
	require.NoError(t, err, "waiting for %s", predicate)
}

// screenshot saves a full-page PNG as name in the screenshot directory.
func screenshot(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	dir := os.Getenv(screenshotsEnv)
	if dir == "" {
		dir = t.TempDir()
	}
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	require.NoError(t, err)
	require.NoError(t, os.MkdirAll(dir, 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(dir, name), png, 0o644))
}
