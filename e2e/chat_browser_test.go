package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/require"

	ws "github.com/vortechron/go-ws"
	"github.com/vortechron/go-ws/examples/chat/chatserver"
)

// TestChatInBrowser drives the chat page in headless Chromium as two
// users: each sees the other online, a typing indicator and a message go
// from one page to the other, a direct message arrives privately, and
// closing one page removes that user from the other's list. Screenshots
// go to $WS_ARTIFACTS_DIR, or testdata/artifacts/.
func TestChatInBrowser(t *testing.T) {
	shots := artifactsDir(t)

	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	alloc, cancelAlloc := newBrowser(t, ctx)
	defer cancelAlloc()
	base := startChat(t)

	alice, closeAlice := openPage(t, alloc, base+"/?name=alice")
	defer closeAlice()
	run(t, alice, "alice's page is up", chromedp.WaitVisible(css(`#members li`)))
	bob, closeBob := openPage(t, alice, base+"/?name=bob")
	defer closeBob()
	run(t, bob, "bob's page is up", chromedp.WaitVisible(css(`#members li`)))

	// Each sees the other online.
	run(t, alice, "alice sees bob online", chromedp.WaitVisible(css(`#members li[data-user="bob"]`)))
	run(t, bob, "bob sees alice online", chromedp.WaitVisible(css(`#members li[data-user="alice"]`)))

	// Alice types: bob sees the indicator.
	run(t, alice, "alice types", chromedp.SendKeys(css(`#text`), "hello bob"))
	run(t, bob, "bob sees alice typing", waitText(`#typing`, "alice is typing…"))
	screenshot(t, bob, shots, "chat-1-bob-sees-alice-typing.png")

	// Alice sends: the message reaches bob and the indicator goes away.
	run(t, alice, "alice sends", chromedp.Click(css(`#say button`)))
	run(t, bob, "bob gets the message", waitText(`#messages .msg[data-from="alice"] .text`, "hello bob"))
	run(t, bob, "bob's typing indicator clears", waitText(`#typing`, ""))
	screenshot(t, alice, shots, "chat-2-alice-after-sending.png")
	screenshot(t, bob, shots, "chat-3-bob-got-message.png")

	// Bob answers privately: alice gets it marked private.
	run(t, bob, "bob sends a direct message",
		chromedp.SetValue(css(`#to`), "alice"),
		chromedp.SendKeys(css(`#text`), "psst, only you"),
		chromedp.Click(css(`#say button`)))
	run(t, alice, "alice gets the direct message", waitText(`#messages .msg.private[data-from="bob"] .text`, "psst, only you"))
	run(t, bob, "bob sees his copy", waitText(`#messages .msg.private[data-from="bob"] .tag`, "private to alice"))

	// Bob closes his page: he leaves alice's list.
	closeBob()
	run(t, alice, "bob leaves alice's list", chromedp.WaitNotPresent(css(`#members li[data-user="bob"]`)))
	run(t, alice, "alice still lists herself", chromedp.WaitVisible(css(`#members li[data-user="alice"]`)))
	screenshot(t, alice, shots, "chat-4-alice-after-bob-left.png")
}

// TestChatReloadShowsMissedMessages: bob's page goes away while alice
// sends two messages; when he opens the chat again it shows what he
// missed (the room's history), each message once and in order, and the
// messages after it live; a reload shows the same conversation again.
func TestChatReloadShowsMissedMessages(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	alloc, cancelAlloc := newBrowser(t, ctx)
	defer cancelAlloc()
	base := startChat(t)

	alice, closeAlice := openPage(t, alloc, base+"/?name=alice")
	defer closeAlice()
	bob, closeBob := openPage(t, alice, base+"/?name=bob")
	defer closeBob()
	run(t, bob, "bob sees alice online", chromedp.WaitVisible(css(`#members li[data-user="alice"]`)))

	say := func(text string, want ...string) {
		t.Helper()
		run(t, alice, "alice sends "+text, chromedp.SendKeys(css(`#text`), text), chromedp.Click(css(`#say button`)))
		run(t, alice, "alice sees "+text, waitTexts(`#messages .msg .text`, want...))
	}
	say("one", "one")
	run(t, bob, "bob gets one", waitTexts(`#messages .msg .text`, "one"))

	run(t, bob, "bob's page goes away", chromedp.Navigate("about:blank"))
	say("two", "one", "two")
	say("three", "one", "two", "three")
	run(t, bob, "bob opens the chat again", chromedp.Navigate(base+"/?name=bob"))
	run(t, bob, "bob's page shows what he missed", waitTexts(`#messages .msg .text`, "one", "two", "three"))
	say("four", "one", "two", "three", "four")
	run(t, bob, "then live messages", waitTexts(`#messages .msg .text`, "one", "two", "three", "four"))

	run(t, bob, "bob reloads", chromedp.Reload())
	run(t, bob, "the reloaded page shows the conversation once", waitTexts(`#messages .msg .text`, "one", "two", "three", "four"))
	say("five", "one", "two", "three", "four", "five")
	run(t, bob, "and goes on live", waitTexts(`#messages .msg .text`, "one", "two", "three", "four", "five"))
}

// waitTexts waits until the elements matched by selector have exactly
// the texts want, in order.
func waitTexts(selector string, want ...string) chromedp.Action[chromedp.Void] {
	w, _ := json.Marshal(want)
	js := fmt.Sprintf(`JSON.stringify([...document.querySelectorAll(%q)].map(e => e.textContent.trim())) === %q`, selector, string(w))
	return chromedp.Poll[chromedp.Void](js, chromedp.WithPollingInterval(20*time.Millisecond))
}

func css(s string) chromedp.CSS { return chromedp.CSS(s) }

// artifactsDir is where screenshots go: $WS_ARTIFACTS_DIR, or
// testdata/artifacts (ignored by git).
func artifactsDir(t *testing.T) string {
	dir := os.Getenv("WS_ARTIFACTS_DIR")
	if dir == "" {
		dir = filepath.Join("testdata", "artifacts")
	}
	require.NoError(t, os.MkdirAll(dir, 0o755))
	return dir
}

// startChat serves the chat on a loopback port until the test ends.
func startChat(t *testing.T) string {
	t.Helper()
	hub := ws.NewHub(context.Background(), nil, nil, ws.Config{History: chatserver.History})
	go hub.Run()
	return serveApp(t, hub, chatserver.NewHandler(hub, log.New(testLog{t}, "chat: ", 0)))
}

// run runs actions on a page, all of them within 15s.
func run(t *testing.T, page context.Context, step string, actions ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	ctx, cancel := context.WithTimeout(page, 15*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			err = fmt.Errorf("not within 15s: %w", err)
		}
		t.Fatalf("%s: %v", step, err)
	}
}

// waitText waits until the element matched by selector has exactly the
// text want (an empty selector result never matches).
func waitText(selector, want string) chromedp.Action[chromedp.Void] {
	js := fmt.Sprintf(`(() => { const e = document.querySelector(%q); return e !== null && e.textContent.trim() === %q; })()`, selector, want)
	return chromedp.Poll[chromedp.Void](js, chromedp.WithPollingInterval(20*time.Millisecond))
}

// screenshot saves a PNG of the page's viewport in dir.
func screenshot(t *testing.T, page context.Context, dir, name string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(page, 15*time.Second)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
	require.NoError(t, err, "screenshot %s", name)
	path := filepath.Join(dir, name)
	require.NoError(t, os.WriteFile(path, png, 0o644))
	t.Logf("screenshot: %s", path)
}

// testLog sends the chat's log lines to the test log.
type testLog struct{ t *testing.T }

func (w testLog) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
