package ws_test

import (
	"context"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vortechron/go-ws/internal/testenv"

	"github.com/stretchr/testify/require"
)

// readmeClientMarker is the line in README.md after which the first js
// block is the client TestReadmeClientInNode runs.
const readmeClientMarker = "<!-- readme_client_test.go runs the next js block in Node against examples/basic. -->"

// TestReadmeClientInNode runs the README's JavaScript client, taken from
// README.md as written, in Node against examples/basic: alice connects,
// then bob; each sees the other through presence, bob's whisper reaches
// alice, a publication reaches both, and when bob leaves alice's list is
// back to herself. The client's own console.log lines are what the test
// reads. The machine's node runs it on the npm "ws" package's WebSocket
// (installed with npm ci in testdata/readme-client when missing); the
// Node 22+ releases named in WS_NODES run it on Node's own, as the README
// says they can. before.js and after.js there are the only code around
// the README's.
func TestReadmeClientInNode(t *testing.T) {
	if testing.Short() {
		t.Skip("skipped in -short mode: builds examples/basic and runs Node")
	}
	dir := filepath.Join("testdata", "readme-client")
	node := readmeClientNode(t, dir)
	script := readmeClientScript(t, dir)
	addr := startBasicExample(t)

	t.Run("node", func(t *testing.T) { readmeClientSession(t, node, dir, script, addr, "package") })
	// The README says Node 22+ runs it on its own WebSocket: so it does on
	// the Node releases of WS_NODES (scripts/node-matrix.sh; make test).
	t.Run("global", func(t *testing.T) {
		for _, n := range testenv.NodeReleases(t, 22) {
			t.Run(n.Version, func(t *testing.T) { readmeClientSession(t, n.Path, dir, script, addr, "global") })
		}
	})
}

// readmeClientSession is alice and bob running the README's client in
// node, with the ws package's WebSocket or (ws "global") Node's own.
func readmeClientSession(t *testing.T, node, dir, script, addr, ws string) {
	alice := startNodeClient(t, node, dir, script, addr, "alice", ws)
	alice.waitFor(t, "Subscribed to news")
	alice.waitFor(t, "Subscribed to presence-lobby")
	alice.waitFor(t, "Presence members: 1 online [ { id: 'alice', info: { name: 'alice' } } ]")

	bob := startNodeClient(t, node, dir, script, addr, "bob", ws)
	bob.waitFor(t, "Subscribed to news")
	bob.waitFor(t, "Presence members: 2 online [\n  { id: 'alice', info: { name: 'alice' } },\n  { id: 'bob', info: { name: 'bob' } }\n]")
	alice.waitFor(t, "Presence join: 2 online [\n  { id: 'alice', info: { name: 'alice' } },\n  { id: 'bob', info: { name: 'bob' } }\n]")
	// bob whispers once subscribed, and alice is subscribed already.
	alice.waitFor(t, "Whisper from bob: typing { isTyping: true }")

	resp, err := http.Post("http://"+addr+"/publish?channel=news", "application/json",
		strings.NewReader(`{"text":"hello from Go"}`))
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusNoContent, resp.StatusCode)
	for _, c := range []*nodeClient{alice, bob} {
		c.waitFor(t, "New message: { text: 'hello from Go' }")
	}

	// bob leaves: his socket closes and alice's list is back to herself.
	bob.closeStdin(t)
	bob.waitFor(t, "Closed:")
	alice.waitFor(t, "Presence leave: 1 online [ { id: 'alice', info: { name: 'alice' } } ]")
	alice.closeStdin(t)
	alice.waitFor(t, "Closed:")
	for _, c := range []*nodeClient{alice, bob} {
		// The sender never gets its own whisper.
		require.NotContains(t, c.stdout.String(), "Whisper from "+c.user)
		// No error frame, no exception (a send before open throws).
		require.Empty(t, c.stderr.String(), "node client %s wrote to stderr", c.user)
	}
}

