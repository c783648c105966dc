package ws_test

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vortechron/go-ws/internal/testenv"

	"github.com/stretchr/testify/require"
)

// TestReadmeClientInNode runs the seed README's JavaScript client, as
// written, in Node against examples/basic: two users connect, the server
// publishes, each user whispers, one leaves, and the clients' own
// console.log lines show what the README promises ("New message:",
// "Presence update:", "Whisper from ..."). The client is
// testdata/readme-client/client.js; it needs node and the npm "ws"
// package (installed with npm ci when missing).
func TestReadmeClientInNode(t *testing.T) {
	if testing.Short() {
		t.Skip("skipped in -short mode: builds examples/basic and runs Node")
	}
	dir := filepath.Join("testdata", "readme-client")
	node := readmeClientNode(t, dir)

	addr := startBasicExample(t)
	wsURL := "ws://" + addr + "/ws"
	alice := startNodeClient(t, node, dir, wsURL, "alice")
	alice.waitFor(t, "harness: subscribed chat-room-1")
	alice.waitFor(t, "Presence update: [ { id: 'alice', info: { name: 'alice' } } ]")
	bob := startNodeClient(t, node, dir, wsURL, "bob")
	bob.waitFor(t, "harness: subscribed chat-room-1")
	// bob's join reaches alice with both users in data.users.
	alice.waitFor(t, "id: 'bob'")

	resp, err := http.Post("http://"+addr+"/publish?channel=my-channel", "application/json",
		strings.NewReader(`{"text":"hello from Go"}`))
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusNoContent, resp.StatusCode)
	for _, c := range []*nodeClient{alice, bob} {
		c.waitFor(t, "New message: { text: 'hello from Go' }")
	}

	alice.command(t, "whisper")
	bob.waitFor(t, "Whisper from alice, event: typing, channel: chat-room-1\nWhisper data: { isTyping: true }")
	bob.command(t, "whisper")
	alice.waitFor(t, "Whisper from bob, event: typing, channel: chat-room-1\nWhisper data: { isTyping: true }")
	// Each got the other's whisper after its own would have arrived.
	require.NotContains(t, alice.stdout.String(), "Whisper from alice")
	require.NotContains(t, bob.stdout.String(), "Whisper from bob")

	// bob leaves: his socket closes and alice's list is back to herself.
	bob.closeStdin(t)
	bob.waitFor(t, "Connection closed")
	require.Eventually(t, func() bool {
		return strings.Count(alice.stdout.String(), "Presence update: [ { id: 'alice', info: { name: 'alice' } } ]") == 2
	}, 15*time.Second, 10*time.Millisecond, "alice never saw bob leave; her output:\n%s", alice.stdout.String())
	for _, c := range []*nodeClient{alice, bob} {
		require.NotContains(t, c.stderr.String(), "Error:", "the README's client got an error frame")
	}
}

// readmeClientNode returns the node binary, installing the client's npm
// dependencies if needed, or skips the test saying what is missing.
func readmeClientNode(t *testing.T, dir string) string {
	t.Helper()
	node, err := exec.LookPath("node")
	if err != nil {
		testenv.Missing(t, testenv.RequireTools, "node is not on PATH; install Node.js 18+ to run the README client test")
	}
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "ws")); err == nil {
		return node
	}
	npm, err := exec.LookPath("npm")
	if err != nil {
		testenv.Missing(t, testenv.RequireTools, "%s/node_modules is missing and npm is not on PATH; run npm ci --prefix %s", dir, dir)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, npm, "ci", "--no-audit", "--no-fund", "--prefix", dir).CombinedOutput()
	if err != nil {
		testenv.Missing(t, testenv.RequireTools, "%s/node_modules is missing and npm ci failed (%v); run npm ci --prefix %s\n%s", dir, err, dir, out)
	}
	return node
}

// startBasicExample builds examples/basic and runs it on a free port,
// returning host:port once it answers. It is interrupted (graceful
// shutdown) and, failing that, killed in t.Cleanup.
func startBasicExample(t *testing.T) string {
	t.Helper()
	goBin, err := exec.LookPath("go")
	if err != nil {
		testenv.Missing(t, testenv.RequireTools, "go is not on PATH; cannot build examples/basic")
	}
	bin := filepath.Join(t.TempDir(), "basic")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, goBin, "build", "-o", bin, "./examples/basic").CombinedOutput()
	require.NoError(t, err, "go build ./examples/basic:\n%s", out)

	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := l.Addr().String()
	require.NoError(t, l.Close())

	var logs syncBuffer
	cmd := exec.Command(bin, "-addr", addr)
	cmd.Stdout, cmd.Stderr = &logs, &logs
	cmd.WaitDelay = 10 * time.Second
	require.NoError(t, cmd.Start())
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(os.Interrupt)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			t.Logf("examples/basic output:\n%s", logs.String())
		}
	})
	client := &http.Client{Timeout: time.Second}
	require.Eventually(t, func() bool {
		select {
		case <-exited:
			return false
		default:
		}
		resp, err := client.Get("http://" + addr + "/")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}, 20*time.Second, 20*time.Millisecond, "examples/basic did not start on %s:\n%s", addr, logs.String())
	client.CloseIdleConnections()
	return addr
}

// nodeClient is one running `node client.js URL USER`.
type nodeClient struct {
	user   string
	stdin  io.WriteCloser
	stdout syncBuffer
	stderr syncBuffer
}

func startNodeClient(t *testing.T, node, dir, url, user string) *nodeClient {
	t.Helper()
	c := &nodeClient{user: user}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	cmd := exec.CommandContext(ctx, node, "client.js", url, user)
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = &c.stdout, &c.stderr
	cmd.WaitDelay = 5 * time.Second
	stdin, err := cmd.StdinPipe()
	require.NoError(t, err)
	c.stdin = stdin
	require.NoError(t, cmd.Start())
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = stdin.Close() // the client closes its socket and exits
		select {
		case <-exited:
		case <-time.After(5 * time.Second):
		}
		cancel() // kills node if it is still running
		<-exited
		if t.Failed() || testing.Verbose() {
			t.Logf("node client %s stdout:\n%s\nstderr:\n%s", user, c.stdout.String(), c.stderr.String())
		}
	})
	return c
}

// waitFor waits until the client's stdout contains s.
func (c *nodeClient) waitFor(t *testing.T, s string) {
	t.Helper()
	require.Eventually(t, func() bool { return strings.Contains(c.stdout.String(), s) },
		15*time.Second, 10*time.Millisecond, "node client %s never printed %q; stdout:\n%s\nstderr:\n%s",
		c.user, s, c.stdout.String(), c.stderr.String())
}

// command sends one line to the client's stdin.
func (c *nodeClient) command(t *testing.T, line string) {
	t.Helper()
	_, err := io.WriteString(c.stdin, line+"\n")
	require.NoError(t, err)
}

func (c *nodeClient) closeStdin(t *testing.T) {
	t.Helper()
	require.NoError(t, c.stdin.Close())
}

// syncBuffer is a bytes.Buffer safe for one writer and many readers.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer // guarded by mu
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
