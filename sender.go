package ws

import (
	"io"
	"net"
	"sync"
	"syscall"
	"time"

	"github.com/vortechron/go-ws/internal/frame"
)

// sender is the send side of one connection: the queue of frames waiting
// for the socket, the bounds that turn a reader that cannot keep up into a
// slow consumer, who writes to the socket, and the close handshake.
//
// Frames reach the socket one of two ways. The fast way: the client's write
// shard (shard.go) writes the whole queue with one non-blocking writev, for
// every ready client in turn, so a burst to thousands of clients costs no
// goroutine at all. The blocking way: a goroutine of the client's own writes
// with a deadline, for whatever the fast way cannot finish (a full socket),
// for connections without a raw descriptor (TLS, other wrappers) and for the
// close handshake. Exactly one of them owns the socket at a time; state
// says which. A connection without a raw descriptor still passes through
// the shard during fan-out: the shard hands it to its blocking writer once
// its whole pass is queued, so a burst starts one writer per connection
// with every frame of the pass to write, not one per frame.
//
// The transitions, all made under mu:
//
//	from      to        by                          when
//	idle      shard     fan-out on the client's     not closing
//	                    shard
//	idle      shard     whoever else queues         fast path available, not closing, shard running
//	idle      blocking  whoever else queues,        no fast path, shard stopped, or closing
//	                    or closes
//	shard     idle      the shard's flush           the queue was written out
//	shard     blocking  the shard's flush           no fast path, socket full, write failed, closing,
//	                                                or shard stopping
//	blocking  idle      the writer goroutine        the queue was written out and not closing
//	blocking  done      the writer goroutine        the close frame was written, or a write failed
//
// closing is not a state but a flag: once set, no data frame is accepted
// and whoever owns the socket ends with the close frame. done is closed
// when the state becomes done, after which nothing touches the socket
// for writing again.
//
// Pacing is beside the states, not one of them: a backlog recovered from a
// channel's history (recovery.go) may be far larger than the bounds, so
// it is queued a part at a time with enqueuePaced, which takes frames only
// while the queue is under half its bounds and otherwise hands out room, a
// channel that whoever takes the queue next (takeLocked, in any state)
// closes, as does closing. A paced frame therefore never makes the client
// a slow consumer, and live frames keep the other half of the bounds.
type sender struct {
	hub   *Hub
	id    string // the client's ID, for errors
	conn  net.Conn
	raw   syscall.RawConn // conn's descriptor for the fast path; nil if none
	shard *writeShard     // the shard that serves the fast path
	proto uint8           // the client's wire protocol, whose CloseCode maps close codes
	slot  int             // guarded by shard.regMu; index in shard.clients
	done  chan struct{}   // closed when the state becomes sendDone

	mu         sync.Mutex
	state      sendState     // guarded by mu
	closing    bool          // guarded by mu; no more frames accepted
	queue      [][]byte      // guarded by mu; data frames waiting for the socket
	queued     int           // guarded by mu; bytes in queue
	ping       bool          // guarded by mu; a ping is due, written before queue
	pong       []byte        // guarded by mu; the latest pong owed, written before queue
	closeFrame []byte        // guarded by mu; written last
	reason     error         // guarded by mu; why the connection ended
	room       chan struct{} // guarded by mu; closed when the queue is taken (pacing)
}

// sendState says who owns the socket for writing; see sender.
type sendState uint8

const (
	sendIdle sendState = iota
	sendShard
	sendBlocking
	sendDone
)

func (s *sender) init(h *Hub, id string, conn net.Conn, shard *writeShard) {
	s.hub, s.id, s.conn, s.shard = h, id, conn, shard
	s.raw = rawConn(conn)
	s.done = make(chan struct{})
}

// enqueue queues a data frame. It never blocks: when the queue is over
// SendQueueSize frames or SendQueueBytes bytes, the connection is closed as
// a slow consumer and enqueue reports false. f may be shared with other
// clients and is never modified.
func (s *sender) enqueue(f []byte) bool {
	s.mu.Lock()
	ok := s.addLocked(f)
	if ok {
		s.scheduleLocked()
	}
	s.mu.Unlock()
	return ok
}

