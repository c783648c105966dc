package ws

// Users across the cluster: sending to one user's connections on every
// node, disconnecting them, and taking them out of a channel. Each node
// keeps an index from user ID to its own connections; the commands reach
// every node as requests on the control channel (control.go).

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/vortechron/go-ws/internal/wire"
)

// UserChannel is the pseudo-channel on which a connection receives the
// messages sent to its user with Hub.PublishToUser: a native client sees
// {"type":"message","channel":"#user",...}. Channel names cannot hold
// '#', so it is never a real channel.
const UserChannel = "#user"

var errNoUser = errors.New("ws: empty user ID")

// userIndex maps each user ID to this node's connections of that user.
// Run adds a connection when it registers it and removes it when it
// unregisters it; a connection that signs in later (the Pusher
// protocol's pusher:signin) is added by its read goroutine.
type userIndex struct {
	mu    sync.Mutex
	conns map[string][]*Client // guarded by mu
}

// clientUser is what the user index and the server-side actions keep on
// each Client.
type clientUser struct {
	// acting is held while the connection's own frame is dispatched and
	// while a server-side action (Hub.UnsubscribeUser) changes its
	// subscriptions, so the two never interleave.
	acting sync.Mutex
	user   string // guarded by userIndex.mu: the user the index has the client under
	gone   bool   // guarded by userIndex.mu: unregistered; never indexed again
}

// add indexes c under user, unless c was unregistered already.
func (x *userIndex) add(c *Client, user string) bool {
	x.mu.Lock()
	defer x.mu.Unlock()
	if c.users.gone {
		return false
	}
	if x.conns == nil {
		x.conns = make(map[string][]*Client)
	}
	c.users.user = user
	x.conns[user] = append(x.conns[user], c)
	return true
}

// remove takes c out of the index for good.
func (x *userIndex) remove(c *Client) {
	x.mu.Lock()
	defer x.mu.Unlock()
	c.users.gone = true
	user := c.users.user
	if user == "" {
		return
	}
	list := x.conns[user]
	for i, o := range list {
		if o == c {
			list[i] = list[len(list)-1]
			list[len(list)-1] = nil
			list = list[:len(list)-1]
			break
		}
	}
	if len(list) == 0 {
		delete(x.conns, user)
	} else {
		x.conns[user] = list
	}
}

// lookup returns this node's connections of user.
func (x *userIndex) lookup(user string) []*Client {
	x.mu.Lock()
	defer x.mu.Unlock()
	return append([]*Client(nil), x.conns[user]...)
}

// PublishToUser sends message to every connection of userID on every
// node, as a message on the pseudo-channel UserChannel ("#user"; Pusher
// clients see it on their #server-to-user-{id} channel), with
// opts.Event as its event name; opts.Except names a connection to leave
// out. message is encoded as for Publish. A connection's user is its
// Client.UserID.
//
// It returns nil once the broker accepted the message, with the same
// meaning as for Publish: every node gets it and queues it on the user's
// connections it has then; messages to one user from one goroutine
// arrive in order. It costs one publication that every node receives
// and looks up in its user index (a map), whether or not it has
// connections of the user.
func (h *Hub) PublishToUser(ctx context.Context, userID string, message any, opts PublishOptions) error {
	if userID == "" {
		return errNoUser
	}
	raw, err := marshalMessage(message)
	if err != nil {
		return err
	}
	timeout := time.NewTimer(h.cfg.ClusterTimeout)
	defer timeout.Stop()
	if err := h.ctl.await(ctx, timeout.C); err != nil {
		return fmt.Errorf("ws: publish to user: %w", err)
	}
	b, err := json.Marshal(ctlRequest{Op: reqSend, User: userID, Event: opts.Event, Except: opts.Except, Data: raw})
	if err != nil {
		return err
	}
	if err := h.broker.Publish(ctx, ctlChannel, b); err != nil {
		h.stats.brokerPublishFailures.Add(1)
		return brokerError("publish to user", err)
	}
	return nil
}

