package ws

// Recovery on subscribe: how a client that subscribes to a history channel
// gets its "subscribed" frame (with the channel's offset and epoch), the
// publications it missed when it asked for them with "since", and then the
// live ones, none twice and none lost. historySeq (history_seq.go) holds
// the channel's side; this is the client's.

import (
	"time"

	"github.com/vortechron/go-ws/internal/wire"
)

// recovery is one client's way from its subscribe to the live
// publications of a history channel.
type recovery struct {
	c     *Client
	s     *historySeq
	sub   *historySub
	epoch string // the client has every publication of epoch up to pos
	pos   uint64
	lost  bool   // the history no longer reaches pos: the client gets reset
	until uint64 // when not 0, loop reads the history up to until first
	// ahead is set while the client is further than the node: closed when
	// the node moves.
	ahead <-chan struct{}
}

// historyAheadWait bounds how long a client further than its node waits
// for the node to catch up before it is reset instead.
const historyAheadWait = brokerTimeout

// subscribeHistory answers a subscribe to a history channel that the Run
// goroutine has just joined c to (or that c was in already: again). It
// runs on c's read goroutine, which may wait for the history to be read
// once; a backlog that must wait for the socket to drain goes on in a
// goroutine of its own. It reports false when the history could not be
// read: c was answered with an error and left the channel.
func (c *Client) subscribeHistory(name string, since *wire.Position, again bool) bool {
	ch, sub := c.historyChannel(name)
	if sub == nil {
		return true // not a history channel: join answered it
	}
	s := ch.hist
	if again {
		s.answerAgain(c, since)
		return true
	}
	r := &recovery{c: c, s: s, sub: sub}
	pending, until, read := s.begin(r, since, nil)
	if read {
		q := HistoryRange{Until: until}
		if since != nil {
			q.After, q.Limit = since.Offset, r.pageSize()
		}
		ctx, cancel := c.hub.historyCtx()
		page, err := s.hb.ReadHistory(ctx, name, q)
		cancel()
		if err != nil {
			c.unavailable(actionSubscribe, name, errKindBroker, historyReadError(name, err))
			c.handleUnsubscribe(name)
			return false
		}
		pending, _, _ = s.begin(r, since, &page)
	}
	r.start(pending)
	return true
}

// historyChannel returns the channel called name, if c is in it and it
// keeps history, and c's subscription to it.
func (c *Client) historyChannel(name string) (*channel, *historySub) {
	c.mu.Lock()
	i := c.subIndexLocked(name)
	var ch *channel
	if i >= 0 {
		ch = c.subs[i]
	}
	c.mu.Unlock()
	if ch == nil || ch.hist == nil {
		return nil, nil
	}
	return ch, c.historySub(ch)
}

// begin answers r's subscribe under s.mu, from what the node has when
// page is nil, or else from page, read after the client joined. With page
// nil it may instead report read: the node does not know the channel's
// position yet, or the client's since is not in the ring; the caller
// reads the history up to until (0: the latest) and calls again. It
// queues the "subscribed" frame and returns the publications the client
// is owed from the page.
func (s *historySeq) begin(r *recovery, since *wire.Position, page *HistoryPage) (pending []histEvent, until uint64, read bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed || r.sub.isGone() {
		return nil, 0, false
	}
	recovered := false
	if page == nil {
		known := s.synced && (since == nil || since.Epoch == s.epoch && since.Offset <= s.last && s.ringRecoversLocked(since.Offset))
		if !known {
			if s.synced {
				until = s.last
			}
			return nil, until, true
		}
		recovered = since != nil
	} else {
		if s.applyLocked(*page, false) {
			s.startResyncLocked()
		}
		recovered = since != nil && page.Latest.Epoch == s.epoch &&
			reachesBack(*page, HistoryPosition{Offset: since.Offset, Epoch: since.Epoch})
	}
	r.c.sendAnswer(&wire.Event{Kind: wire.Subscribed, Channel: s.ch.name, History: true,
		Offset: s.last, Epoch: s.epoch, Recover: since != nil, Recovered: recovered})
	r.sub.hidden.Store(false)
	r.epoch, r.pos = s.epoch, s.last
	switch {
	case recovered:
		r.pos = since.Offset
		s.h.stats.recovered.Add(1)
		if page != nil {
			pending = historyEvents(s.ch.name, page.Latest.Epoch, page.Entries, since.Offset)
		}
	case since != nil:
		s.h.stats.notRecovered.Add(1)
	}
	return pending, 0, false
}

