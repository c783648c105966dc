package ws

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/vortechron/go-ws/internal/wire"
)

// PresenceCounter is implemented by storages that can count a presence
// channel's members cheaply (both shipped storages).
type PresenceCounter interface {
	// PresenceCount returns the number of members (users) on channel.
	PresenceCount(ctx context.Context, channel string) (int, error)
}

// PresenceMembers returns the members of a presence channel across the
// cluster, one per user, ordered by user ID.
func (h *Hub) PresenceMembers(ctx context.Context, channel string) ([]PresenceMember, error) {
	if err := ValidChannelName(channel); err != nil {
		return nil, err
	}
	members, _, err := h.storage.PresenceMembers(ctx, channel)
	return members, err
}

func (h *Hub) presenceCtx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(h.ioCtx, brokerTimeout)
}

// member is who the client is on a presence channel it joins by the
// hub's own authorization, or by a protocol's token that names no member:
// its user, from GetUserID or a sign-in.
func (c *Client) member() PresenceMember { return PresenceMember{UserID: c.UserID, Info: c.info} }

// joinPresence records the client as member of a presence channel it has
// just subscribed to, announces the join to everyone else if this is the
// user's first connection in the cluster, and sends the client the member
// list. A client that subscribes again (again) gets the list again.
//
// The join and the list each get brokerTimeout: once the join is recorded
// the connection is a member everywhere, and failing it for want of its
// list would cost an error frame, the client's second subscribe and a
// second read just when the storage is slow (a reconnect storm on a
// 2-core machine spent up to 4 s on the join, and the list then ran into
// one shared deadline).
func (c *Client) joinPresence(channel string, member PresenceMember, again bool) {
	h := c.hub
	var join *PresenceEvent
	if !again {
		ctx, cancel := h.presenceCtx()
		ev, joined, err := h.storage.AddPresence(ctx, PresenceConn{Channel: channel, ConnID: c.ID, Member: member})
		cancel()
		if err != nil {
			c.unavailable(actionSubscribe, channel, errKindStorage, storageError("presence join", channel, err))
			c.handleUnsubscribe(channel)
			return
		}
		if joined {
			join = &ev
		}
	}
	ctx, cancel := h.presenceCtx()
	defer cancel()
	seq := c.presenceSeq(channel)
	// The list is read after the join, so it includes it, and is read again
	// while it is older than what this node's subscribers already have:
	// announcements of later changes overtook the read, which under churn
	// can happen several times in a row. Until attach takes a list the
	// client gets neither announcements nor resync lists, so it is read
	// again until one is taken or ctx ends (an error frame: subscribing
	// again retries).
	for {
		members, v, err := h.storage.PresenceMembers(ctx, channel)
		if err != nil {
			if join != nil {
				h.announce(ctx, *join, nil, PresenceVersion{}, c.ID)
			}
			c.unavailable(actionSubscribe, channel, errKindStorage, storageError("presence list", channel, err))
			return
		}
		if join != nil {
			h.announce(ctx, *join, members, v, c.ID)
			join = nil
		}
		if seq == nil || seq.attach(c, members, v) {
			return
		}
	}
}

// presenceSeq returns the sequencer of a presence channel the client is
// in, or nil.
func (c *Client) presenceSeq(name string) *presenceSeq {
	c.mu.Lock()
	defer c.mu.Unlock()
	if i := c.subIndexLocked(name); i >= 0 {
		return c.subs[i].pres
	}
	return nil
}

// leavePresence removes the client from a presence channel and, if it was
// the user's last connection in the cluster, announces the leave.
//
// As with a join, the removal and the announcement (with its list read)
// get brokerTimeout each: once the leave is recorded it is announced with
// the member list even when the removal took most of its time.
func (c *Client) leavePresence(channel string) {
	h := c.hub
	member := c.member()
	if m, ok := c.ungrant(channel); ok && m.UserID != "" {
		member = m
	}
	ctx, cancel := h.presenceCtx()
	ev, left, err := h.storage.RemovePresence(ctx, PresenceConn{Channel: channel, ConnID: c.ID, Member: member})
	cancel()
	if err != nil {
		h.stats.errors[errKindStorage].Add(1)
		h.log.Warn("ws: presence remove failed", "channel", channel, "client", c.ID, "err", err)
		c.reportError(&UnavailableError{ClientID: c.ID, UserID: c.UserID, Action: actionUnsubscribe, Channel: channel, Err: storageError("presence leave", channel, err)})
		return
	}
	if left {
		ctx, cancel := h.presenceCtx()
		defer cancel()
		h.announceChange(ctx, ev, c.ID)
	}
}

// storageError makes err, a failure of the storage, match
// ErrStorageUnavailable.
func storageError(op, channel string, err error) error {
	if errors.Is(err, ErrStorageUnavailable) {
		return err
	}
	return fmt.Errorf("%w: %s on %q: %w", ErrStorageUnavailable, op, channel, err)
}

