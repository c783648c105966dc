package ws

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/vortechron/go-ws/internal/frame"
	"golang.org/x/time/rate"
)

// Client is one WebSocket connection.
//
// Concurrency: each Client has exactly one reader, a goroutine that runs
// the read loop until the connection ends, and at most one writer, a goroutine that exists only while frames are queued.
// Only the writer writes to the socket or sets its write deadline; every
// other goroutine (the Hub, broker deliveries, the reader itself) enqueues
// frames with a non-blocking call. Exported fields are set before
// OnConnect and never change.
type Client struct {
	// ID identifies this connection, unique across the cluster.
	ID string
	// UserID is what Options.GetUserID returned; empty for anonymous
	// connections.
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
	raw      syscall.RawConn // nc's descriptor for non-blocking writes; nil if none
	shard    int             // index of the write shard that serves it
	ctx      context.Context // the upgrade request's, without its cancel
	slotKey  string          // what the admission slot is counted under
	released atomic.Bool     // the admission slot was given back
	info     json.RawMessage // presence info from Options.GetUserInfo

	mu           sync.Mutex
	queue        [][]byte      // guarded by mu; frames waiting for the writer
	queued       int           // guarded by mu; bytes in queue
	writing      bool          // guarded by mu; a writer goroutine runs
	writerExited bool          // guarded by mu; the socket is closed
	closing      bool          // guarded by mu; no more frames accepted
	closeFrame   []byte        // guarded by mu; written last
	reason       error         // guarded by mu; why the connection ended
	writerDone   chan struct{} // closed when the writer closed the socket

	// owned by the Hub.Run goroutine
	subs []*channel // channels the client is in (a slice: few, and small when idle)

	// owned by the read goroutine
	rd       frame.Reader
	br       *bufio.Reader // nil unless Config.ReadBufferSize > 0
	first    [1]byte       // the byte awaitFrame read
	primed   bool          // first holds a byte not yet given to rd
	joined   []string      // channels this client is subscribed to (a slice: few, and small when idle)
	limiter  *rate.Limiter
	dropped  int       // frames dropped by the rate limit in this window
	dropFrom time.Time // start of the current abuse window
}

// Context returns the context of the request that opened the connection,
// carrying its values but not its cancellation (net/http cancels it when
// the upgrade handler returns, long before the connection ends).
func (c *Client) Context() context.Context { return c.ctx }

// DisconnectReason says why the connection ended: a *CloseReason for a
// server-side close (slow consumer, shutdown, abuse), ErrSlowConsumer, a
// *websocket close error from the peer, or a read/write error. It is nil
// while the connection is open.
func (c *Client) DisconnectReason() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.reason
}

// Send queues a frame of raw JSON for this client alone. It never blocks;
// it returns false if the client is closing or was just disconnected as a
// slow consumer.
func (c *Client) Send(v any) bool {
	b, err := json.Marshal(v)
	if err != nil {
		return false
	}
	return c.enqueue(frame.Text(b))
}

// pongJSONFrame answers the "ping" action; the same bytes serve every
// client.
var pongJSONFrame = frame.Text([]byte(`{"type":"pong"}`))

// sendJSON queues a server frame built from json bytes.
func (c *Client) sendJSON(b []byte) { c.enqueue(frame.Text(b)) }

// readLoop reads and dispatches client frames until the connection ends,
// then starts the close handshake with the code that fits why it ended.
// The reader keeps no buffer while idle: each message is read into a
// fresh slice that is garbage once dispatched.
//
// An idle connection waits in awaitFrame, a shallow call, and the deep
// work of reading and dispatching a frame happens in readFrame, which
// has returned before the next wait. The goroutine's stack at rest is
// therefore small enough for the runtime to shrink it to 4 KiB, which is
// most of what an idle connection costs.
func (c *Client) readLoop() {
	cfg := &c.hub.cfg
	c.rd = frame.Reader{R: (*sockReader)(c), MaxSize: cfg.MaxMessageSize, Control: c.control}
	if cfg.ReadBufferSize > 0 {
		c.br = bufio.NewReaderSize(c.nc, cfg.ReadBufferSize)
		c.rd.R = c.br
	}
	for {
		if err := c.awaitFrame(); err != nil {
			c.endRead(err)
			return
		}
		if !c.readFrame() {
			return
		}
	}
}

// awaitFrame blocks until the next frame's first byte has arrived.
func (c *Client) awaitFrame() error {
	c.extendRead()
	if c.br != nil {
		_, err := c.br.Peek(1)
		return err
	}
	n, err := c.nc.Read(c.first[:])
	if n == 1 {
		c.primed = true
		return nil
	}
	if err == nil {
		err = io.ErrNoProgress
	}
	return err
}