// readmeClientScript writes the README's client, between the harness's
// before.js and after.js, to a file and returns its path.
func readmeClientScript(t *testing.T, dir string) string {
	t.Helper()
	readme, err := os.ReadFile("README.md")
	require.NoError(t, err)
	code := readmeJSBlock(t, string(readme))
	var script strings.Builder
	for _, part := range []string{"before.js", "", "after.js"} {
		if part == "" {
			script.WriteString("// README.md, the js block after the marker:\n" + code)
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, part))
		require.NoError(t, err)
		script.Write(b)
	}
	path := filepath.Join(t.TempDir(), "client.js")
	require.NoError(t, os.WriteFile(path, []byte(script.String()), 0o644))
	return path
}

// readmeJSBlock returns the body of the first ```js block after
// readmeClientMarker in readme.
func readmeJSBlock(t *testing.T, readme string) string {
	t.Helper()
	_, rest, ok := strings.Cut(readme, readmeClientMarker+"\n")
	require.True(t, ok, "README.md has no line %q", readmeClientMarker)
	_, rest, ok = strings.Cut(rest, "```js\n")
	require.True(t, ok, "README.md has no ```js block after %q", readmeClientMarker)
	code, _, ok := strings.Cut(rest, "```\n")
	require.True(t, ok, "the README's js block after %q does not end", readmeClientMarker)
	return code
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

	var logs testenv.Buffer
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

// nodeClient is one running `node client.js`, connecting as user.
type nodeClient struct {
	user   string
	stdin  io.WriteCloser
	stdout testenv.Buffer
	stderr testenv.Buffer
	exited chan struct{} // closed once node has exited and its output is read
}

// startNodeClient runs script in node as user against the server at
// addr. Ending its stdin closes its socket.
func startNodeClient(t *testing.T, node, dir, script, addr, user, ws string) *nodeClient {
	t.Helper()
	modules, err := filepath.Abs(filepath.Join(dir, "node_modules"))
	require.NoError(t, err)
	c := &nodeClient{user: user, exited: make(chan struct{})}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	cmd := exec.CommandContext(ctx, node, script)
	cmd.Env = append(os.Environ(), "NODE_PATH="+modules, "WS_TEST_HOST="+addr, "WS_TEST_USER="+user, "WS_TEST_WEBSOCKET="+ws)
	cmd.Stdout, cmd.Stderr = &c.stdout, &c.stderr
	cmd.WaitDelay = 5 * time.Second
	stdin, err := cmd.StdinPipe()
	require.NoError(t, err)
	c.stdin = stdin
	require.NoError(t, cmd.Start())
	go func() { _ = cmd.Wait(); close(c.exited) }()
	t.Cleanup(func() {
		_ = stdin.Close() // the client closes its socket and exits
		select {
		case <-c.exited:
		case <-time.After(5 * time.Second):
		}
		cancel() // kills node if it is still running
		<-c.exited
		if t.Failed() || testing.Verbose() {
			t.Logf("node client %s (%s) stdout:\n%s\nstderr:\n%s", user, script, c.stdout.String(), c.stderr.String())
		}
	})
	return c
}

// waitFor waits until the client's stdout contains s, failing after 15s
// or as soon as node exits without having printed it.
func (c *nodeClient) waitFor(t *testing.T, s string) {
	t.Helper()
	deadline := time.NewTimer(15 * time.Second)
	defer deadline.Stop()
	poll := time.NewTicker(10 * time.Millisecond)
	defer poll.Stop()
	for !strings.Contains(c.stdout.String(), s) {
		select {
		case <-c.exited:
			if strings.Contains(c.stdout.String(), s) {
				return
			}
			t.Fatalf("node client %s exited without printing %q; stdout:\n%s\nstderr:\n%s",
				c.user, s, c.stdout.String(), c.stderr.String())
		case <-deadline.C:
			t.Fatalf("node client %s did not print %q within 15s; stdout:\n%s\nstderr:\n%s",
				c.user, s, c.stdout.String(), c.stderr.String())
		case <-poll.C:
		}
	}
}

func (c *nodeClient) closeStdin(t *testing.T) {
	t.Helper()
	require.NoError(t, c.stdin.Close())
}
