package servers

import (
	"bufio"
	"bytes"
	"compress/flate"
	"context"
	"crypto/sha1"
	"crypto/tls"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"net/http"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"

	"github.com/vortechron/go-ws/bench/internal/proto"
)

// The ceiling server is the fastest thing that still speaks WebSocket: a
// publication is framed once; one goroutine per core (a shard) owns a
// slice of the connections and, each time it wakes, writes every frame
// queued since its last pass to each of its connections in one writev.
// There is no goroutine, buffer or timer per connection (the handshake and
// the subscribe frames are handled by the request goroutine, which then
// exits), no ping, no read loop: a connection whose socket cannot take a
// whole batch at once is simply dropped, and one epoll for the whole
// server closes connections whose peer hung up (ceiling_close.go). It
// bounds from above what any safe library can do on this machine.
//
// Over TLS (-tls) the frames of a pass are joined once per channel and
// handed to each connection's tls.Conn in one Write (a socket that cannot
// take it within a second is dropped). With -compress a connection that
// offers permessage-deflate gets every publication compressed once (no
// context takeover), the compressed frame shared by every such connection.
// A handshake whose URL carries ?subs=N reads N subscribe frames instead
// of one (the reconnect storm subscribes to four channels).

// iovMax is the most frames one writev carries (Linux IOV_MAX is 1024).
const iovMax = 1024

type ceilingServer struct {
	shards   []*ceilingShard
	next     atomic.Uint64
	done     chan struct{}
	wg       sync.WaitGroup
	compress bool
	zpool    sync.Pool // *flate.Writer at level
	closer   *closer
}

type ceilingFrame struct {
	channel string
	data    []byte
	zdata   []byte // the compressed frame, with -compress
}

type ceilingShard struct {
	mu      sync.Mutex
	subs    map[string][]*ceilingConn // guarded by mu; appended under mu, pruned by run
	pending []ceilingFrame            // guarded by mu
	wake    chan struct{}
	dropped atomic.Int64
}

type ceilingConn struct {
	raw     syscall.RawConn // plain TCP: written with non-blocking writev
	tls     *tls.Conn       // TLS: written with one Write per pass
	conn    net.Conn
	deflate bool // permessage-deflate negotiated
	dead    bool // owned by the shard's run goroutine
}

func init() {
	register("ceiling", func(ctx context.Context, opts Options) (Server, error) {
		cl, err := newCloser()
		if err != nil {
			return nil, err
		}
		s := &ceilingServer{done: make(chan struct{}), compress: opts.Compress, closer: cl}
		s.wg.Add(1)
		go func() { defer s.wg.Done(); cl.run(s.done) }()
		level := opts.CompressLevel
		s.zpool.New = func() any {
			w, _ := flate.NewWriter(nil, level)
			return w
		}
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
	subs, err := strconv.Atoi(orDefault(r.URL.Query().Get("subs"), "1"))
	if err != nil || subs < 1 || subs > 8 {
		http.Error(w, "subs: want 1..8", http.StatusBadRequest)
		return
	}
	deflate := s.compress && strings.Contains(r.Header.Get("Sec-WebSocket-Extensions"), "permessage-deflate")
	conn, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		return
	}
	sum := sha1.Sum([]byte(key + wsGUID))
	resp := "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: " +
		base64.StdEncoding.EncodeToString(sum[:]) + "\r\n"
	if deflate {
		resp += "Sec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover; client_no_context_takeover\r\n"
	}
	if _, err := conn.Write([]byte(resp + "\r\n")); err != nil {
		conn.Close()
		return
	}
	c := &ceilingConn{conn: conn, deflate: deflate}
	tcp := conn
	if tc, ok := conn.(*tls.Conn); ok {
		c.tls = tc
		tcp = tc.NetConn()
	}
	sc, ok := tcp.(syscall.Conn)
	if !ok {
		conn.Close()
		return
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		conn.Close()
		return
	}
	if c.tls == nil {
		c.raw = raw
	}
	sh := s.shards[s.next.Add(1)%uint64(len(s.shards))]
	for range subs {
		msg, err := readClientFrame(brw.Reader)
		if err != nil {
			conn.Close()
			return
		}
		ch, ok := proto.ChannelOf(msg)
		if !ok {
			conn.Close()
			return
		}
		sh.mu.Lock()
		// Ack and register under mu so no publication falls between them.
		_, err = conn.Write(serverFrame(proto.Subscribed(ch)))
		if err == nil {
			sh.subs[ch] = append(sh.subs[ch], c)
		}
		sh.mu.Unlock()
		if err != nil {
			conn.Close()
			return
		}
	}
	if err := s.closer.watch(c, raw); err != nil {
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
	compressed := h[0]&0x40 != 0 // RSV1: permessage-deflate
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
	if compressed {
		// The stripped tail, then an empty final block so the reader
		// ends cleanly (as gorilla does).
		fr := flate.NewReader(io.MultiReader(bytes.NewReader(b), bytes.NewReader(deflateTail), bytes.NewReader(finalBlock)))
		defer fr.Close()
		return io.ReadAll(io.LimitReader(fr, 4096))
	}
	return b, nil
}

func (s *ceilingServer) Publish(ctx context.Context, channel string, payload []byte) error {
	env := proto.Envelope(channel, payload)
	f := ceilingFrame{channel: channel, data: serverFrame(env)}
	if s.compress {
		f.zdata = s.deflateFrame(env)
	}
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
	var p pass
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
			j := i
			for j < len(batch) && batch[j].channel == ch && j-i < iovMax {
				j++
			}
			p.reset(batch[i:j])
			i = j
			sh.mu.Lock()
			conns := sh.subs[ch]
			sh.mu.Unlock()
			dead := 0
			for _, c := range conns {
				if !c.dead && !c.write(&p) {
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

func (s *ceilingServer) Close() {
	close(s.done)
	s.wg.Wait()
}
