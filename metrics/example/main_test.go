package main

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	ws "github.com/vortechron/go-ws"
	"github.com/vortechron/go-ws/internal/wstest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func get(tb testing.TB, url string) (int, string) {
	tb.Helper()
	resp, err := http.Get(url)
	require.NoError(tb, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(tb, err)
	return resp.StatusCode, string(b)
}

func TestScrapeShowsHubMetrics(t *testing.T) {
	hub := ws.NewHub(context.Background(), nil, nil, ws.Config{})
	go hub.Run()
	srv := httptest.NewServer(newMux(hub, &ws.Options{}))
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		require.NoError(t, hub.Shutdown(ctx))
		srv.Close()
	})
	url := "ws" + strings.TrimPrefix(srv.URL, "http") + "/ws"

	conn, resp, err := websocket.DefaultDialer.Dial(url, nil)
	require.NoError(t, err)
	resp.Body.Close()
	defer conn.Close()
	require.NoError(t, conn.WriteJSON(map[string]string{"action": "subscribe", "channel": "news"}))
	_, _, err = conn.ReadMessage() // subscribed
	require.NoError(t, err)
	require.NoError(t, hub.Publish(context.Background(), "news", "hello"))
	_, _, err = conn.ReadMessage()
	require.NoError(t, err)

	require.Eventually(t, func() bool {
		code, _ := get(t, srv.URL+"/healthz")
		return code == http.StatusOK
	}, 5*time.Second, time.Millisecond)

	code, body := get(t, srv.URL+"/metrics")
	require.Equal(t, http.StatusOK, code)
	t.Logf("scrape:\n%s", body)
	for _, line := range []string{
		"# HELP ws_connections WebSocket connections open now.",
		"# TYPE ws_connections gauge",
		"ws_connections 1",
		"# TYPE ws_connections_accepted_total counter",
		"ws_connections_accepted_total 1",
		"ws_channels 1",
		"ws_subscriptions 1",
		"ws_publishes_total 1",
		"ws_messages_sent_total 1",
		"ws_broker_healthy 1",
		`ws_errors_total{kind="protocol"} 0`,
		"# HELP ws_sent_bytes_total Bytes written to client sockets.",
		"# TYPE go_goroutines gauge",
	} {
		require.Contains(t, body, line+"\n")
	}
}

// TestPublishRouteMovesCounters publishes through POST /publish, as
// docs/operations.md does with curl, and checks that the subscriber gets
// the message and that the scrape's publication and delivery counters
// moved from 0 to 1. A body that is not JSON is refused with 400.
func TestPublishRouteMovesCounters(t *testing.T) {
	hub := ws.NewHub(context.Background(), nil, nil, ws.Config{})
	go hub.Run()
	srv := httptest.NewServer(newMux(hub, &ws.Options{}))
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		require.NoError(t, hub.Shutdown(ctx))
		srv.Close()
	})
	c := wstest.Dial(t, "ws"+strings.TrimPrefix(srv.URL, "http")+"/ws", nil)
	c.Subscribe("news")

	_, before := get(t, srv.URL+"/metrics")
	for _, line := range []string{"ws_publishes_total 0", "ws_messages_sent_total 0"} {
		require.Contains(t, before, line+"\n", "before the publication")
	}

	post := func(body string) int {
		resp, err := http.Post(srv.URL+"/publish?channel=news", "application/json", strings.NewReader(body))
		require.NoError(t, err)
		resp.Body.Close()
		return resp.StatusCode
	}
	require.Equal(t, http.StatusBadRequest, post(`not json`), "POST /publish with a body that is not JSON")
	require.Equal(t, http.StatusNoContent, post(`{"text":"hello"}`), "POST /publish")
	c.Expect(map[string]any{"type": "message", "channel": "news", "message": map[string]any{"text": "hello"}})
	c.Quiet()

	_, after := get(t, srv.URL+"/metrics")
	for _, line := range []string{"ws_publishes_total 1", "ws_messages_sent_total 1", "ws_subscriptions 1"} {
		require.Contains(t, after, line+"\n", "after the publication")
	}
}
