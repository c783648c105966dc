package servers

import (
	"context"
	"net/http"

	"github.com/olahol/melody"

	"github.com/vortechron/go-ws/bench/internal/proto"
)

// melodyServer is olahol/melody used the way its examples use it: the
// channel is a session key, a publication is one BroadcastFilter. Defaults
// are kept (256-message session buffer; a full buffer drops the message).
type melodyServer struct {
	m *melody.Melody
}

func init() {
	register("melody", func(ctx context.Context, opts Options) (Server, error) {
		m := melody.New()
		m.HandleMessage(func(s *melody.Session, msg []byte) {
			ch, ok := proto.ChannelOf(msg)
			if !ok {
				return
			}
			s.Set("channel", ch)
			s.Write(proto.Subscribed(ch))
		})
		return &melodyServer{m: m}, nil
	})
}

func (s *melodyServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.m.HandleRequest(w, r)
}

func (s *melodyServer) Publish(ctx context.Context, channel string, payload []byte) error {
	return s.m.BroadcastFilter(proto.Envelope(channel, payload), func(q *melody.Session) bool {
		v, ok := q.Get("channel")
		return ok && v.(string) == channel
	})
}

func (s *melodyServer) Close() { s.m.Close() }