// enqueueShard is enqueue for fan-out on the client's own shard: instead
// of putting the client on the ready list or starting its writer it
// reports kick, and the shard flushes it after the rest of its batch.
func (s *sender) enqueueShard(f []byte) (ok, kick bool) {
	s.mu.Lock()
	ok = s.addLocked(f)
	if ok && s.state == sendIdle {
		s.state = sendShard
		kick = true
	} else if ok {
		s.scheduleLocked()
	}
	s.mu.Unlock()
	return ok, kick
}

// enqueueBefore queues f, unbounded, then runs enter, and only then lets
// a writer take the queue, all under mu. join uses it to queue a
// subscription's acknowledgement and enter the channel's snapshot as one
// step: a delivery that finds the client in the snapshot queues its frame
// after the acknowledgement (it waits for mu), and the acknowledgement
// cannot reach the socket before the client is in the snapshot, so every
// publication made after the client saw it reaches the client.
func (s *sender) enqueueBefore(f []byte, enter func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing {
		enter()
		return
	}
	s.pushLocked(f)
	enter()
	s.scheduleLocked()
}

// enqueueShardUnbounded is enqueueShard without the bounds check, for a
// frame the client asked for (its member list).
func (s *sender) enqueueShardUnbounded(f []byte) (ok, kick bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing {
		return false, false
	}
	s.pushLocked(f)
	if s.state == sendIdle {
		s.state = sendShard
		return true, true
	}
	s.scheduleLocked()
	return true, false
}

// enqueueUnbounded queues f without the bounds check, for the frames a
// subscribe queues together with its acknowledgement (the member list),
// which the client asked for and must not cost it the connection.
func (s *sender) enqueueUnbounded(f []byte) {
	s.mu.Lock()
	if !s.closing {
		s.pushLocked(f)
		s.scheduleLocked()
	}
	s.mu.Unlock()
}

// enqueuePaced queues frames, in order, while the queue holds less than
// half its bounds (and at least one when it is empty), and returns how
// many it queued. When that is fewer than len(frames), room is closed
// once the writer has taken the queue, or the connection closes: try
// again then. ok is false when the connection is closing.
func (s *sender) enqueuePaced(frames [][]byte) (n int, room <-chan struct{}, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing {
		return 0, nil, false
	}
	for n < len(frames) && s.fitsPacedLocked(1, len(frames[n])) {
		s.pushLocked(frames[n])
		n++
	}
	if n > 0 {
		s.scheduleLocked()
	}
	if n == len(frames) {
		return n, nil, true
	}
	if s.room == nil {
		s.room = make(chan struct{})
	}
	return n, s.room, true
}

// enqueuePacedAll queues every one of frames if together they fit in what
// enqueuePaced allows, or none; open is false when the connection is
// closing.
func (s *sender) enqueuePacedAll(frames [][]byte) (fit, open bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing {
		return false, false
	}
	if !s.fitsPacedLocked(len(frames), lenAll(frames)) {
		return false, true
	}
	for _, f := range frames {
		s.pushLocked(f)
	}
	if len(frames) > 0 {
		s.scheduleLocked()
	}
	return true, true
}

// fitsPacedLocked reports whether n more frames of size bytes in all stay
// within half the queue's bounds, or are one frame for an empty queue.
func (s *sender) fitsPacedLocked(n, size int) bool {
	if n == 0 || len(s.queue) == 0 && n == 1 {
		return true
	}
	cfg := &s.hub.cfg
	return len(s.queue)+n <= max(cfg.SendQueueSize/2, 1) && s.queued+size <= cfg.SendQueueBytes/2
}

// wakePacedLocked tells a paced backlog waiting for room to try again.
func (s *sender) wakePacedLocked() {
	if s.room != nil {
		close(s.room)
		s.room = nil
	}
}

