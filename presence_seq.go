package ws

import (
	"context"
	"sync"
	"time"

	"github.com/vortechron/go-ws/internal/wire"
)

// presenceSeq puts the joins and leaves of one presence channel in the
// order the storage decided them, for this node's subscribers.
//
// Every change of a channel's membership gets the channel's next version
// from the storage (StorageClient), atomically with the change, and its
// announcement carries it. Announcements reach this node through the
// broker in the order they were published, which is not always the order
// of their versions: two nodes that change the channel a moment apart
// publish in whichever order their round trips finish. The sequencer
// delivers an announcement only when every earlier one has been
// delivered: it drops what is older than the subscribers' list, holds
// back what comes early for up to presenceGapWait, and when a gap does not
// fill (a lost announcement) or the epoch changes (the storage lost the
// channel's state), it reads the channel's members and version and sends
// every subscriber a fresh "members" frame. Hence the guarantee of
// docs/presence.md: a client that applies "members" and then each "join"
// and "leave" in the order received holds exactly the channel's
// membership whenever the channel is quiet.
//
// A subscriber that joins gets its own "members" frame at the version it
// read (attach). If that is ahead of the node's, the subscriber's floor
// keeps it from getting the announcements it already has; if behind, the
// list is read again.
//
// All of it runs under mu, on the broker's delivery goroutine, a joining
// client's goroutine or a resync's; posts to the shards are made under mu
// too, so their order is the version order.
type presenceSeq struct {
	h  *Hub
	ch *channel

	mu        sync.Mutex
	synced    bool                // epoch and seq are known
	epoch     string              // the epoch of the subscribers' lists
	seq       uint64              // the version of the subscribers' lists
	early     map[uint64]seqEvent // announcements of epoch after seq+1, waiting for the gap to fill
	stray     []seqEvent          // announcements of another epoch, until a resync says which is current
	floors    map[*Client]uint64  // subscribers whose list is ahead of seq (same epoch)
	pending   map[*Client]bool    // subscribers whose own list is not sent yet
	gapTimer  *time.Timer         // runs while early is not empty
	resyncing bool                // a resync is in flight
	lag       *PresenceVersion    // where the last check saw the storage ahead of the subscribers, if it did
	closed    bool                // the channel left this node
}

// seqEvent is one announcement and the connection it skips.
type seqEvent struct {
	ev     *wire.Event
	except string
}

// presenceGapWait is how long an announcement that comes early waits for
// the ones before it, before the sequencer gives up on them and resyncs.
// Announcements published a moment apart by two nodes arrive within a few
// milliseconds of each other.
const presenceGapWait = 150 * time.Millisecond

// maxWaitingStray bounds the announcements kept while the first
// subscriber's list is on its way.
const maxWaitingStray = 256

// presenceResyncRetry is how long a failed resync waits before the next.
const presenceResyncRetry = time.Second

func newPresenceSeq(h *Hub, ch *channel) *presenceSeq {
	return &presenceSeq{h: h, ch: ch, early: make(map[uint64]seqEvent), floors: make(map[*Client]uint64), pending: make(map[*Client]bool)}
}

// expect marks c pending: it has joined the channel's subscribers (the Run
// goroutine calls it as it adds c) and its own list is on its way
// (attach). Until then it gets neither announcements nor resync lists:
// attach reads the list again if the node moved past it meanwhile.
func (p *presenceSeq) expect(c *Client) {
	p.mu.Lock()
	p.pending[c] = true
	p.mu.Unlock()
}

// forget drops what the sequencer knows of c, which left the channel.
func (p *presenceSeq) forget(c *Client) {
	p.mu.Lock()
	delete(p.pending, c)
	delete(p.floors, c)
	p.mu.Unlock()
}

// skipLocked returns the subscribers an announcement of version v (or a
// list of version v, with list) must not reach: those still waiting for
// their own list, and those whose list is already past v.
func (p *presenceSeq) skipLocked(v uint64) []*Client {
	var skip []*Client
	for c := range p.pending {
		skip = append(skip, c)
	}
	for c, floor := range p.floors {
		if floor >= v {
			skip = append(skip, c)
		} else {
			delete(p.floors, c)
		}
	}
	return skip
}

