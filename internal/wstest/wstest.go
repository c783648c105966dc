// Package wstest is the WebSocket client the tests talk to a hub with: a
// real connection (gorilla/websocket) read synchronously, one JSON frame
// at a time, whose helpers fail the test saying what was wrong. The root
// package's tests and the protocol table (internal/protocoltest) both use
// it.
package wstest

import (
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/require"
)

// ReadTimeout bounds every frame a test waits for; ExpectClose waits
// twice as long.
const ReadTimeout = 5 * time.Second

// Client is one test connection. Its methods fail TB on any error.
type Client struct {
	// TB is the test the client reports to. A client shared by subtests
	// may be pointed at each subtest in turn.
	TB testing.TB
	// Conn is the connection, for what the helpers do not cover (closing
	// without a close frame, raw control frames, read deadlines).
	Conn *websocket.Conn
	// Unread holds frames read ahead; Next returns them first.
	Unread []map[string]any
}

// Dial connects to wsURL with header (nil: none) and fails tb if it
// cannot. The connection is closed at tb's cleanup.
func Dial(tb testing.TB, wsURL string, header http.Header) *Client {
	tb.Helper()
	return DialWith(tb, websocket.DefaultDialer, wsURL, header)
}

// DialWith is Dial with the dialer d (one with a custom NetDialContext,
// for example).
func DialWith(tb testing.TB, d *websocket.Dialer, wsURL string, header http.Header) *Client {
	tb.Helper()
	conn, resp, err := d.Dial(wsURL, header)
	if resp != nil {
		resp.Body.Close()
	}
	require.NoError(tb, err, "dial %s", wsURL)
	return New(tb, conn)
}

// New wraps an open connection; it is closed at tb's cleanup.
func New(tb testing.TB, conn *websocket.Conn) *Client {
	tb.Cleanup(func() { conn.Close() })
	return &Client{TB: tb, Conn: conn}
}

// DialRefused dials wsURL with header, expects the handshake to be
// refused, and returns the HTTP response with its body read.
func DialRefused(tb testing.TB, wsURL string, header http.Header) (*http.Response, string) {
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

// Send writes v as one JSON text frame.
func (c *Client) Send(v any) {
	c.TB.Helper()
	require.NoError(c.TB, c.Conn.WriteJSON(v))
}

// SendRaw writes s as one text frame, as is.
func (c *Client) SendRaw(s string) {
	c.TB.Helper()
	require.NoError(c.TB, c.Conn.WriteMessage(websocket.TextMessage, []byte(s)))
}

// Next returns the next frame, which must be a text frame holding one
// JSON object, failing after ReadTimeout.
func (c *Client) Next() map[string]any {
	c.TB.Helper()
	if len(c.Unread) > 0 {
		m := c.Unread[0]
		c.Unread = c.Unread[1:]
		return m
	}
	_ = c.Conn.SetReadDeadline(time.Now().Add(ReadTimeout))
	mt, b, err := c.Conn.ReadMessage()
	require.NoError(c.TB, err, "reading a frame")
	require.Equal(c.TB, websocket.TextMessage, mt, "frame type")
	var m map[string]any
	require.NoError(c.TB, json.Unmarshal(b, &m), "frame %q is one JSON object", b)
	return m
}

// Expect reads the next frame and checks the given fields of it.
func (c *Client) Expect(fields map[string]any) map[string]any {
	c.TB.Helper()
	m := c.Next()
	for k, want := range fields {
		require.Equal(c.TB, want, m[k], "field %q of frame %v", k, m)
	}
	return m
}

// Subscribe subscribes to channel and expects the acknowledgement as the
// next frame.
func (c *Client) Subscribe(channel string) {
	c.TB.Helper()
	c.Send(map[string]any{"action": "subscribe", "channel": channel})
	c.Expect(map[string]any{"type": "subscribed", "channel": channel})
}

// Quiet proves that no frame is waiting for c: it sends a ping and
// requires the pong to be the next frame. Frames reach a client in the
// order they were queued, so anything queued before the ping would come
// first.
func (c *Client) Quiet() {
	c.TB.Helper()
	c.Send(map[string]any{"action": "ping"})
	m := c.Next()
	require.Equal(c.TB, "pong", m["type"], "got frame %v, want no frame before the pong", m)
}

// ExpectClose reads until the server closes the connection and returns
// the close code. A connection that ends without a close frame fails the
// test.
func (c *Client) ExpectClose() int {
	c.TB.Helper()
	_ = c.Conn.SetReadDeadline(time.Now().Add(2 * ReadTimeout))
	for {
		if _, _, err := c.Conn.ReadMessage(); err != nil {
			var ce *websocket.CloseError
			require.ErrorAs(c.TB, err, &ce, "connection ended without a close frame")
			return ce.Code
		}
	}
}
