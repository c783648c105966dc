package ws

// Channel membership: the Run goroutine's side of subscribe and
// unsubscribe, and the broker subscription of each channel, made when its
// first local client joins and dropped when the last one leaves.

import (
	"errors"
	"fmt"
	"slices"

	"github.com/vortechron/go-ws/internal/wire"
)

var (
	errTooManyChannels = errors.New("too many channels")
	errNotSubscribed   = errors.New("not subscribed")
)

// subscribe adds op.client to op.channel, subscribing the broker first if
// the channel has no local subscriber yet; the reply waits for it.
func (h *Hub) subscribe(op *hubOp) {
	c := op.client
	if h.closing.Load() {
		op.reply <- opResult{err: ErrHubClosed}
		return
	}
	if _, ok := h.clients[c]; !ok {
		op.reply <- opResult{err: ErrHubClosed}
		return
	}
	if i := c.subIndexLocked(op.channel); i >= 0 {
		if c.subs[i].hist == nil { // history channels: recovery.go answers
			c.sendAnswer(&wire.Event{Kind: wire.Subscribed, Channel: op.channel})
		}
		op.reply <- opResult{}
		return
	}
	ch := h.channels[op.channel]
	if ch == nil {
		ch = h.newChannel(op.channel)
		ch.pending = append(ch.pending, op)
		h.startBrokerSubscribe(ch)
		return
	}
	if ch.state != chanActive {
		ch.pending = append(ch.pending, op)
		return
	}
	h.join(ch, c)
	op.reply <- opResult{}
}

// join adds c to an active channel. The acknowledgement is queued and c
// enters the channel's snapshot in one step of c's sender (enqueueBefore):
// c sees "subscribed" before any message of the channel, and every
// publication made after c saw it reaches c. On a history channel c
// enters hidden instead (admitted to no post yet), and recovery.go
// answers once it knows the channel's position.
func (h *Hub) join(ch *channel, c *Client) {
	c.mu.Lock()
	c.subs = append(c.subs, ch)
	c.mu.Unlock()
	if ch.pres != nil {
		ch.pres.expect(c)
	}
	if ch.hist != nil {
		ch.hist.attach(c) // hidden until recovery.go answers
		ch.add(c)
	} else if ack := encodeFrame(c.protocol(), &wire.Event{Kind: wire.Subscribed, Channel: ch.name}); ack == nil {
		ch.add(c) // the protocol acknowledges later (a presence list)
	} else {
		c.out.enqueueBefore(ack, func() { ch.add(c) })
	}
	h.stats.subscriptions.Add(1)
	h.subscribedHook(c, ch.name)
}

func (h *Hub) unsubscribe(c *Client, name string) error {
	i := c.subIndexLocked(name)
	if i < 0 {
		return errNotSubscribed
	}
	ch := c.subs[i]
	c.mu.Lock()
	c.subs = slices.Delete(c.subs, i, i+1)
	c.mu.Unlock()
	ch.remove(c)
	if ch.pres != nil {
		ch.pres.forget(c)
	}
	if ch.hist != nil {
		ch.hist.detach(c)
	}
	h.stats.subscriptions.Add(-1)
	c.sendAnswer(&wire.Event{Kind: wire.Unsubscribed, Channel: name})
	h.unsubscribedHook(c, name)
	h.maybeRelease(ch)
	return nil
}

// unregister removes c from every channel and returns the presence
// channels it was in, for the caller to clean up off the Run goroutine.
// c stays in h.clients until opRemove, so shutdown waits for that
// cleanup before it closes the storage.
func (h *Hub) unregister(c *Client) []string {
	if _, ok := h.clients[c]; !ok {
		return nil
	}
	h.users.remove(c)
	c.mu.Lock()
	subs := c.subs
	c.subs = nil
	c.mu.Unlock()
	var presence []string
	for _, ch := range subs {
		// c's sender has closed (Client.teardown), so fan-out may find it
		// until the end of the burst.
		h.unpublished = ch.drop(c, h.unpublished)
		h.dropped++
		if ch.pres != nil {
			ch.pres.forget(c)
		}
		if ch.hist != nil {
			ch.hist.detach(c)
		}
		h.stats.subscriptions.Add(-1)
		h.unsubscribedHook(c, ch.name)
		if ch.kind == presenceChannel {
			presence = append(presence, ch.name)
		}
		h.maybeRelease(ch)
	}
	return presence
}

