package ws

import (
	"io"
	"net"
	"time"

	"github.com/vortechron/go-ws/internal/frame"
)

// Close codes the server sends besides the standard ones.
const (
	CloseNormal          = 1000
	CloseGoingAway       = 1001 // server shutting down: reconnect elsewhere
	ClosePolicyViolation = 1008 // sustained rate-limit abuse
	CloseMessageTooBig   = 1009 // client frame over MaxMessageSize
	CloseInternalError   = 1011 // a handler panicked
	CloseSlowConsumer    = 4008 // send queue overflowed
	ClosePingTimeout     = 4009 // no pong within PongTimeout
)

// enqueue queues a data frame for the writer. It never blocks: when the
// queue is over SendQueueSize frames or SendQueueBytes bytes the client
// is disconnected as a slow consumer and enqueue reports false. f is
// shared with other clients and must not be modified.
func (c *Client) enqueue(f []byte) bool {
	c.mu.Lock()
	ok := c.addLocked(f)
	if ok {
		c.startWriterLocked()
	}
	c.mu.Unlock()
	return ok
}

// enqueueShard is enqueue for the client's own write shard during
// fan-out: instead of putting the client on the ready list it reports
// kick, and the shard flushes the client after the rest of its batch.
func (c *Client) enqueueShard(f []byte) (ok, kick bool) {
	c.mu.Lock()
	ok = c.addLocked(f)
	if ok && !c.writing && !c.writerExited {
		if c.raw != nil {
			c.writing = true
			kick = true
		} else {
			c.startWriterLocked()
		}
	}
	c.mu.Unlock()
	return ok, kick
}

// addLocked appends f within the queue bounds, or disconnects the client
// as a slow consumer. c.mu is held.
func (c *Client) addLocked(f []byte) bool {
	if c.closing {
		return false
	}
	if len(c.queue) >= c.hub.cfg.SendQueueSize || c.queued+len(f) > c.hub.cfg.SendQueueBytes {
		putQueue(c.queue)
		c.queue = nil
		c.queued = 0
		c.beginCloseLocked(CloseSlowConsumer, "slow consumer", ErrSlowConsumer)
		c.hub.stats.slowConsumers.Add(1)
		return false
	}
	c.pushLocked(f)
	return true
}

// pushLocked appends f to the queue, taking a queue from the pool when the
// client has none. c.mu is held.
func (c *Client) pushLocked(f []byte) {
	if c.queue == nil {
		c.queue = getQueue()
	}
	c.queue = append(c.queue, f)
	c.queued += len(f)
}

// appendLocked queues f without bounds checks; c.mu is held.
func (c *Client) appendLocked(f []byte) {
	if c.closing {
		return
	}
	c.pushLocked(f)
	c.startWriterLocked()
}

// enqueueControl queues a ping; control frames are tiny and are not
// counted against the queue bounds.
func (c *Client) enqueueControl(f []byte) {
	c.mu.Lock()
	c.appendLocked(f)
	c.mu.Unlock()
}

// Close disconnects the client with a close frame carrying code and reason,
// after the frames already queued. It returns at once; the connection ends
// within WriteTimeout.
func (c *Client) Close(code int, reason string) {
	c.mu.Lock()
	c.beginCloseLocked(code, reason, nil)
	c.mu.Unlock()
}

// beginCloseLocked marks the client closing; the writer sends the close
// frame after what is queued and then closes the socket. c.mu is held.
func (c *Client) beginCloseLocked(code int, reason string, cause error) {
	if c.closing {
		return
	}
	c.closing = true
	c.closeFrame = frame.Close(code, reason)
	if cause == nil {
		cause = &CloseReason{Code: code, Text: reason}
	}
	if c.reason == nil {
		c.reason = cause
	}
	c.startWriterLocked()
}

// closeNow closes the socket without waiting for the writer; used when a
// shutdown deadline has passed.
func (c *Client) closeNow() {
	c.mu.Lock()
	c.beginCloseLocked(CloseGoingAway, "server shutting down", nil)
	c.mu.Unlock()
	_ = c.nc.Close()
}

