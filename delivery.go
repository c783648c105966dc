package ws

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/vortechron/go-ws/internal/frame"
	"github.com/vortechron/go-ws/internal/wire"
)

// deliver hands one broker payload to every write shard with subscribers
// of the channel, which fan it out to their share of them. The event is
// encoded once for each protocol that the channel's subscribers speak,
// and every subscriber of a protocol gets the same bytes (compressed
// once more, and shared the same way, for the subscribers that
// negotiated compression: see compression.go). It runs on the
// broker's delivery goroutine and waits only when a shard is far behind
// (see maxPosts), never on a client.
func (h *Hub) deliver(ch *channel, payload []byte) {
	if len(payload) == 0 {
		// The broker restored the subscription; it may have lost some.
		if ch.hist != nil {
			ch.hist.restored()
		}
		return
	}
	if payload[0] == batchMark {
		if err := eachInBatch(payload, func(p []byte) { h.deliver(ch, p) }); err != nil {
			h.logDropped(ch, err)
		}
		return
	}
	ev, except, err := decodePayload(ch.name, payload)
	if err != nil {
		h.logDropped(ch, err)
		return
	}
	if ch.pres != nil && (ev.Kind == wire.Join || ev.Kind == wire.Leave) {
		ch.pres.receive(&ev, except) // in version order: see presence_seq.go
		return
	}
	if ch.hist != nil && ev.History {
		// Kept by the sequencer after the handler returns: a copy.
		ev.Data = append(json.RawMessage(nil), ev.Data...)
		ch.hist.receive(&ev, except) // in offset order: see history_seq.go
		return
	}
	h.post(ch, &ev, except, nil, nil)
}

// post hands ev to every shard with subscribers of ch, to be queued on
// each of them but the connection except and the clients in skip; with
// only set, to that client alone.
func (h *Hub) post(ch *channel, ev *wire.Event, except string, skip []*Client, only *Client) {
	var z *deflated
	if h.cfg.EnableCompression {
		z = &deflated{}
	}
	if only != nil {
		only.out.shard.post(post{ch: ch, ev: ev, only: only, z: z})
		return
	}
	h.postAll(post{ch: ch, ev: ev, except: except, skip: skip, whisper: ev.Kind == wire.WhisperEvent, z: z})
}

// postHistory is post for a history channel's sequencer: seq is the
// post's place in the channel's local sequence, which decides which
// subscribers take it (see historySub.admits).
func (h *Hub) postHistory(ch *channel, ev *wire.Event, except string, seq uint64) {
	// The sequencer's events are its own: deliver copied what it kept.
	p := post{ch: ch, ev: ev, except: except, seq: seq, owned: true}
	if h.cfg.EnableCompression {
		p.z = &deflated{}
	}
	h.postAll(p)
}

// postAll hands p to every shard with subscribers of its channel, with
// its event encoded once for each protocol they speak.
func (h *Hub) postAll(p post) {
	encoded := false
	for i, s := range h.shards {
		if p.ch.sets[i].empty() {
			continue
		}
		if !encoded {
			encoded = true
			late := false
			for pi, proto := range h.protocols[:h.nprotocols.Load()] {
				if p.ch.speakers[pi].Load() == 0 {
					late = true
					continue
				}
				if p.frames[pi] = encodeFrame(proto, p.ev); p.frames[pi] == nil {
					p.frames[pi] = noFrame
				}
			}
			if late && !p.owned {
				// A subscriber of a protocol not encoded here may join
				// before a shard fans p out, and the shard then encodes
				// ev for it (post.frame), after the broker's handler has
				// returned: ev must not share the broker's payload.
				p.ev = p.ev.Clone()
			}
		}
		s.post(p)
	}
}

// encodeFrame encodes ev with proto as a complete text frame, or nil when
// the protocol sends nothing for ev.
func encodeFrame(proto wire.Protocol, ev *wire.Event) []byte {
	bp := scratch.Get().(*[]byte)
	payload := proto.Encode((*bp)[:0], ev)
	var f []byte
	if len(payload) > 0 {
		f = frame.Text(payload)
	}
	if cap(payload) <= 64<<10 {
		*bp = payload[:0]
		scratch.Put(bp)
	}
	return f
}

// noFrame marks, in a post, a protocol that sends nothing for its event.
var noFrame = []byte{}

// scratch holds buffers that events are encoded into before framing.
var scratch = sync.Pool{New: func() any { b := make([]byte, 0, 512); return &b }}

var errEnvelope = errors.New("ws: broker payload is not a ws envelope (version 2)")

