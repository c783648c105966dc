package e2e

import (
	"context"
	"errors"
	"net"
	"net/http"
	"os"
	"os/exec"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/remote"
	"github.com/stretchr/testify/require"

	ws "github.com/vortechron/go-ws"
	"github.com/vortechron/go-ws/internal/testenv"
)

// newBrowser starts headless Chromium for the test, failing it (or
// skipping it, unless WS_REQUIRE_TOOLS=1) when there is none. Pages opened
// on the returned context are tabs of one browser, none throttled as a
// background tab. The flags are the ones this machine's closed network
// needs (no background networking, no component updates, no sync).
func newBrowser(t *testing.T, ctx context.Context) (browser context.Context, stop func()) {
	t.Helper()
	bin := chromium()
	if bin == "" {
		testenv.Missing(t, testenv.RequireTools, "no Chromium found (looked for $WS_CHROMIUM, chromium, chromium-browser, google-chrome); install it with: apt-get install -y chromium (make test runs scripts/ensure-tools.sh, which does)")
	}
	return chromedp.NewExecAllocator(ctx,
		chromedp.ExecPath(bin),
		chromedp.Flag("headless", true),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.Flag("disable-quic", true),
		chromedp.NoFirstRun,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(t.TempDir()),
		// DevTools over a WebSocket on a port Chromium picks and prints
		// (chromedp's default is a pipe).
		chromedp.Flag("remote-debugging-port", "0"),
		remote.WebSocket,
		chromedp.Flag("disable-background-timer-throttling", true),
		chromedp.Flag("disable-renderer-backgrounding", true),
		chromedp.Flag("disable-backgrounding-occluded-windows", true),
		chromedp.WindowSize(900, 640),
	)
}

// chromium returns the browser to drive, or "" if there is none.
func chromium() string {
	if p := os.Getenv("WS_CHROMIUM"); p != "" {
		return p
	}
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	return ""
}

// openPage opens url in a new tab of parent, failing t on any uncaught
// JavaScript exception in it. closePage closes the tab.
func openPage(t *testing.T, parent context.Context, url string) (page context.Context, closePage func()) {
	t.Helper()
	page, cancel := chromedp.NewContext(parent)
	var once sync.Once
	closePage = func() {
		once.Do(func() {
			if err := chromedp.Cancel(page); err != nil && !errors.Is(err, context.Canceled) {
				t.Errorf("closing %s: %v", url, err)
			}
			cancel()
		})
	}
	// The first call on a context opens its tab for the context's life, so
	// it must not be one bounded by waitJS's timeout.
	err := chromedp.Listen(page, func(ev any) {
		if e, ok := ev.(*runtime.EventExceptionThrown); ok {
			d := e.ExceptionDetails
			msg := d.Text
			if d.Exception != nil && d.Exception.Description != "" {
				msg = d.Exception.Description
			}
			t.Errorf("JavaScript exception on %s at %d:%d: %s", url, d.LineNumber+1, d.ColumnNumber+1, msg)
		}
	})
	if err != nil {
		t.Fatalf("start Chromium and open a tab: %v", err)
	}
	ctx, cancelNav := context.WithTimeout(page, 15*time.Second)
	defer cancelNav()
	if err := chromedp.Do(ctx, chromedp.Navigate(url)); err != nil {
		t.Fatalf("open %s: %v", url, err)
	}
	return page, closePage
}

// serveApp serves h, an example's handler on hub, on a loopback port
// until the test ends, then shuts hub and the server down, and returns
// the base URL.
func serveApp(t *testing.T, hub *ws.Hub, h http.Handler) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	srv := &http.Server{Handler: h}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		require.NoError(t, hub.Shutdown(ctx))
		require.NoError(t, srv.Shutdown(ctx))
		require.ErrorIs(t, <-served, http.ErrServerClosed)
	})
	return "http://" + ln.Addr().String()
}
