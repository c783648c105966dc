package ws_test

import (
	"context"
	"encoding/json"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	ws "github.com/vortechron/go-ws"
	"github.com/vortechron/go-ws/internal/redistest"
	"github.com/vortechron/go-ws/internal/wstest"
)

// Operational promises of docs/redis.md, docs/operations.md and
// docs/security.md that only show when a path stalls or goes away: what
// the health handler, Publish and a client's subscribe answer when Redis
// is silent or gone, and what happens to a client whose socket is full.

// newRedisBrokerAt returns a RedisBroker on addr with o's other options.
func newRedisBrokerAt(tb testing.TB, addr string, o ws.RedisOptions) ws.MessageBroker {
	tb.Helper()
	o.Addrs = []string{addr}
	b, err := ws.NewRedisBrokerWithOptions(o)
	require.NoError(tb, err)
	return b
}

// nextWithin is the client's next frame, waiting up to d for it (longer
// than wstest.ReadTimeout allows).
func nextWithin(tb testing.TB, c *testClient, d time.Duration) map[string]any {
	tb.Helper()
	require.NoError(tb, c.Conn.SetReadDeadline(time.Now().Add(d)))
	mt, b, err := c.Conn.ReadMessage()
	require.NoError(tb, err, "reading a frame within %v", d)
	require.Equal(tb, websocket.TextMessage, mt, "frame type")
	var m map[string]any
	require.NoError(tb, json.Unmarshal(b, &m), "frame %q is one JSON object", b)
	return m
}

// TestStalledRedisPathMakesTheNodeUnready proves, in docs/redis.md:
//
//   - Bounds: "A closed connection ... is noticed as soon as the operating
//     system reports it; a silent one (a stalled Redis, a lost network
//     path) after 3 × HealthInterval";
//   - Bounds: "A publish while the broker knows it is not live fails at
//     once, without network I/O";
//   - What is not promised: "The node that lost them knows: it reports
//     unhealthy (Healthy() false, 503 broker_unavailable from the health
//     handler) for that time" and "(A connection that is silent but not
//     closed loses nothing by itself: Redis keeps what it owes it until
//     the connection either answers again or is closed.) ... Local
//     clients stay connected through all of it";
//
// and in docs/operations.md (Health checks): it answers 503 with status
// "broker_unavailable" when a RedisBroker lost its connection, and 200
// again once it is back.
//
// Node b reaches Redis through a proxy that stops forwarding (nothing is
// closed), as a lost network path would; node a keeps its own path.
func TestStalledRedisPathMakesTheNodeUnready(t *testing.T) {
	leakCheck(t)
	const every = 100 * time.Millisecond
	a, b, proxy, cb := proxiedNodes(t, every, nil)
	ctx := context.Background()
	code, hl, _ := getHealth(t, b.hub.HealthHandler(), http.MethodGet)
	require.Equal(t, http.StatusOK, code, "health before the stall: got %d, want 200", code)

	proxy.Stall()
	stalled := time.Now()
	// 3 × HealthInterval, plus a second for a loaded machine under -race.
	wait := 3*every + time.Second
	if !assert.Eventually(t, func() bool {
		code, hl, _ = getHealth(t, b.hub.HealthHandler(), http.MethodGet)
		return code == http.StatusServiceUnavailable
	}, wait, time.Millisecond) {
		t.Fatalf("got health %d %+v %v after the path to Redis stalled, want 503 within 3 × HealthInterval (%v)", code, hl, wait, 3*every)
	}
	t.Logf("health 503 %v after the stall", time.Since(stalled).Round(time.Millisecond))
	require.Equal(t, ws.HealthBrokerUnavailable, hl.Status, "got status %q, want %q", hl.Status, ws.HealthBrokerUnavailable)
	require.False(t, hl.BrokerHealthy)
	require.False(t, b.hub.Stats().BrokerHealthy, "Stats().BrokerHealthy on the stalled node")
	require.True(t, a.hub.Health().BrokerHealthy, "the node whose path works reports unhealthy")

	// Any network I/O would wait for a reply that cannot come (ReadTimeout
	// is 1s): a quick ErrBrokerUnavailable means none was attempted.
	start := time.Now()
	err := b.hub.Publish(ctx, "news", "refused")
	took := time.Since(start)
	require.ErrorIs(t, err, ws.ErrBrokerUnavailable, "got %v, want an error wrapping ErrBrokerUnavailable", err)
	require.NotErrorIs(t, err, ws.ErrPublishUncertain, "got %v, want a publish known not to be sent", err)
	require.Less(t, took, 250*time.Millisecond, "got a refusal after %v, want one at once", took)

	// What Redis owes the silent connection is not lost.
	require.NoError(t, a.hub.Publish(ctx, "news", "during"))
	cb.expectQuiet() // connected, and the publication is held on the way

	// The stall lasts 10 health intervals: long enough for the broker to
	// have given the connection up had it taken a stall of its whole path
	// for a dead connection (see TestSilentSubscriptionConnectionIsReplaced).
	<-time.After(time.Until(stalled.Add(10 * every)))
	proxy.Resume()
	require.Eventually(t, func() bool {
		code, _, _ := getHealth(t, b.hub.HealthHandler(), http.MethodGet)
		return code == http.StatusOK
	}, 10*time.Second, 5*time.Millisecond, "health did not come back to 200 after the stall")
	cb.expect(map[string]any{"type": "message", "channel": "news", "message": "during"})
	require.NoError(t, b.hub.Publish(ctx, "news", "after"))
	cb.expect(map[string]any{"type": "message", "channel": "news", "message": "after"})
	require.Equal(t, int64(1), b.hub.Stats().ConnectionsTotal, "the client reconnected")
}

