package ws_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	ws "github.com/vortechron/go-ws"
)

// getHealth asks handler for its answer.
func getHealth(tb testing.TB, handler http.Handler, method string) (int, ws.Health, string) {
	tb.Helper()
	rec := httptest.NewRecorder()
	handler.ServeHTTP(rec, httptest.NewRequest(method, "/healthz", nil))
	var hl ws.Health
	body := rec.Body.String()
	if method == http.MethodGet && rec.Code != http.StatusMethodNotAllowed {
		require.Equal(tb, "application/json", rec.Header().Get("Content-Type"))
		require.NoError(tb, json.Unmarshal([]byte(body), &hl), "body %q", body)
	}
	return rec.Code, hl, body
}

func TestHealthBeforeRun(t *testing.T) {
	hub := ws.NewHub(context.Background(), nil, nil, ws.Config{})
	code, hl, _ := getHealth(t, hub.HealthHandler(), http.MethodGet)
	require.Equal(t, http.StatusServiceUnavailable, code)
	require.Equal(t, ws.HealthStarting, hl.Status)
	require.NoError(t, hub.Shutdown(context.Background()))
	code, hl, _ = getHealth(t, hub.HealthHandler(), http.MethodGet)
	require.Equal(t, http.StatusServiceUnavailable, code)
	require.Equal(t, ws.HealthStopped, hl.Status)
}

func TestHealthFollowsBrokerAndShutdown(t *testing.T) {
	broker := newFakeBroker()
	release := make(chan struct{})
	var once sync.Once
	unblock := func() { once.Do(func() { close(release) }) }
	// OnDisconnect waits for the test, holding the hub in its drain.
	opts := &ws.Options{OnDisconnect: func(*ws.Client) { <-release }}
	n := newNode(t, broker, nil, ws.Config{}, opts)
	t.Cleanup(unblock)
	handler := n.hub.HealthHandler()
	// The real thing, over HTTP, once.
	srv := httptest.NewServer(handler)
	t.Cleanup(srv.Close)

	n.dial(t, "").subscribe("news")
	require.Eventually(t, func() bool {
		resp, err := http.Get(srv.URL)
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		_, _ = io.Copy(io.Discard, resp.Body)
		return resp.StatusCode == http.StatusOK
	}, 5*time.Second, time.Millisecond)

	code, hl, _ := getHealth(t, handler, http.MethodGet)
	require.Equal(t, http.StatusOK, code)
	require.Equal(t, ws.Health{Status: ws.HealthOK, Node: n.hub.NodeID(), Connections: 1, BrokerHealthy: true}, hl)

	broker.down.Store(true)
	code, hl, _ = getHealth(t, handler, http.MethodGet)
	require.Equal(t, http.StatusServiceUnavailable, code)
	require.Equal(t, ws.HealthBrokerUnavailable, hl.Status)
	require.False(t, hl.BrokerHealthy)
	require.False(t, n.hub.Stats().BrokerHealthy)

	broker.down.Store(false)
	code, _, _ = getHealth(t, handler, http.MethodGet)
	require.Equal(t, http.StatusOK, code)

	code, _, body := getHealth(t, handler, http.MethodHead)
	require.Equal(t, http.StatusOK, code)
	require.Empty(t, body)
	code, _, _ = getHealth(t, handler, http.MethodPost)
	require.Equal(t, http.StatusMethodNotAllowed, code)

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	shutdown := make(chan error, 1)
	go func() { shutdown <- n.hub.Shutdown(ctx) }()
	require.Eventually(t, func() bool {
		code, hl, _ := getHealth(t, handler, http.MethodGet)
		return code == http.StatusServiceUnavailable && hl.Status == ws.HealthShuttingDown
	}, 5*time.Second, time.Millisecond)

	unblock()
	require.NoError(t, <-shutdown)
	code, hl, _ = getHealth(t, handler, http.MethodGet)
	require.Equal(t, http.StatusServiceUnavailable, code)
	require.Equal(t, ws.HealthStopped, hl.Status)
	require.Equal(t, int64(0), hl.Connections)
}

// gatedBroker holds its subscription to the cluster's control channel
// until open is closed.
type gatedBroker struct {
	*ws.MemoryBroker
	open chan struct{}
}

func (b *gatedBroker) Subscribe(ctx context.Context, channel string, handler func([]byte)) error {
	if channel == "#cluster" {
		select {
		case <-b.open:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return b.MemoryBroker.Subscribe(ctx, channel, handler)
}

// TestHealthStartingUntilReady: a running hub whose control channels
// are not subscribed yet cannot hear the cluster's requests, so it is
// not Ready and its health is "starting" (503); both change once the
// broker takes the subscription.
func TestHealthStartingUntilReady(t *testing.T) {
	broker := &gatedBroker{MemoryBroker: ws.NewMemoryBroker(), open: make(chan struct{})}
	n := newNode(t, broker, nil, ws.Config{}, nil)
	handler := n.hub.HealthHandler()
	n.dial(t, "").subscribe("news") // Run is running: the hub served a subscription

	select {
	case <-n.hub.Ready():
		t.Fatal("Ready before the control channel was subscribed")
	default:
	}
	code, hl, _ := getHealth(t, handler, http.MethodGet)
	require.Equal(t, http.StatusServiceUnavailable, code)
	require.Equal(t, ws.Health{Status: ws.HealthStarting, Node: n.hub.NodeID(), Connections: 1, BrokerHealthy: true}, hl)

	close(broker.open)
	awaitReady(t, n)
	code, hl, _ = getHealth(t, handler, http.MethodGet)
	require.Equal(t, http.StatusOK, code)
	require.Equal(t, ws.HealthOK, hl.Status)
}
