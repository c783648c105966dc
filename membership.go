package ws

// Channel membership: the Run goroutine's side of subscribe and
// unsubscribe, the broker subscription of each channel (made when its
// first local client joins, dropped when the last one leaves), and
// delivery of broker payloads to the write shards.

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/vortechron/go-ws/internal/frame"
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
	if c.subIndex(op.channel) >= 0 {
		c.sendJSON(encodeAck(TypeSubscribed, op.channel))
		op.reply <- opResult{}
		return
	}
	ch := h.channels[op.channel]
	if ch == nil {
		ch = newChannel(op.channel, len(h.shards))
		h.channels[op.channel] = ch
		h.stats.channels.Add(1)
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

// join adds c to an active channel. The ack is queued before c enters the
// snapshot, so c sees "subscribed" before any message of the channel.
func (h *Hub) join(ch *channel, c *Client) {
	c.subs = append(c.subs, ch)
	// c.mu is held across both steps: a delivery that sees c in the new
	// snapshot waits for it, so its frame lands after the ack.
	c.mu.Lock()
	c.appendLocked(frame.Text(encodeAck(TypeSubscribed, ch.name)))
	ch.add(c)
	c.mu.Unlock()
	h.stats.subscriptions.Add(1)
}

func (h *Hub) unsubscribe(c *Client, name string) error {
	i := c.subIndex(name)
	if i < 0 {
		return errNotSubscribed
	}
	ch := c.subs[i]
	c.subs = slices.Delete(c.subs, i, i+1)
	ch.remove(c)
	h.stats.subscriptions.Add(-1)
	c.sendJSON(encodeAck(TypeUnsubscribed, name))
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
	var presence []string
	for _, ch := range c.subs {
		name := ch.name
		ch.remove(c)
		h.stats.subscriptions.Add(-1)
		if ch.kind == PresenceChannel {
			presence = append(presence, name)
		}
		h.maybeRelease(ch)
	}
	c.subs = nil
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
	go func() {
		ctx, cancel := context.WithTimeout(h.ioCtx, brokerTimeout)
		defer cancel()
		if err := h.broker.Unsubscribe(ctx, ch.name); err != nil {
			h.log.Warn("ws: broker unsubscribe failed", "channel", ch.name, "err", err)
		}
		_ = h.send(&hubOp{kind: opBrokerUnsubscribed, ch: ch})
	}()
}

func (h *Hub) startBrokerSubscribe(ch *channel) {
	ch.state = chanSubscribing
	h.inflight++
	go func() {
		ctx, cancel := context.WithTimeout(h.ioCtx, brokerTimeout)
		defer cancel()
		err := h.broker.Subscribe(ctx, ch.name, func(p []byte) { h.deliver(ch, p) })
		_ = h.send(&hubOp{kind: opBrokerSubscribed, ch: ch, err: err})
	}()
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
		delete(h.channels, ch.name)
		h.stats.channels.Add(-1)
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
	delete(h.channels, ch.name)
	h.stats.channels.Add(-1)
}

// deliver hands one broker payload to every write shard, which fan it out
// to their share of the channel's local subscribers. It frames the
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
	// Only shards with subscribers of the channel get the post; the frame
	// is built once, for the first of them.
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

// subIndex returns the position of channel name in c.subs, or -1. Called
// by the Run goroutine, which owns c.subs.
func (c *Client) subIndex(name string) int {
	return slices.IndexFunc(c.subs, func(ch *channel) bool { return ch.name == name })
}
