package ws_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/require"

	ws "github.com/vortechron/go-ws"
	"github.com/vortechron/go-ws/internal/redistest"
)

// backend makes the broker and storage of a scenario. Every storage it
// makes shares one state (one MemoryStorage, or one Redis key prefix), so
// a test can check what a closed hub left behind with a fresh client.
type backend struct {
	name       string
	newBroker  func(tb testing.TB) ws.MessageBroker
	newStorage func(tb testing.TB) ws.StorageClient
}

func memoryBackend() backend {
	storage := ws.NewMemoryStorage() // Close is a no-op, so it outlives its hub
	return backend{
		name:       "memory",
		newBroker:  func(testing.TB) ws.MessageBroker { return ws.NewMemoryBroker() },
		newStorage: func(testing.TB) ws.StorageClient { return storage },
	}
}

// redisBackend uses the shared test Redis (skipping without one) under a
// key prefix of the test's own.
func redisBackend(tb testing.TB) backend {
	addr := redistest.Addr(tb)
	prefix := redistest.Prefix(tb)
	redistest.CleanupKeys(tb, addr, prefix)
	opts := ws.RedisOptions{Addrs: []string{addr}, KeyPrefix: prefix}
	return backend{
		name: "redis",
		newBroker: func(tb testing.TB) ws.MessageBroker {
			b, err := ws.NewRedisBrokerWithOptions(opts)
			require.NoError(tb, err)
			return b
		},
		newStorage: func(tb testing.TB) ws.StorageClient {
			s, err := ws.NewRedisStorageWithOptions(opts)
			require.NoError(tb, err)
			return s
		},
	}
}

// shutdownBackends are the backends the shutdown scenario runs on, one
// table for all; each is made inside its subtest.
func shutdownBackends() map[string]func(testing.TB) backend {
	return map[string]func(testing.TB) backend{
		"memory": func(testing.TB) backend { return memoryBackend() },
		"redis":  redisBackend,
	}
}

// leaveCounter counts the presence leave announcements published through
// it: what the other nodes of a cluster would receive.
type leaveCounter struct {
	ws.MessageBroker
	leaves atomic.Int64
}

// Publish counts payloads that are presence envelopes ('p' after the
// version byte) naming the event "leave" (a length-prefixed field).
func (b *leaveCounter) Publish(ctx context.Context, channel string, payload []byte) error {
	err := b.MessageBroker.Publish(ctx, channel, payload)
	if err == nil && len(payload) > 1 && payload[1] == 'p' && bytes.Contains(payload, []byte("\x05leave")) {
		b.leaves.Add(1)
	}
	return err
}

func TestShutdownWithThousandClients(t *testing.T) {
	clients := 1000
	if testing.Short() {
		clients = 100
	}
	for name, makeBackend := range shutdownBackends() {
		t.Run(name, func(t *testing.T) { runShutdownScenario(t, makeBackend(t), clients) })
	}
}