// logDropped counts a broker payload that could not be read and logs it,
// at most once per dropLogEvery, with how many were dropped since the last
// line: what cannot be read usually keeps coming at its publisher's rate
// (a node of another ws release during a rolling upgrade, another
// application on the same channels), and nothing is logged per message.
func (h *Hub) logDropped(ch *channel, err error) {
	h.stats.errors[errKindProtocol].Add(1)
	d := &h.dropLog
	d.dropped.Add(1)
	now, last := time.Now().UnixNano(), d.last.Load()
	if last != 0 && now-last < int64(dropLogEvery) || !d.last.CompareAndSwap(last, now) {
		return
	}
	h.log.Warn("ws: dropped broker payload", "channel", ch.name, "err", err, "dropped", d.dropped.Swap(0))
}

// dropLogEvery is how often at most a node logs a dropped broker payload.
const dropLogEvery = time.Minute

// envelopeVersionError says what a payload that looks like another
// version's envelope means: a node of another ws release publishes on the
// same broker. Nodes of one cluster must run releases with the same
// envelope version (docs/operations.md, "Upgrading a cluster"); version 1
// is what releases before the wire-codec seam wrote.
func envelopeVersionError(v byte) error {
	which := "newer"
	if v < envelopeVersion {
		which = "older"
	}
	return fmt.Errorf("envelope version %d: from a node running another ws release, %s than this node's, which reads version %d only: every node on one broker must run a release with the same envelope version", v, which, envelopeVersion)
}

// kindKnown reports whether k is an envelope kind of any version.
func kindKnown(k byte) bool {
	return k == kindMessage || k == kindWhisper || k == kindPresence
}

// decodePayload reads a broker payload: an envelope, or a history
// publication (its position, then its envelope: see cutPositioned).
func decodePayload(channel string, b []byte) (ev wire.Event, except string, err error) {
	pos, env, positioned, err := cutPositioned(b)
	if err != nil {
		return ev, "", err
	}
	ev, except, err = decodeEnvelope(channel, env)
	if err != nil || !positioned {
		return ev, except, err
	}
	if ev.Kind != wire.Message {
		return ev, "", errEnvelope
	}
	ev.History, ev.Offset, ev.Epoch = true, pos.Offset, pos.Epoch
	return ev, except, nil
}

// decodeEnvelope reads a broker envelope (see encodeEnvelope in
// publish.go) back into the event it carries and the connection to skip.
func decodeEnvelope(channel string, b []byte) (ev wire.Event, except string, err error) {
	if len(b) >= 2 && b[0] != envelopeVersion && b[0] < ' ' && kindKnown(b[1]) {
		return ev, "", fmt.Errorf("%w: %w", errEnvelope, envelopeVersionError(b[0]))
	}
	if len(b) < 2 || b[0] != envelopeVersion {
		return ev, "", errEnvelope
	}
	kind := b[1]
	b = b[2:]
	var fields [6][]byte
	for i := range fields {
		n, k := binary.Uvarint(b)
		if k <= 0 || uint64(len(b)-k) < n {
			return ev, "", errEnvelope
		}
		fields[i], b = b[k:k+int(n)], b[k+int(n):]
	}
	var nums [3]uint64
	for i := range nums {
		v, k := binary.Uvarint(b)
		if k <= 0 {
			return ev, "", errEnvelope
		}
		nums[i], b = v, b[k:]
	}
	except = string(fields[0])
	ev.Channel = channel
	ev.Name = string(fields[1])
	ev.Epoch = string(fields[4])
	flags := nums[2]
	switch kind {
	case kindMessage:
		ev.Kind, ev.Data = wire.Message, b
	case kindWhisper:
		ev.Kind, ev.From, ev.Data = wire.WhisperEvent, string(fields[2]), b
	case kindPresence:
		switch ev.Name {
		case "join":
			ev.Kind = wire.Join
		case "leave":
			ev.Kind = wire.Leave
		default:
			return ev, "", errEnvelope
		}
		ev.Name = ""
		ev.Member = &wire.Member{ID: string(fields[2])}
		if len(fields[3]) > 0 {
			ev.Member.Info = json.RawMessage(fields[3])
		}
		ev.Version, ev.Count = nums[0], int(nums[1])
		if flags&flagUsers != 0 {
			// The list is written to clients as it came (wire.Event's
			// MembersJSON): checked to be a JSON array, not decoded.
			users := fields[5]
			if len(users) < 2 || users[0] != '[' || !json.Valid(users) {
				return ev, "", errEnvelope
			}
			ev.HasMembers, ev.MembersJSON = true, users
		}
	default:
		return ev, "", errEnvelope
	}
	return ev, except, nil
}
