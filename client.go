package ws

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vortechron/go-ws/internal/frame"
	"golang.org/x/time/rate"
)

// Client is one WebSocket connection.
//
// Concurrency: each Client has exactly one reader, a goroutine that runs
// the read loop until the connection ends and then tears the connection
// down. Only the writer of its sender (its write shard, or for what cannot
// be written without waiting a goroutine of its own; see sender.go) writes
// to the socket or sets its write deadline; every other goroutine (the
// Hub, broker deliveries, the reader itself) queues frames with a call
// that never blocks. Exported fields are set before OnConnect and never
// change.
type Client struct {
	// ID identifies this connection, unique across the cluster. It has
	// the form "123.456", which is also what the Pusher protocol calls a
	// socket ID.
	ID string
	// UserID is what Options.GetUserID returned; empty for anonymous
	// connections. The one exception to "never change" below: a
	// connection of the Pusher protocol that had no user and signs in
	// (pusher:signin) gets one then, set once on its read goroutine
	// while it handles the sign-in; hooks that run on that goroutine,
	// and OnSubscribe and OnUnsubscribe for its later subscriptions, see
	// it.
	UserID string
	// RemoteAddr is the peer address of the connection.
	RemoteAddr string
	// RemoteIP is the client IP used for per-IP limits.
	RemoteIP string
	// ConnectedAt is when the upgrade completed.
	ConnectedAt time.Time

	hub      *Hub
	opts     *Options
	nc       net.Conn
	ctx      context.Context // the upgrade request's, without its cancel
	slotKey  string          // what the admission slot is counted under
	released atomic.Bool     // the admission slot was given back
	info     json.RawMessage // presence info from Options.GetUserInfo
	proto    uint8           // index of the client's wire protocol in hub.protocols

	out   sender     // the send side: queue, bounds, writer, close handshake
	users clientUser // user index entry and acting lock (users.go)

	// subprotocol and compression, from the handshake
	negotiated

	mu   sync.Mutex
	subs []*channel // guarded by mu; written only by the Hub.Run goroutine
	// granted says, for each channel the client's protocol authorized
	// itself (wire.Grant), who the client is there: its presence member
	// and the sender of its whispers (an empty UserID: the client's own
	// user). Guarded by mu; written by the read goroutine.
	granted map[string]PresenceMember

	// hist is the client's subscriptions to history channels, replaced
	// whole by the Hub.Run goroutine, read by the write shards.
	hist atomic.Pointer[[]*historySub]

	// owned by the read goroutine
	rd       frame.Reader
	br       *bufio.Reader // nil unless Config.ReadBufferSize > 0
	burst    *bufio.Reader // without br: borrowed from burstPool while a frame is read
	first    [1]byte       // the byte awaitFrame read
	primed   bool          // first holds a byte not yet given to rd
	limiter  *rate.Limiter
	dropped  int       // frames dropped by the rate limit in this window
	dropFrom time.Time // start of the current abuse window
}

// Context returns the context of the request that opened the connection,
// carrying its values but not its cancellation (net/http cancels it when
// the upgrade handler returns, long before the connection ends).
func (c *Client) Context() context.Context { return c.ctx }

// Subprotocol returns the WebSocket subprotocol selected for the
// connection from Config.Subprotocols, or "" when none was.
func (c *Client) Subprotocol() string { return c.subprotocol }

// DisconnectReason says why the connection ended: a *CloseReason when the
// server closed it (shutdown, abuse, a panic in a hook), ErrSlowConsumer
// when its send queue overflowed, a *PeerCloseError when the client sent a
// close frame, and a *ConnectionError when reading or writing the socket
// failed (a dropped connection). It is nil while the connection is open.
func (c *Client) DisconnectReason() error { return c.out.disconnectReason() }

// Send queues message for this client alone, as one text frame of its own
// outside any channel. message is encoded as Hub.Publish encodes a
// message: a json.RawMessage or []byte holding JSON is sent as is, a string
// becomes a JSON string, anything else goes through encoding/json. Send
// never blocks; it returns false if message cannot be encoded, or if the
// client is closing or was just disconnected as a slow consumer.
func (c *Client) Send(message any) bool {
	b, err := marshalMessage(message)
	if err != nil {
		return false
	}
	return c.out.enqueue(c.textFrame(b))
}

