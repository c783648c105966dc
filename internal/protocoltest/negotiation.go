package protocoltest

import (
	"bufio"
	"context"
	"encoding/json"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/require"

	ws "github.com/vortechron/go-ws"
	"github.com/vortechron/go-ws/internal/wstest"
)

// deflateAnswer is the only permessage-deflate answer the server gives.
const deflateAnswer = "permessage-deflate; server_no_context_takeover; client_no_context_takeover"

// rawHandshake sends a well-formed upgrade request with the extra header
// lines and returns the answer's status and headers.
func rawHandshake(t *testing.T, wsURL string, extra ...string) *http.Response {
	t.Helper()
	parsed, err := url.Parse(wsURL)
	require.NoError(t, err)
	conn, err := net.DialTimeout("tcp", parsed.Host, readTimeout)
	require.NoError(t, err)
	defer conn.Close()
	require.NoError(t, conn.SetDeadline(time.Now().Add(readTimeout)))
	req := "GET " + parsed.Path + " HTTP/1.1\r\nHost: " + parsed.Host +
		"\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
	for _, h := range extra {
		req += h + "\r\n"
	}
	_, err = conn.Write([]byte(req + "\r\n"))
	require.NoError(t, err)
	resp, err := http.ReadResponse(bufio.NewReader(conn), &http.Request{Method: http.MethodGet})
	require.NoError(t, err, "reading the answer")
	resp.Body.Close()
	return resp
}

// deflateNegotiation holds the server to RFC 7692's negotiation: an offer
// it can honour is answered with no context takeover both ways, one it
// cannot is declined (the connection is upgraded without compression),
// and compression is off unless Config.EnableCompression.
func deflateNegotiation(t *testing.T, newServer NewServer) {
	_, on := newServer(t, ws.Config{EnableCompression: true}, nil)
	_, off := newServer(t, ws.Config{}, nil)
	for _, tc := range []struct {
		name, url, offer string
		accepted         bool
	}{
		{"compression off", off, "permessage-deflate", false},
		{"no offer", on, "", false},
		{"plain offer", on, "permessage-deflate", true},
		{"browser offer", on, "permessage-deflate; client_max_window_bits", true},
		{"client window 10", on, "permessage-deflate; client_max_window_bits=10", true},
		{"client window quoted", on, `permessage-deflate; client_max_window_bits="12"`, true},
		{"no context takeover asked", on, "permessage-deflate; server_no_context_takeover; client_no_context_takeover", true},
		{"client window 16", on, "permessage-deflate; client_max_window_bits=16", false},
		{"client window 08", on, "permessage-deflate; client_max_window_bits=08", false},
		{"server window 10", on, "permessage-deflate; server_max_window_bits=10", false},
		{"server window 10, then plain", on, "permessage-deflate; server_max_window_bits=10, permessage-deflate", true},
		{"unknown parameter", on, "permessage-deflate; foo", false},
		{"parameter twice", on, "permessage-deflate; server_no_context_takeover; server_no_context_takeover", false},
		{"takeover with a value", on, "permessage-deflate; client_no_context_takeover=1", false},
		{"another extension", on, "x-webkit-deflate-frame", false},
		{"malformed", on, "permessage-deflate; ;", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var extra []string
			if tc.offer != "" {
				extra = append(extra, "Sec-WebSocket-Extensions: "+tc.offer)
			}
			resp := rawHandshake(t, tc.url, extra...)
			require.Equal(t, http.StatusSwitchingProtocols, resp.StatusCode, "status: got %s", resp.Status)
			want := ""
			if tc.accepted {
				want = deflateAnswer
			}
			require.Equal(t, want, resp.Header.Get("Sec-WebSocket-Extensions"), "extension answer to %q", tc.offer)
		})
	}
}

// countingConn counts the bytes read from the socket.
type countingConn struct {
	net.Conn
	n *atomic.Int64
}

func (c countingConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.n.Add(int64(n))
	return n, err
}

// dialCounting dials with permessage-deflate offered or not and counts
// what the client reads.
func dialCounting(t *testing.T, u string, compress bool) (*wstest.Client, *atomic.Int64) {
	t.Helper()
	n := new(atomic.Int64)
	d := &websocket.Dialer{
		EnableCompression: compress,
		NetDialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			return countingConn{c, n}, nil
		},
	}
	return wstest.DialWith(t, d, u, nil), n
}