// TestSilentSubscriptionConnectionIsReplaced proves, in docs/redis.md
// (Bounds): "a connection that is silent while Redis answers on another
// one (a NAT or load balancer that forgot the flow, a half-open
// connection) is replaced: the broker is live again within about
// 4 × HealthInterval", where go-redis alone would wait for TCP to give
// up on it.
//
// Node b reaches Redis through a proxy that freezes the connections open
// at one moment and forwards new ones.
func TestSilentSubscriptionConnectionIsReplaced(t *testing.T) {
	leakCheck(t)
	const every = 100 * time.Millisecond
	logs := &recordHandler{}
	a, b, proxy, cb := proxiedNodes(t, every, slog.New(logs))
	ctx := context.Background()

	proxy.Freeze()
	frozen := time.Now()
	replaced := func() bool {
		return len(logs.where(func(r slog.Record) bool {
			return strings.Contains(recordLine(r), "stayed silent while Redis answered on another connection")
		})) > 0
	}
	// A second more than the bound, for a loaded machine under -race.
	require.Eventually(t, func() bool { return replaced() && b.hub.Health().BrokerHealthy }, 4*every+2*time.Second, time.Millisecond,
		"the broker did not replace its silent subscription connection (replaced %v)", replaced())
	t.Logf("healthy again %v after the freeze", time.Since(frozen).Round(time.Millisecond))
	require.NoError(t, a.hub.Publish(ctx, "news", "after"))
	cb.expect(map[string]any{"type": "message", "channel": "news", "message": "after"})
	require.NoError(t, b.hub.Publish(ctx, "news", "from b"))
	cb.expect(map[string]any{"type": "message", "channel": "news", "message": "from b"})
	require.Equal(t, int64(1), b.hub.Stats().ConnectionsTotal, "the client stayed connected")
}

// proxiedNodes starts node a on Redis and node b through a proxy, their
// brokers pinging every HealthInterval every (b's logging to bLog, when
// not nil), waits until both are healthy, and returns them with the
// proxy and a client of b subscribed to "news" that got a publication
// from a. The proxy resumes before the nodes stop, should a test end
// stalled or frozen.
func proxiedNodes(t *testing.T, every time.Duration, bLog *slog.Logger) (a, b *testNode, proxy *redistest.Proxy, cb *testClient) {
	t.Helper()
	addr := redistest.Addr(t)
	prefix := redistest.Prefix(t)
	redistest.CleanupKeys(t, addr, prefix)
	proxy = redistest.StartProxy(t, addr)
	o := ws.RedisOptions{KeyPrefix: prefix, HealthInterval: every}
	a = newNode(t, newRedisBrokerAt(t, addr, o), nil, ws.Config{}, nil)
	o.Logger = bLog
	b = newNode(t, newRedisBrokerAt(t, proxy.Addr, o), nil, ws.Config{}, nil)
	t.Cleanup(proxy.Resume)
	awaitReady(t, a, b)
	both := func() bool { return a.hub.Health().BrokerHealthy && b.hub.Health().BrokerHealthy }
	require.Eventually(t, both, 10*time.Second, 5*time.Millisecond, "the brokers never became healthy")
	cb = b.dial(t, "")
	cb.subscribe("news")
	require.NoError(t, a.hub.Publish(context.Background(), "news", "before"))
	cb.expect(map[string]any{"type": "message", "channel": "news", "message": "before"})
	return a, b, proxy, cb
}

