package ws

import (
	"context"
	"sync"
	"time"

	"github.com/vortechron/go-ws/internal/wire"
)

// historySeq delivers the publications of one history channel to this
// node's subscribers in offset order, each once, and hands every new
// subscriber over from what it recovered to the live publications without
// a gap or a duplicate.
//
// Publications reach the node through the broker in offset order (the
// broker assigns the offset and publishes in one step) unless the node's
// subscription lost some (Redis pub/sub is at most once). The sequencer
// posts them to the write shards one after the other (emitLocked), each
// with the next number of the channel's local sequence (posted), and
// remembers the offset of the last one (last) and the latest posts (ring).
// A publication that comes after a gap waits in early while the gap is
// read from the history (resync); one of another epoch, or one that comes
// before the node knows where the channel stands, waits in stray until a
// read of the history says what is current. When the history cannot fill
// a gap, or its epoch changed, every subscriber gets a fresh "subscribed"
// frame with recovered:false (a reset) and the sequencer goes on from the
// history's latest position.
//
// Hand-over. A client's subscription (historySub) enters the channel's
// snapshot on the Run goroutine hidden: the shards queue nothing of the
// channel for it, neither posts made before it joined that they reach only
// now, nor later ones. recovery.go then reads the position (and, with
// "since", the missed publications) from the history, which the broker
// subscription, confirmed before the join, makes complete: every
// publication after the read reaches the node. Under mu, which orders it
// with every post, the client's "subscribed" frame is queued and, once the
// client has every publication up to the node's last one (from the
// history, then from the ring), its floor is set to posted: the shards
// queue for it exactly the posts made from then on, and they carry the
// offsets after last. Nothing is therefore lost or sent twice, and
// "subscribed" comes first. A client that comes back further than the
// node has got (from a node ahead of this one) waits, recovering, until
// the node catches up. See docs/recovery.md.
//
// Everything here runs under mu: on the broker's delivery goroutine, on a
// subscribing client's goroutines and on a resync's. Posts are made under
// mu too, so their order is the offset order.
type historySeq struct {
	h    *Hub
	ch   *channel
	hb   HistoryBroker
	size uint64 // HistoryOptions.Size: the ring recovers no further back

	mu        sync.Mutex
	synced    bool                 // epoch and last are known
	epoch     string               // the epoch of what was posted
	last      uint64               // the offset of the last publication posted
	posted    uint64               // posts made: the channel's local sequence
	ring      historyRing          // the latest publications posted
	early     map[uint64]histEvent // publications after a gap, by offset
	stray     []histEvent          // publications not known to follow last
	resyncing bool                 // a resync is in flight
	closed    bool                 // the channel left this node
	moved     chan struct{}        // made by awaitMoveLocked, closed when last moves or the channel closes
}

// histEvent is one publication and the connection it skips.
type histEvent struct {
	ev     *wire.Event
	except string
}

const (
	// historyRingSize is how many of the latest publications a channel
	// keeps on each node with subscribers, for hand-overs and for
	// clients that come back to the same node a moment later.
	historyRingSize = 256
	// historyBuffer bounds early and stray; what overflows is read from
	// the history again.
	historyBuffer = 8192
	// historyPage is the most publications one read of the history asks
	// for.
	historyPage = 256
	// historyResyncRetry is how long a failed resync waits for the next.
	historyResyncRetry = time.Second
)

// newHistorySeq returns the sequencer of a channel that keeps history, or
// nil for one that does not.
func (h *Hub) newHistorySeq(ch *channel) *historySeq {
	o, hb, ok := h.historyOptions(ch.name)
	if !ok {
		return nil
	}
	return &historySeq{h: h, ch: ch, hb: hb, size: uint64(o.Size), early: make(map[uint64]histEvent)}
}

func (h *Hub) historyCtx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(h.ioCtx, brokerTimeout)
}

// receive takes a publication from the broker.
func (s *historySeq) receive(ev *wire.Event, except string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return
	}
	he := histEvent{ev, except}
	switch {
	case !s.synced || ev.Epoch != s.epoch:
		s.strayLocked(he)
		if s.synced {
			s.startResyncLocked()
		}
	case ev.Offset <= s.last:
		// Posted already (a resync read it first).
	case ev.Offset == s.last+1:
		s.emitLocked(he)
		s.drainLocked()
	default:
		if len(s.early) < historyBuffer {
			s.early[ev.Offset] = he
		}
		s.startResyncLocked()
	}
}

