package servers

import (
	"net/http"

	ws "github.com/vortechron/go-ws"
	"github.com/vortechron/go-ws/pusher"
)

// pusherApp is the app the Pusher clients of the benchmark connect to.
var pusherApp = pusher.App{ID: "bench", Key: "bench", Secret: "bench-secret"}

// PusherEvent is the event name every publication carries with -pusher.
const PusherEvent = "bench"

// wsPusher returns the Pusher endpoint of hub, with the same hooks as the
// native endpoint (anonymous users, every channel allowed). Requests for
// /ws?protocol=7 reach it as /app/{key}, the path pusher-js dials.
func wsPusher(hub *ws.Hub, o *ws.Options) http.Handler {
	srv := pusher.New(hub, pusherApp, &pusher.Options{Options: *o})
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r2 := r.Clone(r.Context())
		r2.URL.Path = "/app/" + pusherApp.Key
		srv.ServeHTTP(w, r2)
	})
}
