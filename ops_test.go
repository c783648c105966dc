package ws_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/require"

	ws "github.com/vortechron/go-ws"
	"github.com/vortechron/go-ws/internal/wstest"
)

// fakeBroker is a MemoryBroker with switches: Publish can be made to fail
// and the broker can report itself unhealthy, as a Redis broker that lost
// its connection would.
type fakeBroker struct {
	*ws.MemoryBroker
	failPublish atomic.Bool
	down        atomic.Bool
}

var (
	_ ws.MessageBroker = (*fakeBroker)(nil)
	_ ws.BrokerHealth  = (*fakeBroker)(nil)
)

func newFakeBroker() *fakeBroker { return &fakeBroker{MemoryBroker: ws.NewMemoryBroker()} }

func (b *fakeBroker) Publish(ctx context.Context, channel string, payload []byte) error {
	if b.failPublish.Load() {
		return errors.New("fake broker: publish refused")
	}
	return b.MemoryBroker.Publish(ctx, channel, payload)
}

func (b *fakeBroker) Healthy() bool { return !b.down.Load() && b.MemoryBroker.Healthy() }

// countingConn counts the bytes a test client reads from the socket.
type countingConn struct {
	net.Conn
	n *atomic.Int64
}

func (c countingConn) Read(p []byte) (int, error) {
	k, err := c.Conn.Read(p)
	c.n.Add(int64(k))
	return k, err
}

// dialCounting connects like dial and counts every byte the server sends
// after the upgrade response into received.
func (n *testNode) dialCounting(tb testing.TB, user string, received *atomic.Int64) *testClient {
	tb.Helper()
	d := websocket.Dialer{NetDialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		return countingConn{Conn: c, n: received}, nil
	}}
	c := &testClient{wstest.DialWith(tb, &d, n.url, http.Header{"X-User": {user}})}
	// The server sends nothing before the client's first frame, so what
	// was read so far is exactly the upgrade response.
	received.Store(0)
	return c
}

// closeNormally sends a close frame and reads until the server's reply.
func (c *testClient) closeNormally() int {
	c.TB.Helper()
	msg := websocket.FormatCloseMessage(websocket.CloseNormalClosure, "")
	require.NoError(c.TB, c.Conn.WriteControl(websocket.CloseMessage, msg, time.Now().Add(5*time.Second)))
	return c.expectClose()
}