func (s *historySeq) strayLocked(he histEvent) {
	if len(s.stray) == historyBuffer {
		s.stray = append(s.stray[:0], s.stray[1:]...)
	}
	s.stray = append(s.stray, he)
}

// emitLocked posts the publication that follows last.
func (s *historySeq) emitLocked(he histEvent) {
	s.posted++
	s.h.postHistory(s.ch, he.ev, he.except, s.posted)
	s.last = he.ev.Offset
	s.ring.push(he)
	s.movedLocked()
}

// awaitMoveLocked returns a channel closed when last next moves (or the
// epoch changes, or the channel closes): for a recovery that is ahead of
// the node.
func (s *historySeq) awaitMoveLocked() <-chan struct{} {
	if s.moved == nil {
		s.moved = make(chan struct{})
	}
	return s.moved
}

func (s *historySeq) movedLocked() {
	if s.moved != nil {
		close(s.moved)
		s.moved = nil
	}
}

// drainLocked posts the early publications that now follow last.
func (s *historySeq) drainLocked() {
	drainEarly(s.early, func() uint64 { return s.last }, s.emitLocked)
}

// startResyncLocked reads the history after last off the calling
// goroutine, unless a read is in flight already.
func (s *historySeq) startResyncLocked() {
	if s.resyncing || s.closed || !s.h.historyWork.start() {
		return
	}
	s.resyncing = true
	go func() {
		defer s.h.historyWork.done()
		s.resync()
	}()
}

// restored reads back what the node may have missed while the broker
// restored its subscription.
func (s *historySeq) restored() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.synced {
		s.startResyncLocked()
	}
}

func (s *historySeq) retryResync() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.startResyncLocked()
}

// resync reads the history after last until the node has caught up with
// what it saw come early or of another epoch.
func (s *historySeq) resync() {
	for {
		s.mu.Lock()
		after, closed := s.last, s.closed
		s.mu.Unlock()
		if closed {
			break
		}
		ctx, cancel := s.h.historyCtx()
		page, err := s.hb.ReadHistory(ctx, s.ch.name, HistoryRange{After: after, Limit: historyPage})
		cancel()
		s.mu.Lock()
		if err != nil {
			s.resyncing = false
			if !s.closed {
				s.h.stats.errors[errKindBroker].Add(1)
				s.h.log.Warn("ws: history resync failed", "channel", s.ch.name, "err", err)
				time.AfterFunc(historyResyncRetry, s.retryResync)
			}
			s.mu.Unlock()
			return
		}
		more := s.applyLocked(page, true)
		s.mu.Unlock()
		if !more {
			break
		}
	}
	s.mu.Lock()
	s.resyncing = false
	s.mu.Unlock()
}

// applyLocked brings the node up to page, a read of the history after
// last that is newer than everything the node received before it was
// made: the publications after last are posted, or, when the history no
// longer has them or has another epoch, every subscriber is reset to the
// page's latest position. Only the sequencer's own reads (authoritative)
// pass authoritative; a subscriber's read, which may be older than what
// the node has received since, only syncs a sequencer that is not synced
// yet. It reports whether the node has more to read.
func (s *historySeq) applyLocked(page HistoryPage, authoritative bool) bool {
	if s.closed {
		return false
	}
	switch {
	case !s.synced:
		s.rebaseLocked(page.Latest, false)
	case !authoritative:
		if page.Latest.Epoch != s.epoch {
			s.startResyncLocked() // which of the two is current?
		}
		return false
	case page.Latest.Epoch != s.epoch || page.Latest.Offset < s.last ||
		page.Latest.Offset > s.last && page.Oldest > s.last+1:
		// Another epoch, offsets that went back (a broker that lost what
		// it had handed out without telling), or a gap the history no
		// longer holds.
		s.rebaseLocked(page.Latest, true)
	default:
		for _, e := range page.Entries {
			if e.Offset != s.last+1 {
				continue
			}
			ev, except, err := decodeEnvelope(s.ch.name, e.Payload)
			if err != nil || ev.Kind != wire.Message {
				s.h.stats.errors[errKindProtocol].Add(1)
				s.last = e.Offset // not a publication of ours: passed over,
				s.ring.clear()    // and the ring's offsets must follow each other
				s.movedLocked()
				continue
			}
			ev.History, ev.Offset, ev.Epoch = true, e.Offset, page.Latest.Epoch
			s.emitLocked(histEvent{&ev, except})
		}
		s.drainLocked()
	}
	// What stray publications of the current epoch follow last waits its
	// turn; the others are older than the page and were dropped by it.
	for _, he := range s.stray {
		if he.ev.Epoch == s.epoch && he.ev.Offset > s.last && len(s.early) < historyBuffer {
			s.early[he.ev.Offset] = he
		}
	}
	s.stray = s.stray[:0]
	s.drainLocked()
	return s.last < page.Latest.Offset || len(s.early) > 0
}

