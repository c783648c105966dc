package ws_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	ws "github.com/vortechron/go-ws"
	"github.com/vortechron/go-ws/internal/redistest"
	"github.com/vortechron/go-ws/internal/wstest"
)

// testNode is one hub behind an httptest server.
type testNode struct {
	hub    *ws.Hub
	server *httptest.Server
	url    string
	cancel context.CancelFunc
	runErr chan error
}

// newNode starts a hub with the given backends (nil: in-memory) and
// serves it at /ws. Everything stops in t.Cleanup.
func newNode(tb testing.TB, broker ws.MessageBroker, storage ws.StorageClient, cfg ws.Config, opts *ws.Options) *testNode {
	tb.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	hub := ws.NewHub(ctx, broker, storage, cfg)
	n := &testNode{hub: hub, cancel: cancel, runErr: make(chan error, 1)}
	go func() { n.runErr <- hub.Run() }()
	mux := http.NewServeMux()
	mux.HandleFunc("/ws", func(w http.ResponseWriter, r *http.Request) {
		_ = ws.ServeWS(hub, w, r, opts)
	})
	n.server = httptest.NewServer(mux)
	n.url = "ws" + strings.TrimPrefix(n.server.URL, "http") + "/ws"
	tb.Cleanup(n.stop)
	return n
}

// awaitReady waits until every node's hub is Ready: a scenario of several
// nodes starts once each can hear the others' cluster requests.
func awaitReady(tb testing.TB, nodes ...*testNode) {
	tb.Helper()
	timeout := time.After(10 * time.Second)
	for i, n := range nodes {
		select {
		case <-n.hub.Ready():
		case <-timeout:
			tb.Fatalf("node %d was not Ready within 10s", i)
		}
	}
}

// stop shuts the hub down and waits for Run and the server to finish.
func (n *testNode) stop() {
	n.cancel()
	select {
	case <-n.hub.Done():
	case <-time.After(20 * time.Second):
		panic("hub did not stop within 20s")
	}
	n.server.Close()
}

// testClient is the tests' WebSocket client (internal/wstest) under the
// lower-case names these tests were written with.
type testClient struct{ *wstest.Client }

// dial connects to n; user (if any) is sent as the X-User header.
func (n *testNode) dial(tb testing.TB, user string) *testClient {
	tb.Helper()
	h := http.Header{}
	if user != "" {
		h.Set("X-User", user)
	}
	return &testClient{wstest.Dial(tb, n.url, h)}
}

func (c *testClient) send(v any)                             { c.TB.Helper(); c.Send(v) }
func (c *testClient) sendRaw(s string)                       { c.TB.Helper(); c.SendRaw(s) }
func (c *testClient) next() map[string]any                   { c.TB.Helper(); return c.Next() }
func (c *testClient) expect(f map[string]any) map[string]any { c.TB.Helper(); return c.Expect(f) }
func (c *testClient) subscribe(channel string)               { c.TB.Helper(); c.Subscribe(channel) }
func (c *testClient) expectQuiet()                           { c.TB.Helper(); c.Quiet() }
func (c *testClient) expectClose() int                       { c.TB.Helper(); return c.ExpectClose() }

// userOptions identifies users by the X-User header and allows every
// private and presence channel whose name does not contain "secret".
func userOptions() *ws.Options {
	return &ws.Options{
		GetUserID: func(r *http.Request) string { return r.Header.Get("X-User") },
		AuthHandler: func(userID, channel string) bool {
			return !strings.Contains(channel, "secret")
		},
		EnableWhispers: true,
	}
}

// nodeBackend starts the nodes of one test: n over the shared Redis, or
// one in memory whatever n is.
type nodeBackend struct {
	name  string
	start func(t *testing.T, n int, cfg ws.Config, opts *ws.Options) []*testNode
}

var nodeBackends = []nodeBackend{
	{"memory", func(t *testing.T, _ int, cfg ws.Config, opts *ws.Options) []*testNode {
		return []*testNode{newNode(t, nil, nil, cfg, opts)}
	}},
	{"redis", func(t *testing.T, n int, cfg ws.Config, opts *ws.Options) []*testNode {
		return redisNodes(t, n, ws.RedisOptions{Addrs: []string{redistest.Addr(t)}}, cfg, opts)
	}},
}

// connIDs records the ID the server gave each connection, by the
// client's address.
type connIDs struct {
	mu  sync.Mutex
	ids map[string]string // guarded by mu
}

// record makes opts record each connection's ID (its OnConnect) and
// returns it.
func (r *connIDs) record(opts *ws.Options) *ws.Options {
	r.ids = make(map[string]string)
	opts.OnConnect = func(c *ws.Client) {
		r.mu.Lock()
		r.ids[c.RemoteAddr] = c.ID
		r.mu.Unlock()
	}
	return opts
}

// id returns the connection ID of c, once OnConnect has recorded it.
func (r *connIDs) id(tb testing.TB, c *testClient) string {
	tb.Helper()
	var id string
	require.Eventually(tb, func() bool {
		r.mu.Lock()
		defer r.mu.Unlock()
		id = r.ids[c.Conn.LocalAddr().String()]
		return id != ""
	}, 10*time.Second, 2*time.Millisecond, "OnConnect never saw %s", c.Conn.LocalAddr())
	return id
}