// maybeRelease drops the broker subscription of a channel that has no
// local subscriber left.
func (h *Hub) maybeRelease(ch *channel) {
	if ch.size() > 0 || ch.state != chanActive {
		return
	}
	ch.state = chanUnsubscribing
	h.inflight++
	h.brokerOps.add(brokerOp{ch: ch})
}

func (h *Hub) startBrokerSubscribe(ch *channel) {
	ch.state = chanSubscribing
	h.inflight++
	h.brokerOps.add(brokerOp{ch: ch, subscribe: true})
}

// brokerDone takes the results of a batch of broker calls.
func (h *Hub) brokerDone(done []brokerOp) {
	for _, op := range done {
		h.inflight--
		if op.subscribe {
			h.brokerSubscribed(op.ch, op.err)
		} else {
			h.brokerUnsubscribed(op.ch)
		}
	}
}

func (h *Hub) brokerSubscribed(ch *channel, err error) {
	pending := ch.pending
	ch.pending = nil
	if err != nil {
		h.log.Warn("ws: broker subscribe failed", "channel", ch.name, "err", err)
		err = fmt.Errorf("%w: subscribe %q: %w", ErrBrokerUnavailable, ch.name, err)
		for _, op := range pending {
			op.reply <- opResult{err: err}
		}
		h.dropChannel(ch)
		return
	}
	ch.state = chanActive
	for _, op := range pending {
		if _, ok := h.clients[op.client]; !ok || h.closing.Load() {
			op.reply <- opResult{err: ErrHubClosed}
			continue
		}
		h.join(ch, op.client)
		op.reply <- opResult{}
	}
	h.maybeRelease(ch)
}

func (h *Hub) brokerUnsubscribed(ch *channel) {
	if len(ch.pending) > 0 && !h.closing.Load() {
		h.startBrokerSubscribe(ch)
		return
	}
	for _, op := range ch.pending {
		op.reply <- opResult{err: ErrHubClosed}
	}
	ch.pending = nil
	h.dropChannel(ch)
}

// newChannel makes the channel called name known to the node, with its
// presence sequencer if it is a presence channel.
func (h *Hub) newChannel(name string) *channel {
	ch := newChannel(name, len(h.shards))
	ch.hist = h.newHistorySeq(ch)
	if ch.kind == presenceChannel {
		ch.pres = newPresenceSeq(h, ch)
		h.presenceMu.Lock()
		h.presence[name] = ch.pres
		h.presenceMu.Unlock()
	}
	h.channels[name] = ch
	h.chanByName.Store(name, ch)
	h.stats.channels.Add(1)
	return ch
}

// dropChannel forgets a channel the node no longer has subscribers of.
func (h *Hub) dropChannel(ch *channel) {
	if ch.hist != nil {
		ch.hist.close()
	}
	if ch.pres != nil {
		ch.pres.close()
		h.presenceMu.Lock()
		delete(h.presence, ch.name)
		h.presenceMu.Unlock()
	}
	delete(h.channels, ch.name)
	h.chanByName.Delete(ch.name)
	h.occ.vacate(ch.name)
	h.stats.channels.Add(-1)
}

// presenceChannels returns the sequencers of the node's presence
// channels; safe from any goroutine.
func (h *Hub) presenceChannels() []*presenceSeq {
	h.presenceMu.Lock()
	defer h.presenceMu.Unlock()
	out := make([]*presenceSeq, 0, len(h.presence))
	for _, p := range h.presence {
		out = append(out, p)
	}
	return out
}