// runShutdownScenario connects clients users to presence rooms on one
// hub, shuts it down and checks that every client got 1001, every
// presence member was removed with a leave announcement, OnDisconnect ran
// once per OnConnect and Shutdown returned within its deadline.
func runShutdownScenario(t *testing.T, be backend, clients int) {
	const rooms, deadline = 50, 20 * time.Second
	broker := &leaveCounter{MessageBroker: be.newBroker(t)}
	var connects, disconnects atomic.Int64
	opts := userOptions()
	opts.OnConnect = func(*ws.Client) { connects.Add(1) }
	opts.OnDisconnect = func(*ws.Client) { disconnects.Add(1) }
	cfg := ws.Config{ReadBufferSize: 256, WriteBufferSize: 256}

	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	hub := ws.NewHub(ctx, broker, be.newStorage(t), cfg)
	runErr := make(chan error, 1)
	go func() { runErr <- hub.Run() }()
	srv := httptest.NewServer(ws.Handler(hub, opts))
	t.Cleanup(srv.Close)
	url := "ws" + strings.TrimPrefix(srv.URL, "http")

	room := func(i int) string { return fmt.Sprintf("presence-room-%d", i%rooms) }
	dialer := websocket.Dialer{ReadBufferSize: 256, WriteBufferSize: 256, HandshakeTimeout: 10 * time.Second}
	conns := make([]*websocket.Conn, clients)
	t.Cleanup(func() {
		for _, c := range conns {
			if c != nil {
				c.Close()
			}
		}
	})
	connect := func(i int) error {
		c, resp, err := dialer.Dial(url, http.Header{"X-User": {fmt.Sprintf("user-%d", i)}})
		if err != nil {
			return fmt.Errorf("client %d: dial: %w", i, err)
		}
		resp.Body.Close()
		conns[i] = c
		if err := c.WriteJSON(map[string]string{"action": "subscribe", "channel": room(i)}); err != nil {
			return err
		}
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
		for { // the ack, others' joins, then the members list
			var f map[string]any
			if err := c.ReadJSON(&f); err != nil {
				return fmt.Errorf("client %d: %w", i, err)
			}
			if f["type"] == "error" {
				return fmt.Errorf("client %d: %v", i, f)
			}
			if f["type"] == "presence" && f["event"] == "members" {
				return c.SetReadDeadline(time.Time{})
			}
		}
	}
	next := make(chan int)
	errs := make(chan error, clients)
	var wg sync.WaitGroup
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				if err := connect(i); err != nil {
					errs <- err
				}
			}
		}()
	}
	for i := range clients {
		next <- i
	}
	close(next)
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}

	s := hub.Stats()
	require.Equal(t, int64(clients), s.Connections)
	require.Equal(t, int64(clients), s.Subscriptions)
	require.Equal(t, int64(rooms), s.Channels)
	require.Equal(t, int64(clients), connects.Load())
	members, err := hub.PresenceMembers(context.Background(), room(0))
	require.NoError(t, err)
	require.Len(t, members, clients/rooms)

	codes := make(chan int, clients)
	for _, c := range conns {
		go func() {
			_ = c.SetReadDeadline(time.Now().Add(deadline + 5*time.Second))
			for {
				if _, _, err := c.ReadMessage(); err != nil {
					var ce *websocket.CloseError
					if errors.As(err, &ce) {
						codes <- ce.Code
					} else {
						codes <- -1
					}
					return
				}
			}
		}()
	}

	sctx, scancel := context.WithTimeout(context.Background(), deadline)
	defer scancel()
	start := time.Now()
	require.NoError(t, hub.Shutdown(sctx), "Shutdown did not finish gracefully within %v", deadline)
	t.Logf("%s: shut down %d clients in %v", be.name, clients, time.Since(start))
	require.NoError(t, <-runErr)

	goingAway := 0
	for range clients {
		if <-codes == ws.CloseGoingAway {
			goingAway++
		}
	}
	require.Equal(t, clients, goingAway, "clients closed with 1001")
	require.Equal(t, int64(clients), disconnects.Load(), "OnDisconnect calls")

	s = hub.Stats()
	require.Equal(t, int64(0), s.Connections)
	require.Equal(t, int64(0), s.Subscriptions)
	require.Equal(t, int64(0), s.Channels)
	require.False(t, s.BrokerHealthy, "the broker is closed")
	require.Equal(t, int64(clients), broker.leaves.Load(), "leave announcements published")

	check := be.newStorage(t) // a fresh client: the hub closed its own
	t.Cleanup(func() { _ = check.Close() })
	for i := range rooms {
		members, _, err := check.PresenceMembers(context.Background(), room(i))
		require.NoError(t, err)
		require.Empty(t, members, "members left on %s", room(i))
	}
}

// hangingBroker never confirms a subscription to "hang" until its
// context is cancelled.
type hangingBroker struct {
	*ws.MemoryBroker
	subscribing chan struct{}
}

