package ws_test

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/require"

	ws "github.com/vortechron/go-ws"
	"github.com/vortechron/go-ws/internal/bridge"
	"github.com/vortechron/go-ws/internal/wstest"
)

// dialDeflate dials n offering permessage-deflate, as browsers do, and
// checks the server accepted it. gorilla's client then compresses every
// message it writes.
func (n *testNode) dialDeflate(tb testing.TB) *testClient {
	tb.Helper()
	d := &websocket.Dialer{EnableCompression: true}
	conn, resp, err := d.Dial(n.url, nil)
	require.NoError(tb, err)
	resp.Body.Close()
	require.Equal(tb, "permessage-deflate; server_no_context_takeover; client_no_context_takeover",
		resp.Header.Get("Sec-WebSocket-Extensions"), "extension answer")
	return &testClient{wstest.New(tb, conn)}
}

// TestCompressedClientFramesAreHeldToMaxMessageSize: a compressed client
// frame is inflated within MaxMessageSize. Exactly the limit is read; one
// byte more, or a zip bomb (10 MB of zeros, about 10 KB on the wire),
// closes the connection with 1009 and is reported, while a bystander
// keeps receiving.
func TestCompressedClientFramesAreHeldToMaxMessageSize(t *testing.T) {
	const limit = 4096
	log := &errorLog{}
	n := newNode(t, nil, nil, ws.Config{EnableCompression: true, MaxMessageSize: limit}, &ws.Options{ErrorHandler: log.handle})
	bystander := n.dialDeflate(t)
	bystander.subscribe("x")

	ping := `{"action":"ping"}`
	exact := n.dialDeflate(t)
	exact.sendRaw(ping + strings.Repeat(" ", limit-len(ping))) // JSON may end in spaces
	exact.expect(map[string]any{"type": "pong"})

	for _, tc := range []struct {
		name string
		size int
	}{
		{"one byte over after inflating", limit + 1},
		{"zip bomb", 10 << 20},
	} {
		t.Run(tc.name, func(t *testing.T) {
			at := log.len()
			c := n.dialDeflate(t)
			// gorilla compresses what it writes; the server may close
			// before a 10 MB message is written whole.
			_ = c.Conn.WriteMessage(websocket.TextMessage, []byte(ping+strings.Repeat(" ", tc.size-len(ping))))
			require.Equal(t, ws.CloseMessageTooBig, c.expectClose(), "close code")
			log.waitFor(t, at, func(err error) bool {
				var pe *ws.ProtocolError
				return errors.As(err, &pe) && pe.Code == ws.CodeMessageTooLarge
			})
			require.NoError(t, n.hub.Publish(context.Background(), "x", 1))
			bystander.expect(map[string]any{"type": "message"})
		})
	}
}

// rawClient is a WebSocket client that reads frames as they are on the
// wire, for tests about the bytes themselves.
type rawClient struct {
	conn net.Conn
	br   *bufio.Reader
}

// dialRaw upgrades a raw connection to n, offering permessage-deflate as
// Chromium does when deflate is set (and then requiring it).
func (n *testNode) dialRaw(t testing.TB, deflate bool) *rawClient {
	t.Helper()
	u, err := url.Parse(n.url)
	require.NoError(t, err)
	conn, err := net.Dial("tcp", u.Host)
	require.NoError(t, err)
	t.Cleanup(func() { conn.Close() })
	require.NoError(t, conn.SetDeadline(time.Now().Add(wstest.ReadTimeout)))
	ext := ""
	if deflate {
		ext = "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n"
	}
	_, err = conn.Write([]byte("GET " + u.Path + " HTTP/1.1\r\nHost: " + u.Host +
		"\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==" +
		"\r\nSec-WebSocket-Version: 13\r\n" + ext + "\r\n"))
	require.NoError(t, err)
	r := &rawClient{conn: conn, br: bufio.NewReader(conn)}
	resp, err := http.ReadResponse(r.br, &http.Request{Method: http.MethodGet})
	require.NoError(t, err)
	require.Equal(t, http.StatusSwitchingProtocols, resp.StatusCode)
	if deflate {
		require.NotEmpty(t, resp.Header.Get("Sec-WebSocket-Extensions"), "compression negotiated")
	}
	return r
}

// send writes text as one masked, uncompressed text frame.
func (r *rawClient) send(t testing.TB, text string) {
	t.Helper()
	require.Less(t, len(text), 126)
	f := append([]byte{0x81, 0x80 | byte(len(text)), 0, 0, 0, 0}, text...) // a zero mask
	_, err := r.conn.Write(f)
	require.NoError(t, err)
}

// frame reads one whole server frame, header included.
func (r *rawClient) frame(t testing.TB) []byte {
	t.Helper()
	hdr := make([]byte, 2, 10)
	_, err := io.ReadFull(r.br, hdr)
	require.NoError(t, err)
	n := int(hdr[1] & 0x7F)
	switch n {
	case 126:
		hdr = hdr[:4]
		_, err = io.ReadFull(r.br, hdr[2:])
		n = int(binary.BigEndian.Uint16(hdr[2:]))
	case 127:
		hdr = hdr[:10]
		_, err = io.ReadFull(r.br, hdr[2:])
		n = int(binary.BigEndian.Uint64(hdr[2:]))
	}
	require.NoError(t, err)
	p := make([]byte, n)
	_, err = io.ReadFull(r.br, p)
	require.NoError(t, err)
	return append(hdr, p...)
}

