package e2e

import (
	"context"
	"log"
	"path/filepath"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	ws "github.com/vortechron/go-ws"
	"github.com/vortechron/go-ws/examples/pusher/echoapp"
	"github.com/vortechron/go-ws/internal/testenv"
)

// TestLaravelEchoInBrowser drives the page of examples/pusher, which uses
// the real laravel-echo and pusher-js from npm, in headless Chromium as
// two users against ws's Pusher protocol: each sees the other in the
// presence lobby (here, joining), a typing whisper and a message sent to
// others arrive, an announcement on the public channel reaches both, a
// poke arrives on a private inbox, and closing one page makes the other
// see it leave. Screenshots go to $WS_ARTIFACTS_DIR, or
// testdata/artifacts/.
func TestLaravelEchoInBrowser(t *testing.T) {
	if testing.Short() {
		t.Skip("skipped in -short mode: installs npm packages and runs Chromium")
	}
	shots := artifactsDir(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	dir := filepath.Join("..", "examples", "pusher")
	if err := echoapp.InstallPackages(ctx, dir, log.New(testLog{t}, "", 0)); err != nil {
		testenv.Missing(t, testenv.RequireTools, "laravel-echo and pusher-js for examples/pusher: %v", err)
	}
	alloc, cancelAlloc := newBrowser(t, ctx)
	defer cancelAlloc()
	base := startEchoApp(t, dir)

	alice, closeAlice := openPage(t, alloc, base+"/?name=alice")
	defer closeAlice()
	run(t, alice, "alice is connected and in the lobby",
		chromedp.WaitVisible(css(`body[data-state="connected"]`)), chromedp.WaitVisible(css(`#members li[data-user="alice"]`)))
	bob, closeBob := openPage(t, alice, base+"/?name=bob")
	defer closeBob()
	run(t, bob, "bob sees alice and himself (here)", chromedp.WaitVisible(css(`#members li[data-user="alice"]`)), chromedp.WaitVisible(css(`#members li[data-user="bob"]`)))
	run(t, alice, "alice sees bob join (joining)", chromedp.WaitVisible(css(`#members li[data-user="bob"]`)))

	run(t, bob, "bob types", chromedp.SendKeys(css(`#text`), "hello alice"))
	run(t, alice, "alice sees bob typing (whisper)", waitText(`#typing`, "bob is typing…"))
	screenshot(t, alice, shots, "pusher-1-alice-sees-bob-typing.png")

	run(t, bob, "bob sends", chromedp.Click(css(`#say button`)))
	run(t, alice, "alice gets bob's message", waitText(`#messages .msg[data-from="bob"] .text`, "hello alice"))
	run(t, alice, "the typing indicator clears", waitText(`#typing`, ""))
	run(t, bob, "bob sees his own message once (toOthers left him out)", waitText(`#messages .msg.mine .text`, "hello alice"))
	if n := countJS(t, bob, `#messages .msg`); n != 1 {
		t.Fatalf("bob's page has %d messages, want 1", n)
	}

	run(t, alice, "alice announces", chromedp.SendKeys(css(`#headline`), "release at noon"), chromedp.Click(css(`#announce button`)))
	for _, p := range []context.Context{alice, bob} {
		run(t, p, "the announcement arrives (public channel)", waitText(`#news li`, "alice: release at noon"))
	}
	run(t, alice, "alice pokes bob", chromedp.Click(css(`#members li[data-user="bob"] button`)))
	run(t, bob, "bob's private inbox gets it", waitText(`#inbox li`, "alice poked you"))
	screenshot(t, bob, shots, "pusher-2-bob-after-poke.png")
	screenshot(t, alice, shots, "pusher-3-alice.png")

	closeBob()
	run(t, alice, "bob leaves alice's lobby (leaving)", chromedp.WaitNotPresent(css(`#members li[data-user="bob"]`)))
	screenshot(t, alice, shots, "pusher-4-alice-after-bob-left.png")
}

// startEchoApp serves examples/pusher on a loopback port until the test
// ends.
func startEchoApp(t *testing.T, dir string) string {
	t.Helper()
	hub := ws.NewHub(context.Background(), nil, nil, ws.Config{})
	go hub.Run()
	return serveApp(t, hub, echoapp.NewHandler(hub, dir, log.New(testLog{t}, "echoapp: ", 0)))
}

// countJS counts the elements matching selector.
func countJS(t *testing.T, page context.Context, selector string) int {
	t.Helper()
	return evalJS[int](t, page, "document.querySelectorAll(`"+selector+"`).length")
}
