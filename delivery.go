package ws

import "github.com/vortechron/go-ws/internal/frame"

// deliver hands one broker payload to every write shard with subscribers
// of the channel, which fan it out to their share of them. It frames the
// payload once; every subscriber gets the same bytes. It runs on the
// broker's delivery goroutine and waits only when a shard is far behind
// (see maxPosts), never on a client.
func (h *Hub) deliver(ch *channel, payload []byte) {
	kind, except, body, err := decodeEnvelope(payload)
	if err != nil {
		h.stats.errors[errKindProtocol].Add(1)
		h.log.Warn("ws: dropped broker payload", "channel", ch.name, "err", err)
		return
	}
	var p post
	for i, s := range h.shards {
		if ch.sets[i].empty() {
			continue
		}
		if p.f == nil {
			p = post{ch: ch, f: frame.Text(body), except: except, whisper: kind == kindWhisper}
		}
		s.post(p)
	}
}
