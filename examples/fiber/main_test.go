package main

import (
	"context"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	ws "github.com/vortechron/go-ws"
	"github.com/vortechron/go-ws/internal/wstest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// fasthttp's clock: one goroutine per process, never stopped.
		goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.updateServerDate.func1"),
		// The worker pool's cleaner of a stopped server sleeps out its
		// 10 s idle period before it sees the stop and returns.
		goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.(*workerPool).Start.func2"),
	)
}

// TestPublishAndShutDown runs the example's app: POST /publish reaches a
// subscriber, and when the context ends shutdownWhenDone closes that
// client with 1001 (going away), stops the app (its Listener returns)
// and the hub (Done).
func TestPublishAndShutDown(t *testing.T) {
	hub := ws.NewHub(context.Background(), nil, nil, ws.Config{})
	go hub.Run()
	app := newApp(hub)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	served := make(chan error, 1)
	go func() { served <- app.Listener(ln) }()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	shutDown := make(chan struct{})
	go func() { shutdownWhenDone(ctx, hub, app, 10*time.Second); close(shutDown) }()

	c := wstest.Dial(t, "ws://"+ln.Addr().String()+"/ws?user=alice", nil)
	c.Subscribe("news")
	resp, err := http.Post("http://"+ln.Addr().String()+"/publish?channel=news", "application/json", strings.NewReader(`{"text":"hello"}`))
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusNoContent, resp.StatusCode, "POST /publish status")
	c.Expect(map[string]any{"type": "message", "channel": "news", "message": map[string]any{"text": "hello"}})

	cancel()
	require.Equal(t, ws.CloseGoingAway, c.ExpectClose(), "close code at shutdown")
	for what, done := range map[string]<-chan struct{}{"shutdownWhenDone": shutDown, "hub.Done": hub.Done()} {
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			t.Fatalf("%s did not return within 15s of the context's end", what)
		}
	}
	select {
	case err := <-served:
		require.NoError(t, err, "app.Listener after shutdown")
	case <-time.After(15 * time.Second):
		t.Fatal("app.Listener did not return within 15s of the context's end")
	}
}