// TestPublishIntoAStallEndsAtReadTimeout proves, in docs/redis.md
// (Bounds): "A publish sent before that fails after ReadTimeout (1 s)
// with ErrPublishUncertain" and "Publish returns by ctx's deadline;
// without one, within about DialTimeout (when it opens a connection) +
// WriteTimeout + ReadTimeout (one more ReadTimeout for a new
// connection's handshake)"; and (What Publish returns) that such an
// error does not match ErrBrokerUnavailable.
//
// HealthInterval is long, so the broker does not yet know the path is
// silent when the publish is sent, with a ctx that has no deadline.
func TestPublishIntoAStallEndsAtReadTimeout(t *testing.T) {
	leakCheck(t)
	addr := redistest.Addr(t)
	prefix := redistest.Prefix(t)
	redistest.CleanupKeys(t, addr, prefix)
	proxy := redistest.StartProxy(t, addr)
	const timeout = 300 * time.Millisecond
	o := ws.RedisOptions{KeyPrefix: prefix, HealthInterval: 10 * time.Second, ReadTimeout: timeout, DialTimeout: timeout}
	n := newNode(t, newRedisBrokerAt(t, proxy.Addr, o), nil, ws.Config{}, nil)
	t.Cleanup(proxy.Resume)
	awaitReady(t, n)
	require.Eventually(t, func() bool { return n.hub.Health().Status == ws.HealthOK }, 10*time.Second, 5*time.Millisecond,
		"the node never became healthy")
	c := n.dial(t, "")
	c.subscribe("news")
	require.NoError(t, n.hub.Publish(context.Background(), "news", "before"))
	c.expect(map[string]any{"type": "message", "channel": "news", "message": "before"})

	proxy.Stall()
	type result struct {
		err  error
		took time.Duration
	}
	done := make(chan result, 1)
	go func() {
		start := time.Now()
		err := n.hub.Publish(context.Background(), "news", "maybe")
		done <- result{err, time.Since(start)}
	}()
	// DialTimeout + WriteTimeout + 2 × ReadTimeout is 1.2s here.
	bound := 4 * timeout
	var r result
	select {
	case r = <-done:
	case <-time.After(bound + 5*time.Second):
		t.Fatalf("a publish with no ctx deadline into a stalled Redis did not return within %v (ReadTimeout %v)", bound+5*time.Second, timeout)
	}
	t.Logf("publish returned after %v: %v", r.took.Round(time.Millisecond), r.err)
	require.ErrorIs(t, r.err, ws.ErrPublishUncertain, "got %v, want an error wrapping ErrPublishUncertain", r.err)
	require.NotErrorIs(t, r.err, ws.ErrBrokerUnavailable, "got %v, want one that does not invite a retry", r.err)
	require.GreaterOrEqual(t, r.took, timeout, "got %v, want the publish to have waited ReadTimeout for its reply", r.took)
	require.Less(t, r.took, bound+time.Second, "got %v, want about ReadTimeout (%v), at most %v", r.took, timeout, bound)

	proxy.Resume()
	require.Eventually(t, func() bool { return n.hub.Publish(context.Background(), "news", "after") == nil },
		10*time.Second, 10*time.Millisecond, "publishing did not work again after the stall")
	// The uncertain publication may arrive first: Redis ran it when the
	// stall ended, or not.
	m := c.next()
	if m["message"] == "maybe" {
		m = c.next()
	}
	require.Equal(t, "after", m["message"], "got frame %v, want the publication made after the stall", m)
}