// receive takes an announcement from the broker.
func (p *presenceSeq) receive(ev *wire.Event, except string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return
	}
	se := seqEvent{ev, except}
	switch {
	case !p.synced && len(p.pending) > 0 && len(p.stray) < maxWaitingStray:
		// A subscriber's own list is on its way (attach) and will tell the
		// version; it sorts these out then. Reading the storage now instead
		// could find changes whose announcements are still on their way,
		// and send every subscriber a list where a join or leave would
		// come. (Should the list never come, a storage error say, presence
		// maintenance finds the node behind and reads it; past
		// maxWaitingStray announcements the node reads it at once.)
		p.stray = append(p.stray, se.kept())
	case !p.synced || ev.Epoch != p.epoch:
		// Until a subscriber's list tells the version, or when the epoch
		// changed, only a read of the storage can say what is current.
		p.stray = append(p.stray, se.kept())
		p.startResyncLocked()
	case ev.Version <= p.seq:
		// Already in the subscribers' lists.
	case ev.Version == p.seq+1:
		p.emitLocked(se)
		p.drainLocked()
	default:
		p.early[ev.Version] = se.kept()
		if p.gapTimer == nil {
			p.gapTimer = time.AfterFunc(presenceGapWait, p.gapExpired)
		}
	}
}

// kept returns se with its own copy of the bytes its event shares with
// the broker's payload, for an announcement that waits past the return
// of the broker's handler: the broker may reuse the payload by then
// (MessageBroker.Subscribe).
func (se seqEvent) kept() seqEvent {
	se.ev = se.ev.Clone()
	return se
}

// emitLocked delivers one announcement to the subscribers whose lists are
// not already past it, and advances seq.
func (p *presenceSeq) emitLocked(se seqEvent) {
	v := se.ev.Version
	p.h.post(p.ch, se.ev, se.except, p.skipLocked(v), nil)
	p.seq = v
}

// drainLocked delivers the early announcements that are now next.
func (p *presenceSeq) drainLocked() {
	drainEarly(p.early, func() uint64 { return p.seq }, p.emitLocked)
	if len(p.early) == 0 && p.gapTimer != nil {
		p.gapTimer.Stop()
		p.gapTimer = nil
	}
}

// drainEarly is the reorder step that presenceSeq and historySeq share:
// early holds events that arrived ahead of a gap, by sequence number;
// while the one after last() is there, it is taken out and emitted (which
// advances last), and what is then at or below last is dropped.
func drainEarly[E any](early map[uint64]E, last func() uint64, emit func(E)) {
	for {
		e, ok := early[last()+1]
		if !ok {
			break
		}
		delete(early, last()+1)
		emit(e)
	}
	for n := range early {
		if n <= last() {
			delete(early, n)
		}
	}
}

// gapExpired runs when early announcements waited presenceGapWait.
func (p *presenceSeq) gapExpired() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.gapTimer = nil
	if !p.closed && len(p.early) > 0 {
		p.startResyncLocked()
	}
}

// startResyncLocked reads the channel's members and version off the
// calling goroutine, unless a read is in flight already.
func (p *presenceSeq) startResyncLocked() {
	if p.resyncing || p.closed {
		return
	}
	if !p.h.presenceWork.start() {
		return // the hub is shutting down
	}
	p.resyncing = true
	go func() {
		defer p.h.presenceWork.done()
		p.resync()
	}()
}

// resync reads the channel's members and version and brings every
// subscriber to them.
func (p *presenceSeq) resync() {
	ctx, cancel := p.h.presenceCtx()
	members, v, err := p.h.storage.PresenceMembers(ctx, p.ch.name)
	cancel()
	p.mu.Lock()
	defer p.mu.Unlock()
	p.resyncing = false
	if p.closed {
		return
	}
	if err != nil {
		p.h.stats.errors[errKindStorage].Add(1)
		p.h.log.Warn("ws: presence resync failed", "channel", p.ch.name, "err", err)
		time.AfterFunc(presenceResyncRetry, p.retryResync)
		return
	}
	p.applyLocked(members, v, nil)
}