func TestStatsCountScriptedScenario(t *testing.T) {
	broker := newFakeBroker()
	cfg := ws.Config{RateLimit: ws.RateLimit{Messages: 5, Interval: time.Hour}, MaxMessageSize: 1024}
	n := newNode(t, broker, nil, cfg, userOptions())

	const clients, publications = 5, 3
	cs := make([]*testClient, clients)
	received := make([]atomic.Int64, clients)
	for i := range cs {
		cs[i] = n.dialCounting(t, fmt.Sprintf("u%d", i), &received[i])
	}
	// One request refused before the upgrade: a foreign Origin.
	_, resp, err := websocket.DefaultDialer.Dial(n.url, http.Header{"Origin": {"https://evil.example"}})
	require.Error(t, err)
	require.Equal(t, http.StatusForbidden, resp.StatusCode)

	for _, c := range cs {
		c.subscribe("news")
	}
	cs[0].subscribe("private-chat")
	cs[1].subscribe("private-chat")
	for i := range publications {
		require.NoError(t, n.hub.Publish(context.Background(), "news", i))
	}
	for _, c := range cs {
		for range publications {
			c.expect(map[string]any{"type": "message", "channel": "news"})
		}
	}
	whisper := map[string]any{"action": "whisper", "channel": "private-chat", "event": "typing", "data": map[string]any{}}
	cs[0].send(whisper)
	cs[1].expect(map[string]any{"type": "whisper", "from": "u0"})

	// Errors of several kinds.
	cs[2].send(map[string]any{"action": "subscribe", "channel": "private-secret"})
	cs[2].expect(map[string]any{"type": "error", "code": ws.CodeUnauthorized})
	cs[2].send(whisper)
	cs[2].expect(map[string]any{"type": "error", "code": ws.CodeNotSubscribed})
	cs[3].sendRaw("hello")
	cs[3].expect(map[string]any{"type": "error", "code": ws.CodeBadRequest})
	cs[3].send(map[string]any{"action": "explode"})
	cs[3].expect(map[string]any{"type": "error", "code": ws.CodeUnknownAction})
	for range 4 { // with its subscribe, the five frames the limit allows
		cs[4].send(map[string]any{"action": "ping"})
		cs[4].expect(map[string]any{"type": "pong"})
	}
	for range 2 {
		cs[4].send(map[string]any{"action": "ping"})
		cs[4].expect(map[string]any{"type": "error", "code": ws.CodeRateLimited})
	}
	broker.failPublish.Store(true)
	require.ErrorIs(t, n.hub.Publish(context.Background(), "news", "lost"), ws.ErrBrokerUnavailable)
	cs[1].send(whisper)
	cs[1].expect(map[string]any{"type": "error", "code": ws.CodeUnavailable})
	broker.failPublish.Store(false)

	want := ws.Stats{
		Connections:           clients,
		ConnectionsTotal:      clients,
		ConnectionsRefused:    1,
		Channels:              2,
		Subscriptions:         clients + 2,
		MessagesIn:            3 + 3 + 3 + 3 + 7,
		MessagesOut:           clients*publications + 1,
		Publishes:             publications + 1,
		WhispersIn:            2,
		WhispersOut:           1,
		RateLimited:           2,
		BrokerPublishFailures: 2,
		BrokerHealthy:         true,
		Errors: map[string]int64{
			"auth": 1, "rate_limit": 2, "connection": 1, "whisper": 1, "protocol": 2, "storage": 0, "broker": 1,
		},
	}
	got := n.hub.Stats()
	got.BytesOut = 0 // checked at the end, when every frame is written
	require.Equal(t, want, got)

	// Disconnect: one oversize frame (1009), the others close normally.
	cs[3].sendRaw(strings.Repeat(" ", 2048))
	require.Equal(t, ws.CloseMessageTooBig, cs[3].expectClose())
	for i, c := range cs {
		if i != 3 {
			require.Equal(t, websocket.CloseNormalClosure, c.closeNormally())
		}
	}
	require.Eventually(t, func() bool {
		s := n.hub.Stats()
		return s.Connections == 0 && s.Channels == 0
	}, 5*time.Second, time.Millisecond)

	var bytes int64
	for i := range received {
		bytes += received[i].Load()
	}
	want.Connections, want.Channels, want.Subscriptions = 0, 0, 0
	want.Errors["protocol"]++
	want.BytesOut = bytes
	require.Equal(t, want, n.hub.Stats())
}

// disconnectCase ends one connection in one way.
type disconnectCase struct {
	name   string
	cfg    ws.Config
	end    func(t *testing.T, n *testNode, c *testClient)
	reason func(t *testing.T, err error)
}

func closeReasonCode(code int) func(*testing.T, error) {
	return func(t *testing.T, err error) {
		var cr *ws.CloseReason
		require.ErrorAs(t, err, &cr)
		require.Equal(t, code, cr.Code)
	}
}