// TestCompressedFrameIsSharedBytes: every subscriber that negotiated
// compression reads the same compressed frame, byte for byte (made once
// for the publication and shared); a frame under CompressionThreshold
// goes plain, compressible or not; acknowledgements are plain.
func TestCompressedFrameIsSharedBytes(t *testing.T) {
	n := newNode(t, nil, nil, ws.Config{EnableCompression: true, CompressionThreshold: 200}, nil)
	var clients []*rawClient
	for range 3 {
		c := n.dialRaw(t, true)
		c.send(t, `{"action":"subscribe","channel":"room"}`)
		require.Equal(t, "\x81\x26"+`{"type":"subscribed","channel":"room"}`, string(c.frame(t)), "a plain acknowledgement")
		clients = append(clients, c)
	}
	big := map[string]string{"text": strings.Repeat("compress me once, please; ", 40)}
	require.NoError(t, n.hub.Publish(context.Background(), "room", big))
	first := clients[0].frame(t)
	require.Equal(t, byte(0xC1), first[0], "FIN|RSV1|text: the frame is compressed")
	require.Less(t, len(first), 200, "a %d-byte frame", len(first))
	for _, c := range clients[1:] {
		require.Equal(t, first, c.frame(t), "every subscriber reads the same compressed frame")
	}
	// {"type":"message","channel":"room","message":"sss…"}: 198 bytes.
	require.NoError(t, n.hub.Publish(context.Background(), "room", strings.Repeat("s", 150)))
	small := clients[0].frame(t)
	require.Equal(t, byte(0x81), small[0], "a frame whose payload is under the threshold goes plain")
	require.Equal(t, 4+198, len(small), "header and payload")
}

func TestCompressionAndSubprotocolConfigIsValidated(t *testing.T) {
	for _, tc := range []struct {
		cfg   ws.Config
		field string
	}{
		{ws.Config{CompressionLevel: 10}, "CompressionLevel"},
		{ws.Config{CompressionLevel: -1}, "CompressionLevel"},
		{ws.Config{CompressionThreshold: -1}, "CompressionThreshold"},
		{ws.Config{Subprotocols: []string{"v1 json"}}, "Subprotocols"},
		{ws.Config{Subprotocols: []string{""}}, "Subprotocols"},
		{ws.Config{Subprotocols: []string{"v1", "v1"}}, "Subprotocols"},
	} {
		err := tc.cfg.Validate()
		var ce *ws.ConfigError
		require.ErrorAs(t, err, &ce, "%+v", tc.cfg)
		require.Equal(t, tc.field, ce.Field, "got %v", err)
	}
	require.NoError(t, ws.Config{EnableCompression: true, CompressionLevel: 9, CompressionThreshold: 1,
		Subprotocols: []string{"v2.json", "mqtt", "x.y-z"}}.Validate())
}

// TestUpgraderThatIgnoresTheNegotiationGetsNeither: an adaptor that
// upgrades through the bridge without sending ResponseHeader's answer
// (as a custom upgrader might) gets a connection served uncompressed and
// without a subprotocol, so a client that offered both still reads it.
func TestUpgraderThatIgnoresTheNegotiationGetsNeither(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	hub := ws.NewHub(ctx, nil, nil, ws.Config{EnableCompression: true, Subprotocols: []string{"v1"}})
	go func() { _ = hub.Run() }()
	selected := make(chan string, 1)
	opts := &ws.Options{OnConnect: func(c *ws.Client) { selected <- c.Subprotocol() }}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hs := bridge.Prepare(hub, w, r, opts, 0)
		if hs == nil {
			return
		}
		up := websocket.Upgrader{} // no compression, no subprotocols
		conn, err := up.Upgrade(w, r, nil)
		if err != nil {
			_ = hs.Fail(err)
			return
		}
		go func() { _ = hs.Serve(conn) }()
	}))
	t.Cleanup(func() {
		cancel()
		<-hub.Done()
		srv.Close()
	})
	d := &websocket.Dialer{EnableCompression: true, Subprotocols: []string{"v1"}}
	conn, resp, err := d.Dial("ws"+strings.TrimPrefix(srv.URL, "http"), nil)
	require.NoError(t, err)
	resp.Body.Close()
	require.Empty(t, resp.Header.Get("Sec-WebSocket-Extensions"))
	require.Equal(t, "", <-selected, "Client.Subprotocol")
	c := wstest.New(t, conn)
	c.Subscribe("x")
	big := strings.Repeat("uncompressed, as the handshake said; ", 100)
	require.NoError(t, hub.Publish(context.Background(), "x", big))
	c.Expect(map[string]any{"type": "message", "message": big})
}
