package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/require"

	ws "github.com/vortechron/go-ws"
	"github.com/vortechron/go-ws/internal/testenv"
)

// negotiationServer is a hub with compression and the subprotocol
// "v1.json" serving WebSocket connections at /ws, counting the bytes its
// sockets carry, and a second server (another origin, allowed) with a
// page that runs testdata/negotiate.js against it.
type negotiationServer struct {
	hub      *ws.Hub
	wsURL    string        // ws://host:port/ws
	page     string        // the page's URL
	in, out  *atomic.Int64 // bytes read from and written to client sockets
	offered  chan []string // what each upgrade's GetUserID saw offered
	selected chan string   // Client.Subprotocol of each connection
}

func startNegotiationServer(t *testing.T) *negotiationServer {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	hub := ws.NewHub(ctx, nil, nil, ws.Config{EnableCompression: true, Subprotocols: []string{"v1.json"},
		AllowedOrigins: []string{"http://127.0.0.1:*"}})
	go func() { _ = hub.Run() }()
	s := &negotiationServer{hub: hub, in: new(atomic.Int64), out: new(atomic.Int64),
		offered: make(chan []string, 4), selected: make(chan string, 4)}
	opts := &ws.Options{
		// The auth hook sees what the client offered, token included.
		GetUserID: func(r *http.Request) string { s.offered <- websocket.Subprotocols(r); return "" },
		OnConnect: func(c *ws.Client) { s.selected <- c.Subprotocol() },
	}
	srv := httptest.NewUnstartedServer(ws.Handler(hub, opts))
	srv.Listener = countingListener{Listener: srv.Listener, in: s.in, out: s.out}
	srv.Start()
	s.wsURL = "ws" + strings.TrimPrefix(srv.URL, "http") + "/ws"
	pages := http.NewServeMux()
	pages.HandleFunc("/negotiate.js", func(w http.ResponseWriter, r *http.Request) {
		http.ServeFile(w, r, filepath.Join("testdata", "negotiate.js"))
	})
	pages.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		_, _ = w.Write([]byte(`<!doctype html><title>negotiate</title><script src="/negotiate.js"></script>`))
	})
	pageSrv := httptest.NewServer(pages)
	s.page = pageSrv.URL + "/?ws=" + url.QueryEscape(s.wsURL)
	t.Cleanup(func() {
		cancel()
		<-hub.Done()
		srv.Close()
		pageSrv.Close()
	})
	return s
}

// publishBig publishes a 16 KB, very compressible message on "news" and
// returns how many bytes the sockets carried for it.
func (s *negotiationServer) publishBig(t *testing.T) int64 {
	t.Helper()
	before := s.out.Load()
	text := strings.Repeat("compressible chat text, ", 16<<10/24)
	require.NoError(t, s.hub.Publish(context.Background(), "news", map[string]string{"text": text}))
	require.Eventually(t, func() bool { return s.out.Load() > before }, 5*time.Second, 5*time.Millisecond)
	return int64(len(text))
}

// checkNegotiated checks the open event and what the server saw.
func (s *negotiationServer) checkNegotiated(t *testing.T, open []any) {
	t.Helper()
	require.Equal(t, "v1.json", open[1], "the client's WebSocket.protocol")
	require.Contains(t, open[2], "permessage-deflate", "the client's WebSocket.extensions")
	require.Equal(t, []string{"v1.json", "token.secret"}, <-s.offered, "GetUserID sees the offer")
	require.Equal(t, "v1.json", <-s.selected, "Client.Subprotocol")
}

