package pusher_test

import (
	"bufio"
	"context"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	ws "github.com/vortechron/go-ws"
	"github.com/vortechron/go-ws/internal/testenv"
)

// nodeDir holds the npm packages the acceptance scenarios use: the real
// laravel-echo 2.x, pusher-js 8.x and pusher (the Node server SDK).
var nodeDir = filepath.Join("testdata", "node")

var installOnce sync.Once

// nodeBin returns the node binary after installing the scenarios' npm
// packages (npm ci) if they are missing, or skips the test (fails it under
// WS_REQUIRE_TOOLS=1) saying what is missing.
func nodeBin(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("skipped in -short mode: runs Node with npm packages")
	}
	node, err := exec.LookPath("node")
	if err != nil {
		testenv.Missing(t, testenv.RequireTools, "node is not on PATH; install Node.js 18+ to run the Laravel Echo and pusher-js tests")
	}
	var installErr string
	installOnce.Do(func() {
		if _, err := os.Stat(filepath.Join(nodeDir, "node_modules", "laravel-echo")); err == nil {
			return
		}
		npm, err := exec.LookPath("npm")
		if err != nil {
			installErr = "npm is not on PATH; run npm ci --prefix " + nodeDir
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		if out, err := exec.CommandContext(ctx, npm, "ci", "--no-audit", "--no-fund", "--prefix", nodeDir).CombinedOutput(); err != nil {
			installErr = "npm ci --prefix " + nodeDir + " failed: " + err.Error() + "\n" + string(out)
		}
	})
	if installErr != "" {
		testenv.Missing(t, testenv.RequireTools, "%s", installErr)
	}
	if _, err := os.Stat(filepath.Join(nodeDir, "node_modules", "laravel-echo")); err != nil {
		testenv.Missing(t, testenv.RequireTools, "%s/node_modules is missing; run npm ci --prefix %s", nodeDir, nodeDir)
	}
	return node
}

// scenario is a Node scenario running against Go servers: its stdout is
// read line by line as it comes.
type scenario struct {
	t      *testing.T
	cmd    *exec.Cmd
	lines  chan string
	stderr testenv.Buffer
	mu     sync.Mutex
	out    []string
	done   chan error
}

// runScenario starts `node <script>` against the given nodes.
func runScenario(t *testing.T, script string, nodes ...*node) *scenario {
	t.Helper()
	return runScenarioOn(t, nodeBin(t), script, nodes...)
}

// runScenarioOn is runScenario on the node binary bin.
func runScenarioOn(t *testing.T, bin, script string, nodes ...*node) *scenario {
	t.Helper()
	hosts := make([]string, len(nodes))
	for i, n := range nodes {
		u, err := url.Parse(n.base)
		require.NoError(t, err)
		hosts[i] = u.Host
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	cmd := exec.CommandContext(ctx, bin, script)
	cmd.Dir = nodeDir
	cmd.Env = append(os.Environ(),
		"PUSHER_APP_ID="+testApp.ID, "PUSHER_KEY="+testApp.Key, "PUSHER_SECRET="+testApp.Secret,
		"PUSHER_NODES="+strings.Join(hosts, ","))
	cmd.WaitDelay = 5 * time.Second
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	s := &scenario{t: t, cmd: cmd, lines: make(chan string, 100), done: make(chan error, 1)}
	cmd.Stderr = &s.stderr
	require.NoError(t, cmd.Start())
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			s.mu.Lock()
			s.out = append(s.out, sc.Text())
			s.mu.Unlock()
			s.lines <- sc.Text()
		}
		close(s.lines)
		s.done <- cmd.Wait()
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-s.done
	})
	return s
}

// waitFor reads lines until one equals want.
func (s *scenario) waitFor(want string) {
	s.t.Helper()
	timeout := time.After(30 * time.Second)
	for {
		select {
		case line, ok := <-s.lines:
			if !ok {
				s.t.Fatalf("scenario ended before %q:\n%s\nstderr:\n%s", want, s.output(), s.stderr.String())
			}
			if line == want {
				return
			}
		case <-timeout:
			s.t.Fatalf("no %q within 30s:\n%s\nstderr:\n%s", want, s.output(), s.stderr.String())
		}
	}
}

// finish waits for the scenario to print "done" and exit 0, and logs its
// steps.
func (s *scenario) finish() {
	s.t.Helper()
	s.waitFor("done")
	for range s.lines {
	}
	err := <-s.done
	s.done <- err // for the cleanup
	require.NoError(s.t, err, "scenario exit:\n%s\nstderr:\n%s", s.output(), s.stderr.String())
	s.t.Logf("scenario steps:\n%s", s.output())
}

func (s *scenario) output() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return strings.Join(s.out, "\n")
}

// TestLaravelEchoAndServerSDK runs the real laravel-echo 2.x, pusher-js 8.x
// and pusher server SDK against one node: Echo's channel().listen(),
// private(), join().here().joining().leaving(), whisper() and
// listenForWhisper(); the SDK's trigger (one and several channels, with
// socket_id exclusion), triggerBatch, get of channels and users,
// terminateUserConnections, a wrong secret, authenticateUser and signin,
// authorizeChannel. testdata/node/echo.mjs checks each step. It runs on
// the machine's node, then on each Node release listed in WS_NODES
// (scripts/node-matrix.sh; make test sets it).
func TestLaravelEchoAndServerSDK(t *testing.T) {
	bin := nodeBin(t)
	t.Run("node", func(t *testing.T) {
		n := newNode(t, nil, nil, wsConfig(), userOptions(), nil)
		runScenarioOn(t, bin, "echo.mjs", n).finish()
	})
	t.Run("matrix", func(t *testing.T) {
		for _, r := range testenv.NodeReleases(t, 18) {
			t.Run(r.Version, func(t *testing.T) {
				n := newNode(t, nil, nil, wsConfig(), userOptions(), nil)
				runScenarioOn(t, r.Path, "echo.mjs", n).finish()
			})
		}
	})
}

// TestPusherJSReconnectsAfterShutdown shuts a node down gracefully under a
// pusher-js client (Laravel Echo): the client is closed with 4200 and
// reconnects by itself, to the node that took over the address, and
// resubscribes; a publication there reaches it.
func TestPusherJSReconnectsAfterShutdown(t *testing.T) {
	nodeBin(t)
	first := newNode(t, nil, nil, wsConfig(), userOptions(), nil)
	s := runScenario(t, "reconnect.mjs", first)
	s.waitFor("subscribed")
	require.NoError(t, first.hub.PublishWith(context.Background(), "news", map[string]string{"id": "before"}, ws.PublishOptions{Event: "Posted"}))
	s.waitFor("got before")

	addr := strings.TrimPrefix(first.base, "http://")
	first.stop(t)
	s.waitFor(`error {"code":4200,"message":"server shutting down"}`)
	var ln net.Listener
	require.Eventually(t, func() bool {
		var err error
		ln, err = net.Listen("tcp", addr)
		return err == nil
	}, 10*time.Second, 10*time.Millisecond, "listen on %s again", addr)
	second := newNodeOn(t, ln, nil, nil, wsConfig(), userOptions(), nil)
	s.waitFor("subscribed")
	require.NoError(t, second.hub.PublishWith(context.Background(), "news", map[string]string{"id": "last"}, ws.PublishOptions{Event: "Posted"}))
	s.finish()
	require.Regexp(t, `(?s)connected \d+\.\d+.*state connected connecting.*connected \d+\.\d+`, s.output(), "a second connection")
}
