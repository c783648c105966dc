package ws

import (
	"bufio"
	"errors"
	"io"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/vortechron/go-ws/internal/frame"
)

// readLoop reads and dispatches client frames until the connection ends,
// then starts the close handshake with the code that fits why it ended.
// The reader keeps no buffer while idle: each message is read into a
// fresh slice that is garbage once dispatched, and, unless
// Config.ReadBufferSize gives the connection a buffer of its own, the
// bytes come through a buffer borrowed for the frame (see readFrame).
//
// An idle connection waits in awaitFrame, a shallow call, and the deep
// work of reading and dispatching a frame happens in readFrame, which
// has returned before the next wait. The goroutine's stack at rest is
// therefore small enough for the runtime to shrink it to 4 KiB, which is
// most of what an idle connection costs.
func (c *Client) readLoop() {
	cfg := &c.hub.cfg
	c.rd = frame.Reader{R: (*sockReader)(c), MaxSize: cfg.MaxMessageSize, Control: c.control, Deflate: c.deflate}
	if cfg.ReadBufferSize > 0 {
		c.br = bufio.NewReaderSize(c.nc, cfg.ReadBufferSize)
		c.rd.R = c.br
	}
	defer c.returnBurst()
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
	if c.burst != nil {
		return nil // the frame's first bytes came with the last read
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
//
// Without a buffer of its own the connection borrows one from burstPool
// for the frame: one read system call then takes the frame's header,
// mask and payload, and often the frames that follow, where unbuffered
// reads took three or four calls per frame (a client subscribing to four
// channels made sixteen). The buffer goes back to the pool once the
// frame is read, unless it holds the start of the next one: then the
// connection keeps it, and awaitFrame does not wait.
func (c *Client) readFrame() bool {
	if c.br == nil && c.burst == nil {
		c.burst = burstPool.Get().(*bufio.Reader)
		c.burst.Reset(c.nc)
	}
	op, p, err := c.rd.Next(nil)
	if err != nil {
		c.endRead(err)
		return false
	}
	if c.burst != nil && c.burst.Buffered() == 0 {
		// p is a copy: the buffer goes back before the frame is acted
		// on, which may wait (a subscribe waits for the hub and storage).
		c.returnBurst()
	}
	c.hub.stats.messagesIn.Add(1)
	// Every data frame counts against the rate limit, binary ones too.
	if c.allow() {
		if op != frame.OpText {
			c.fail("", "", CodeBinaryNotAllowed, "binary frames are not supported; send JSON text frames", nil)
		} else {
			c.act(p)
		}
	}
	if c.out.isClosing() {
		c.endRead(nil)
		return false
	}
	return true
}

// burstSize is the size of the buffers connections borrow to read a
// frame: a few of the small JSON frames clients send.
const burstSize = 2048

var burstPool = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, burstSize) }}

// returnBurst gives the borrowed read buffer back, dropping what it
// holds.
func (c *Client) returnBurst() {
	if c.burst == nil {
		return
	}
	c.burst.Reset(nil)
	burstPool.Put(c.burst)
	c.burst = nil
}

// extendRead pushes the read deadline PongTimeout ahead, unless the
// connection is closing: then the close grace set by the writer stands.
func (c *Client) extendRead() {
	if c.out.isClosing() {
		return
	}
	_ = c.nc.SetReadDeadline(time.Now().Add(c.hub.cfg.PongTimeout))
}

// control handles a ping or pong read between or inside messages: any
// frame proves the peer alive, and a ping is owed a pong.
func (c *Client) control(op byte, p []byte) {
	c.extendRead()
	if op == frame.OpPing {
		c.out.control(false, p)
	}
}

// sockReader reads the client's socket, starting with the byte that
// awaitFrame already took from it.
type sockReader Client

func (r *sockReader) Read(p []byte) (int, error) {
	if r.primed && len(p) > 0 {
		p[0] = r.first[0]
		r.primed = false
		return 1, nil
	}
	if r.burst != nil {
		return r.burst.Read(p)
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
	c.out.close(code, text, reason)
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
	c.sendError(CodeRateLimited, "rate limit of "+strconv.Itoa(rl.Messages)+" frames per "+rl.Interval.String()+" exceeded; frame dropped", "", "")
	return false
}