// announceChange publishes a join or leave decided by the storage, with
// the member list when the channel is small enough for it, to every
// subscriber but the connection except.
func (h *Hub) announceChange(ctx context.Context, ev PresenceEvent, except string) {
	if ev.Count > h.cfg.PresenceUsersLimit {
		h.announce(ctx, ev, nil, PresenceVersion{}, except)
		return
	}
	members, v, err := h.storage.PresenceMembers(ctx, ev.Conn.Channel)
	if err != nil {
		h.stats.errors[errKindStorage].Add(1)
		h.log.Warn("ws: presence list failed", "channel", ev.Conn.Channel, "err", err)
	}
	h.announce(ctx, ev, members, v, except)
}

// announce publishes a join or leave to the channel's subscribers on every
// node but the connection except. The frame carries the users
// list only when members (read at version v) is the list of the event's
// own version and small enough: clients keep their lists from the events
// themselves (docs/presence.md), and a list of another version would
// contradict the event it rides on.
func (h *Hub) announce(ctx context.Context, ev PresenceEvent, members []PresenceMember, v PresenceVersion, except string) {
	kind := wire.Join
	if ev.Left {
		kind = wire.Leave
	}
	m := ev.Conn.Member
	w := wire.Event{Kind: kind, Channel: ev.Conn.Channel, Member: &wire.Member{ID: m.UserID, Info: m.Info},
		Count: ev.Count, Version: ev.Version.Seq, Epoch: ev.Version.Epoch}
	if v == ev.Version && v.Seq > 0 && len(members) <= h.cfg.PresenceUsersLimit {
		w.Members, w.HasMembers = wireMembers(members), true
	}
	if err := h.publish(ctx, &w, except); err != nil {
		h.stats.errors[errKindBroker].Add(1)
		h.log.Warn("ws: presence announce failed; retrying", "channel", w.Channel, "event", presenceEvents[kind], "err", err)
		h.retryAnnounce(w, except)
	}
	h.protoMu.Lock()
	watchers := h.presenceWatchers
	h.protoMu.Unlock()
	for _, fn := range watchers {
		fn(ev.Conn.Channel, m.UserID, ev.Left)
	}
}

// announceRetries and announceBackoff bound how an announcement that
// failed is published again: after 250 ms, 500 ms, 1 s and 2 s.
const (
	announceRetries = 4
	announceBackoff = 250 * time.Millisecond
)

// retryAnnounce publishes again, off the caller's goroutine, an
// announcement whose publish failed (Redis timing out under load, say).
// Announcements can be sent twice: every node's sequencer drops one whose
// version its subscribers already have, so a retry of one that did get
// through (an uncertain failure) changes nothing, and a late one still
// lands in version order or fills the gap that held later ones back.
// What no retry delivers, presence maintenance makes good with a fresh
// member list (presenceSeq.check).
func (h *Hub) retryAnnounce(w wire.Event, except string) {
	if !h.presenceWork.start() {
		return // the hub is shutting down
	}
	go func() {
		defer h.presenceWork.done()
		delay := announceBackoff
		for range announceRetries {
			t := time.NewTimer(delay)
			select {
			case <-t.C:
			case <-h.ioCtx.Done():
				t.Stop()
				return
			}
			ctx, cancel := context.WithTimeout(h.ioCtx, brokerTimeout)
			err := h.publish(ctx, &w, except)
			cancel()
			if err == nil {
				return
			}
			h.stats.errors[errKindBroker].Add(1)
			delay *= 2
		}
		h.log.Warn("ws: presence announce failed for good", "channel", w.Channel, "event", presenceEvents[w.Kind], "version", w.Version)
	}()
}

// wireMembers converts a member list for the protocols.
func wireMembers(members []PresenceMember) []wire.Member {
	out := make([]wire.Member, len(members))
	for i, m := range members {
		out[i] = wire.Member{ID: m.UserID, Info: m.Info}
	}
	return out
}

// maintainEvery calls maintain every MaintainInterval until stop is
// closed. It runs on a goroutine of its own, started by Run.
func (h *Hub) maintainEvery(m PresenceMaintainer, stop <-chan struct{}) {
	t := time.NewTicker(m.MaintainInterval())
	defer t.Stop()
	for {
		select {
		case <-t.C:
			h.maintain(m)
		case <-stop:
			return
		}
	}
}

// maintain asks the storage to remove the presence of dead nodes and to
// restore what it lost of this node's, announces every resulting join and
// leave, and then checks that this node's subscribers have every
// announcement of their channels (one lost while the broker was down is
// made good by a resync).
func (h *Hub) maintain(m PresenceMaintainer) {
	ctx, cancel := h.presenceCtx()
	defer cancel()
	events, err := m.MaintainPresence(ctx)
	// Events come back even with an error: they are already applied in
	// storage, so they are announced before the error is handled. A join
	// that puts back a connection the storage lost reaches that connection
	// too: its own list may have been reset without it meanwhile (a
	// resync after the epoch changed).
	for _, ev := range events {
		h.announceChange(ctx, ev, "")
	}
	if err != nil {
		h.stats.errors[errKindStorage].Add(1)
		h.log.Warn("ws: presence maintenance failed", "err", err)
	}
	if len(events) > 0 {
		h.log.Info("ws: presence maintained", "changes", len(events))
	}
	for _, seq := range h.presenceChannels() {
		seq.check(ctx)
	}
}
