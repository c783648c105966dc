// Command basic serves a small page and a WebSocket endpoint on one
// process, with the in-memory broker and storage: no Redis needed.
//
//	go run ./examples/basic            # then open http://127.0.0.1:8080/?user=alice
//
// ?user=NAME on the WebSocket URL is the user's identity (a demo: a real
// application reads its session or token in GetUserID); the page passes
// its own ?user= on, or makes up a guest name. Identified users may join
// private- and presence- channels and whisper. To publish, POST a JSON
// body to /publish?channel=C, from the page's form or a shell:
//
//	curl -X POST 'http://127.0.0.1:8080/publish?channel=news' -d '{"text":"hello"}'
package main

import (
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"flag"
	"io"
	"log"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	ws "github.com/vortechron/go-ws"
)

//go:embed index.html
var indexHTML []byte

func main() {
	addr := flag.String("addr", "127.0.0.1:8080", "listen address")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	hub := ws.NewHub(ctx, nil, nil, ws.Config{
		PingInterval: 30 * time.Second,
		RateLimit:    ws.RateLimit{Messages: 100, Interval: time.Minute},
	})
	go hub.Run()

	options := &ws.Options{
		// Demo identity: ?user=NAME. A real app reads its session or JWT.
		GetUserID: func(r *http.Request) string { return r.URL.Query().Get("user") },
		// Demo policy: any identified user may join private and presence
		// channels.
		AuthHandler:    func(userID, channel string) bool { return userID != "" },
		GetUserInfo:    func(r *http.Request, userID string) any { return map[string]string{"name": userID} },
		EnableWhispers: true,
		ErrorHandler:   func(err error) { log.Print(err) }, // errors say "ws: ..." themselves
		OnConnect:      func(c *ws.Client) { log.Printf("connected %s user=%q", c.ID, c.UserID) },
		OnDisconnect:   func(c *ws.Client) { log.Printf("disconnected %s: %v", c.ID, c.DisconnectReason()) },
	}

	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/" {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		_, _ = w.Write(indexHTML)
	})
	// ws.Handler reports what ServeWS would return to ErrorHandler, once.
	mux.Handle("/ws", ws.Handler(hub, options))
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

	server := &http.Server{Addr: *addr, Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	server.RegisterOnShutdown(func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = hub.Shutdown(sctx)
	})
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = server.Shutdown(sctx)
	}()
	log.Printf("listening on http://%s (WebSocket at /ws?user=NAME; POST /publish?channel=C publishes)", *addr)
	if err := server.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
		log.Fatal(err)
	}
	<-hub.Done()
}