func (p *presenceSeq) retryResync() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.startResyncLocked()
}

// check compares the storage's version with the subscribers'. Presence
// maintenance calls it every interval, so an announcement lost while the
// broker was down, with no later one to reveal the gap, is made good: if
// the subscribers are still behind the version the previous check saw,
// the node resyncs. One interval of grace lets the announcements that are
// merely on their way (those the maintenance itself just made, say)
// arrive first.
func (p *presenceSeq) check(ctx context.Context) {
	_, v, err := p.h.storage.PresenceMembers(ctx, p.ch.name)
	if err != nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.synced && v.Epoch == p.epoch && v.Seq <= p.seq {
		p.lag = nil
		return
	}
	if last := p.lag; last != nil && (!p.synced || p.epoch != last.Epoch || p.seq < last.Seq) {
		p.lag = nil
		p.startResyncLocked()
		return
	}
	p.lag = &v
}

// attach gives c, which has just joined the channel and read its members
// and version, its "members" frame, in order with the announcements
// around it. It reports false when the list is older than the node's
// subscribers' (the caller reads it again).
func (p *presenceSeq) attach(c *Client, members []PresenceMember, v PresenceVersion) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return true
	}
	switch {
	case p.synced && v.Epoch == p.epoch && v.Seq < p.seq:
		return false // still pending: nothing was sent to c
	case !p.synced || v.Epoch != p.epoch:
		// c's list is the newest anyone here has (it was read after
		// everything the node delivered was decided), or the epoch
		// changed: it becomes everyone's.
		delete(p.pending, c)
		p.applyLocked(members, v, c)
	default:
		delete(p.pending, c)
		if v.Seq > p.seq {
			p.floors[c] = v.Seq
		}
		p.h.post(p.ch, membersEvent(p.ch.name, members, v), "", nil, c)
	}
	return true
}

// applyLocked brings the node to the list members at version v: every
// subscriber whose list is not already as new (or only c, when the node
// was not synced and c is the one who read it) gets it, and the early and
// stray announcements after it are delivered in order.
func (p *presenceSeq) applyLocked(members []PresenceMember, v PresenceVersion, c *Client) {
	if p.synced && v.Epoch == p.epoch && v.Seq <= p.seq {
		// Nothing newer than what the subscribers have; c alone needs it.
		if c != nil {
			p.h.post(p.ch, membersEvent(p.ch.name, members, v), "", nil, c)
		}
		return
	}
	// A subscriber whose own list is newer still (same epoch, a higher
	// floor) keeps it; every other floor is behind v now. Pending
	// subscribers get their own list from attach.
	if v.Epoch != p.epoch {
		// Floors and the announcements waiting for a gap to fill are of
		// the old epoch: their versions say nothing in v's. An early one
		// kept would go out once v's epoch reached its number, as if it
		// were of v's (TestPresenceEarlyAnnouncementsDieWithTheirEpoch).
		clear(p.floors)
		clear(p.early)
	}
	p.h.post(p.ch, membersEvent(p.ch.name, members, v), "", p.skipLocked(v.Seq+1), nil)
	p.epoch, p.seq, p.synced = v.Epoch, v.Seq, true
	// Keep what is newer than v in v's epoch; the rest is older.
	stray := p.stray
	p.stray = nil
	for _, se := range stray {
		if se.ev.Epoch == v.Epoch && se.ev.Version > v.Seq {
			p.early[se.ev.Version] = se
		}
	}
	p.drainLocked()
	if len(p.early) > 0 && p.gapTimer == nil {
		p.gapTimer = time.AfterFunc(presenceGapWait, p.gapExpired)
	}
}

// close stops the sequencer when the channel leaves the node.
func (p *presenceSeq) close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closed = true
	if p.gapTimer != nil {
		p.gapTimer.Stop()
		p.gapTimer = nil
	}
}

// membersEvent is the "members" frame of members at version v.
func membersEvent(channel string, members []PresenceMember, v PresenceVersion) *wire.Event {
	return &wire.Event{Kind: wire.Members, Channel: channel, Members: wireMembers(members), HasMembers: true,
		Count: len(members), Version: v.Seq, Epoch: v.Epoch}
}