// answerAgain answers a subscribe to a history channel c is in already:
// its subscription goes on as it was, nothing is sent again.
func (s *historySeq) answerAgain(c *Client, since *wire.Position) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ev := &wire.Event{Kind: wire.Subscribed, Channel: s.ch.name}
	if s.synced {
		ev.History, ev.Offset, ev.Epoch = true, s.last, s.epoch
		ev.Recover, ev.Recovered = since != nil, since != nil && since.Epoch == s.epoch
	}
	c.sendAnswer(ev)
}

// start delivers pending and hands the client over to the live
// publications, on the calling goroutine as far as it can go without
// waiting, on a goroutine of its own from there.
func (r *recovery) start(pending []histEvent) {
	if len(pending) > 0 {
		var ok bool
		if pending, _, ok = r.deliver(pending); !ok {
			return
		}
	}
	if len(pending) == 0 {
		next, until, done := r.s.step(r)
		if done {
			return
		}
		pending, r.until = next, until
	}
	if !r.c.hub.historyWork.start() {
		return // shutting down: the client is being closed
	}
	go func() {
		defer r.c.hub.historyWork.done()
		r.loop(pending)
	}()
}

// loop delivers pending, paced by the socket, then alternates between
// handing over (step) and reading what the node has that the client has
// not, until the client is live or gone.
func (r *recovery) loop(pending []histEvent) {
	for {
		if r.ahead != nil {
			t := time.NewTimer(historyAheadWait)
			select {
			case <-r.ahead:
			case <-r.sub.gone:
				t.Stop()
				return
			case <-t.C:
				r.lost = true // the node does not catch up: reset the client
			}
			t.Stop()
			r.ahead = nil
		}
		if len(pending) == 0 && r.until > 0 {
			pending, r.until = r.read(r.until), 0
		}
		for len(pending) > 0 {
			var room <-chan struct{}
			var ok bool
			if pending, room, ok = r.deliver(pending); !ok {
				return
			}
			if len(pending) > 0 {
				select {
				case <-room:
				case <-r.sub.gone:
					return
				}
			}
		}
		next, until, done := r.s.step(r)
		if done {
			return
		}
		pending, r.until = next, until
	}
}

// deliver queues as much of pending as the client's queue takes (see
// sender.enqueuePaced) and returns the rest, with a channel closed when
// there may be room for it; ok is false when the client is closing or left.
func (r *recovery) deliver(pending []histEvent) (rest []histEvent, room <-chan struct{}, ok bool) {
	if r.sub.isGone() {
		return nil, nil, false
	}
	frames := make([][]byte, 0, len(pending))
	kept := pending[:0:0]
	for _, he := range pending {
		if he.except == r.c.ID {
			continue
		}
		if f := encodeFrame(r.c.protocol(), he.ev); f != nil {
			frames = append(frames, f)
			kept = append(kept, he)
		}
	}
	n, room, ok := r.c.out.enqueuePaced(frames)
	if !ok {
		return nil, nil, false
	}
	r.c.hub.stats.messagesOut.Add(int64(n))
	if n == len(kept) {
		r.pos = pending[len(pending)-1].ev.Offset
		return nil, nil, true
	}
	r.pos = kept[n].ev.Offset - 1
	return pending[indexAfter(pending, r.pos):], room, true
}

// indexAfter returns the index of the first of evs whose offset is above pos.
func indexAfter(evs []histEvent, pos uint64) int {
	for i, he := range evs {
		if he.ev.Offset > pos {
			return i
		}
	}
	return len(evs)
}

