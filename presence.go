package ws

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/vortechron/go-ws/internal/wire"
)

// PresenceCounter is implemented by storages that can count a presence
// channel's members cheaply. The Hub uses it to skip fetching the member
// list of channels larger than Config.PresenceUsersLimit when it only
// needs the list for a join or leave frame.
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
	return h.storage.PresenceMembers(ctx, channel)
}

func (h *Hub) presenceCtx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(h.ioCtx, brokerTimeout)
}

// member is who the client is on a presence channel it joins by the
// hub's own authorization.
func (c *Client) member() PresenceMember { return PresenceMember{UserID: c.UserID, Info: c.info} }

// joinPresence records the client as member of a presence channel it has
// just subscribed to, announces the join to everyone else if this is the
// user's first connection in the cluster, and then sends the client the
// member list. A client that subscribes again gets the list again.
//
// The join goes out before the client's own list so that, once a client
// has its list, the announcements of those on that list are already on
// their way: a client that subscribes next cannot receive an older join
// whose users list lacks itself after its own, newer, list. (With the
// in-memory broker they are already queued; across nodes see
// docs/presence.md, "Ordering".)
func (c *Client) joinPresence(channel string, member PresenceMember, again bool) {
	h := c.hub
	ctx, cancel := h.presenceCtx()
	defer cancel()
	conn := PresenceConn{Channel: channel, ConnID: c.ID, Member: member}
	joined := false
	if !again {
		var err error
		joined, err = h.storage.AddPresence(ctx, conn)
		if err != nil {
			c.unavailable(actionSubscribe, channel, errKindStorage, storageError("presence join", channel, err))
			c.handleUnsubscribe(channel)
			return
		}
	}
	members, err := h.storage.PresenceMembers(ctx, channel)
	if err != nil {
		// The user is in the channel (AddPresence succeeded), so the
		// others still hear of the join, without the list; the client
		// learns that its own list is missing.
		if joined {
			h.announce(ctx, wire.Join, conn, nil, 0, false)
		}
		c.unavailable(actionSubscribe, channel, errKindStorage, storageError("presence list", channel, err))
		return
	}
	if joined {
		h.announce(ctx, wire.Join, conn, members, len(members), len(members) <= h.cfg.PresenceUsersLimit)
	}
	c.sendAnswer(&wire.Event{Kind: wire.Members, Channel: channel, Members: wireMembers(members), HasMembers: true, Count: len(members)})
}

// leavePresence removes the client from a presence channel and, if it was
// the user's last connection in the cluster, announces the leave.
func (c *Client) leavePresence(channel string) {
	h := c.hub
	ctx, cancel := h.presenceCtx()
	defer cancel()
	conn := PresenceConn{Channel: channel, ConnID: c.ID, Member: c.member()}
	left, err := h.storage.RemovePresence(ctx, conn)
	if err != nil {
		h.stats.errors[errKindStorage].Add(1)
		h.log.Warn("ws: presence remove failed", "channel", channel, "client", c.ID, "err", err)
		c.reportError(&UnavailableError{ClientID: c.ID, UserID: c.UserID, Action: actionUnsubscribe, Channel: channel, Err: storageError("presence leave", channel, err)})
		return
	}
	if left {
		h.announceLeave(ctx, conn)
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

// announceLeave publishes a leave frame for conn's user.
func (h *Hub) announceLeave(ctx context.Context, conn PresenceConn) {
	members, count, withUsers, err := h.membersForEvent(ctx, conn.Channel)
	if err != nil {
		h.stats.errors[errKindStorage].Add(1)
		h.log.Warn("ws: presence list failed", "channel", conn.Channel, "err", err)
	}
	h.announce(ctx, wire.Leave, conn, members, count, withUsers)
}

// membersForEvent fetches the member list for a leave frame. When the
// storage can count members (PresenceCounter) and the channel is larger
// than Config.PresenceUsersLimit, only the count is fetched, so a leave
// costs O(1) and not O(members). withUsers says whether the list belongs
// in the frame; it is false when the channel is too large or the storage
// failed.
func (h *Hub) membersForEvent(ctx context.Context, channel string) (members []PresenceMember, count int, withUsers bool, err error) {
	if pc, ok := h.storage.(PresenceCounter); ok {
		n, err := pc.PresenceCount(ctx, channel)
		if err != nil {
			return nil, 0, false, err
		}
		if n > h.cfg.PresenceUsersLimit {
			return nil, n, false, nil
		}
	}
	members, err = h.storage.PresenceMembers(ctx, channel)
	if err != nil {
		return nil, 0, false, err
	}
	return members, len(members), len(members) <= h.cfg.PresenceUsersLimit, nil
}

// announce publishes a join or leave to the channel's subscribers on
// every node, except conn itself.
func (h *Hub) announce(ctx context.Context, kind wire.EventKind, conn PresenceConn, members []PresenceMember, count int, withUsers bool) {
	ev := wire.Event{Kind: kind, Channel: conn.Channel, Member: &wire.Member{ID: conn.Member.UserID, Info: conn.Member.Info}, Count: count}
	if withUsers {
		ev.Members, ev.HasMembers = wireMembers(members), true
	}
	if err := h.publish(ctx, &ev, conn.ConnID); err != nil {
		h.stats.errors[errKindBroker].Add(1)
		h.log.Warn("ws: presence announce failed", "channel", conn.Channel, "event", presenceEvents[kind], "err", err)
	}
}

// wireMembers converts a member list for the protocols.
func wireMembers(members []PresenceMember) []wire.Member {
	out := make([]wire.Member, len(members))
	for i, m := range members {
		out[i] = wire.Member{ID: m.UserID, Info: m.Info}
	}
	return out
}

// reapEvery calls reap every ReapInterval until stop is closed. It runs
// on a goroutine of its own, started by Run.
func (h *Hub) reapEvery(r PresenceReaper, stop <-chan struct{}) {
	t := time.NewTicker(r.ReapInterval())
	defer t.Stop()
	for {
		select {
		case <-t.C:
			h.reap(r)
		case <-stop:
			return
		}
	}
}

// reap asks the storage for members of dead nodes and announces each
// departure.
func (h *Hub) reap(r PresenceReaper) {
	ctx, cancel := h.presenceCtx()
	defer cancel()
	gone, err := r.ReapPresence(ctx)
	// Departures come back even with an error: they are already gone
	// from storage, so they are announced before the error is handled.
	for _, conn := range gone {
		h.announceLeave(ctx, conn)
	}
	if err != nil {
		h.stats.errors[errKindStorage].Add(1)
		h.log.Warn("ws: presence reap failed", "err", err)
	}
	if len(gone) > 0 {
		h.log.Info("ws: removed presence of dead nodes", "leaves", len(gone))
	}
}