// readFrame reads one message and acts on it; false means reading ended.
func (c *Client) readFrame() bool {
	op, p, err := c.rd.Next(nil)
	if err != nil {
		c.endRead(err)
		return false
	}
	c.hub.stats.messagesIn.Add(1)
	// Every data frame counts against the rate limit, binary ones too.
	if c.allow() {
		if op != frame.OpText {
			c.fail("", "", CodeBinaryNotAllowed, "binary frames are not supported; send JSON text frames", nil)
		} else {
			c.dispatch(p)
		}
	}
	if c.isClosing() {
		c.endRead(nil)
		return false
	}
	return true
}

// extendRead pushes the read deadline PongTimeout ahead, unless the
// connection is closing: then the close grace set by the writer stands.
func (c *Client) extendRead() {
	if c.isClosing() {
		return
	}
	_ = c.nc.SetReadDeadline(time.Now().Add(c.hub.cfg.PongTimeout))
}

// control handles a ping or pong read between or inside messages.
func (c *Client) control(op byte, p []byte) {
	c.extendRead()
	if op == frame.OpPing {
		// Pongs go through the bounded data queue: a client that floods
		// pings without reading the pongs is a slow consumer, not a way
		// to grow the queue without limit.
		c.enqueue(frame.Pong(p))
	}
}

// releaseSlot gives the admission slot back, once.
func (c *Client) releaseSlot() {
	if c.released.CompareAndSwap(false, true) {
		c.hub.release(c.slotKey)
	}
}

// inChannel reports whether the client has joined channel name; called by
// the read goroutine.
func (c *Client) inChannel(name string) bool { return slices.Contains(c.joined, name) }

// sockReader reads the client's socket, starting with the byte that
// awaitFrame already took from it.
type sockReader Client

func (r *sockReader) Read(p []byte) (int, error) {
	if r.primed && len(p) > 0 {
		p[0] = r.first[0]
		r.primed = false
		return 1, nil
	}
	return r.nc.Read(p)
}

// endRead records why reading stopped and begins the close handshake.
func (c *Client) endRead(err error) {
	code, text := CloseNormal, ""
	var reason error
	var ce *frame.CloseError
	var pe *frame.ProtocolError
	var ne net.Error
	switch {
	case err == nil: // the server is closing the connection itself
	case errors.As(err, &ce):
		reason = &PeerCloseError{Code: ce.Code, Text: ce.Text}
		if ce.Code != 1005 {
			code = ce.Code
		}
	case errors.As(err, &pe):
		code, text = pe.Code, pe.Msg
		reason = &CloseReason{Code: pe.Code, Text: pe.Msg}
		perr := &ProtocolError{ClientID: c.ID, UserID: c.UserID, Code: CodeBadRequest, Message: pe.Msg + "; connection closed", Err: err}
		if pe.Code == frame.CodeTooBig {
			perr.Code, perr.Message = CodeMessageTooLarge, "frame larger than MaxMessageSize; connection closed with 1009"
			text = "message too big"
		}
		c.hub.stats.errors[errKindProtocol].Add(1)
		c.reportError(perr)
	case errors.As(err, &ne) && ne.Timeout():
		code, text = ClosePingTimeout, "ping timeout"
		reason = &CloseReason{Code: ClosePingTimeout, Text: "ping timeout"}
	default:
		reason = &ConnectionError{ClientID: c.ID, RemoteAddr: c.RemoteAddr, Op: "read", Err: err}
	}
	c.mu.Lock()
	if c.reason == nil {
		c.reason = reason
	}
	c.beginCloseLocked(code, text, reason)
	c.mu.Unlock()
}

func (c *Client) isClosing() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closing
}

// dispatch acts on one client frame.
func (c *Client) dispatch(b []byte) {
	in, err := decodeInbound(b)
	if err != nil {
		if c.malformedWhisper(b, err) {
			return
		}
		c.fail("", "", CodeBadRequest, "malformed frame: "+err.Error()+`; send one JSON object like {"action":"subscribe","channel":"news"}`, err)
		return
	}
	switch in.Action {
	case ActionSubscribe:
		c.handleSubscribe(in.Channel)
	case ActionUnsubscribe:
		c.handleUnsubscribe(in.Channel)
	case ActionWhisper:
		c.handleWhisper(in)
	case ActionPing:
		c.enqueue(pongJSONFrame)
	case ActionPublish:
		c.fail(in.Action, in.Channel, CodeForbidden, "clients cannot publish; the server publishes, and clients may whisper", nil)
	case "":
		c.fail("", in.Channel, CodeBadRequest, `missing "action"`, nil)
	default:
		c.fail(in.Action, in.Channel, CodeUnknownAction, "unknown action; use subscribe, unsubscribe, whisper or ping", nil)
	}
}

