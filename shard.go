package ws

import (
	"net"
	"runtime"
	"sync"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// writeShard is one of GOMAXPROCS goroutines that do the fan-out and the
// socket writes of the clients assigned to it.
//
// A publication reaches every shard as one post. A shard takes all posts
// waiting for it, appends each frame to the queue of its own subscribers
// of the channel, and then writes each client's whole queue with one
// non-blocking writev, so frames published close together reach a socket
// in one system call. When a socket cannot take everything (the peer
// reads slowly), the rest goes to a goroutine of that client's own that
// blocks with a write deadline, so one slow socket never holds up the
// others. Connections that offer no raw descriptor (TLS, other wrappers)
// always write from their own goroutine. Frames queued outside fan-out
// (acks, errors, pings) put their client on the shard's ready list.
type writeShard struct {
	hub  *Hub
	idx  int
	wake chan struct{}

	mu    sync.Mutex
	room  *sync.Cond // signalled when posts are taken; uses mu
	posts []post     // guarded by mu
	ready []*Client  // guarded by mu
	live  bool       // guarded by mu; run is running
}

// post is one publication waiting for a shard's fan-out.
type post struct {
	ch      *channel
	f       []byte // the frame, shared by every subscriber
	except  string // connection ID to skip (a whisper's sender)
	whisper bool
}

// maxPosts bounds the publications waiting for one shard. A publisher
// faster than the shards waits here, which is the backpressure that
// keeps memory bounded.
const maxPosts = 4096

func newWriteShard(h *Hub, idx int) *writeShard {
	s := &writeShard{hub: h, idx: idx, wake: make(chan struct{}, 1)}
	s.room = sync.NewCond(&s.mu)
	return s
}

func (s *writeShard) signal() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// post queues a publication, waiting while the shard is far behind.
func (s *writeShard) post(p post) {
	s.mu.Lock()
	for len(s.posts) >= maxPosts && s.live {
		s.room.Wait()
	}
	if s.live {
		s.posts = append(s.posts, p)
	}
	s.mu.Unlock()
	s.signal()
}

// push puts a client whose queue became non-empty on the ready list. It
// reports false, leaving the client to its own goroutine, when the shard
// is not running (before Run, or after it has returned).
func (s *writeShard) push(c *Client) bool {
	s.mu.Lock()
	live := s.live
	if live {
		s.ready = append(s.ready, c)
	}
	s.mu.Unlock()
	if live {
		s.signal()
	}
	return live
}

// setLive marks the shard running (Run does, before starting run) or not
// (run does, as it returns, releasing every waiting publisher).
func (s *writeShard) setLive(live bool) {
	s.mu.Lock()
	s.live = live
	if !live {
		s.posts = nil
		s.room.Broadcast()
	}
	s.mu.Unlock()
}

// run fans out and writes until done is closed.
func (s *writeShard) run(done <-chan struct{}) {
	defer s.setLive(false)
	var sparePosts []post
	var spareReady, dirty []*Client
	w := &vecWriter{}
	for {
		select {
		case <-s.wake:
		case <-done:
			return
		}
		for {
			s.mu.Lock()
			posts, ready := s.posts, s.ready
			s.posts, s.ready = sparePosts[:0], spareReady[:0]
			s.room.Broadcast()
			s.mu.Unlock()
			if len(posts) == 0 && len(ready) == 0 {
				sparePosts, spareReady = posts, ready
				break
			}
			dirty = append(dirty[:0], ready...)
			for _, p := range posts {
				dirty = s.fanOut(p, dirty)
			}
			for _, c := range dirty {
				c.flushFast(w)
			}
			clear(posts)
			clear(ready)
			clear(dirty)
			sparePosts, spareReady = posts, ready
		}
	}
}

// fanOut queues p's frame on this shard's subscribers of p's channel and
// returns dirty extended by the clients this shard must now flush.
func (s *writeShard) fanOut(p post, dirty []*Client) []*Client {
	var n int64
	for _, chunk := range p.ch.sets[s.idx].subscribers() {
		for _, c := range chunk {
			if p.except != "" && c.ID == p.except {
				continue
			}
			ok, kick := c.enqueueShard(p.f)
			if ok {
				n++
			}
			if kick {
				dirty = append(dirty, c)
			}
		}
	}
	s.hub.stats.messagesOut.Add(n)
	if p.whisper {
		s.hub.stats.whispersOut.Add(n)
	}
	return dirty
}

// maxIOV is the most buffers one writev takes (Linux IOV_MAX).
const maxIOV = 1024

// vecWriter is a shard's reusable writev argument.
type vecWriter struct {
	iov []unix.Iovec
}

// writev writes bufs (at most maxIOV, none empty) to raw's descriptor with
// one writev that does not wait. It returns how much the socket took, how
// much bufs held, and EAGAIN when the socket took nothing.
func (w *vecWriter) writev(raw syscall.RawConn, bufs [][]byte) (n, want int, err error) {
	w.iov = w.iov[:0]
	for _, b := range bufs {
		v := unix.Iovec{Base: &b[0]}
		v.SetLen(len(b))
		w.iov = append(w.iov, v)
		want += len(b)
	}
	var written uintptr
	var errno syscall.Errno
	err = raw.Write(func(fd uintptr) bool {
		written, _, errno = syscall.Syscall(unix.SYS_WRITEV, fd, uintptr(unsafe.Pointer(&w.iov[0])), uintptr(len(w.iov)))
		return true
	})
	runtime.KeepAlive(bufs)
	clear(w.iov) // drop the pointers so the frames can be collected
	switch {
	case err != nil:
		return 0, want, err
	case errno != 0:
		return 0, want, errno
	}
	return int(written), want, nil
}

// flushFast writes c's queue with non-blocking writev calls. Only the
// shard that owns c calls it, and only while c.writing is set for it.
// Whatever it cannot finish without blocking (a full socket, a failed
// write, the close handshake) it hands to c.writeLoop, in order.
func (c *Client) flushFast(w *vecWriter) {
	c.mu.Lock()
	if c.closing {
		c.mu.Unlock()
		go c.writeLoop() // the close handshake blocks; not on a shard
		return
	}
	batch := c.queue
	c.queue = nil
	c.queued = 0
	if len(batch) == 0 {
		c.writing = false
		c.mu.Unlock()
		return
	}
	c.mu.Unlock()

	var written int64
	rest := batch
	var err error
	for len(rest) > 0 {
		k := min(len(rest), maxIOV)
		n, want, werr := w.writev(c.raw, rest[:k])
		written += int64(n)
		err = werr
		if n < want {
			rest = append(trimWritten(rest[:k], n), rest[k:]...)
			break
		}
		rest = rest[k:]
	}
	c.hub.stats.bytesOut.Add(written)

	c.mu.Lock()
	handOff := true
	switch {
	case err != nil && err != unix.EAGAIN:
		c.writeFailedLocked(err)
		c.queue = nil
	case len(rest) > 0:
		// The socket is full: what is left goes before what was queued
		// meanwhile, and the client's own goroutine waits for the socket.
		q := make([][]byte, 0, len(rest)+len(c.queue))
		q = append(append(q, rest...), c.queue...)
		c.queued += lenAll(rest)
		putQueue(c.queue)
		c.queue = q
	case c.closing:
		// Closed while this flush was writing: the close handshake is
		// the client goroutine's job.
	case len(c.queue) > 0:
		handOff = !c.hub.shards[c.shard].push(c)
	default:
		handOff = false
		c.writing = false
	}
	c.mu.Unlock()
	putQueue(batch)
	if handOff {
		go c.writeLoop()
	}
}

// queuePool recycles client queues, so an idle client holds none and a
// busy one does not grow a new slice for every burst.
var queuePool = sync.Pool{New: func() any { return make([][]byte, 0, 32) }}

func getQueue() [][]byte { return queuePool.Get().([][]byte)[:0] }

func putQueue(q [][]byte) {
	if q == nil || cap(q) > 4096 {
		return
	}
	clear(q[:cap(q)])
	queuePool.Put(q[:0]) //nolint:staticcheck // a slice header is fine here
}

func lenAll(bufs [][]byte) int {
	n := 0
	for _, b := range bufs {
		n += len(b)
	}
	return n
}

// trimWritten returns a copy of what is left of bufs after n bytes were
// written.
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
	switch nc.(type) {
	case *net.TCPConn, *net.UnixConn:
	default:
		return nil // a wrapper may buffer or transform what is written
	}
	sc, ok := nc.(syscall.Conn)
	if !ok {
		return nil
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return nil
	}
	return raw
}