// rebaseLocked makes latest the node's position. With reset, every
// subscriber is told that what came before it may be lost: a "subscribed"
// frame with recovered:false, posted in order with the publications.
func (s *historySeq) rebaseLocked(latest HistoryPosition, reset bool) {
	if reset {
		s.posted++
		s.h.postHistory(s.ch, resetEvent(s.ch.name, latest), "", s.posted)
		s.h.stats.historyResets.Add(1)
		s.h.log.Info("ws: history lost; subscribers reset", "channel", s.ch.name,
			"from_offset", s.last, "from_epoch", s.epoch, "to_offset", latest.Offset, "to_epoch", latest.Epoch)
	}
	if latest.Epoch != s.epoch {
		clear(s.early)
	}
	s.synced, s.epoch, s.last = true, latest.Epoch, latest.Offset
	s.ring.clear()
	s.movedLocked()
	s.drainLocked()
}

// resetEvent is the "subscribed" frame that tells a subscriber its
// history broke and where the channel stands now.
func resetEvent(channel string, pos HistoryPosition) *wire.Event {
	return &wire.Event{Kind: wire.Subscribed, Channel: channel, History: true, Offset: pos.Offset, Epoch: pos.Epoch, Recover: true}
}

// close stops the sequencer when the channel leaves the node.
func (s *historySeq) close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	s.stray, s.early = nil, nil
	s.ring.clear()
	s.movedLocked()
}

// historyRing holds the latest publications posted, oldest first; their
// offsets follow each other.
type historyRing struct {
	buf  [historyRingSize]histEvent
	head int // index of the oldest
	n    int
}

func (r *historyRing) push(he histEvent) {
	if r.n == len(r.buf) {
		r.buf[r.head] = he
		r.head = (r.head + 1) % len(r.buf)
		return
	}
	r.buf[(r.head+r.n)%len(r.buf)] = he
	r.n++
}

func (r *historyRing) clear() {
	r.buf, r.head, r.n = [historyRingSize]histEvent{}, 0, 0
}

// after returns up to limit publications that follow offset pos, and
// whether the ring reaches back to pos+1 (ok false: the ring holds none
// of them, or not all).
func (r *historyRing) after(pos uint64, limit int) (evs []histEvent, ok bool) {
	if r.n == 0 || r.buf[r.head].ev.Offset > pos+1 {
		return nil, false
	}
	first := r.buf[r.head].ev.Offset
	for i := int(pos + 1 - first); i < r.n && len(evs) < limit; i++ {
		evs = append(evs, r.buf[(r.head+i)%len(r.buf)])
	}
	return evs, true
}

// covers reports whether the ring holds every publication after pos up to
// the latest posted.
func (r *historyRing) covers(pos uint64) bool {
	return r.n > 0 && r.buf[r.head].ev.Offset <= pos+1
}

// ringRecoversLocked reports whether a client at pos of the current epoch
// can recover from the ring: it holds what the client missed, which is no
// more than the history keeps (so whether a client recovers does not
// depend on the node it comes back to).
func (s *historySeq) ringRecoversLocked(pos uint64) bool {
	return pos >= s.last || s.last-pos <= s.size && s.ring.covers(pos)
}
