package ws

import (
	"errors"
	"net"
	"syscall"

	"golang.org/x/sys/unix"
)

// writeShard is one of GOMAXPROCS goroutines that write queued frames to
// many sockets without blocking: a client whose queue becomes non-empty is
// put on its shard's ready list, and the shard writes the client's whole
// queue with one non-blocking writev. When a socket cannot take all of it
// (the peer reads slowly), the rest goes to a goroutine of that client's
// own that blocks with a write deadline, so one slow socket never holds up
// the others. Connections that offer no raw file descriptor (TLS, other
// wrappers) always use their own goroutine.
type writeShard struct {
	hub   *Hub
	wake  chan struct{}
	mu    chan struct{} // a one-slot semaphore guarding ready
	ready []*Client     // guarded by mu
}

func newWriteShard(h *Hub) *writeShard {
	s := &writeShard{hub: h, wake: make(chan struct{}, 1), mu: make(chan struct{}, 1)}
	return s
}

func (s *writeShard) push(c *Client) {
	s.mu <- struct{}{}
	s.ready = append(s.ready, c)
	<-s.mu
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// run writes ready clients until done is closed.
func (s *writeShard) run(done <-chan struct{}) {
	var spare []*Client
	iovs := make([][]byte, 0, 64)
	for {
		select {
		case <-s.wake:
		case <-done:
			return
		}
		for {
			s.mu <- struct{}{}
			list := s.ready
			s.ready = spare[:0]
			<-s.mu
			if len(list) == 0 {
				spare = list
				break
			}
			for _, c := range list {
				iovs = c.flushFast(iovs[:0])
			}
			clear(list)
			spare = list
		}
	}
}

// maxIOV is the most buffers one writev takes (Linux IOV_MAX).
const maxIOV = 1024

// flushFast writes c's queue with non-blocking writev calls. Called only
// by a shard that c was pushed to, so it owns c's socket until it either
// finds the queue empty or hands the socket to c.writeLoop.
func (c *Client) flushFast(iovs [][]byte) [][]byte {
	c.mu.Lock()
	if c.closing {
		c.mu.Unlock()
		go c.writeLoop() // the close handshake blocks; not on a shard
		return iovs
	}
	batch := c.queue
	c.queue = nil
	c.queued = 0
	if len(batch) == 0 {
		c.writing = false
		c.mu.Unlock()
		return iovs
	}
	c.mu.Unlock()

	var written int64
	rest := batch
	var err error
	for len(rest) > 0 {
		n := min(len(rest), maxIOV)
		iovs = append(iovs[:0], rest[:n]...)
		var m int
		m, err = writevNow(c.raw, iovs)
		written += int64(m)
		rest = rest[n:]
		if m < lenAll(iovs) { // short write: keep what is left, in order
			rest = append(trimWritten(iovs, m), rest...)
			break
		}
		if err != nil {
			break
		}
	}
	c.hub.stats.bytesOut.Add(written)
	clear(iovs)

	c.mu.Lock()
	switch {
	case err != nil && !errors.Is(err, unix.EAGAIN):
		if !c.closing {
			c.closing = true
			if c.reason == nil {
				c.reason = &ConnectionError{ClientID: c.ID, RemoteAddr: c.RemoteAddr, Op: "write", Err: err}
			}
		}
		c.queue = nil
		c.mu.Unlock()
		go c.writeLoop()
	case len(rest) > 0:
		// The socket is full: the client's own goroutine waits for it.
		c.queue = append(rest, c.queue...)
		for _, b := range rest {
			c.queued += len(b)
		}
		c.mu.Unlock()
		go c.writeLoop()
	case len(c.queue) > 0 || c.closing:
		c.mu.Unlock()
		c.hub.shards[c.shard].push(c)
	default:
		c.writing = false
		c.mu.Unlock()
	}
	return iovs
}

// writevNow writes iovs with one writev that does not wait: it returns
// how much the socket took, and EAGAIN when it took nothing.
func writevNow(raw syscall.RawConn, iovs [][]byte) (int, error) {
	var n int
	var werr error
	err := raw.Write(func(fd uintptr) bool {
		n, werr = unix.Writev(int(fd), iovs)
		return true
	})
	if n < 0 {
		n = 0
	}
	if err != nil {
		return n, err
	}
	return n, werr
}

func lenAll(bufs [][]byte) int {
	n := 0
	for _, b := range bufs {
		n += len(b)
	}
	return n
}

// trimWritten returns what is left of bufs after n bytes were written.
func trimWritten(bufs [][]byte, n int) [][]byte {
	for len(bufs) > 0 && n >= len(bufs[0]) {
		n -= len(bufs[0])
		bufs = bufs[1:]
	}
	out := make([][]byte, len(bufs))
	copy(out, bufs)
	if len(out) > 0 {
		out[0] = out[0][n:]
	}
	return out
}

// rawConn returns the socket's raw descriptor access when the connection
// is a plain TCP or Unix socket.
func rawConn(nc net.Conn) syscall.RawConn {
	sc, ok := nc.(interface {
		SyscallConn() (syscall.RawConn, error)
	})
	if !ok {
		return nil
	}
	switch nc.(type) {
	case *net.TCPConn, *net.UnixConn:
	default:
		return nil // a wrapper may buffer or transform what is written
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return nil
	}
	return raw
}