// control owes the peer a ping (p nil) or a pong echoing p. Control frames
// are not queued behind data: one pending ping and the latest pong are
// kept aside and written first, so a client that floods pings cannot grow
// anything, and RFC 6455 5.5.3 lets a pong answer only the latest ping.
func (s *sender) control(ping bool, pong []byte) {
	s.mu.Lock()
	if !s.closing {
		if ping {
			s.ping = true
		} else {
			s.pong = frame.Pong(pong)
		}
		s.scheduleLocked()
	}
	s.mu.Unlock()
}

// addLocked appends f within the bounds, or closes the connection as a
// slow consumer.
func (s *sender) addLocked(f []byte) bool {
	if s.closing {
		return false
	}
	cfg := &s.hub.cfg
	if len(s.queue) >= cfg.SendQueueSize || s.queued+len(f) > cfg.SendQueueBytes {
		putQueue(s.queue)
		s.queue, s.queued = nil, 0
		s.beginCloseLocked(CloseSlowConsumer, "slow consumer", ErrSlowConsumer)
		s.hub.stats.slowConsumers.Add(1)
		return false
	}
	s.pushLocked(f)
	return true
}

func (s *sender) pushLocked(f []byte) {
	if s.queue == nil {
		s.queue = getQueue()
	}
	s.queue = append(s.queue, f)
	s.queued += len(f)
}

// scheduleLocked hands the socket to a writer if nobody owns it: the
// shard when the fast path serves this connection, the blocking writer
// otherwise.
func (s *sender) scheduleLocked() {
	if s.state != sendIdle {
		return
	}
	if s.raw != nil && !s.closing {
		s.state = sendShard
		if s.shard.push(s) {
			return
		}
	}
	s.state = sendBlocking
	go s.writeLoop()
}

// beginCloseLocked marks the connection closing with a close frame of code
// (as the client's protocol spells it: wire.Protocol.CloseCode) and text,
// sent after what is queued; cause (or a *CloseReason with ws's own code)
// becomes the disconnect reason unless one is set.
func (s *sender) beginCloseLocked(code int, text string, cause error) {
	if s.closing {
		return
	}
	s.closing = true
	s.wakePacedLocked()
	s.closeFrame = frame.Close(s.hub.protocols[s.proto].CloseCode(code), text)
	if cause == nil {
		cause = &CloseReason{Code: code, Text: text}
	}
	if s.reason == nil {
		s.reason = cause
	}
	s.scheduleLocked()
}

// close begins the close handshake; see beginCloseLocked.
func (s *sender) close(code int, text string, cause error) {
	s.mu.Lock()
	s.beginCloseLocked(code, text, cause)
	s.mu.Unlock()
}

// setReason records why the connection ended, unless a reason is set.
func (s *sender) setReason(err error) {
	s.mu.Lock()
	if s.reason == nil {
		s.reason = err
	}
	s.mu.Unlock()
}

func (s *sender) disconnectReason() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.reason
}

func (s *sender) isClosing() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closing
}

// takeLocked removes and returns everything due: the pending control
// frames first, then the queue.
func (s *sender) takeLocked() [][]byte {
	batch := s.queue
	if s.ping || s.pong != nil {
		head := make([][]byte, 0, 2+len(batch))
		if s.ping {
			head = append(head, pingFrame)
		}
		if s.pong != nil {
			head = append(head, s.pong)
		}
		batch = append(head, batch...)
		putQueue(s.queue)
		s.ping, s.pong = false, nil
	}
	s.queue, s.queued = nil, 0
	s.wakePacedLocked()
	return batch
}

// pingFrame is the ping every connection gets; the bytes are shared.
var pingFrame = frame.Ping()

