package ws_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/require"

	ws "github.com/vortechron/go-ws"
)

func TestPublishReachesEverySubscriber(t *testing.T) {
	n := newNode(t, nil, nil, ws.Config{}, nil)
	a, b, other := n.dial(t, ""), n.dial(t, ""), n.dial(t, "")
	a.subscribe("news")
	b.subscribe("news")
	other.subscribe("sport")

	require.NoError(t, n.hub.Publish(context.Background(), "news", map[string]string{"title": "hi"}))
	want := map[string]any{"type": "message", "channel": "news", "message": map[string]any{"title": "hi"}}
	a.expect(want)
	b.expect(want)

	require.NoError(t, n.hub.Publish(context.Background(), "sport", "goal"))
	other.expect(map[string]any{"type": "message", "channel": "sport", "message": "goal"})
}

func TestPublishOrder(t *testing.T) {
	n := newNode(t, nil, nil, ws.Config{}, nil)
	c := n.dial(t, "")
	c.subscribe("ticks")
	const total = 1000
	go func() {
		for i := range total {
			if err := n.hub.Publish(context.Background(), "ticks", i); err != nil {
				return
			}
		}
	}()
	for i := range total {
		m := c.expect(map[string]any{"type": "message"})
		require.Equal(t, float64(i), m["message"], "message %d arrived out of order", i)
	}
}

func TestUnsubscribeStopsDeliveryAndFreesChannel(t *testing.T) {
	n := newNode(t, nil, nil, ws.Config{}, nil)
	c := n.dial(t, "")
	c.subscribe("a")
	c.subscribe("b")
	c.send(map[string]any{"action": "unsubscribe", "channel": "a"})
	c.expect(map[string]any{"type": "unsubscribed", "channel": "a"})
	require.Eventually(t, func() bool { return n.hub.Stats().Channels == 1 }, 5*time.Second, 5*time.Millisecond)

	require.NoError(t, n.hub.Publish(context.Background(), "a", "lost"))
	require.NoError(t, n.hub.Publish(context.Background(), "b", "kept"))
	c.expect(map[string]any{"type": "message", "channel": "b", "message": "kept"})

	c.send(map[string]any{"action": "unsubscribe", "channel": "a"})
	c.expect(map[string]any{"type": "error", "code": ws.CodeNotSubscribed, "action": "unsubscribe", "channel": "a"})

	c.Conn.Close()
	require.Eventually(t, func() bool {
		s := n.hub.Stats()
		return s.Channels == 0 && s.Subscriptions == 0 && s.Connections == 0
	}, 5*time.Second, 5*time.Millisecond)
}

func TestMalformedInputGetsErrorFrames(t *testing.T) {
	var reported atomic.Int64
	opts := &ws.Options{ErrorHandler: func(err error) {
		var pe *ws.ProtocolError
		if errors.As(err, &pe) {
			reported.Add(1)
		}
	}}
	n := newNode(t, nil, nil, ws.Config{}, opts)
	c := n.dial(t, "")
	cases := []struct {
		name, frame, code string
	}{
		{"not json", `hello`, ws.CodeBadRequest},
		{"truncated", `{"action":"subscribe"`, ws.CodeBadRequest},
		{"array", `[1,2]`, ws.CodeBadRequest},
		{"two objects", `{"action":"ping"}{"action":"ping"}`, ws.CodeBadRequest},
		{"missing action", `{"channel":"x"}`, ws.CodeBadRequest},
		{"unknown action", `{"action":"explode","channel":"x"}`, ws.CodeUnknownAction},
		{"bad channel", `{"action":"subscribe","channel":"a b"}`, ws.CodeInvalidChannel},
		{"empty channel", `{"action":"subscribe","channel":""}`, ws.CodeInvalidChannel},
		{"client publish", `{"action":"publish","channel":"x","message":1}`, ws.CodeForbidden},
		{"channel wrong type", `{"action":"subscribe","channel":5}`, ws.CodeBadRequest},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c.TB = t
			c.sendRaw(tc.frame)
			m := c.expect(map[string]any{"type": "error", "code": tc.code})
			require.NotEmpty(t, m["error"])
			require.Equal(t, int64(i+1), reported.Load())
		})
	}
	c.TB = t
	c.subscribe("still-works")
	c.send(map[string]any{"action": "ping"})
	c.expect(map[string]any{"type": "pong"})
}

