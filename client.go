package ws

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/vortechron/go-ws/internal/frame"
	"golang.org/x/time/rate"
)

// Client is one WebSocket connection.
//
// Concurrency: each Client has exactly one reader, the goroutine that
// called ServeWS (it runs the read loop until the connection ends), and at
// most one writer, a goroutine that exists only while frames are queued.
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

	hub     *Hub
	opts    *Options
	conn    Conn
	nc      net.Conn
	request *http.Request
	info    json.RawMessage // presence info from Options.GetUserInfo

	mu           sync.Mutex
	queue        [][]byte      // guarded by mu; frames waiting for the writer
	queued       int           // guarded by mu; bytes in queue
	writing      bool          // guarded by mu; a writer goroutine runs
	writerExited bool          // guarded by mu; the socket is closed
	closing      bool          // guarded by mu; no more frames accepted
	closeFrame   []byte        // guarded by mu; written last
	closeCode    int           // guarded by mu
	reason       error         // guarded by mu; why the connection ended
	writerDone   chan struct{} // closed when the writer closed the socket

	// owned by the Hub.Run goroutine
	subs map[string]*channel

	// owned by the read goroutine
	joined   map[string]struct{} // channels this client is subscribed to
	limiter  *rate.Limiter
	dropped  int       // frames dropped by the rate limit in this window
	dropFrom time.Time // start of the current abuse window
}

// Request returns the HTTP request that opened the connection.
func (c *Client) Request() *http.Request { return c.request }

// Context returns the context of the request that opened the connection.
func (c *Client) Context() context.Context { return c.request.Context() }

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

// sendJSON queues a server frame built from json bytes.
func (c *Client) sendJSON(b []byte) { c.enqueue(frame.Text(b)) }

// readPool holds buffers for reading client frames, so an idle connection
// keeps none.
var readPool = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// readLoop reads and dispatches client frames until the connection ends.
func (c *Client) readLoop() error {
	cfg := &c.hub.cfg
	extend := func() { _ = c.conn.SetReadDeadline(time.Now().Add(cfg.PongTimeout)) }
	extend()
	c.conn.SetPongHandler(func(string) error { extend(); return nil })
	c.conn.SetPingHandler(func(appData string) error {
		extend()
		// Pongs go through the bounded data queue: a client that floods
		// pings without reading the pongs is a slow consumer, not a way
		// to grow the queue without limit.
		c.enqueue(frame.Pong([]byte(appData)))
		return nil
	})
	c.conn.SetCloseHandler(func(code int, text string) error {
		c.mu.Lock()
		if c.reason == nil {
			c.reason = &PeerCloseError{Code: code, Text: text}
		}
		if code == 1005 { // no status received: reply with none either
			code = CloseNormal
		}
		c.beginCloseLocked(code, "", c.reason)
		c.mu.Unlock()
		return nil
	})
	for {
		mt, r, err := c.conn.NextReader()
		if err != nil {
			return err
		}
		extend()
		buf := readPool.Get().(*bytes.Buffer)
		buf.Reset()
		n, err := buf.ReadFrom(io.LimitReader(r, cfg.MaxMessageSize+1))
		if err != nil {
			readPool.Put(buf)
			return err
		}
		if n > cfg.MaxMessageSize {
			readPool.Put(buf)
			c.hub.stats.errors[errKindProtocol].Add(1)
			c.reportError(&ProtocolError{ClientID: c.ID, UserID: c.UserID, Code: CodeMessageTooLarge,
				Message: "frame larger than MaxMessageSize; connection closed with 1009"})
			c.Close(CloseMessageTooBig, "message too big")
			return errMessageTooBig
		}
		c.hub.stats.messagesIn.Add(1)
		// Every data frame counts against the rate limit, binary ones too.
		if c.allow() {
			if mt != textMessage {
				c.fail("", "", CodeBinaryNotAllowed, "binary frames are not supported; send JSON text frames", nil)
			} else {
				c.dispatch(buf.Bytes())
			}
		}
		if buf.Cap() <= 64<<10 {
			readPool.Put(buf)
		}
		if c.isClosing() {
			return errClosing
		}
	}
}

// textMessage is the WebSocket text opcode as gorilla reports it.
const textMessage = 1

var (
	errMessageTooBig = errors.New("ws: message too big")
	errClosing       = errors.New("ws: connection closing")
)

func (c *Client) isClosing() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closing
}

// dispatch acts on one client frame.
func (c *Client) dispatch(b []byte) {
	in, err := decodeInbound(b)
	if err != nil {
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
		c.sendJSON([]byte(`{"type":"pong"}`))
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
	if _, again := c.joined[name]; !again && len(c.joined) >= c.hub.cfg.MaxChannelsPerClient {
		// Refused here, before authorization and without a trip through
		// the hub, so a subscribe flood costs the hub nothing.
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
		switch {
		case errors.Is(res.err, errTooManyChannels):
			code = CodeTooManyChannels
			msg = "subscribed to too many channels; unsubscribe from one first"
		case errors.Is(res.err, ErrHubClosed):
			code, msg = CodeServerShutdown, "server is shutting down"
		}
		c.fail(ActionSubscribe, name, code, msg, res.err)
		return
	}
	if c.joined == nil {
		c.joined = make(map[string]struct{})
	}
	if _, again := c.joined[name]; again {
		return
	}
	c.joined[name] = struct{}{}
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
	delete(c.joined, name)
	if KindOf(name) == PresenceChannel {
		c.leavePresence(name)
	}
}

// fail answers the client with an error frame and reports err (or a
// *ProtocolError built from the arguments) to Options.ErrorHandler.
func (c *Client) fail(action, channel, code, msg string, err error) {
	c.sendJSON(encodeError(code, msg, action, channel))
	c.hub.stats.errors[errKindProtocol].Add(1)
	c.reportError(&ProtocolError{ClientID: c.ID, UserID: c.UserID, Action: action, Channel: channel, Code: code, Message: msg, Err: err})
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
