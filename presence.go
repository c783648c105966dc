package ws

import (
	"context"
	"encoding/json"
	"fmt"
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
	members, _, err := h.storage.PresenceMembers(ctx, channel)
	return members, err
}

func (h *Hub) presenceCtx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(h.ioCtx, brokerTimeout)
}

func (c *Client) presenceConn(channel string) PresenceConn {
	return PresenceConn{Channel: channel, ConnID: c.ID, Member: PresenceMember{UserID: c.UserID, Info: c.info}}
}

// joinPresence records the client in a presence channel it has just
// subscribed to, announces the join to everyone else if this is the
// user's first connection in the cluster, and then sends the client the
// member list.
//
// The join goes out before the client's own list so that, once a client
// has its list, the announcements of those on that list are already on
// their way: a client that subscribes next cannot receive an older join
// whose users list lacks itself after its own, newer, list. (With the
// in-memory broker they are already queued; across nodes see
// docs/presence.md, "Ordering".)
func (c *Client) joinPresence(channel string) {
	h := c.hub
	ctx, cancel := h.presenceCtx()
	defer cancel()
	conn := c.presenceConn(channel)
	_, joined, err := h.storage.AddPresence(ctx, conn)
	if err != nil {
		h.stats.errors[errKindStorage].Add(1)
		c.fail(ActionSubscribe, channel, CodeUnavailable, "presence is unavailable: "+err.Error(), err)
		c.handleUnsubscribe(channel)
		return
	}
	members, _, err := h.storage.PresenceMembers(ctx, channel)
	if err != nil {
		// The user is in the channel (AddPresence succeeded), so the
		// others still hear of the join, without the list; the client
		// learns that its own list is missing.
		h.stats.errors[errKindStorage].Add(1)
		if joined {
			h.announce(ctx, channel, PresenceJoinEvent, conn, nil, 0, false)
		}
		c.fail(ActionSubscribe, channel, CodeUnavailable, "presence member list is unavailable: "+err.Error(), err)
		return
	}
	if joined {
		h.announce(ctx, channel, PresenceJoinEvent, conn, members, len(members), len(members) <= h.cfg.PresenceUsersLimit)
	}
	c.sendJSON(encodePresence(channel, PresenceMembersEvent, nil, members, len(members), true))
}

// leavePresence removes the client from a presence channel and, if it was
// the user's last connection in the cluster, announces the leave.
func (c *Client) leavePresence(channel string) {
	h := c.hub
	ctx, cancel := h.presenceCtx()
	defer cancel()
	conn := c.presenceConn(channel)
	_, left, err := h.storage.RemovePresence(ctx, conn)
	if err != nil {
		h.stats.errors[errKindStorage].Add(1)
		h.log.Warn("ws: presence remove failed", "channel", channel, "client", c.ID, "err", err)
		c.reportError(fmt.Errorf("ws: presence leave of %q on %q: %w", c.UserID, channel, err))
		return
	}
	if left {
		h.announceLeave(ctx, conn)
	}
}

// announceLeave publishes a leave frame for conn's user.
func (h *Hub) announceLeave(ctx context.Context, conn PresenceConn) {
	members, count, withUsers, err := h.membersForEvent(ctx, conn.Channel)
	if err != nil {
		h.stats.errors[errKindStorage].Add(1)
		h.log.Warn("ws: presence list failed", "channel", conn.Channel, "err", err)
	}
	h.announce(ctx, conn.Channel, PresenceLeaveEvent, conn, members, count, withUsers)
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
	members, _, err = h.storage.PresenceMembers(ctx, channel)
	if err != nil {
		return nil, 0, false, err
	}
	return members, len(members), len(members) <= h.cfg.PresenceUsersLimit, nil
}

// announce publishes a join or leave frame to the channel's subscribers on
// every node, except conn itself. The frame is encoded once here and the
// same bytes reach every subscriber.
func (h *Hub) announce(ctx context.Context, channel, event string, conn PresenceConn, members []PresenceMember, count int, withUsers bool) {
	payload := encodePresence(channel, event, &conn.Member, members, count, withUsers)
	if err := h.broker.Publish(ctx, channel, encodeEnvelope(kindPresent, conn.ConnID, payload)); err != nil {
		h.stats.brokerPublishFailures.Add(1)
		h.log.Warn("ws: presence announce failed", "channel", channel, "event", event, "err", err)
	}
}

// encodePresence builds a presence frame. With withUsers the frame carries
// users (an empty list as []); without, users is left out and clients
// apply user to the list they keep.
func encodePresence(channel, event string, user *PresenceMember, users []PresenceMember, count int, withUsers bool) []byte {
	f := presenceFrame{Type: TypePresence, Channel: channel, Event: event, User: user, Count: count}
	if withUsers {
		f.Users = users
		if f.Users == nil {
			f.Users = []PresenceMember{}
		}
	}
	b, _ := json.Marshal(f)
	return b
}

// maintain asks the storage to reap dead nodes and restore what it lost,
// and announces each resulting join and leave. Runs on its own
// goroutine, started by Run.
func (h *Hub) maintain(m PresenceMaintainer) {
	ctx, cancel := h.presenceCtx()
	defer cancel()
	events, err := m.MaintainPresence(ctx)
	// Events come back even with an error: they are already applied in
	// storage, so they are announced before the error is handled.
	joins := 0
	for _, ev := range events {
		if ev.Left {
			h.announceLeave(ctx, ev.Conn)
			continue
		}
		joins++
		members, count, withUsers, err := h.membersForEvent(ctx, ev.Conn.Channel)
		if err != nil {
			h.stats.errors[errKindStorage].Add(1)
		}
		h.announce(ctx, ev.Conn.Channel, PresenceJoinEvent, ev.Conn, members, count, withUsers)
	}
	if err != nil {
		h.stats.errors[errKindStorage].Add(1)
		h.log.Warn("ws: presence maintenance failed", "err", err)
	}
	if len(events) > 0 {
		h.log.Info("ws: presence maintained", "joins", joins, "leaves", len(events)-joins)
	}
}