// flush writes what is due with non-blocking writev calls. Only the shard
// calls it, while the state is sendShard. What cannot be finished without
// blocking (a full socket, a failed write, the close handshake, and every
// frame of a connection with no fast path) goes to the blocking writer,
// in order.
func (s *sender) flush(w *vecWriter) {
	s.mu.Lock()
	if s.closing || s.raw == nil {
		s.handOffLocked()
		s.mu.Unlock()
		return
	}
	batch := s.takeLocked()
	if len(batch) == 0 {
		s.state = sendIdle
		s.mu.Unlock()
		return
	}
	s.mu.Unlock()

	rest, written, err := w.writeAll(s.raw, batch)
	s.hub.stats.bytesOut.Add(written)

	s.mu.Lock()
	switch {
	case err != nil && !isEAGAIN(err):
		s.writeFailedLocked(err)
		s.handOffLocked()
	case len(rest) > 0:
		// The socket is full: what is left goes before what was queued
		// meanwhile, and the blocking writer waits for the socket.
		q := make([][]byte, 0, len(rest)+len(s.queue))
		q = append(append(q, rest...), s.queue...)
		s.queued += lenAll(rest)
		putQueue(s.queue)
		s.queue = q
		s.handOffLocked()
	case s.closing:
		s.handOffLocked()
	case len(s.queue) > 0 || s.ping || s.pong != nil:
		if !s.shard.push(s) {
			s.handOffLocked()
		}
	default:
		s.state = sendIdle
	}
	s.mu.Unlock()
	putQueue(batch)
}

// handOffLocked gives the socket to the blocking writer.
func (s *sender) handOffLocked() {
	s.state = sendBlocking
	go s.writeLoop()
}

// handOff is handOffLocked for a shard that stops while s is on its ready
// list, so the frames still reach the socket.
func (s *sender) handOff() {
	s.mu.Lock()
	s.handOffLocked()
	s.mu.Unlock()
}

// writeLoop is the blocking writer: it writes what is due until the queue
// is empty, or until the close frame is written. It runs only while the
// state is sendBlocking.
func (s *sender) writeLoop() {
	w := blockingWriter{s: s}
	for {
		s.mu.Lock()
		batch := s.takeLocked()
		final := s.closing
		if final && s.closeFrame != nil {
			batch = append(batch, s.closeFrame)
			s.closeFrame = nil
		}
		if len(batch) == 0 && !final {
			s.state = sendIdle
			s.mu.Unlock()
			return
		}
		s.mu.Unlock()

		err := w.write(batch)
		if final || err != nil {
			s.mu.Lock()
			if err != nil {
				s.writeFailedLocked(err)
			}
			s.queue = nil
			s.state = sendDone
			s.mu.Unlock()
			if err == nil {
				s.halfClose()
			} else {
				_ = s.conn.Close()
			}
			close(s.done)
			return
		}
	}
}

// writeFailedLocked records a failed write: the connection is closing, and
// the write error is why, unless a reason is set.
func (s *sender) writeFailedLocked(err error) {
	s.closing = true
	s.wakePacedLocked()
	s.queue, s.queued = nil, 0
	if s.reason == nil {
		s.reason = &ConnectionError{ClientID: s.id, RemoteAddr: s.conn.RemoteAddr().String(), Op: "write", Err: err}
	}
}

// blockingWriter writes batches with a deadline. For connections whose
// Write is one system call per buffer anyway (TCP and Unix sockets, which
// net.Buffers writes with writev) it passes the frames as they are; for
// everything else, TLS above all, it first copies them into one buffer, so
// a burst becomes one Write and one TLS record where it fits instead of a
// record per frame. The buffer is borrowed from a pool for the length of
// one Write, so a writer costs no buffer between bursts and a burst no
// buffer growing by doubling.
type blockingWriter struct {
	s    *sender
	bufs net.Buffers
}

// coalesceMax bounds the buffer one Write gets: 16 KiB is the largest TLS
// record, and a few of them per Write keep the copy cheap.
const coalesceMax = 64 << 10

// coalesceBufs holds buffers of coalesceSmall and of coalesceMax bytes;
// a batch takes the smallest that holds it.
var coalesceBufs = [2]sync.Pool{
	{New: func() any { b := make([]byte, 0, coalesceSmall); return &b }},
	{New: func() any { b := make([]byte, 0, coalesceMax); return &b }},
}

