// Command example serves a hub with its Prometheus metrics and health
// check, in one process with the in-memory backends:
//
//	cd metrics && go run ./example     # then curl localhost:8080/metrics
//
// Routes: /ws (WebSocket), /healthz (ws.Hub.HealthHandler), /metrics
// (Prometheus text format: the hub's ws_* metrics plus the Go runtime's
// and the process's), and POST /publish?channel=C, which publishes its
// JSON body to channel C:
//
//	curl -X POST 'http://127.0.0.1:8080/publish?channel=news' -d '{"text":"hello"}'
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"io"
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
	log.Printf("listening on http://%s (/ws, /healthz, /metrics, POST /publish?channel=C)", *addr)
	if err := server.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
		log.Fatal(err)
	}
	<-hub.Done()
}

// newMux routes /ws, /healthz, /metrics and POST /publish for hub. The
// metrics live in a registry of their own, so tests can build several
// muxes.
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
	mux.HandleFunc("POST /publish", func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(io.LimitReader(r.Body, 64<<10))
		if err != nil || !json.Valid(body) {
			http.Error(w, "body must be JSON", http.StatusBadRequest)
			return
		}
		if err := hub.Publish(r.Context(), r.URL.Query().Get("channel"), json.RawMessage(body)); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
	return mux
}