// read reads the publications after pos up to until from the history;
// none (and lost set) when the history no longer has them all.
func (r *recovery) read(until uint64) []histEvent {
	ctx, cancel := r.c.hub.historyCtx()
	page, err := r.s.hb.ReadHistory(ctx, r.s.ch.name, HistoryRange{After: r.pos, Until: until, Limit: r.pageSize()})
	cancel()
	if err != nil {
		r.c.hub.stats.errors[errKindBroker].Add(1)
		r.c.hub.log.Warn("ws: history read failed during a recovery", "channel", r.s.ch.name, "client", r.c.ID, "err", err)
	}
	if err != nil || page.Latest.Epoch != r.epoch || !reachesBack(page, HistoryPosition{Offset: r.pos, Epoch: r.epoch}) || len(page.Entries) == 0 {
		r.lost = true
		return nil
	}
	evs := historyEvents(r.s.ch.name, page.Latest.Epoch, page.Entries, r.pos)
	if len(evs) == 0 {
		r.pos = page.Entries[len(page.Entries)-1].Offset // none of ours: passed over
	}
	return evs
}

// pageSize is how many publications one read asks for: at most half the
// client's queue, which is what enqueuePaced lets a backlog take.
func (r *recovery) pageSize() int {
	return max(1, min(historyPage, r.c.hub.cfg.SendQueueSize/2))
}

// step hands r's client over to the live publications when it has every
// one up to the node's last (queuing, under mu, what the ring holds of the
// rest when it fits). Otherwise it returns the next publications from the
// ring, or, when the ring no longer reaches back to the client, until: the
// client must read the history up to there; or, when the client is ahead
// of the node, sets r.ahead to wait on. A client whose history broke
// (lost, or the node moved to another epoch) gets a fresh "subscribed"
// frame with recovered:false and goes live from the node's position.
func (s *historySeq) step(r *recovery) (next []histEvent, until uint64, done bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed || r.sub.isGone() {
		return nil, 0, true
	}
	if r.lost || r.epoch != s.epoch {
		r.c.sendAnswer(resetEvent(s.ch.name, HistoryPosition{Offset: s.last, Epoch: s.epoch}))
		s.h.stats.notRecovered.Add(1)
		s.goLiveLocked(r.sub)
		return nil, 0, true
	}
	if r.pos > s.last {
		// The client came from a node further ahead: it has publications
		// this node has yet to post. It waits for the node to get there.
		r.ahead = s.awaitMoveLocked()
		return nil, 0, false
	}
	if r.pos == s.last {
		s.goLiveLocked(r.sub)
		return nil, 0, true
	}
	evs, ok := s.ring.after(r.pos, historyRingSize)
	if !ok {
		return nil, s.last, false
	}
	if evs[len(evs)-1].ev.Offset == s.last {
		frames := make([][]byte, 0, len(evs))
		for _, he := range evs {
			if he.except == r.c.ID {
				continue
			}
			if f := encodeFrame(r.c.protocol(), he.ev); f != nil {
				frames = append(frames, f)
			}
		}
		fit, open := r.c.out.enqueuePacedAll(frames)
		if !open {
			return nil, 0, true
		}
		if fit {
			s.h.stats.messagesOut.Add(int64(len(frames)))
			s.goLiveLocked(r.sub)
			return nil, 0, true
		}
	}
	return evs[:min(len(evs), r.pageSize())], 0, false
}

// historyEvents decodes the entries of a page of epoch that come after
// offset pos into publications.
func historyEvents(channel, epoch string, entries []HistoryEntry, pos uint64) []histEvent {
	evs := make([]histEvent, 0, len(entries))
	for _, e := range entries {
		if e.Offset <= pos {
			continue
		}
		ev, except, err := decodeEnvelope(channel, e.Payload)
		if err != nil || ev.Kind != wire.Message {
			continue
		}
		ev.History, ev.Offset, ev.Epoch = true, e.Offset, epoch
		evs = append(evs, histEvent{&ev, except})
	}
	return evs
}
