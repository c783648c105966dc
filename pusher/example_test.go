package pusher_test

import (
	"context"
	"log"
	"net/http"

	ws "github.com/vortechron/go-ws"
	"github.com/vortechron/go-ws/pusher"
)

// ExampleNew mounts the Pusher protocol on a hub, as the README shows:
// the WebSocket endpoint for pusher-js and Laravel Echo, the HTTP API for
// Laravel and the Pusher server SDKs, and the channel authorization
// endpoint, all guarded by the same hooks as ws.ServeWS.
func ExampleNew() {
	ctx := context.Background()
	hub := ws.NewHub(ctx, nil, nil, ws.Config{})
	go hub.Run()
	defer hub.Shutdown(ctx)

	options := &ws.Options{
		GetUserID:      func(r *http.Request) string { return r.URL.Query().Get("user") },
		AuthHandler:    func(userID, channel string) bool { return true },
		EnableWhispers: true,
	}
	srv := pusher.New(hub, pusher.App{ID: "app-id", Key: "app-key", Secret: "app-secret"},
		&pusher.Options{Options: *options})
	if err := srv.Err(); err != nil {
		log.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/app/", srv)                            // WebSocket: /app/{key}
	mux.Handle("/apps/", srv)                           // HTTP API
	mux.Handle("/broadcasting/auth", srv.AuthHandler()) // if Go authorizes channels
	// http.ListenAndServe(":8080", mux)
}