// TestSubscribeWhileRedisIsDownAnswersUnavailable proves, in
// docs/redis.md (What a client does on unavailable): "An error frame
// with code unavailable means the node could not reach its broker ...
// for the action the frame names and the connection stays open. A
// subscribe did not subscribe ... The text never carries backend detail.
// The client should keep the connection, wait a short backoff ... and
// repeat the action"; and (the introduction) that with Redis not
// reachable Subscribe fails with an error wrapping ws.ErrBrokerUnavailable
// and "everything recovers by itself once Redis is back".
func TestSubscribeWhileRedisIsDownAnswersUnavailable(t *testing.T) {
	leakCheck(t)
	srv := redistest.StartServer(t)
	var log errorLog
	// A lone broker back from an outage may wait ResubscribeWait for
	// brokers it never counted; a short one keeps the test short.
	o := ws.RedisOptions{HealthInterval: 100 * time.Millisecond, ResubscribeWait: 300 * time.Millisecond}
	n := newNode(t, newRedisBrokerAt(t, srv.Addr, o), nil, ws.Config{}, &ws.Options{ErrorHandler: log.handle})
	awaitReady(t, n)
	c := n.dial(t, "")
	c.subscribe("news")

	srv.Kill()
	require.Eventually(t, func() bool { return !n.hub.Health().BrokerHealthy }, 10*time.Second, 5*time.Millisecond,
		"the broker still reports healthy with Redis killed")
	sent := time.Now()
	c.send(map[string]any{"action": "subscribe", "channel": "later"})
	// At the latest, the hub gives up on the broker after its own 5s bound.
	m := nextWithin(t, c, 15*time.Second)
	t.Logf("answered %v after the subscribe", time.Since(sent).Round(time.Millisecond))
	for k, want := range map[string]any{"type": "error", "code": ws.CodeUnavailable, "action": "subscribe", "channel": "later"} {
		require.Equal(t, want, m[k], "field %q of frame %v", k, m)
	}
	text, _ := m["error"].(string)
	_, port, _ := strings.Cut(srv.Addr, ":")
	for _, detail := range []string{port, "redis", "dial", "refused", "connect"} {
		require.NotContains(t, strings.ToLower(text), detail, "the error frame %q carries backend detail", text)
	}
	ue := lastError[*ws.UnavailableError](t, &log)
	require.ErrorIs(t, ue, ws.ErrBrokerUnavailable, "got %v, want the cause to wrap ErrBrokerUnavailable", ue)
	require.Equal(t, "later", ue.Channel)
	require.Equal(t, int64(1), n.hub.Stats().Errors["broker"], `Stats().Errors["broker"]`)
	require.Equal(t, int64(1), n.hub.Stats().Subscriptions, "got %d subscriptions, want only news: the refused subscribe did not subscribe", n.hub.Stats().Subscriptions)
	c.expectQuiet() // the connection stays open

	require.NoError(t, srv.Restart())
	require.Eventually(t, func() bool { return n.hub.Health().Status == ws.HealthOK }, 20*time.Second, 5*time.Millisecond,
		"the node did not become healthy after Redis came back")
	c.subscribe("later") // the same action, repeated on the same connection
	require.NoError(t, n.hub.Publish(context.Background(), "later", "hello"))
	c.expect(map[string]any{"type": "message", "channel": "later", "message": "hello"})
	require.NoError(t, n.hub.Publish(context.Background(), "news", "still here"))
	c.expect(map[string]any{"type": "message", "channel": "news", "message": "still here"})
	require.Equal(t, int64(1), n.hub.Stats().ConnectionsTotal, "the client reconnected")
}

// TestStuckReaderIsDroppedAtWriteTimeout proves, in docs/security.md
// (After the upgrade, the table's last row): "Socket writes |
// Config.WriteTimeout | 10 s | connection dropped | nothing;
// DisconnectReason() is a *ConnectionError{Op:"write"}": a client that
// stops reading while its send queue still has room is not kept forever
// by a write blocked on its full socket.
func TestStuckReaderIsDroppedAtWriteTimeout(t *testing.T) {
	leakCheck(t)
	reasons := make(chan error, 1)
	opts := &ws.Options{OnDisconnect: func(c *ws.Client) { reasons <- c.DisconnectReason() }}
	// The queue holds all that is published below, so only the socket
	// can be full.
	const timeout = 300 * time.Millisecond
	cfg := ws.Config{SendQueueSize: 1 << 20, SendQueueBytes: 1 << 30, WriteTimeout: timeout}
	n := newNode(t, nil, nil, cfg, opts)
	// A small receive buffer fills the path with a few MB, not tens.
	d := &websocket.Dialer{NetDialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
		if err == nil {
			_ = c.(*net.TCPConn).SetReadBuffer(4 << 10)
		}
		return c, err
	}}
	c := &testClient{wstest.DialWith(t, d, n.url, nil)}
	c.subscribe("firehose") // and then it reads no more

	payload := strings.Repeat("x", 64<<10)
	var reason error
	published := 0
	for ; published < 2000 && reason == nil; published++ {
		require.NoError(t, n.hub.Publish(context.Background(), "firehose", payload))
		select {
		case reason = <-reasons:
		default:
		}
	}
	if reason == nil { // 128 MiB published: the socket is full and a write waits for its deadline
		select {
		case reason = <-reasons:
		case <-time.After(timeout + 10*time.Second):
			t.Fatalf("a client that stopped reading was still connected %v after WriteTimeout (%v) ran out", 10*time.Second, timeout)
		}
	}
	t.Logf("dropped after %d publications of 64 KiB: %v", published, reason)
	var ce *ws.ConnectionError
	require.ErrorAs(t, reason, &ce, "got disconnect reason %v (%T), want a *ConnectionError", reason, reason)
	require.Equal(t, "write", ce.Op, "got Op %q, want \"write\"", ce.Op)
	require.NotErrorIs(t, reason, ws.ErrSlowConsumer)
	require.Zero(t, n.hub.Stats().SlowConsumers, "counted as a slow consumer")
	require.Eventually(t, func() bool { return n.hub.Stats().Connections == 0 }, 10*time.Second, 5*time.Millisecond,
		"got %d connections, want the stuck one dropped", n.hub.Stats().Connections)
}
