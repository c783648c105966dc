package ws_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/require"

	ws "github.com/vortechron/go-ws"
	"github.com/vortechron/go-ws/internal/wstest"
)

// The tests in this file hold the defaults README.md documents for a zero
// ws.Config, over real connections: each hub is made with ws.Config{} (or
// with only the feature switched on), so a changed default fails here.

// TestReadmeDefaultMaxMessageSize proves README.md's "Limits and
// security" row: "`Config.MaxMessageSize` | 64 KiB | close 1009". A client
// frame of exactly 64 KiB is read and answered; one byte more closes that
// connection with 1009, and a bystander keeps receiving.
func TestReadmeDefaultMaxMessageSize(t *testing.T) {
	const limit = 64 << 10
	n := newNode(t, nil, nil, ws.Config{}, nil)
	bystander := n.dial(t, "")
	bystander.subscribe("news")

	ping := `{"action":"ping"}`
	padded := func(size int) string { return ping + strings.Repeat(" ", size-len(ping)) } // JSON may end in spaces

	exact := n.dial(t, "")
	exact.sendRaw(padded(limit))
	exact.expect(map[string]any{"type": "pong"})

	over := n.dial(t, "")
	// The server may close before the frame is written whole.
	_ = over.Conn.WriteMessage(websocket.TextMessage, []byte(padded(limit+1)))
	require.NoError(t, over.Conn.SetReadDeadline(time.Now().Add(wstest.ReadTimeout)))
	_, answer, err := over.Conn.ReadMessage()
	require.Error(t, err, "got frame %.40q for a frame of 64 KiB + 1, want close %d", answer, ws.CloseMessageTooBig)
	var ce *websocket.CloseError
	require.ErrorAs(t, err, &ce, "connection ended without a close frame")
	require.Equal(t, ws.CloseMessageTooBig, ce.Code, "got close code %d for a frame of 64 KiB + 1, want %d", ce.Code, ws.CloseMessageTooBig)

	require.NoError(t, n.hub.Publish(context.Background(), "news", "still here"))
	bystander.expect(map[string]any{"type": "message", "channel": "news", "message": "still here"})
	exact.expectQuiet()
}

// TestReadmeDefaultMaxChannelsPerClient proves README.md's "Limits and
// security" row: "`Config.MaxChannelsPerClient` | 100 | `error` frame
// `too_many_channels`". One connection subscribes to 100 channels; the
// 101st subscribe is answered with an error frame naming the action and
// the channel, and the connection stays open on its 100 channels.
func TestReadmeDefaultMaxChannelsPerClient(t *testing.T) {
	const limit = 100
	n := newNode(t, nil, nil, ws.Config{}, nil)
	c := n.dial(t, "")
	for i := range limit + 1 {
		c.send(map[string]any{"action": "subscribe", "channel": fmt.Sprintf("room-%d", i)})
	}
	for i := range limit {
		c.expect(map[string]any{"type": "subscribed", "channel": fmt.Sprintf("room-%d", i)})
	}
	refused := c.next()
	want := map[string]any{"type": "error", "code": ws.CodeTooManyChannels, "action": "subscribe", "channel": fmt.Sprintf("room-%d", limit)}
	for k, v := range want {
		require.Equal(t, v, refused[k], "field %q of the answer to subscribe number %d: got %v, want %v", k, limit+1, refused[k], v)
	}
	require.Equal(t, int64(limit), n.hub.Stats().Subscriptions, "got subscriptions, want the cap")

	require.NoError(t, n.hub.Publish(context.Background(), fmt.Sprintf("room-%d", limit-1), "last one in"))
	c.expect(map[string]any{"type": "message", "channel": fmt.Sprintf("room-%d", limit-1), "message": "last one in"})
}