// startWriterLocked hands the client to a writer unless one owns its
// socket already: its write shard, or its own goroutine when the socket
// offers no raw descriptor or the connection is closing. A client holds
// a goroutine only while it has something to write and its socket is
// full. c.mu is held.
func (c *Client) startWriterLocked() {
	if c.writing || c.writerExited {
		return
	}
	c.writing = true
	if c.raw != nil && !c.closing && c.hub.shards[c.shard].push(c) {
		return
	}
	go c.writeLoop()
}

// writeLoop writes queued frames until the queue is empty, coalescing
// everything queued into one writev, blocking with a write deadline. It
// and flushFast are the only code that writes to the socket, and never at
// the same time: whichever holds c.writing owns it.
func (c *Client) writeLoop() {
	var bufs net.Buffers
	for {
		c.mu.Lock()
		batch := c.queue
		c.queue = nil
		c.queued = 0
		final := c.closing
		if final && c.closeFrame != nil {
			batch = append(batch, c.closeFrame)
			c.closeFrame = nil
		}
		if len(batch) == 0 && !final {
			c.writing = false
			c.mu.Unlock()
			return
		}
		c.mu.Unlock()

		err := c.write(batch, &bufs)
		if final || err != nil {
			c.mu.Lock()
			if err != nil {
				c.writeFailedLocked(err)
			}
			c.queue = nil
			c.writing = false
			c.writerExited = true
			c.mu.Unlock()
			if err == nil {
				c.halfClose()
			} else {
				_ = c.nc.Close()
			}
			close(c.writerDone)
			return
		}
	}
}

func (c *Client) write(batch [][]byte, bufs *net.Buffers) error {
	if len(batch) == 0 {
		return nil
	}
	_ = c.nc.SetWriteDeadline(time.Now().Add(c.hub.cfg.WriteTimeout))
	*bufs = append((*bufs)[:0], batch...)
	b := *bufs
	n, err := b.WriteTo(c.nc)
	c.hub.stats.bytesOut.Add(n)
	return err
}

// writeFailedLocked records a failed socket write: the client is closing,
// and the write error is why, unless a reason was already set. c.mu is
// held.
func (c *Client) writeFailedLocked(err error) {
	c.closing = true
	if c.reason == nil {
		c.reason = &ConnectionError{ClientID: c.ID, RemoteAddr: c.RemoteAddr, Op: "write", Err: err}
	}
}

// closeGrace is how long a connection whose close frame was sent may take
// to answer with its own before the socket is closed.
const closeGrace = time.Second

// halfClose ends the sending side after the close frame, so the peer gets
// the frame and a FIN rather than a reset, and gives the peer closeGrace
// to answer: the read side stays open (and is drained by teardown) until
// then. Closing outright while the peer is still sending (an oversize
// frame, say) would make the kernel reset the connection, and the peer
// could lose the close frame that says why.
func (c *Client) halfClose() {
	_ = c.nc.SetReadDeadline(time.Now().Add(closeGrace))
	if cw, ok := c.nc.(interface{ CloseWrite() error }); ok && cw.CloseWrite() == nil {
		return
	}
	_ = c.nc.Close()
}

// drainAndClose reads and discards what the peer still sends, up to
// closeGrace and 1 MiB, then closes the socket. Called by teardown once
// the writer is done.
func (c *Client) drainAndClose() {
	_ = c.nc.SetReadDeadline(time.Now().Add(closeGrace))
	_, _ = io.Copy(io.Discard, io.LimitReader(c.nc, 1<<20))
	_ = c.nc.Close()
}

// CloseReason is the disconnect reason of a client closed by the server
// with a close frame (see Client.DisconnectReason).
type CloseReason struct {
	Code int
	Text string
}

func (r *CloseReason) Error() string {
	return "ws: closed by server: " + r.Text
}