func (c *Client) handleSubscribe(name string) {
	if err := ValidChannelName(name); err != nil {
		c.fail(ActionSubscribe, name, CodeInvalidChannel, err.Error(), err)
		return
	}
	if !c.inChannel(name) && len(c.joined) >= c.hub.cfg.MaxChannelsPerClient {
		// The cap is enforced here, on the connection's goroutine, before
		// authorization and without a trip through the hub, so a subscribe
		// flood costs the hub nothing. c.joined mirrors the hub's c.subs:
		// only this goroutine subscribes the client, and it waits for each.
		c.fail(ActionSubscribe, name, CodeTooManyChannels, "subscribed to too many channels; unsubscribe from one first", errTooManyChannels)
		return
	}
	kind := KindOf(name)
	if kind != PublicChannel {
		if aerr := c.authorize(name); aerr != nil {
			c.hub.stats.errors[errKindAuth].Add(1)
			c.reportError(aerr)
			c.sendJSON(encodeError(CodeUnauthorized, "not authorized to subscribe to "+name+": "+aerr.Reason, ActionSubscribe, name))
			return
		}
	}
	res := c.hub.call(&hubOp{kind: opSubscribe, client: c, channel: name})
	if res.err != nil {
		code, msg := CodeUnavailable, "subscribe failed: "+res.err.Error()
		if errors.Is(res.err, ErrHubClosed) {
			code, msg = CodeServerShutdown, "server is shutting down"
		}
		c.fail(ActionSubscribe, name, code, msg, res.err)
		return
	}
	if c.inChannel(name) {
		return
	}
	c.joined = append(c.joined, name)
	if kind == PresenceChannel {
		c.joinPresence(name)
	}
}

func (c *Client) handleUnsubscribe(name string) {
	if err := ValidChannelName(name); err != nil {
		c.fail(ActionUnsubscribe, name, CodeInvalidChannel, err.Error(), err)
		return
	}
	res := c.hub.call(&hubOp{kind: opUnsubscribe, client: c, channel: name})
	if res.err != nil {
		code := CodeNotSubscribed
		if errors.Is(res.err, ErrHubClosed) {
			code = CodeServerShutdown
		}
		c.fail(ActionUnsubscribe, name, code, res.err.Error(), nil)
		return
	}
	if i := slices.Index(c.joined, name); i >= 0 {
		c.joined = slices.Delete(c.joined, i, i+1)
	}
	if KindOf(name) == PresenceChannel {
		c.leavePresence(name)
	}
}

// fail reports a *ProtocolError built from the arguments to
// Options.ErrorHandler and answers the client with an error frame, in
// that order, so the handler has run by the time the client sees it.
func (c *Client) fail(action, channel, code, msg string, err error) {
	c.hub.stats.errors[errKindProtocol].Add(1)
	c.reportError(&ProtocolError{ClientID: c.ID, UserID: c.UserID, Action: action, Channel: channel, Code: code, Message: msg, Err: err})
	c.sendJSON(encodeError(code, msg, action, channel))
}

// reportError hands err to Options.ErrorHandler, if there is one.
func (c *Client) reportError(err error) {
	if c.opts.ErrorHandler != nil {
		c.opts.ErrorHandler(err)
	}
}

// allow applies Config.RateLimit to one data frame, text or binary. The
// limit is a token bucket (golang.org/x/time/rate) refilled at Messages
// per Interval with a burst of Messages, so a fresh connection may send
// Messages frames at once. Over the limit the frame is dropped unread,
// answered with a rate_limited error frame and reported as a
// *RateLimitError. The abuse rule: a client that gets more frames dropped
// within one Interval (counted from its first drop) than Messages, that
// is one that keeps sending at well over twice its limit, is closed with
// 1008 (policy violation) instead.
func (c *Client) allow() bool {
	if c.limiter == nil || c.limiter.Allow() {
		return true
	}
	rl := c.hub.cfg.RateLimit
	now := time.Now()
	if now.Sub(c.dropFrom) > rl.Interval {
		c.dropFrom, c.dropped = now, 0
	}
	c.dropped++
	c.hub.stats.rateLimited.Add(1)
	c.hub.stats.errors[errKindRateLimit].Add(1)
	abusive := c.dropped > rl.Messages
	c.reportError(&RateLimitError{ClientID: c.ID, UserID: c.UserID, RemoteIP: c.RemoteIP,
		Messages: rl.Messages, Interval: rl.Interval, Disconnected: abusive})
	if abusive {
		c.Close(ClosePolicyViolation, "rate limit exceeded")
		return false
	}
	c.sendJSON(encodeError(CodeRateLimited, "rate limit of "+strconv.Itoa(rl.Messages)+" frames per "+rl.Interval.String()+" exceeded; frame dropped", "", ""))
	return false
}

// PeerCloseError is the disconnect reason of a client that sent a close
// frame.
type PeerCloseError struct {
	Code int
	Text string
}

func (e *PeerCloseError) Error() string {
	return "ws: closed by client"
}
