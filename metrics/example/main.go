// Command example serves a hub with its Prometheus metrics and health
// check, in one process with the in-memory backends:
//
//	cd metrics && go run ./example     # then curl localhost:8080/metrics
//
// Routes: /ws (WebSocket), /healthz (ws.Hub.HealthHandler), /metrics
// (Prometheus text format: the hub's ws_* metrics plus the Go runtime's).
package main

import (
	"context"
	"errors"
	"flag"
	"log"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	ws "github.com/vortechron/go-ws"
	"github.com/vortechron/go-ws/metrics"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:8080", "listen address")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	hub := ws.NewHub(ctx, nil, nil, ws.Config{
		ShouldLogStats: true,
		Logger:         slog.New(slog.NewTextHandler(os.Stderr, nil)),
	})
	go hub.Run()

	server := &http.Server{Addr: *addr, Handler: newMux(hub, &ws.Options{}), ReadHeaderTimeout: 10 * time.Second}
	// http.Server.Shutdown does not wait for hijacked connections: hand
	// them to the hub, with the same deadline.
	server.RegisterOnShutdown(func() {
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := hub.Shutdown(sctx); err != nil {
			log.Printf("hub shutdown: %v", err)
		}
	})
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = server.Shutdown(sctx)
	}()
	log.Printf("listening on http://%s (/ws, /healthz, /metrics)", *addr)
	if err := server.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
		log.Fatal(err)
	}
	<-hub.Done()
}

// newMux routes /ws, /healthz and /metrics for hub. The metrics live in a
// registry of their own, so tests can build several muxes.
func newMux(hub *ws.Hub, options *ws.Options) *http.ServeMux {
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		metrics.NewCollector(hub),
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	mux := http.NewServeMux()
	mux.Handle("/ws", ws.Handler(hub, options))
	mux.Handle("/healthz", hub.HealthHandler())
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	return mux
}