// TestNegotiationInChromium: headless Chromium connects with a
// subprotocol and permessage-deflate, sends an 8 KB frame compressed, and
// reads a 16 KB publication that crossed the socket compressed.
func TestNegotiationInChromium(t *testing.T) {
	if testing.Short() {
		t.Skip("skipped in -short mode: runs Chromium")
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	alloc, cancelAlloc := newBrowser(t, ctx)
	defer cancelAlloc()
	s := startNegotiationServer(t)
	page, closePage := openPage(t, alloc, s.page)
	defer closePage()

	waitJS(t, page, "the page is ready", `has(e => e[0] === 'ready') || has(e => e[0] === 'failed')`)
	open := evalJS[[]any](t, page, `__events.find(e => e[0] === 'open')`)
	s.checkNegotiated(t, open)
	in := s.in.Load()
	require.Less(t, in, int64(4000), "the server read %d bytes in all: Chromium compresses the 8 KB frame", in)

	out := s.out.Load()
	size := s.publishBig(t)
	waitJS(t, page, "the publication arrives whole", `has(e => e[0] === 'message' && e[1] === `+jsonNumber(size)+`)`)
	require.Less(t, s.out.Load()-out, size/10, "the %d-byte publication crossed the socket compressed", size)
}

// TestNegotiationInNode does the same with the npm ws package and Node's
// own WebSocket: the machine's node (Node 20 has it behind
// --experimental-websocket), and the Node 22+ releases named in WS_NODES
// (scripts/node-matrix.sh; make test), where it is a global.
func TestNegotiationInNode(t *testing.T) {
	if testing.Short() {
		t.Skip("skipped in -short mode: runs Node")
	}
	node, err := exec.LookPath("node")
	if err != nil {
		testenv.Missing(t, testenv.RequireTools, "node is not on PATH; install Node.js 20+ to run the Node negotiation test")
	}
	modules, err := filepath.Abs(filepath.Join("..", "testdata", "readme-client", "node_modules"))
	require.NoError(t, err)
	for _, impl := range []string{"ws", "builtin"} {
		t.Run(impl, func(t *testing.T) {
			var args []string
			if impl == "ws" {
				if _, err := os.Stat(filepath.Join(modules, "ws")); err != nil {
					testenv.Missing(t, testenv.RequireTools, "the npm package ws is not installed; run npm ci --prefix testdata/readme-client (make test does)")
				}
			} else if out, _ := exec.Command(node, "-e", "process.stdout.write(typeof WebSocket)").Output(); string(out) != "function" {
				args = append(args, "--experimental-websocket") // Node 20 and 21
			}
			negotiateInNode(t, node, args, modules, impl)
		})
	}
	t.Run("global", func(t *testing.T) {
		for _, n := range testenv.NodeReleases(t, 22) {
			t.Run(n.Version, func(t *testing.T) { negotiateInNode(t, n.Path, nil, modules, "builtin") })
		}
	})
}

// negotiateInNode runs testdata/negotiate.js in node (with args before
// the script) on WebSocket implementation impl against a negotiation
// server: the subprotocol and permessage-deflate are negotiated, and a
// large publication crosses compressed and arrives whole.
func negotiateInNode(t *testing.T, node string, args []string, modules, impl string) {
	s := startNegotiationServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, append(args, filepath.Join("testdata", "negotiate.js"), impl, s.wsURL)...)
	cmd.Env = append(os.Environ(), "NODE_PATH="+modules)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	t.Cleanup(func() { cancel(); _ = cmd.Wait() })
	events := make(chan []any, 16)
	go func() {
		defer close(events)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			var e []any
			if json.Unmarshal(sc.Bytes(), &e) == nil {
				events <- e
			}
		}
	}()
	next := func(name string) []any {
		t.Helper()
		for {
			select {
			case e, ok := <-events:
				require.True(t, ok, "node exited before %q; stderr:\n%s", name, stderr.String())
				require.NotEqual(t, "failed", e[0], "node: %v; stderr:\n%s", e, stderr.String())
				if e[0] == name {
					return e
				}
			case <-ctx.Done():
				t.Fatalf("no %q from node within a minute; stderr:\n%s", name, stderr.String())
			}
		}
	}
	s.checkNegotiated(t, next("open"))
	next("ready")
	in := s.in.Load()
	if impl == "ws" {
		require.Less(t, in, int64(4000), "the server read %d bytes in all: npm ws compresses the 8 KB frame", in)
	} else {
		t.Logf("the server read %d bytes in all (an 8 KB frame among them)", in)
	}
	out := s.out.Load()
	size := s.publishBig(t)
	require.Equal(t, float64(size), next("message")[1], "the publication arrives whole")
	require.Less(t, s.out.Load()-out, size/10, "the %d-byte publication crossed the socket compressed", size)
	require.Equal(t, float64(1000), next("close")[1])
}

func jsonNumber(n int64) string {
	b, _ := json.Marshal(n)
	return string(b)
}

// countingListener counts what its connections read and write.
type countingListener struct {
	net.Listener
	in, out *atomic.Int64
}

func (l countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &countingConn{Conn: c, in: l.in, out: l.out}, nil
}

type countingConn struct {
	net.Conn
	in, out *atomic.Int64
}

func (c *countingConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.in.Add(int64(n))
	return n, err
}

func (c *countingConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	c.out.Add(int64(n))
	return n, err
}