func TestSlowConsumerIsDisconnectedAlone(t *testing.T) {
	cfg := ws.Config{SendQueueBytes: 256 << 10, WriteTimeout: 2 * time.Second}
	var disconnected atomic.Int64
	var reason atomic.Pointer[error]
	opts := &ws.Options{OnDisconnect: func(c *ws.Client) {
		if disconnected.Add(1) == 1 {
			err := c.DisconnectReason()
			reason.Store(&err)
		}
	}}
	n := newNode(t, nil, nil, cfg, opts)
	slow := n.dial(t, "")
	slow.subscribe("firehose")
	fast := n.dial(t, "")
	fast.subscribe("firehose")

	// The slow client never reads again. The fast one reads each message
	// before the next is published, so only the slow queue grows.
	payload := strings.Repeat("x", 32<<10)
	sent := 0
	for ; sent < 5000 && n.hub.Stats().SlowConsumers == 0; sent++ {
		require.NoError(t, n.hub.Publish(context.Background(), "firehose", payload))
		fast.expect(map[string]any{"type": "message"})
	}
	require.Equal(t, int64(1), n.hub.Stats().SlowConsumers, "slow consumer not detected after %d messages", sent)
	require.Eventually(t, func() bool { return disconnected.Load() == 1 }, 10*time.Second, 5*time.Millisecond)
	require.ErrorIs(t, *reason.Load(), ws.ErrSlowConsumer)
	for range 10 {
		require.NoError(t, n.hub.Publish(context.Background(), "firehose", "after"))
		fast.expect(map[string]any{"type": "message", "message": "after"})
	}
	require.Eventually(t, func() bool { return n.hub.Stats().Connections == 1 }, 5*time.Second, 5*time.Millisecond)
}