// compressedTraffic sends and receives compressed messages: a client that
// negotiated compression writes compressed frames (gorilla compresses
// every message it writes) and reads large publications compressed,
// while a client beside it that did not reads the same publication
// plain; small frames stay plain for both.
func compressedTraffic(t *testing.T, newServer NewServer) {
	hub, u := newServer(t, ws.Config{EnableCompression: true}, nil)
	z, zn := dialCounting(t, u, true)
	plain, pn := dialCounting(t, u, false)
	z.Subscribe("news") // a compressed subscribe frame, inflated by the server
	plain.Subscribe("news")
	z.Quiet()
	plain.Quiet()

	text := strings.Repeat("all work and no play makes a dull chat message; ", 80) // ~3.9 KB
	msg := map[string]string{"text": text}
	before, beforePlain := zn.Load(), pn.Load()
	require.NoError(t, hub.Publish(context.Background(), "news", msg))
	for _, c := range []*wstest.Client{z, plain} {
		got := c.Expect(map[string]any{"type": "message", "channel": "news"})
		b, _ := json.Marshal(got["message"])
		require.JSONEq(t, `{"text":`+string(mustJSON(t, text))+`}`, string(b), "message body")
	}
	zBytes, plainBytes := zn.Load()-before, pn.Load()-beforePlain
	require.Greater(t, plainBytes, int64(len(text)), "the plain client read the whole message")
	require.Less(t, zBytes, plainBytes/4, "the compressing client read %d bytes for a %d-byte frame", zBytes, plainBytes)

	// A small publication goes plain to both; the compressing client still
	// reads it.
	require.NoError(t, hub.Publish(context.Background(), "news", "hi"))
	z.Expect(map[string]any{"type": "message", "message": "hi"})
	plain.Expect(map[string]any{"type": "message", "message": "hi"})
	// Whispers and pings from a compressing client work too.
	z.Send(map[string]any{"action": "ping"})
	z.Expect(map[string]any{"type": "pong"})
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	require.NoError(t, err)
	return b
}

// subprotocolNegotiation: the server selects the first of
// Config.Subprotocols the client offered, in the server's order; a
// client that offers none is accepted with none; one that offers only
// others is refused with 400 and both lists; GetUserID sees the offer.
func subprotocolNegotiation(t *testing.T, newServer NewServer) {
	offered := make(chan []string, 8)
	selected := make(chan string, 8)
	errs := newErrors()
	_, u := newServer(t, ws.Config{Subprotocols: []string{"v2.json", "v1.json"}}, &ws.Options{
		GetUserID: func(r *http.Request) string {
			offered <- websocket.Subprotocols(r)
			return "u"
		},
		OnConnect:    func(c *ws.Client) { selected <- c.Subprotocol() },
		ErrorHandler: errs.handle,
	})
	for _, tc := range []struct {
		name  string
		offer []string
		want  string
	}{
		{"server's order wins", []string{"v1.json", "v2.json"}, "v2.json"},
		{"the one offered", []string{"token.abc", "v1.json"}, "v1.json"},
		{"none offered", nil, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := &websocket.Dialer{Subprotocols: tc.offer}
			c := wstest.DialWith(t, d, u, nil)
			require.Equal(t, tc.want, c.Conn.Subprotocol(), "subprotocol in the answer")
			require.Equal(t, tc.offer, nilIfEmpty(<-offered), "GetUserID sees the offer")
			require.Equal(t, tc.want, <-selected, "Client.Subprotocol")
			c.Subscribe("news")
		})
	}
	t.Run("none spoken here", func(t *testing.T) {
		resp := rawHandshake(t, u, "Sec-WebSocket-Protocol: v3.json, mqtt")
		require.Equal(t, http.StatusBadRequest, resp.StatusCode, "status: got %s", resp.Status)
		require.Empty(t, resp.Header.Get("Sec-WebSocket-Protocol"))
		var ce *ws.ConnectionError
		errs.next(t, &ce)
		require.Contains(t, ce.Reason, "none of the offered subprotocols (v3.json, mqtt) is spoken here; this server speaks v2.json, v1.json")
	})
}

func nilIfEmpty(s []string) []string {
	if len(s) == 0 {
		return nil
	}
	return s
}
