package ws_test

import (
	"context"
	"fmt"
	"strings"
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