// coalesceSmall is the small buffers' size: a frame or a few.
const coalesceSmall = 4 << 10

func (w *blockingWriter) write(batch [][]byte) error {
	if len(batch) == 0 {
		return nil
	}
	s := w.s
	_ = s.conn.SetWriteDeadline(time.Now().Add(s.hub.cfg.WriteTimeout))
	if vc := vectored(s.conn); vc != nil {
		w.bufs = append(w.bufs[:0], batch...)
		n, err := w.bufs.WriteTo(vc)
		clear(w.bufs[:cap(w.bufs)])
		s.hub.stats.bytesOut.Add(n)
		return err
	}
	for len(batch) > 0 {
		if len(batch[0]) > coalesceMax {
			// Too big to be worth a copy: written as it is.
			n, err := s.conn.Write(batch[0])
			s.hub.stats.bytesOut.Add(int64(n))
			if err != nil {
				return err
			}
			batch = batch[1:]
			continue
		}
		pool := &coalesceBufs[0]
		if lenAll(batch) > coalesceSmall {
			pool = &coalesceBufs[1]
		}
		bp := pool.Get().(*[]byte)
		buf := (*bp)[:0]
		for len(batch) > 0 && len(buf)+len(batch[0]) <= cap(buf) {
			buf = append(buf, batch[0]...)
			batch = batch[1:]
		}
		n, err := s.conn.Write(buf)
		s.hub.stats.bytesOut.Add(int64(n))
		*bp = buf[:0]
		pool.Put(bp)
		if err != nil {
			return err
		}
	}
	return nil
}

// vectored returns the connection to write a net.Buffers to with one
// system call (writev, WSASend): conn itself when it is a TCP or Unix
// socket, the socket under a wrapper that writes to it unchanged, or nil.
func vectored(conn net.Conn) net.Conn {
	switch c := conn.(type) {
	case *net.TCPConn, *net.UnixConn:
		return c
	case interface{ TCPConn() *net.TCPConn }:
		return c.TCPConn()
	}
	return nil
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
func (s *sender) halfClose() {
	_ = s.conn.SetReadDeadline(time.Now().Add(closeGrace))
	if cw, ok := s.conn.(interface{ CloseWrite() error }); ok && cw.CloseWrite() == nil {
		return
	}
	_ = s.conn.Close()
}

// closeNow closes the socket without waiting for the writer; for a
// shutdown whose deadline has come.
func (s *sender) closeNow() {
	s.close(CloseGoingAway, "server shutting down", nil)
	_ = s.conn.Close()
}

// drainAndClose reads and discards what the peer still sends, up to
// closeGrace and 1 MiB, then closes the socket. Called by the client's
// teardown once the writer is done.
func (s *sender) drainAndClose() {
	_ = s.conn.SetReadDeadline(time.Now().Add(closeGrace))
	_, _ = io.Copy(io.Discard, io.LimitReader(s.conn, 1<<20))
	_ = s.conn.Close()
}

// queuePool recycles queues, so an idle client holds none and a busy one
// does not grow a new slice for every burst.
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

// rawConn returns the socket's raw descriptor when frames may be written
// to it directly: a plain TCP or Unix socket, or a wrapper that promises
// its writes go unchanged to one (fasthttp's hijacked connection, through
// the Fiber adaptor), and only on platforms with a non-blocking writev
// (writev_*.go).
func rawConn(nc net.Conn) syscall.RawConn {
	if !haveWritev {
		return nil
	}
	var sc syscall.Conn
	switch c := nc.(type) {
	case *net.TCPConn:
		sc = c
	case *net.UnixConn:
		sc = c
	case interface{ TCPConn() *net.TCPConn }:
		sc = c.TCPConn()
	default:
		return nil // a wrapper may buffer or transform what is written
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return nil
	}
	return raw
}
