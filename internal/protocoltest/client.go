package protocoltest

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/require"
)

// readTimeout bounds every frame a test waits for.
const readTimeout = 5 * time.Second

// client is a real WebSocket client that reads synchronously.
type client struct {
	tb   testing.TB
	conn *websocket.Conn
}

// dial connects to wsURL with header and fails the test if it cannot.
// The connection is closed at cleanup.
func dial(tb testing.TB, wsURL string, header http.Header) *client {
	tb.Helper()
	conn, resp, err := websocket.DefaultDialer.Dial(wsURL, header)
	if resp != nil {
		resp.Body.Close()
	}
	require.NoError(tb, err, "dial %s", wsURL)
	tb.Cleanup(func() { conn.Close() })
	return &client{tb: tb, conn: conn}
}

// dialRefused dials wsURL with header, expects the handshake to be
// refused, and returns the HTTP response with its body read.
func dialRefused(tb testing.TB, wsURL string, header http.Header) (*http.Response, string) {
	tb.Helper()
	conn, resp, err := websocket.DefaultDialer.Dial(wsURL, header)
	if err == nil {
		conn.Close()
		tb.Fatalf("dial %s: got an upgraded connection, want a refusal", wsURL)
	}
	require.ErrorIs(tb, err, websocket.ErrBadHandshake)
	require.NotNil(tb, resp, "refused dial has an HTTP response")
	// gorilla keeps up to 1 KiB of the refusal's body for us.
	body := make([]byte, 1024)
	n, _ := resp.Body.Read(body)
	resp.Body.Close()
	return resp, string(body[:n])
}

func withUser(name string) http.Header { return http.Header{"X-User": {name}} }

func (c *client) send(v any) {
	c.tb.Helper()
	require.NoError(c.tb, c.conn.WriteJSON(v))
}

func (c *client) sendRaw(s string) {
	c.tb.Helper()
	require.NoError(c.tb, c.conn.WriteMessage(websocket.TextMessage, []byte(s)))
}

// next reads one frame as a JSON object.
func (c *client) next() map[string]any {
	c.tb.Helper()
	_ = c.conn.SetReadDeadline(time.Now().Add(readTimeout))
	mt, b, err := c.conn.ReadMessage()
	require.NoError(c.tb, err, "reading a frame")
	require.Equal(c.tb, websocket.TextMessage, mt, "frame type")
	var m map[string]any
	require.NoError(c.tb, json.Unmarshal(b, &m), "frame %q is one JSON object", b)
	return m
}

// expect reads one frame and checks the given fields.
func (c *client) expect(fields map[string]any) map[string]any {
	c.tb.Helper()
	m := c.next()
	for k, want := range fields {
		require.Equal(c.tb, want, m[k], "field %q of frame %v", k, m)
	}
	return m
}

func (c *client) subscribe(channel string) {
	c.tb.Helper()
	c.send(map[string]any{"action": "subscribe", "channel": channel})
	c.expect(map[string]any{"type": "subscribed", "channel": channel})
}

// quiet proves nothing else was queued for c: a ping's pong is the very
// next frame.
func (c *client) quiet() {
	c.tb.Helper()
	c.send(map[string]any{"action": "ping"})
	c.expect(map[string]any{"type": "pong"})
}

// expectClose reads until the server closes the connection and returns
// the close code.
func (c *client) expectClose() int {
	c.tb.Helper()
	_ = c.conn.SetReadDeadline(time.Now().Add(2 * readTimeout))
	for {
		if _, _, err := c.conn.ReadMessage(); err != nil {
			var ce *websocket.CloseError
			require.ErrorAs(c.tb, err, &ce, "connection ended without a close frame")
			return ce.Code
		}
	}
}

// httpURL turns a ws:// URL into the http:// URL of the same endpoint.
func httpURL(tb testing.TB, wsURL string) string {
	tb.Helper()
	u, err := url.Parse(wsURL)
	require.NoError(tb, err)
	u.Scheme = "http"
	return u.String()
}

// errorsOf collects what Options.ErrorHandler receives.
type errorsOf struct {
	ch chan error
}

func newErrors() *errorsOf { return &errorsOf{ch: make(chan error, 64)} }

func (e *errorsOf) handle(err error) {
	select {
	case e.ch <- err:
	default:
	}
}

// next waits for the next reported error that matches target (as
// errors.As), skipping others.
func (e *errorsOf) next(tb testing.TB, target any) {
	tb.Helper()
	deadline := time.After(readTimeout)
	for {
		select {
		case err := <-e.ch:
			if errors.As(err, target) {
				return
			}
		case <-deadline:
			tb.Fatalf("ErrorHandler got no %T within %s", target, readTimeout)
		}
	}
}
