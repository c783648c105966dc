package ws

import (
	"net/http"

	"github.com/vortechron/go-ws/internal/bridge"
	"github.com/vortechron/go-ws/internal/wire"
)

// The plumbing this module's other packages use (the Fiber adaptor, the
// Pusher protocol) without it being part of ws's API: see internal/bridge.
func init() {
	bridge.WatchPresence = func(hub any, fn func(channel, userID string, left bool)) {
		hub.(*Hub).watchPresence(fn)
	}
	bridge.Prepare = func(hub any, w http.ResponseWriter, r *http.Request, options any, protocol int) bridge.Handshake {
		h, opts := hub.(*Hub), options.(*Options)
		if opts == nil {
			opts = &Options{}
		}
		var hs *handshake
		chain(opts.Middleware, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			hs, _ = h.accept(w, r, opts, protocol) // a refusal is written to w and reported
		})).ServeHTTP(w, r)
		if hs == nil {
			return nil
		}
		return hs
	}
	bridge.AddProtocol = func(hub any, p wire.Protocol) (int, error) {
		return hub.(*Hub).addProtocol(p)
	}
	bridge.SetUser = func(client any, userID string) error {
		return client.(*Client).setUser(userID)
	}
	bridge.AddOccupancyHooks = func(hub any, occupied, vacated func(string)) error {
		return hub.(*Hub).addOccupancyHooks(occupied, vacated)
	}
}
