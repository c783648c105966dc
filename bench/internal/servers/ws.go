package servers

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"

	ws "github.com/vortechron/go-ws"
)

// wsServer is this library with its defaults (Config{}), used the way its
// README shows: NewHub, Run, ServeWS, Hub.Publish with a json.RawMessage.
// With Options.Redis it uses the Redis broker and storage so several
// processes form one cluster. Users are identified by the "user" query
// parameter (none: anonymous) and may join every channel, so presence
// channels work as in an application whose auth allows everything.
type wsServer struct {
	hub    *ws.Hub
	cancel context.CancelFunc
	opts   *ws.Options
	pusher http.Handler // with Options.Pusher: the Pusher endpoint
}

func init() {
	register("ws", func(ctx context.Context, opts Options) (Server, error) {
		ctx, cancel := context.WithCancel(ctx)
		broker, storage, err := wsBackends(opts)
		if err != nil {
			cancel()
			return nil, err
		}
		cfg := ws.Config{}
		if opts.Compress && !wsCompression(&cfg, opts) {
			fmt.Println("ws: this version of the library has no compression; serving uncompressed")
		}
		if opts.History > 0 {
			wsHistory(&cfg, opts.History)
		}
		hub := ws.NewHub(ctx, broker, storage, cfg)
		if err := hub.Err(); err != nil {
			cancel()
			return nil, err
		}
		go hub.Run()
		o := &ws.Options{
			GetUserID:   func(r *http.Request) string { return r.URL.Query().Get("user") },
			AuthHandler: func(userID, channel string) bool { return true },
		}
		s := &wsServer{hub: hub, cancel: cancel, opts: o}
		if opts.Pusher {
			s.pusher = wsPusher(hub, o)
		}
		return s, nil
	})
}

func (s *wsServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if s.pusher != nil && r.URL.Query().Has("protocol") {
		s.pusher.ServeHTTP(w, r)
		return
	}
	ws.ServeWS(s.hub, w, r, s.opts)
}

// Publish publishes payload as the README shows (Hub.Publish), or, with
// -pusher, as a named event (Hub.PublishWith), which Pusher clients
// receive as {"event":...,"channel":...,"data":"<payload as a string>"}.
func (s *wsServer) Publish(ctx context.Context, channel string, payload []byte) error {
	if s.pusher != nil {
		return s.hub.PublishWith(ctx, channel, json.RawMessage(payload), ws.PublishOptions{Event: PusherEvent})
	}
	return s.hub.Publish(ctx, channel, json.RawMessage(payload))
}

// CheckPresence compares Hub.PresenceMembers of every channel with want.
func (s *wsServer) CheckPresence(ctx context.Context, channels []string, want []int) (int, string, error) {
	bad, first := 0, ""
	for i, ch := range channels {
		m, err := s.hub.PresenceMembers(ctx, ch)
		if err != nil {
			return bad, first, fmt.Errorf("PresenceMembers(%s): %w", ch, err)
		}
		if len(m) != want[i] {
			if bad == 0 {
				first = fmt.Sprintf("%s: %d members, want %d", ch, len(m), want[i])
			}
			bad++
		}
	}
	return bad, first, nil
}

func (s *wsServer) Close() {
	s.cancel()
	<-s.hub.Done()
}
