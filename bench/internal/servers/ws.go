package servers

import (
	"context"
	"encoding/json"
	"net/http"

	ws "github.com/vortechron/go-ws"
)

// wsServer is this library with its defaults (Config{}), used the way its
// README shows: NewHub, Run, ServeWS, Hub.Publish with a json.RawMessage.
// With Options.Redis it uses the Redis broker and storage so several
// processes form one cluster.
type wsServer struct {
	hub    *ws.Hub
	cancel context.CancelFunc
	opts   *ws.Options
}

func init() {
	register("ws", func(ctx context.Context, opts Options) (Server, error) {
		ctx, cancel := context.WithCancel(ctx)
		broker, storage, err := wsBackends(opts)
		if err != nil {
			cancel()
			return nil, err
		}
		hub := ws.NewHub(ctx, broker, storage, ws.Config{})
		if err := hub.Err(); err != nil {
			cancel()
			return nil, err
		}
		go hub.Run()
		return &wsServer{hub: hub, cancel: cancel, opts: &ws.Options{}}, nil
	})
}

func (s *wsServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	ws.ServeWS(s.hub, w, r, s.opts)
}

func (s *wsServer) Publish(ctx context.Context, channel string, payload []byte) error {
	return s.hub.Publish(ctx, channel, json.RawMessage(payload))
}

func (s *wsServer) Close() {
	s.cancel()
	<-s.hub.Done()
}
