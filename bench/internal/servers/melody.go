package servers

import (
	"context"
	"net/http"
	"slices"
	"sync/atomic"

	"github.com/olahol/melody"

	"github.com/vortechron/go-ws/bench/internal/proto"
)

// melodyServer is olahol/melody used the way its examples use it: the
// session's channels are a session key, a publication is one
// BroadcastFilter. Defaults are kept (256-message session buffer; a full
// buffer drops the message). A session may join several channels (the
// reconnect storm subscribes to four); the set is copied on write so the
// filter, which runs on melody's hub goroutine, reads it without a lock.
type melodyServer struct {
	m *melody.Melody
}

// melodyChans is the channel set of one session.
type melodyChans struct {
	set atomic.Pointer[[]string] // written by the session's read goroutine only
}

func init() {
	register("melody", func(ctx context.Context, opts Options) (Server, error) {
		m := melody.New()
		m.HandleConnect(func(s *melody.Session) {
			s.Set("chans", &melodyChans{})
		})
		m.HandleMessage(func(s *melody.Session, msg []byte) {
			ch, ok := proto.ChannelOf(msg)
			if !ok {
				return
			}
			if v, ok := s.Get("chans"); ok {
				mc := v.(*melodyChans)
				var cur []string
				if p := mc.set.Load(); p != nil {
					cur = *p
				}
				if !slices.Contains(cur, ch) {
					next := append(slices.Clip(cur), ch)
					mc.set.Store(&next)
				}
			}
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
		v, ok := q.Get("chans")
		if !ok {
			return false
		}
		p := v.(*melodyChans).set.Load()
		return p != nil && slices.Contains(*p, channel)
	})
}

func (s *melodyServer) Close() { s.m.Close() }