func TestOnDisconnectOncePerConnection(t *testing.T) {
	cases := []disconnectCase{
		{
			name: "client close",
			end: func(t *testing.T, n *testNode, c *testClient) {
				require.Equal(t, websocket.CloseNormalClosure, c.closeNormally())
			},
			reason: func(t *testing.T, err error) {
				var pe *ws.PeerCloseError
				require.ErrorAs(t, err, &pe)
				require.Equal(t, websocket.CloseNormalClosure, pe.Code)
			},
		},
		{
			name: "abrupt TCP drop",
			end:  func(t *testing.T, n *testNode, c *testClient) { require.NoError(t, c.Conn.NetConn().Close()) },
			reason: func(t *testing.T, err error) {
				var cr *ws.CloseReason
				var pe *ws.PeerCloseError
				require.Error(t, err)
				require.False(t, errors.As(err, &cr) || errors.As(err, &pe), "got %v, want a read error", err)
			},
		},
		{
			name:   "ping timeout",
			cfg:    ws.Config{PingInterval: 50 * time.Millisecond, PongTimeout: 200 * time.Millisecond},
			end:    func(t *testing.T, n *testNode, c *testClient) {}, // it never reads, so never pongs
			reason: closeReasonCode(ws.ClosePingTimeout),
		},
		{
			name: "slow consumer",
			// The writer may be blocked on the full socket: WriteTimeout
			// bounds how long the disconnect takes.
			cfg: ws.Config{SendQueueSize: 8, WriteTimeout: time.Second},
			end: func(t *testing.T, n *testNode, c *testClient) {
				c.subscribe("firehose")
				payload := strings.Repeat("x", 32<<10)
				for i := 0; i < 5000 && n.hub.Stats().SlowConsumers == 0; i++ {
					require.NoError(t, n.hub.Publish(context.Background(), "firehose", payload))
				}
				require.Equal(t, int64(1), n.hub.Stats().SlowConsumers)
			},
			reason: func(t *testing.T, err error) { require.ErrorIs(t, err, ws.ErrSlowConsumer) },
		},
		{
			name: "oversize frame",
			cfg:  ws.Config{MaxMessageSize: 1024},
			end: func(t *testing.T, n *testNode, c *testClient) {
				c.sendRaw(strings.Repeat(" ", 2048))
				require.Equal(t, ws.CloseMessageTooBig, c.expectClose())
			},
			reason: closeReasonCode(ws.CloseMessageTooBig),
		},
		{
			name: "rate limit abuse",
			cfg:  ws.Config{RateLimit: ws.RateLimit{Messages: 2, Interval: time.Hour}},
			end: func(t *testing.T, n *testNode, c *testClient) {
				for range 5 {
					c.send(map[string]any{"action": "ping"})
				}
				require.Equal(t, ws.ClosePolicyViolation, c.expectClose())
			},
			reason: closeReasonCode(ws.ClosePolicyViolation),
		},
		{
			name: "server shutdown",
			end: func(t *testing.T, n *testNode, c *testClient) {
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				go func() { _ = n.hub.Shutdown(ctx) }()
				require.Equal(t, ws.CloseGoingAway, c.expectClose())
			},
			reason: closeReasonCode(ws.CloseGoingAway),
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var connects, disconnects atomic.Int64
			reasons := make(chan error, 2)
			opts := &ws.Options{
				OnConnect: func(*ws.Client) { connects.Add(1) },
				OnDisconnect: func(c *ws.Client) {
					disconnects.Add(1)
					reasons <- c.DisconnectReason()
				},
			}
			n := newNode(t, nil, nil, tc.cfg, opts)
			// A bystander that reads (and so answers pings) until the end.
			bystander := n.dial(t, "")
			bystander.send(map[string]any{"action": "ping"}) // answered after OnConnect
			bystander.expect(map[string]any{"type": "pong"})
			bystanderCode := make(chan int, 1)
			require.NoError(t, bystander.Conn.SetReadDeadline(time.Time{}))
			go func() {
				for {
					if _, _, err := bystander.Conn.ReadMessage(); err != nil {
						var ce *websocket.CloseError
						if errors.As(err, &ce) {
							bystanderCode <- ce.Code
						} else {
							bystanderCode <- -1
						}
						return
					}
				}
			}()
			c := n.dial(t, "")
			c.send(map[string]any{"action": "ping"})
			c.expect(map[string]any{"type": "pong"})
			require.Equal(t, int64(2), connects.Load())

			tc.end(t, n, c)
			select {
			case err := <-reasons:
				tc.reason(t, err)
			case <-time.After(10 * time.Second):
				t.Fatal("OnDisconnect was not called")
			}

			n.stop() // Run returns only after every OnDisconnect has returned
			require.Equal(t, ws.CloseGoingAway, <-bystanderCode)
			require.Equal(t, int64(2), connects.Load())
			require.Equal(t, int64(2), disconnects.Load())
			require.Equal(t, int64(0), n.hub.Stats().Connections)
		})
	}
}

// recordHandler is a slog.Handler that keeps every record.
type recordHandler struct {
	mu      sync.Mutex
	records []slog.Record
	notify  chan slog.Record
}

func (h *recordHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h *recordHandler) WithAttrs([]slog.Attr) slog.Handler       { return h }
func (h *recordHandler) WithGroup(string) slog.Handler            { return h }
func (h *recordHandler) Handle(_ context.Context, r slog.Record) error {
	h.mu.Lock()
	h.records = append(h.records, r.Clone())
	h.mu.Unlock()
	if h.notify != nil {
		select {
		case h.notify <- r.Clone():
		default:
		}
	}
	return nil
}

func (h *recordHandler) count() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.records)
}

// where returns the records logged so far that keep accepts.
func (h *recordHandler) where(keep func(slog.Record) bool) []slog.Record {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []slog.Record
	for _, r := range h.records {
		if keep(r) {
			out = append(out, r)
		}
	}
	return out
}