func TestShutdownClosesClientsWithGoingAway(t *testing.T) {
	n := newNode(t, nil, nil, ws.Config{}, nil)
	cs := []*testClient{n.dial(t, ""), n.dial(t, "")}
	for _, c := range cs {
		c.subscribe("x")
	}
	n.cancel()
	for _, c := range cs {
		require.Equal(t, ws.CloseGoingAway, c.expectClose())
	}
	select {
	case err := <-n.runErr:
		require.NoError(t, err)
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
	require.ErrorIs(t, n.hub.Publish(context.Background(), "x", 1), ws.ErrHubClosed)
}

func TestPingTimeoutClosesSilentClient(t *testing.T) {
	cfg := ws.Config{PingInterval: 50 * time.Millisecond, PongTimeout: 200 * time.Millisecond}
	var reason atomic.Value
	gone := make(chan struct{})
	opts := &ws.Options{OnDisconnect: func(c *ws.Client) { reason.Store(c.DisconnectReason()); close(gone) }}
	n := newNode(t, nil, nil, cfg, opts)
	c := n.dial(t, "")
	c.subscribe("x")
	// The client stops reading, so it never answers a ping.
	select {
	case <-gone:
	case <-time.After(10 * time.Second):
		t.Fatal("silent client was not disconnected")
	}
	var cr *ws.CloseReason
	require.ErrorAs(t, reason.Load().(error), &cr)
	require.Equal(t, ws.ClosePingTimeout, cr.Code)
}

func TestReadingClientSurvivesPings(t *testing.T) {
	// A generous PongTimeout: the test is about pings being answered, and
	// -race on a busy machine can delay a pong by tens of milliseconds.
	cfg := ws.Config{PingInterval: 20 * time.Millisecond, PongTimeout: time.Second}
	n := newNode(t, nil, nil, cfg, nil)
	c := n.dial(t, "")
	c.subscribe("x")
	// gorilla answers pings while ReadMessage runs. Two and a half
	// PongTimeouts pass: without pongs the server would have closed.
	deadline := time.Now().Add(2500 * time.Millisecond)
	for time.Now().Before(deadline) {
		c.send(map[string]any{"action": "ping"})
		c.expect(map[string]any{"type": "pong"})
	}
	require.NoError(t, n.hub.Publish(context.Background(), "x", 1))
	c.expect(map[string]any{"type": "message"})
}

func TestOversizeFrameCloses1009(t *testing.T) {
	n := newNode(t, nil, nil, ws.Config{MaxMessageSize: 1024}, nil)
	bystander := n.dial(t, "")
	bystander.subscribe("x")
	c := n.dial(t, "")
	c.sendRaw(fmt.Sprintf(`{"action":"subscribe","channel":"%0990d"}`, 0)[:0] + string(make([]byte, 2048)))
	require.Equal(t, ws.CloseMessageTooBig, c.expectClose())
	require.NoError(t, n.hub.Publish(context.Background(), "x", 1))
	bystander.expect(map[string]any{"type": "message"})
}

func TestInvalidConfigIsReported(t *testing.T) {
	cfg := ws.Config{PingInterval: time.Minute, PongTimeout: time.Second}
	err := cfg.Validate()
	var ce *ws.ConfigError
	require.ErrorAs(t, err, &ce)
	require.Equal(t, "PongTimeout", ce.Field)
	hub := ws.NewHub(context.Background(), nil, nil, cfg)
	require.ErrorAs(t, hub.Run(), &ce)
	require.ErrorAs(t, hub.Err(), &ce)
}

func TestPublishRejectsBadInput(t *testing.T) {
	n := newNode(t, nil, nil, ws.Config{}, nil)
	require.ErrorIs(t, n.hub.Publish(context.Background(), "bad name", 1), ws.ErrInvalidChannel)
	require.Error(t, n.hub.Publish(context.Background(), "x", json.RawMessage("{")))
	require.Error(t, n.hub.Publish(context.Background(), "x", func() {}))
}

// TestSubscribedMeansLive: once a client has "subscribed", every
// publication made after it reaches the client. The acknowledgement must
// not reach the socket before the client is in the channel's snapshot,
// or a publication made the moment it arrives finds nobody to deliver to.
func TestSubscribedMeansLive(t *testing.T) {
	n := newNode(t, nil, nil, ws.Config{}, nil)
	c := n.dial(t, "")
	const channels = 2000
	for i := range channels {
		ch := fmt.Sprintf("live-%d", i)
		c.subscribe(ch)
		require.NoError(t, n.hub.Publish(context.Background(), ch, i))
		c.expect(map[string]any{"type": "message", "channel": ch, "message": float64(i)})
		c.send(map[string]any{"action": "unsubscribe", "channel": ch})
		c.expect(map[string]any{"type": "unsubscribed", "channel": ch})
	}
}

// TestServeWSBeforeRunRefuses: a hub whose Run was never started answers
// an upgrade with 503 and ServeWS returns ErrHubNotRunning, within the
// grace it gives a Run that is just being scheduled, instead of blocking
// the request forever.
func TestServeWSBeforeRunRefuses(t *testing.T) {
	hub := ws.NewHub(context.Background(), nil, nil, ws.Config{})
	t.Cleanup(func() { _ = hub.Shutdown(context.Background()) })
	errs := make(chan error, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		errs <- ws.ServeWS(hub, w, r, nil)
	}))
	t.Cleanup(srv.Close)
	start := time.Now()
	_, resp, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(srv.URL, "http"), nil)
	require.Error(t, err)
	require.Equal(t, http.StatusServiceUnavailable, resp.StatusCode)
	require.ErrorIs(t, <-errs, ws.ErrHubNotRunning)
	require.Less(t, time.Since(start), 3*time.Second, "refused after %v", time.Since(start))
}

// TestSendAgreesWithPublish: Client.Send encodes a message as Publish
// does: []byte and json.RawMessage holding JSON go as they are (not
// base64), a string becomes a JSON string.
func TestSendAgreesWithPublish(t *testing.T) {
	clients := make(chan *ws.Client, 1)
	n := newNode(t, nil, nil, ws.Config{}, &ws.Options{OnConnect: func(c *ws.Client) { clients <- c }})
	c := n.dial(t, "")
	server := <-clients
	require.True(t, server.Send([]byte(`{"type":"note","n":1}`)))
	c.expect(map[string]any{"type": "note", "n": float64(1)})
	require.True(t, server.Send(json.RawMessage(`{"type":"note","n":2}`)))
	c.expect(map[string]any{"type": "note", "n": float64(2)})
	require.True(t, server.Send(map[string]any{"type": "note", "n": 3}))
	c.expect(map[string]any{"type": "note", "n": float64(3)})
	require.False(t, server.Send([]byte("not json")), "bytes that are not JSON are refused, as Publish refuses them")
	c.expectQuiet()
}
