package ws_test

import (
	"context"
	"crypto/tls"
	"net"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/require"

	ws "github.com/vortechron/go-ws"
	"github.com/vortechron/go-ws/internal/wstest"
)

// TestTLSBurstIsCoalesced serves wss (crypto/tls, as ListenAndServeTLS
// does) and publishes a burst of 300 small frames and one of 100 KB: every
// client gets all of them, in order, and the small frames cost far less
// than a TLS record each on the wire (a record adds 22 bytes to a frame).
func TestTLSBurstIsCoalesced(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	hub := ws.NewHub(ctx, nil, nil, ws.Config{})
	go func() { _ = hub.Run() }()
	srv := httptest.NewTLSServer(ws.Handler(hub, nil))
	t.Cleanup(func() {
		cancel()
		<-hub.Done()
		srv.Close()
	})
	u := "wss" + strings.TrimPrefix(srv.URL, "https")

	type counted struct {
		c *wstest.Client
		n *atomic.Int64
	}
	var clients []counted
	for range 3 {
		n := new(atomic.Int64)
		d := &websocket.Dialer{
			TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, // httptest's own certificate
			NetDialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
				c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
				if err != nil {
					return nil, err
				}
				return countingConn{c, n}, nil
			},
		}
		c := wstest.DialWith(t, d, u, nil)
		c.Subscribe("burst")
		clients = append(clients, counted{c, n})
	}
	before := make([]int64, len(clients))
	for i, c := range clients {
		before[i] = c.n.Load()
	}
	const burst = 300
	frameBytes := 0
	for i := range burst {
		msg := `{"seq":` + strconv.Itoa(i) + `,"pad":"` + strings.Repeat("x", 60) + `"}`
		frameBytes += 2 + len(`{"type":"message","channel":"burst","message":}`) + len(msg)
		require.NoError(t, hub.Publish(context.Background(), "burst", []byte(msg)))
	}
	for i, c := range clients {
		for seq := range burst {
			m := c.c.Expect(map[string]any{"type": "message", "channel": "burst"})
			require.Equal(t, float64(seq), m["message"].(map[string]any)["seq"], "client %d, in order", i)
		}
		wire := c.n.Load() - before[i]
		// A record per frame would add burst*22 bytes. Alone under -race
		// the test measured 33-75 records for the 300 frames, and 85 once
		// beside the whole suite, so the bound is half that: 150.
		require.Less(t, wire, int64(frameBytes+burst*22/2),
			"client %d read %d bytes for %d bytes of frames: want far fewer than a record per frame", i, wire, frameBytes)
		t.Logf("client %d: %d wire bytes for %d bytes of %d frames", i, wire, frameBytes, burst)
	}
	big := strings.Repeat("y", 100<<10) // larger than one coalesced Write
	require.NoError(t, hub.Publish(context.Background(), "burst", big))
	for _, c := range clients {
		c.c.Expect(map[string]any{"type": "message", "message": big})
	}
}