// withMessage returns the records logged so far with message msg.
func (h *recordHandler) withMessage(msg string) []slog.Record {
	return h.where(func(r slog.Record) bool { return r.Message == msg })
}

// atLevel returns the records logged so far at level.
func (h *recordHandler) atLevel(level slog.Level) []slog.Record {
	return h.where(func(r slog.Record) bool { return r.Level == level })
}

// recordLine is r as its message followed by its attributes
// ("msg key=value ...").
func recordLine(r slog.Record) string {
	s := r.Message
	r.Attrs(func(a slog.Attr) bool {
		s += fmt.Sprintf(" %s=%v", a.Key, a.Value)
		return true
	})
	return s
}

func recordAttrs(r slog.Record) map[string]any {
	m := map[string]any{}
	r.Attrs(func(a slog.Attr) bool {
		m[a.Key] = a.Value.Any()
		return true
	})
	return m
}

func TestStatsAreLoggedPeriodically(t *testing.T) {
	rec := &recordHandler{notify: make(chan slog.Record, 16)}
	cfg := ws.Config{ShouldLogStats: true, StatsInterval: 10 * time.Millisecond, Logger: slog.New(rec)}
	n := newNode(t, nil, nil, cfg, nil)
	c := n.dial(t, "")
	c.subscribe("news")
	require.NoError(t, n.hub.Publish(context.Background(), "news", 1))
	c.expect(map[string]any{"type": "message"})

	deadline := time.After(10 * time.Second)
	for {
		select {
		case r := <-rec.notify:
			if r.Message != "ws: stats" {
				continue
			}
			require.Equal(t, slog.LevelInfo, r.Level)
			a := recordAttrs(r)
			if a["messages_out"] != int64(1) {
				continue // a line from before the publication
			}
			require.Equal(t, int64(1), a["connections"])
			require.Equal(t, int64(1), a["channels"])
			require.Equal(t, int64(1), a["subscriptions"])
			require.Equal(t, int64(1), a["publishes"])
			require.Equal(t, true, a["broker_healthy"])
			for _, kind := range ws.ErrorKinds() {
				require.Contains(t, a, "errors_"+kind)
			}
			return
		case <-deadline:
			t.Fatal("no stats line with the publication was logged")
		}
	}
}

func TestNoLogLinePerMessage(t *testing.T) {
	rec := &recordHandler{}
	n := newNode(t, nil, nil, ws.Config{Logger: slog.New(rec)}, userOptions())
	a, b := n.dial(t, "a"), n.dial(t, "b")
	a.subscribe("presence-room")
	b.subscribe("presence-room")
	before := rec.count()
	for i := range 100 {
		require.NoError(t, n.hub.Publish(context.Background(), "presence-room", i))
		a.send(map[string]any{"action": "whisper", "channel": "presence-room", "event": "typing"})
		a.send(map[string]any{"action": "explode"})
	}
	for range 200 { // messages and whispers
		b.next()
	}
	for range 200 { // messages and error frames
		a.next()
	}
	require.Equal(t, before, rec.count(), "log lines were written for ordinary traffic and client errors")
}

// TestStatsJSONIsSnakeCase: Stats encodes with the same snake_case names
// as Health and the stats log line, so a /stats endpoint that marshals it
// reads like the rest.
func TestStatsJSONIsSnakeCase(t *testing.T) {
	n := newNode(t, nil, nil, ws.Config{}, nil)
	c := n.dial(t, "")
	c.subscribe("news")
	b, err := json.Marshal(n.hub.Stats())
	require.NoError(t, err)
	var m map[string]any
	require.NoError(t, json.Unmarshal(b, &m))
	for _, key := range []string{"connections", "connections_total", "connections_refused", "channels", "subscriptions",
		"messages_in", "messages_out", "bytes_out", "publishes", "whispers_in", "whispers_out", "slow_consumers",
		"rate_limited", "broker_publish_failures", "broker_healthy", "recovered", "not_recovered", "history_resets", "errors"} {
		require.Contains(t, m, key, "Stats JSON %s", b)
	}
	require.Len(t, m, 19, "Stats JSON has a key per field: %s", b)
	require.Equal(t, float64(1), m["subscriptions"])
	require.Len(t, m["errors"], len(ws.ErrorKinds()))
}
