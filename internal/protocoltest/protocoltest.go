// Package protocoltest is the end-to-end test table of the WebSocket
// endpoint. It runs against anything that serves a ws.Hub, so ws.ServeWS
// and every adaptor are held to one behaviour: the protocol, identity,
// authorization, presence, whispers, the pre-upgrade checks, middleware,
// statistics and shutdown.
package protocoltest

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	ws "github.com/vortechron/go-ws"
	"github.com/vortechron/go-ws/internal/wstest"
)

// NewServer starts a running hub with cfg (nil backends: in memory) and
// an HTTP server whose endpoint serves it with opts, and returns the hub
// and the endpoint's ws:// URL. Both stop in t.Cleanup.
type NewServer func(t *testing.T, cfg ws.Config, opts *ws.Options) (hub *ws.Hub, wsURL string)

// Run runs every case against servers made by newServer.
func Run(t *testing.T, newServer NewServer) {
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.run(t, newServer)
		})
	}
}

var cases = []struct {
	name string
	run  func(t *testing.T, newServer NewServer)
}{
	{"subscribe is acknowledged", subscribeAck},
	{"publish reaches every subscriber", publishFanOut},
	{"unsubscribe stops delivery", unsubscribe},
	{"malformed frame gets an error frame", malformedFrame},
	{"unknown action gets an error frame", unknownAction},
	{"private channel identity from header", privateChannel(fromHeader)},
	{"private channel identity from query", privateChannel(fromQuery)},
	{"private channel identity from cookie", privateChannel(fromCookie)},
	{"GetUserID sees the real request", realRequest},
	{"presence lists members and announces join and leave", presence},
	{"whisper reaches the others only", whisper},
	{"foreign origin is refused with 403", originRefused},
	{"MaxConnections refuses with 503 and frees slots", maxConnections},
	{"MaxConnectionsPerIP refuses with 429", maxConnectionsPerIP},
	{"middleware runs in order and can refuse", middleware},
	{"plain HTTP request fails the upgrade with 400", notWebSocket},
	{"handshakes are held to RFC 6455", handshakeStrictness},
	{"permessage-deflate is negotiated as RFC 7692 asks", deflateNegotiation},
	{"compressed frames both ways, shared with plain clients", compressedTraffic},
	{"subprotocols are negotiated in the server's order", subprotocolNegotiation},
	{"server close ends the connection without the peer", serverClose},
	{"shutdown closes every client with 1001", shutdown},
}

func subscribeAck(t *testing.T, newServer NewServer) {
	hub, u := newServer(t, ws.Config{}, nil)
	c := wstest.Dial(t, u, nil)
	c.Subscribe("news")
	c.Send(map[string]any{"action": "subscribe", "channel": "news"}) // again: acked again
	c.Expect(map[string]any{"type": "subscribed", "channel": "news"})
	c.Quiet()
	s := hub.Stats()
	require.Equal(t, int64(1), s.Connections, "Stats.Connections")
	require.Equal(t, int64(1), s.Channels, "Stats.Channels")
	require.Equal(t, int64(1), s.Subscriptions, "Stats.Subscriptions")
	require.Equal(t, int64(3), s.MessagesIn, "Stats.MessagesIn")
}

func publishFanOut(t *testing.T, newServer NewServer) {
	hub, u := newServer(t, ws.Config{}, nil)
	a, b, other := wstest.Dial(t, u, nil), wstest.Dial(t, u, nil), wstest.Dial(t, u, nil)
	a.Subscribe("news")
	b.Subscribe("news")
	other.Subscribe("sport")

	ctx := context.Background()
	require.NoError(t, hub.Publish(ctx, "news", map[string]string{"title": "hi"}))
	require.NoError(t, hub.Publish(ctx, "sport", "goal"))
	want := map[string]any{"type": "message", "channel": "news", "message": map[string]any{"title": "hi"}}
	a.Expect(want)
	b.Expect(want)
	other.Expect(map[string]any{"type": "message", "channel": "sport", "message": "goal"})
	for _, c := range []*wstest.Client{a, b, other} {
		c.Quiet()
	}
	s := hub.Stats()
	require.Equal(t, int64(2), s.Publishes, "Stats.Publishes")
	require.Equal(t, int64(3), s.MessagesOut, "Stats.MessagesOut")
}

func unsubscribe(t *testing.T, newServer NewServer) {
	hub, u := newServer(t, ws.Config{}, nil)
	c := wstest.Dial(t, u, nil)
	c.Subscribe("a")
	c.Subscribe("b")
	c.Send(map[string]any{"action": "unsubscribe", "channel": "a"})
	c.Expect(map[string]any{"type": "unsubscribed", "channel": "a"})

	require.NoError(t, hub.Publish(context.Background(), "a", "lost"))
	require.NoError(t, hub.Publish(context.Background(), "b", "kept"))
	c.Expect(map[string]any{"type": "message", "channel": "b", "message": "kept"})

	c.Send(map[string]any{"action": "unsubscribe", "channel": "a"})
	c.Expect(map[string]any{"type": "error", "code": ws.CodeNotSubscribed, "action": "unsubscribe", "channel": "a"})
	require.Eventually(t, func() bool { return hub.Stats().Channels == 1 }, readTimeout, time.Millisecond,
		"Stats.Channels after unsubscribe: got %d, want 1", hub.Stats().Channels)
}

func malformedFrame(t *testing.T, newServer NewServer) {
	errs := newErrors()
	hub, u := newServer(t, ws.Config{}, &ws.Options{ErrorHandler: errs.handle})
	c := wstest.Dial(t, u, nil)
	c.SendRaw(`{"action":"subscribe"`)
	m := c.Expect(map[string]any{"type": "error", "code": ws.CodeBadRequest})
	require.NotEmpty(t, m["error"], "error frame says what was wrong")
	var pe *ws.ProtocolError
	errs.next(t, &pe)
	require.Equal(t, ws.CodeBadRequest, pe.Code)
	c.Subscribe("still-works")
	require.Equal(t, int64(1), hub.Stats().Errors["protocol"], `Stats.Errors["protocol"]`)
}

func unknownAction(t *testing.T, newServer NewServer) {
	_, u := newServer(t, ws.Config{}, nil)
	c := wstest.Dial(t, u, nil)
	c.SendRaw(`{"action":"explode","channel":"x"}`)
	c.Expect(map[string]any{"type": "error", "code": ws.CodeUnknownAction, "action": "explode", "channel": "x"})
	c.Quiet()
}
