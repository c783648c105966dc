package e2e

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/vortechron/go-ws/internal/testenv"

	"github.com/chromedp/chromedp"
)

// TestJavaScriptClientInBrowser loads the client in headless Chromium,
// straight from src/ (test/browser.html, served by the test server on
// the WebSocket's own origin), as two users: presence, a publication and
// a whisper reach the pages; a dropped socket is reconnected and
// resubscribed; and a server that goes silent is noticed by the client's
// keepalive, which a browser needs because it cannot see WebSocket pings.
func TestJavaScriptClientInBrowser(t *testing.T) {
	if testing.Short() {
		t.Skip("skipped in -short mode: builds the test server and runs Chromium")
	}
	if _, err := exec.LookPath("go"); err != nil {
		testenv.Missing(t, testenv.RequireTools, "go is not on PATH; cannot build clients/js/testserver")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	alloc, cancelAlloc := newBrowser(t, ctx)
	defer cancelAlloc()
	srv := startTestServer(t, ctx, buildTestServer(t, ctx), "-static", ".")

	page := "http://" + srv.ws + "/test/browser.html?ping=300&pong=500&user="
	alice, closeAlice := openPage(t, alloc, page+"alice")
	defer closeAlice()
	waitJS(t, alice, "alice is subscribed with herself in the list",
		`has(e => e[0] === 'subscribed') && has(e => e[0] === 'here' && e[1].join() === 'alice')`)
	bob, closeBob := openPage(t, alice, page+"bob")
	defer closeBob()
	waitJS(t, bob, "bob's list has both", `has(e => e[0] === 'here' && e[1].join() === 'alice,bob')`)
	waitJS(t, alice, "alice sees bob join", `has(e => e[0] === 'joining' && e[1] === 'bob')`)

	srv.post(t, "/publish?channel=presence-browser", `{"n":1}`)
	for _, p := range []context.Context{alice, bob} {
		waitJS(t, p, "the publication arrives", `has(e => e[0] === 'message' && e[1].n === 1)`)
	}
	if sent := evalJS[bool](t, alice, `__room.whisper('typing', {isTyping: true})`); !sent {
		t.Fatal("alice's whisper was not sent")
	}
	waitJS(t, bob, "bob gets alice's whisper", `has(e => e[0] === 'whisper' && e[1] === 'typing' && e[2].isTyping && e[3] === 'alice')`)

	// A socket dropped without a close frame: reconnected, resubscribed.
	srv.post(t, "/drop?user=alice", "")
	waitJS(t, alice, "alice sees the drop", `has(e => e[0] === 'disconnected' && e[1].code === 1006 && e[1].willReconnect)`)
	waitJS(t, alice, "alice is resubscribed", `has(e => e[0] === 'subscribed' && e[1].resubscribed)`)
	srv.post(t, "/publish?channel=presence-browser", `{"n":2}`)
	waitJS(t, alice, "a publication after the reconnect arrives", `has(e => e[0] === 'message' && e[1].n === 2)`)

	// The server stops writing to alice: only the client's keepalive can
	// tell; it drops the socket and connects again.
	srv.post(t, "/stall?user=alice", "")
	waitJS(t, alice, "alice's keepalive notices the silent server",
		`has(e => e[0] === 'disconnected' && e[1].reason === 'keepalive timeout' && e[1].willReconnect)`)
	srv.post(t, "/release?user=alice", "")
	waitJS(t, alice, "alice is resubscribed again", `__events.filter(e => e[0] === 'subscribed').length === 3`)
	srv.post(t, "/publish?channel=presence-browser", `{"n":3}`)
	waitJS(t, alice, "a publication after the keepalive reconnect arrives", `has(e => e[0] === 'message' && e[1].n === 3)`)

	// The server shuts down (1001) and stays down: every attempt is refused,
	// which a browser reports as error and then close (1006). Each is one
	// connect_failed and one retry, attempt after attempt, until the
	// server is back.
	srv.post(t, "/stop", "")
	waitJS(t, alice, "alice is told the server is going away", `has(e => e[0] === 'disconnected' && e[1].code === 1001)`)
	const afterStop = `__events.slice(__events.findIndex(e => e[0] === 'disconnected' && e[1].code === 1001))`
	waitJS(t, alice, "three refused attempts are reported", afterStop+`.filter(e => e[0] === 'error' && e[1] === 'connect_failed').length >= 3`)
	srv.post(t, "/start", "")
	waitJS(t, alice, "alice is resubscribed after the restart", `__events.filter(e => e[0] === 'subscribed').length === 4`)
	waitJS(t, alice, "one failure and one retry per refused attempt, the attempts counted one by one", `(() => {
		const ev = `+afterStop+`;
		const attempts = ev.filter(e => e[0] === 'reconnecting').map(e => e[1]);
		const failures = ev.filter(e => e[0] === 'error' && e[1] === 'connect_failed').length;
		return attempts.every((a, i) => i === 0 || a === attempts[i - 1] + 1) && failures === attempts.length - 1;
	})()`)
	waitJS(t, bob, "bob is resubscribed after the restart", `__events.filter(e => e[0] === 'subscribed').length === 2`)

	closeBob()
	waitJS(t, alice, "alice sees bob leave", `has(e => e[0] === 'leaving' && e[1] === 'bob') && [...__room.members.keys()].join() === 'alice'`)
}

// waitJS waits up to 15 s until the expression is truthy on page. It may
// use has(pred), true when an event the page logged satisfies pred.
func waitJS(t *testing.T, page context.Context, step, expr string) {
	t.Helper()
	js := fmt.Sprintf(`(() => { const has = (p) => (window.__events || []).some(p); return !!(window.__events && (%s)); })()`, expr)
	ctx, cancel := context.WithTimeout(page, 15*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, chromedp.Poll[chromedp.Void](js, chromedp.WithPollingInterval(20*time.Millisecond))); err != nil {
		var events string
		logCtx, cancelLog := context.WithTimeout(page, 5*time.Second)
		defer cancelLog()
		events, _ = chromedp.Run(logCtx, chromedp.Evaluate[string](`JSON.stringify(window.__events || [])`))
		t.Fatalf("%s: %v\npage events: %s", step, err, events)
	}
}

// evalJS evaluates expr on page and returns its value.
func evalJS[T any](t *testing.T, page context.Context, expr string) T {
	t.Helper()
	ctx, cancel := context.WithTimeout(page, 15*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr))
	if err != nil {
		t.Fatalf("evaluate %s: %v", expr, err)
	}
	return v
}

