package pusher

import (
	"net/http"
	"strings"

	ws "github.com/vortechron/go-ws"
	"github.com/vortechron/go-ws/internal/bridge"
)

func init() {
	bridge.PusherConnect = func(srv any, r *http.Request) bridge.PusherConn {
		return srv.(*Server).connect(r)
	}
}

// connect checks a connection request for the Fiber adaptor, as serveWS
// does for net/http.
func (s *Server) connect(r *http.Request) bridge.PusherConn {
	if s.err != nil {
		return bridge.PusherConn{Err: s.err}
	}
	key := r.URL.Path[strings.LastIndex(r.URL.Path, "/app/")+len("/app/"):]
	if code, msg := s.checkConnect(key, r.URL.Query()); code != 0 {
		return bridge.PusherConn{RefuseCode: code, RefuseText: closeText(msg), RefuseFrame: appendPusherError(nil, code, msg, "")}
	}
	return bridge.PusherConn{Hub: s.hub, Options: &s.opts, Protocol: s.index}
}

// prepare runs the hub's checks before an upgrade (see bridge.Prepare).
func prepare(hub *ws.Hub, w http.ResponseWriter, r *http.Request, opts *ws.Options, index int) bridge.Handshake {
	return bridge.Prepare(hub, w, r, opts, index)
}
