package ws_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/require"

	ws "github.com/vortechron/go-ws"
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

// testClient is a real WebSocket client reading synchronously.
type testClient struct {
	tb     testing.TB
	conn   *websocket.Conn
	unread []map[string]any // frames read ahead, returned first by next
}

// dial connects to n; header may carry test identity (X-User).
func (n *testNode) dial(tb testing.TB, user string) *testClient {
	tb.Helper()
	h := http.Header{}
	if user != "" {
		h.Set("X-User", user)
	}
	conn, resp, err := websocket.DefaultDialer.Dial(n.url, h)
	require.NoError(tb, err)
	resp.Body.Close()
	c := &testClient{tb: tb, conn: conn}
	tb.Cleanup(func() { conn.Close() })
	return c
}

func (c *testClient) send(v any) {
	c.tb.Helper()
	require.NoError(c.tb, c.conn.WriteJSON(v))
}

func (c *testClient) sendRaw(s string) {
	c.tb.Helper()
	require.NoError(c.tb, c.conn.WriteMessage(websocket.TextMessage, []byte(s)))
}

// next reads one frame as a map, failing after 5s.
func (c *testClient) next() map[string]any {
	c.tb.Helper()
	if len(c.unread) > 0 {
		m := c.unread[0]
		c.unread = c.unread[1:]
		return m
	}
	_ = c.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	mt, b, err := c.conn.ReadMessage()
	require.NoError(c.tb, err, "reading a frame")
	require.Equal(c.tb, websocket.TextMessage, mt)
	var m map[string]any
	require.NoError(c.tb, json.Unmarshal(b, &m), "frame %q is one JSON object", b)
	return m
}

// expect reads one frame and checks the given fields.
func (c *testClient) expect(fields map[string]any) map[string]any {
	c.tb.Helper()
	m := c.next()
	for k, want := range fields {
		require.Equal(c.tb, want, m[k], "field %q of frame %v", k, m)
	}
	return m
}

func (c *testClient) subscribe(channel string) {
	c.tb.Helper()
	c.send(map[string]any{"action": "subscribe", "channel": channel})
	c.expect(map[string]any{"type": "subscribed", "channel": channel})
}

// expectClose reads until the connection closes and returns the close code.
func (c *testClient) expectClose() int {
	c.tb.Helper()
	_ = c.conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	for {
		_, _, err := c.conn.ReadMessage()
		if err != nil {
			var ce *websocket.CloseError
			if ok := asCloseError(err, &ce); ok {
				return ce.Code
			}
			return -1
		}
	}
}

func asCloseError(err error, target **websocket.CloseError) bool {
	ce, ok := err.(*websocket.CloseError)
	if ok {
		*target = ce
	}
	return ok
}

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
