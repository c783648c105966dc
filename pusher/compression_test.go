package pusher_test

import (
	"context"
	"net"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/require"

	ws "github.com/vortechron/go-ws"
)

// TestPusherClientsNegotiateCompression: with Config.EnableCompression, a
// Pusher client offering permessage-deflate (pusher-js in a browser does)
// gets it on the net/http endpoint, and a large event crosses the socket
// compressed and arrives whole.
func TestPusherClientsNegotiateCompression(t *testing.T) {
	n := newNode(t, nil, nil, ws.Config{EnableCompression: true}, nil, nil)
	read := new(atomic.Int64)
	d := &websocket.Dialer{
		EnableCompression: true,
		NetDialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			return countingConn{c, read}, nil
		},
	}
	conn, resp, err := d.Dial("ws"+strings.TrimPrefix(n.base, "http")+"/app/"+testApp.Key+"?protocol=7", nil)
	require.NoError(t, err)
	resp.Body.Close()
	t.Cleanup(func() { conn.Close() })
	require.Equal(t, "permessage-deflate; server_no_context_takeover; client_no_context_takeover",
		resp.Header.Get("Sec-WebSocket-Extensions"), "extension answer")
	c := &pclient{t: t, conn: conn}
	f := c.next()
	require.Equal(t, "pusher:connection_established", f["event"])
	c.socketID = f["data"].(map[string]any)["socket_id"].(string)
	c.subscribe("news")

	text := strings.Repeat("a compressible event body; ", 300) // ~8 KB, under the API limit
	before := read.Load()
	n.trigger(t, map[string]any{"name": "Posted", "channel": "news", "data": text})
	got := c.expect("Posted", "news")
	require.Equal(t, text, got["data"])
	require.Less(t, read.Load()-before, int64(len(text)/4), "the event crossed the socket compressed")
}

// countingConn counts the bytes read from the socket.
type countingConn struct {
	net.Conn
	n *atomic.Int64
}

func (c countingConn) Read(p []byte) (int, error) {
	k, err := c.Conn.Read(p)
	c.n.Add(int64(k))
	return k, err
}
