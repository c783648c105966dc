package pusher

import (
	"net/http"

	ws "github.com/vortechron/go-ws"
	"github.com/vortechron/go-ws/internal/bridge"
)

// prepare runs the hub's checks before an upgrade (see bridge.Prepare).
func prepare(hub *ws.Hub, w http.ResponseWriter, r *http.Request, opts *ws.Options, index int) bridge.Handshake {
	return bridge.Prepare(hub, w, r, opts, index)
}