// DisconnectUser closes every connection of userID on every node with
// close code CloseTerminated (4010: do not reconnect; Pusher clients get
// their protocol's equivalent), after the frames already queued to each.
// It returns once every node has begun closing them, or with an error
// wrapping ErrClusterIncomplete when some node did not answer within
// Config.ClusterTimeout (see docs/cluster.md).
func (h *Hub) DisconnectUser(ctx context.Context, userID string) error {
	if userID == "" {
		return errNoUser
	}
	_, err := h.ask(ctx, ctlRequest{Op: reqDisconnect, User: userID})
	return err
}

// UnsubscribeUser takes every connection of userID on every node out of
// channel, as if each had unsubscribed: it gets an "unsubscribed" frame,
// OnUnsubscribe runs, and on a presence channel the user leaves (one
// leave, announced once the last of their connections is out). It
// returns once every node has done so, or with an error wrapping
// ErrClusterIncomplete when some node did not answer in time.
func (h *Hub) UnsubscribeUser(ctx context.Context, userID, channel string) error {
	if userID == "" {
		return errNoUser
	}
	if err := ValidChannelName(channel); err != nil {
		return err
	}
	_, err := h.ask(ctx, ctlRequest{Op: reqUnsubscribe, User: userID, Channel: channel})
	return err
}

// sendToUser queues r's message on this node's connections of r.User.
// It runs on the broker's delivery goroutine and never blocks.
func (h *Hub) sendToUser(r *ctlRequest) {
	conns := h.users.lookup(r.User)
	if len(conns) == 0 {
		return
	}
	ev := wire.Event{Kind: wire.Message, Channel: UserChannel, Name: r.Event, Data: r.Data, User: r.User}
	var frames [maxProtocols][]byte
	sent := 0
	for _, c := range conns {
		if c.ID == r.Except {
			continue
		}
		f := frames[c.proto]
		if f == nil {
			if f = encodeFrame(c.protocol(), &ev); f == nil {
				f = noFrame
			}
			frames[c.proto] = f
		}
		if len(f) > 0 && c.out.enqueue(f) {
			sent++
		}
	}
	h.stats.messagesOut.Add(int64(sent))
}

// disconnectUser begins closing this node's connections of user and
// returns how many there were. It never blocks.
func (h *Hub) disconnectUser(user string) int {
	conns := h.users.lookup(user)
	for _, c := range conns {
		c.Close(CloseTerminated, "disconnected by the server")
	}
	return len(conns)
}

// unsubscribeUser takes this node's connections of user out of channel
// and returns how many were in it. Each one's removal waits for what the
// connection is doing itself (its acting lock), then goes through Run
// and, on a presence channel, the storage, as the connection's own
// unsubscribe would.
func (h *Hub) unsubscribeUser(user, channel string) int {
	n := 0
	for _, c := range h.users.lookup(user) {
		if !c.inChannel(channel) {
			continue
		}
		c.users.acting.Lock()
		res := h.ctl.call(&hubOp{kind: opUnsubscribe, client: c, channel: channel})
		if res.err == nil {
			n++
			if kindOf(channel) == presenceChannel {
				c.leavePresence(channel)
			}
		}
		c.users.acting.Unlock()
	}
	return n
}

// act dispatches one frame of the connection's own, holding its acting
// lock. Called by the read goroutine.
func (c *Client) act(frame []byte) {
	c.users.acting.Lock()
	defer c.users.acting.Unlock()
	c.dispatch(frame)
}

// setUser makes userID the user of a connection that had none, for wire
// protocols whose clients identify themselves on an open connection (the
// Pusher protocol's pusher:signin): from then on the connection is
// userID's for PublishToUser, DisconnectUser and UnsubscribeUser, and
// Client.UserID says so. Setting the user it has already is a no-op;
// another one is refused. Called on the connection's read goroutine while
// it dispatches a frame, so with the acting lock held (whatever reads
// UserID under that lock or on that goroutine sees the change), or in
// OnConnect, before that goroutine starts.
func (c *Client) setUser(userID string) error {
	switch {
	case userID == "":
		return errNoUser
	case c.UserID == userID:
		return nil
	case c.UserID != "":
		return fmt.Errorf("ws: connection %s already belongs to user %q", c.ID, c.UserID)
	}
	c.UserID = userID
	if !c.hub.users.add(c, userID) {
		return ErrHubClosed
	}
	return nil
}