func (b *hangingBroker) Subscribe(ctx context.Context, channel string, handler func([]byte)) error {
	if channel == "hang" {
		close(b.subscribing)
		<-ctx.Done()
		return ctx.Err()
	}
	return b.MemoryBroker.Subscribe(ctx, channel, handler)
}

func TestShutdownHardDeadline(t *testing.T) {
	broker := &hangingBroker{MemoryBroker: ws.NewMemoryBroker(), subscribing: make(chan struct{})}
	entered, release := make(chan struct{}), make(chan struct{})
	var releaseOnce sync.Once
	unblock := func() { releaseOnce.Do(func() { close(release) }) }
	var connects, disconnects atomic.Int64
	opts := userOptions()
	opts.AuthProvider = ws.AuthFunc(func(ctx context.Context, userID, channel string) error {
		if channel == "private-stuck" {
			close(entered)
			<-release // user code that ignores every deadline
		}
		return nil
	})
	opts.OnConnect = func(*ws.Client) { connects.Add(1) }
	opts.OnDisconnect = func(*ws.Client) { disconnects.Add(1) }
	n := newNode(t, broker, nil, ws.Config{}, opts)
	t.Cleanup(unblock)

	stuck := n.dial(t, "stuck")
	stuck.send(map[string]any{"action": "subscribe", "channel": "private-stuck"})
	<-entered
	waiting := n.dial(t, "waiting")
	waiting.send(map[string]any{"action": "subscribe", "channel": "hang"})
	<-broker.subscribing
	normal := n.dial(t, "normal")
	normal.subscribe("presence-lobby")

	const deadline = 500 * time.Millisecond
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()
	start := time.Now()
	shutdown := make(chan error, 1)
	go func() { shutdown <- n.hub.Shutdown(ctx) }()
	for _, c := range []*testClient{normal, waiting, stuck} {
		require.Equal(t, ws.CloseGoingAway, c.expectClose())
	}

	// While the hub drains, new connections are refused.
	_, resp, err := websocket.DefaultDialer.Dial(n.url, nil)
	require.Error(t, err)
	require.Equal(t, http.StatusServiceUnavailable, resp.StatusCode)

	require.ErrorIs(t, <-shutdown, context.DeadlineExceeded)
	<-n.hub.Done()
	took := time.Since(start)
	require.Less(t, took, deadline+time.Second, "Run returned %v after Shutdown began; the deadline was %v", took, deadline)

	unblock() // the stuck AuthProvider returns after the hub has gone
	require.Eventually(t, func() bool { return disconnects.Load() == 3 }, 5*time.Second, time.Millisecond)
	require.Equal(t, int64(3), connects.Load())
	s := n.hub.Stats()
	require.Equal(t, int64(0), s.Connections)
	require.Equal(t, int64(0), s.Subscriptions)
	require.Equal(t, int64(0), s.Channels)
}

func TestShutdownDeadlineSetAfterCancel(t *testing.T) {
	// The README's wiring: the hub's ctx is cancelled by a signal first,
	// then http.Server.Shutdown calls hub.Shutdown with a shorter deadline.
	// The later, shorter deadline must win.
	entered, release := make(chan struct{}), make(chan struct{})
	var releaseOnce sync.Once
	unblock := func() { releaseOnce.Do(func() { close(release) }) }
	opts := &ws.Options{OnDisconnect: func(*ws.Client) {
		close(entered)
		<-release
	}}
	n := newNode(t, nil, nil, ws.Config{WriteTimeout: time.Minute}, opts)
	t.Cleanup(unblock)
	n.dial(t, "").subscribe("x")

	n.cancel() // drain starts with its default deadline, a minute away
	<-entered
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	require.ErrorIs(t, n.hub.Shutdown(ctx), context.DeadlineExceeded)
	select {
	case <-n.hub.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("Run ignored the deadline of a Shutdown called after the hub's context was cancelled")
	}
	unblock()
}