// buildTestServer builds clients/js/testserver into a temporary directory.
func buildTestServer(t *testing.T, ctx context.Context) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "testserver")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "github.com/vortechron/go-ws/clients/js/testserver")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build testserver: %v\n%s", err, out)
	}
	return bin
}

// testServer is a running clients/js/testserver.
type testServer struct {
	ws, control string // host:port
}

// startTestServer runs the test server binary with args in clients/js
// (its -static pages are served from there) until t ends, returning its
// addresses.
func startTestServer(t *testing.T, ctx context.Context, bin string, args ...string) *testServer {
	t.Helper()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Dir = filepath.Join("..", "clients", "js")
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var logs testenv.Buffer
	cmd.Stderr = &logs
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	t.Cleanup(func() {
		_ = stdin.Close() // the server shuts down when its stdin closes
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			t.Logf("testserver log:\n%s", logs.String())
		}
	})
	lines := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		if sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
		for sc.Scan() { // keep the pipe drained
		}
		_ = cmd.Wait()
		close(exited)
	}()
	select {
	case line := <-lines:
		m := regexp.MustCompile(`^ws=(\S+) control=(\S+)$`).FindStringSubmatch(line)
		if m == nil {
			t.Fatalf("testserver printed %q; log:\n%s", line, logs.String())
		}
		return &testServer{ws: m[1], control: m[2]}
	case <-time.After(20 * time.Second):
		t.Fatalf("testserver did not print its addresses within 20s; log:\n%s", logs.String())
	}
	return nil
}

// post calls a control route, failing t unless it answers 2xx.
func (s *testServer) post(t *testing.T, path, body string) {
	t.Helper()
	client := &http.Client{Timeout: 10 * time.Second}
	resp, err := client.Post("http://"+s.control+path, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatalf("POST %s: %v", path, err)
	}
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		t.Fatalf("POST %s: %s", path, resp.Status)
	}
}
