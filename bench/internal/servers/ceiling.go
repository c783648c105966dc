package servers

import (
	"bufio"
	"context"
	"crypto/sha1"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"net/http"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/vortechron/go-ws/bench/internal/proto"
)

// The ceiling server is the fastest thing that still speaks WebSocket: a
// publication is framed once; one goroutine per core (a shard) owns a
// slice of the connections and, each time it wakes, writes every frame
// queued since its last pass to each of its connections in one writev.
// There is no goroutine, buffer or timer per connection (the handshake and
// the subscribe frame are handled by the request goroutine, which then
// exits), no ping, no read loop, no close detection: a connection whose
// socket cannot take a whole batch at once is simply dropped. It bounds
// from above what any safe library can do on this machine.

// iovMax is the most frames one writev carries (Linux IOV_MAX is 1024).
const iovMax = 1024

type ceilingServer struct {
	shards []*ceilingShard
	next   atomic.Uint64
	done   chan struct{}
	wg     sync.WaitGroup
}

type ceilingFrame struct {
	channel string
	data    []byte
}

type ceilingShard struct {
	mu      sync.Mutex
	subs    map[string][]*ceilingConn // guarded by mu; appended under mu, pruned by run
	pending []ceilingFrame            // guarded by mu
	wake    chan struct{}
	dropped atomic.Int64
}

type ceilingConn struct {
	raw  syscall.RawConn
	conn net.Conn
	dead bool // owned by the shard's run goroutine
}

func init() {
	register("ceiling", func(ctx context.Context, opts Options) (Server, error) {
		s := &ceilingServer{done: make(chan struct{})}
		for range runtime.GOMAXPROCS(0) {
			sh := &ceilingShard{subs: map[string][]*ceilingConn{}, wake: make(chan struct{}, 1)}
			s.shards = append(s.shards, sh)
			s.wg.Add(1)
			go func() { defer s.wg.Done(); sh.run(s.done) }()
		}
		return s, nil
	})
}

const wsGUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

func (s *ceilingServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	key := r.Header.Get("Sec-WebSocket-Key")
	if key == "" {
		http.Error(w, "not a websocket handshake", http.StatusBadRequest)
		return
	}
	conn, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		return
	}
	sum := sha1.Sum([]byte(key + wsGUID))
	resp := "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: " +
		base64.StdEncoding.EncodeToString(sum[:]) + "\r\n\r\n"
	if _, err := conn.Write([]byte(resp)); err != nil {
		conn.Close()
		return
	}
	msg, err := readClientFrame(brw.Reader)
	if err != nil {
		conn.Close()
		return
	}
	ch, ok := proto.ChannelOf(msg)
	sc, ok2 := conn.(syscall.Conn)
	if !ok || !ok2 {
		conn.Close()
		return
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		conn.Close()
		return
	}
	c := &ceilingConn{raw: raw, conn: conn}
	sh := s.shards[s.next.Add(1)%uint64(len(s.shards))]
	sh.mu.Lock()
	// Ack and register under mu so no publication falls between them.
	_, err = conn.Write(serverFrame(proto.Subscribed(ch)))
	if err == nil {
		sh.subs[ch] = append(sh.subs[ch], c)
	}
	sh.mu.Unlock()
	if err != nil {
		conn.Close()
	}
}

// readClientFrame reads one masked client text frame of at most 4 KiB.
func readClientFrame(r *bufio.Reader) ([]byte, error) {
	var h [2]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return nil, err
	}
	n := uint64(h[1] & 0x7f)
	switch n {
	case 126:
		var b [2]byte
		if _, err := io.ReadFull(r, b[:]); err != nil {
			return nil, err
		}
		n = uint64(binary.BigEndian.Uint16(b[:]))
	case 127:
		return nil, errors.New("frame too big")
	}
	if n > 4096 || h[1]&0x80 == 0 {
		return nil, errors.New("bad client frame")
	}
	var mask [4]byte
	if _, err := io.ReadFull(r, mask[:]); err != nil {
		return nil, err
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(r, b); err != nil {
		return nil, err
	}
	for i := range b {
		b[i] ^= mask[i%4]
	}
	return b, nil
}

// serverFrame encodes payload as one unmasked text frame.
func serverFrame(payload []byte) []byte {
	n := len(payload)
	var b []byte
	switch {
	case n < 126:
		b = append(make([]byte, 0, n+2), 0x81, byte(n))
	case n < 1<<16:
		b = append(make([]byte, 0, n+4), 0x81, 126, byte(n>>8), byte(n))
	default:
		b = append(make([]byte, 0, n+10), 0x81, 127)
		b = binary.BigEndian.AppendUint64(b, uint64(n))
	}
	return append(b, payload...)
}

func (s *ceilingServer) Publish(ctx context.Context, channel string, payload []byte) error {
	f := ceilingFrame{channel: channel, data: serverFrame(proto.Envelope(channel, payload))}
	for _, sh := range s.shards {
		sh.mu.Lock()
		sh.pending = append(sh.pending, f)
		sh.mu.Unlock()
		select {
		case sh.wake <- struct{}{}:
		default:
		}
	}
	return nil
}

func (sh *ceilingShard) run(done <-chan struct{}) {
	var spare []ceilingFrame
	iovs := make([][]byte, 0, iovMax)
	for {
		select {
		case <-sh.wake:
		case <-done:
			return
		}
		sh.mu.Lock()
		batch := sh.pending
		sh.pending = spare[:0]
		sh.mu.Unlock()
		for i := 0; i < len(batch); {
			ch := batch[i].channel
			iovs = iovs[:0]
			for ; i < len(batch) && batch[i].channel == ch && len(iovs) < iovMax; i++ {
				iovs = append(iovs, batch[i].data)
			}
			sh.mu.Lock()
			conns := sh.subs[ch]
			sh.mu.Unlock()
			dead := 0
			for _, c := range conns {
				if !c.dead && !c.writev(iovs) {
					c.dead = true
					c.conn.Close()
					sh.dropped.Add(1)
				}
				if c.dead {
					dead++
				}
			}
			if dead > 0 {
				sh.prune(ch)
			}
		}
		clear(batch)
		spare = batch
	}
}

// prune removes dead connections from channel ch.
func (sh *ceilingShard) prune(ch string) {
	sh.mu.Lock()
	defer sh.mu.Unlock()
	live := sh.subs[ch][:0]
	for _, c := range sh.subs[ch] {
		if !c.dead {
			live = append(live, c)
		}
	}
	clear(sh.subs[ch][len(live):])
	sh.subs[ch] = live
}

// writev writes all of iovs with one non-blocking writev; false means the
// socket could not take them all at once (or is gone).
func (c *ceilingConn) writev(iovs [][]byte) bool {
	want := 0
	for _, b := range iovs {
		want += len(b)
	}
	var n int
	var werr error
	err := c.raw.Write(func(fd uintptr) bool {
		n, werr = unix.Writev(int(fd), iovs)
		return true
	})
	return err == nil && werr == nil && n == want
}

func (s *ceilingServer) Close() {
	close(s.done)
	s.wg.Wait()
}
