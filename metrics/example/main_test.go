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