// TestReadmeDefaultCompressionThreshold proves README.md's "Compression
// and subprotocols": "frames under `Config.CompressionThreshold` (128
// bytes) go as they are". With compression on and the threshold left
// zero, a publication whose frame payload is 127 bytes reaches a client
// that negotiated compression plain, and one of 128 bytes compressed.
func TestReadmeDefaultCompressionThreshold(t *testing.T) {
	const threshold = 128
	n := newNode(t, nil, nil, ws.Config{EnableCompression: true}, nil)
	c := n.dialRaw(t, true)
	c.send(t, `{"action":"subscribe","channel":"room"}`)
	require.Equal(t, "\x81\x26"+`{"type":"subscribed","channel":"room"}`, string(c.frame(t)), "a plain acknowledgement")

	// {"type":"message","channel":"room","message":"sss…"}: 48 bytes and the s's.
	const envelope = len(`{"type":"message","channel":"room","message":""}`)
	for _, tc := range []struct {
		payload int
		first   byte
		what    string
	}{
		{threshold - 1, 0x81, "FIN|text: plain"},
		{threshold, 0xC1, "FIN|RSV1|text: compressed"},
	} {
		require.NoError(t, n.hub.Publish(context.Background(), "room", strings.Repeat("s", tc.payload-envelope)))
		f := c.frame(t)
		require.Equal(t, tc.first, f[0], "a %d-byte payload: got first byte %#x, want %#x (%s)", tc.payload, f[0], tc.first, tc.what)
		if tc.first == 0x81 {
			require.Equal(t, 4+tc.payload, len(f), "header (with a 16-bit length) and payload, uncompressed")
		}
	}
}

// TestHandlerReportsEachErrorOnce proves README.md: "ws.Handler(hub,
// options) is ServeWS as an http.Handler ...: it hands every such error
// to ErrorHandler once, so there is nothing left to log" — a refusal by
// the origin check, by a connection limit, and a request that is not a
// WebSocket handshake each reach ErrorHandler exactly once.
func TestHandlerReportsEachErrorOnce(t *testing.T) {
	leakCheck(t)
	ctx, cancel := context.WithCancel(context.Background())
	hub := ws.NewHub(ctx, nil, nil, ws.Config{MaxConnections: 1})
	ran := make(chan error, 1)
	go func() { ran <- hub.Run() }()
	var mu sync.Mutex
	var errs []error
	opts := &ws.Options{ErrorHandler: func(err error) {
		mu.Lock()
		errs = append(errs, err)
		mu.Unlock()
	}}
	reported := func() []error {
		mu.Lock()
		defer mu.Unlock()
		return slices.Clone(errs)
	}
	srv := httptest.NewServer(ws.Handler(hub, opts))
	t.Cleanup(func() {
		srv.Close()
		cancel()
		<-hub.Done()
		require.NoError(t, <-ran)
	})
	url := "ws" + strings.TrimPrefix(srv.URL, "http")

	// The origin check.
	_, resp, err := websocket.DefaultDialer.Dial(url, http.Header{"Origin": {"https://evil.example"}})
	require.Error(t, err)
	require.Equal(t, http.StatusForbidden, resp.StatusCode)
	resp.Body.Close()
	require.Len(t, reported(), 1, "after a refusal by origin: got %v, want one report", reported())

	// Not a WebSocket handshake.
	resp, err = http.Get(srv.URL)
	require.NoError(t, err)
	resp.Body.Close()
	require.GreaterOrEqual(t, resp.StatusCode, 400, "a plain GET got %d", resp.StatusCode)
	require.Len(t, reported(), 2, "after a plain GET: got %v, want one more report", reported())

	// The connection limit.
	c := wstest.Dial(t, url, nil)
	defer c.Conn.Close()
	_, resp, err = websocket.DefaultDialer.Dial(url, nil)
	require.Error(t, err)
	require.Equal(t, http.StatusServiceUnavailable, resp.StatusCode)
	resp.Body.Close()
	require.Len(t, reported(), 3, "after a refusal by MaxConnections: got %v, want one more report", reported())

	// A hub whose Run has not started (ServeWS waits a second for it).
	idle := ws.NewHub(ctx, nil, nil, ws.Config{})
	defer func() { _ = idle.Shutdown(context.Background()) }()
	before := len(reported())
	idleSrv := httptest.NewServer(ws.Handler(idle, opts))
	defer idleSrv.Close()
	_, resp, err = websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(idleSrv.URL, "http"), nil)
	require.Error(t, err)
	require.Equal(t, http.StatusServiceUnavailable, resp.StatusCode)
	resp.Body.Close()
	got := reported()[before:]
	require.Len(t, got, 1, "after a request to a hub that is not running: got %v, want one report", got)
	require.ErrorIs(t, got[0], ws.ErrHubNotRunning)
}