// Close disconnects the client with a close frame carrying code and
// reason, after the frames already queued. It returns at once; the
// connection ends within WriteTimeout.
func (c *Client) Close(code int, reason string) { c.out.close(code, reason, nil) }

// channels returns the names of the channels the client is in.
func (c *Client) channels() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	names := make([]string, len(c.subs))
	for i, ch := range c.subs {
		names[i] = ch.name
	}
	return names
}

// inChannel reports whether the client is subscribed to name.
func (c *Client) inChannel(name string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.subIndexLocked(name) >= 0
}

func (c *Client) subCount() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.subs)
}

// grant records who the client is on a channel its protocol authorized.
func (c *Client) grant(channel string, m PresenceMember) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.granted == nil {
		c.granted = make(map[string]PresenceMember)
	}
	c.granted[channel] = m
}

// ungrant forgets the grant of a channel the client left and returns it.
func (c *Client) ungrant(channel string) (PresenceMember, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	m, ok := c.granted[channel]
	delete(c.granted, channel)
	return m, ok
}

// identity returns who the client is on channel: the member its protocol
// granted there, else its user (GetUserID, or a sign-in), possibly "";
// granted reports a grant.
func (c *Client) identity(channel string) (userID string, granted bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	m, granted := c.granted[channel]
	if m.UserID != "" {
		return m.UserID, granted
	}
	return c.UserID, granted
}

// ownsUserChannel reports whether channel, a user channel, is the one of
// the client's user.
func (c *Client) ownsUserChannel(channel string) bool {
	id := strings.TrimPrefix(channel, UserChannelPrefix)
	return id != "" && id == c.UserID
}

// subIndexLocked returns the position of channel name in c.subs, or -1.
// c.mu is held, or the caller is the Run goroutine, the only writer.
func (c *Client) subIndexLocked(name string) int {
	return slices.IndexFunc(c.subs, func(ch *channel) bool { return ch.name == name })
}

// run reads until the connection ends, then tears it down.
//
// A panic in a callback the read loop runs (AuthHandler, AuthProvider,
// WhisperMiddleware, ErrorHandler) or in OnDisconnect ends this
// connection alone, closed with 1011, and is logged at Error level with
// its stack through Config.Logger: the connection runs on its own
// goroutine, where no net/http recover would catch it, and one bad frame
// must not take every other connection down with the process.
func (c *Client) run() {
	defer c.recoverPanic("OnDisconnect")
	defer c.teardown()
	defer c.recoverPanic("read loop")
	c.readLoop()
}

// recoverPanic ends the connection after a panic in a user callback.
func (c *Client) recoverPanic(where string) {
	p := recover()
	if p == nil {
		return
	}
	c.hub.log.Error("ws: panic serving a connection", "where", where, "client", c.ID, "panic", p, "stack", string(debug.Stack()))
	c.out.setReason(fmt.Errorf("ws: panic in %s: %v", where, p))
	c.out.close(CloseInternalError, "internal error", nil)
}

// teardown ends the connection after the read loop stopped: it waits for
// the writer to send the close frame and close the socket, leaves every
// channel and presence set, and calls OnDisconnect once.
func (c *Client) teardown() {
	// Deferred so that a panic in OnDisconnect cannot keep the hub
	// waiting for this client forever.
	defer func() {
		c.releaseSlot()
		_ = c.hub.send(&hubOp{kind: opRemove, client: c})
	}()
	<-c.out.done
	c.out.drainAndClose()
	c.out.shard.unregister(&c.out)
	// The slot is free before the client leaves Stats().Connections, so
	// once that count has dropped a new connection is sure to fit.
	c.releaseSlot()
	res := c.hub.call(&hubOp{kind: opUnregister, client: c})
	for _, name := range res.channels {
		c.leavePresence(name)
	}
	if c.opts.OnDisconnect != nil {
		c.opts.OnDisconnect(c)
	}
}

// releaseSlot gives the admission slot back, once.
func (c *Client) releaseSlot() {
	if c.released.CompareAndSwap(false, true) {
		c.hub.release(c.slotKey)
	}
}
