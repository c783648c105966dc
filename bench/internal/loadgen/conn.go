package loadgen

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"math/bits"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/gorilla/websocket"
	"golang.org/x/sys/unix"

	"github.com/vortechron/go-ws/bench/internal/proto"
)

// Protocol is how a client subscribes and what it reads.
type Protocol string

const (
	// ProtoWS is the ws library's JSON protocol, also spoken by the melody,
	// gorilla and ceiling servers: {"action":"subscribe","channel":C},
	// answered by {"type":"subscribed",...}.
	ProtoWS Protocol = "ws"
	// ProtoCentrifuge is centrifuge's JSON protocol v2: a connect command,
	// a subscribe command, replies matched by id, pushes, and "{}" pings
	// answered with "{}".
	ProtoCentrifuge Protocol = "centrifuge"
	// ProtoPusher is Pusher Channels protocol 7 as pusher-js speaks it:
	// the URL gets ?protocol=7, the server opens with
	// pusher:connection_established, pusher:subscribe is answered by
	// pusher_internal:subscription_succeeded, and pusher:ping by
	// pusher:pong.
	ProtoPusher Protocol = "pusher"
)

// round is one conn's tally for one measured publication run. It is
// guarded by the conn's mu (written by the conn's reader goroutine, read by
// the worker once the run is over).
type round struct {
	start, n  int64
	seen      []uint64 // bitset of seq-start
	maxSeen   int64
	unique    int64
	dup, ooo  int64
	stale     int64
	firstNs   int64
	lastNs    int64
	lat       []uint32 // microseconds, publish to receive
	recordLat bool
	wire0     int64 // the conn's wire byte count when the round was armed
}

type conn struct {
	ws      *websocket.Conn
	slow    bool
	wire    *atomic.Int64 // bytes read from the TCP connection, TLS and frame headers included
	deflate bool          // permessage-deflate was negotiated

	mu     sync.Mutex
	r      *round // guarded by mu
	closed bool   // guarded by mu: the reader saw the connection end
}

// countingConn counts the bytes read from the TCP connection under the
// WebSocket (and under TLS, for wss://).
type countingConn struct {
	net.Conn
	n *atomic.Int64
}

func (c *countingConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	c.n.Add(int64(n))
	return n, err
}

// wireCounter finds the byte counter under a dialled connection.
func wireCounter(ws *websocket.Conn) *atomic.Int64 {
	nc := ws.NetConn()
	if tc, ok := nc.(*tls.Conn); ok {
		nc = tc.NetConn()
	}
	if ic, ok := nc.(*inflatingConn); ok {
		nc = ic.Conn
	}
	if cc, ok := nc.(*countingConn); ok {
		return cc.n
	}
	return new(atomic.Int64)
}

// dialer returns a gorilla Dialer with small buffers bound to the local
// source address (so many workers can spread over 127.0.0.x), optionally
// with a tiny receive buffer (for slow consumers). Every connection counts
// the bytes it reads (see wireCounter). wss:// URLs skip certificate
// verification (the servers use a self-signed certificate made at start);
// compress offers permessage-deflate, as every browser does; inflateOnce
// (ws:// only) inflates each distinct message once per process instead of
// once per delivery (see inflatingConn).
func dialer(local net.IP, readBuf, rcvbuf int, compress, inflateOnce bool) *websocket.Dialer {
	nd := &net.Dialer{Timeout: 10 * time.Second}
	if local != nil {
		nd.LocalAddr = &net.TCPAddr{IP: local}
	}
	nd.Control = func(network, address string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) {
			// Bound to a source address, a socket would get its port at
			// bind time, where Linux searches the whole ephemeral range
			// for a port no other socket (TIME_WAIT included) holds:
			// seconds per thousand dials once a reconnect storm left
			// thousands in TIME_WAIT. With IP_BIND_ADDRESS_NO_PORT the
			// port is chosen at connect time, per destination.
			serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_BIND_ADDRESS_NO_PORT, 1)
			if serr == nil && rcvbuf > 0 {
				serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF, rcvbuf)
			}
		})
		return errors.Join(err, serr)
	}
	dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := nd.DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		cc := &countingConn{Conn: c, n: new(atomic.Int64)}
		if inflateOnce {
			return newInflatingConn(cc), nil
		}
		return cc, nil
	}
	return &websocket.Dialer{
		NetDialContext:    dial,
		HandshakeTimeout:  10 * time.Second,
		ReadBufferSize:    readBuf,
		WriteBufferSize:   256,
		WriteBufferPool:   &sync.Pool{},
		TLSClientConfig:   &tls.Config{InsecureSkipVerify: true}, // loopback, self-signed
		EnableCompression: compress,
	}
}

// negotiatedDeflate reports whether the handshake response accepted
// permessage-deflate.
func negotiatedDeflate(resp *http.Response) bool {
	return resp != nil && strings.Contains(resp.Header.Get("Sec-WebSocket-Extensions"), "permessage-deflate")
}

// step is one request of the subscribe handshake and the test that
// recognises its reply.
type step struct {
	send []byte
	want func([]byte) bool
}

func hasPrefix(p string) func([]byte) bool {
	return func(m []byte) bool { return bytes.HasPrefix(m, []byte(p)) }
}

func contains(p string) func([]byte) bool {
	return func(m []byte) bool { return bytes.Contains(m, []byte(p)) }
}

// subscribe dials url and subscribes to channel, returning once the server
// acknowledged the subscription.
func subscribe(ctx context.Context, d *websocket.Dialer, url string, p Protocol, channel string) (*conn, error) {
	if p == ProtoPusher {
		url = withQuery(url, "protocol=7")
	}
	c, resp, err := d.DialContext(ctx, url, nil)
	if err != nil {
		return nil, err
	}
	c.SetReadDeadline(time.Now().Add(30 * time.Second))
	var steps []step
	switch p {
	case ProtoCentrifuge:
		steps = []step{
			{[]byte(`{"id":1,"connect":{}}`), hasPrefix(`{"id":1,`)},
			{[]byte(fmt.Sprintf(`{"id":2,"subscribe":{"channel":%q}}`, channel)), hasPrefix(`{"id":2,`)},
		}
	case ProtoPusher:
		steps = []step{
			{nil, contains(`"pusher:connection_established"`)},
			{proto.PusherSubscribe(channel), contains(`"pusher_internal:subscription_succeeded"`)},
		}
	default:
		steps = []step{{proto.SubscribeRequest(channel), contains(`"type":"subscribed"`)}}
	}
	for _, st := range steps {
		// A step with nothing to send waits for what the server says first.
		if st.send != nil {
			if err := c.WriteMessage(websocket.TextMessage, st.send); err != nil {
				c.Close()
				return nil, err
			}
		}
		for done := false; !done; {
			_, msg, err := c.ReadMessage()
			if err != nil {
				c.Close()
				return nil, err
			}
			for line := range bytes.SplitSeq(msg, []byte{'\n'}) {
				if bytes.Contains(line, []byte(`"error"`)) || bytes.Contains(line, []byte(`"pusher:error"`)) || bytes.Contains(line, []byte(`"pusher:subscription_error"`)) {
					c.Close()
					return nil, fmt.Errorf("subscribe refused: %s", line)
				}
				if st.want(line) {
					done = true
				}
			}
		}
	}
	c.SetReadDeadline(time.Time{})
	return &conn{ws: c, wire: wireCounter(c), deflate: negotiatedDeflate(resp)}, nil
}

// withQuery adds the query q to url.
func withQuery(url, q string) string {
	if strings.Contains(url, "?") {
		return url + "&" + q
	}
	return url + "?" + q
}

// read is the conn's reader goroutine: it tallies every publication into
// the current round until the connection ends.
func (c *conn) read(p Protocol, onUnique func()) {
	buf := make([]byte, 0, 512)
	defer func() {
		c.mu.Lock()
		c.closed = true
		c.mu.Unlock()
	}()
	for {
		_, r, err := c.ws.NextReader()
		if err != nil {
			return
		}
		buf = buf[:0]
		for {
			if len(buf) == cap(buf) {
				buf = append(buf, 0)[:len(buf)]
			}
			n, err := r.Read(buf[len(buf):cap(buf)])
			buf = buf[:len(buf)+n]
			if err != nil {
				break
			}
		}
		now := time.Now().UnixNano()
		for line := range bytes.SplitSeq(buf, []byte{'\n'}) {
			seq, ts, ok := proto.Parse(line)
			if !ok {
				if p == ProtoCentrifuge && bytes.Equal(line, []byte("{}")) {
					c.ws.WriteMessage(websocket.TextMessage, []byte("{}"))
				}
				if p == ProtoPusher && bytes.Contains(line, []byte(`"pusher:ping"`)) {
					c.ws.WriteMessage(websocket.TextMessage, []byte(`{"event":"pusher:pong","data":{}}`))
				}
				continue
			}
			if c.tally(seq, ts, now) {
				onUnique()
			}
		}
	}
}

// tally records one delivery; it reports whether it was a first delivery
// of a sequence number of the current round.
func (c *conn) tally(seq, ts, now int64) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	r := c.r
	if r == nil || seq < r.start || seq >= r.start+r.n {
		if r != nil {
			r.stale++
		}
		return false
	}
	i := seq - r.start
	w, b := i/64, uint64(1)<<(i%64)
	if r.seen[w]&b != 0 {
		r.dup++
		return false
	}
	r.seen[w] |= b
	if seq < r.maxSeen {
		r.ooo++
	}
	r.maxSeen = max(r.maxSeen, seq)
	r.unique++
	if r.firstNs == 0 {
		r.firstNs = now
	}
	r.lastNs = now
	if r.recordLat {
		r.lat = append(r.lat, uint32(min(max(now-ts, 0)/1000, 1<<32-1)))
	}
	return true
}

// arm starts a new round on c.
func (c *conn) arm(start, n int64, lat bool) {
	r := &round{start: start, n: n, seen: make([]uint64, (n+63)/64), maxSeen: start - 1, recordLat: lat, wire0: c.wire.Load()}
	if lat {
		r.lat = make([]uint32, 0, n)
	}
	c.mu.Lock()
	c.r = r
	c.mu.Unlock()
}

// collect ends c's round and adds it to res.
func (c *conn) collect(res *Result, h Hist) {
	c.mu.Lock()
	r := c.r
	c.r = nil
	closed := c.closed
	c.mu.Unlock()
	res.Conns++
	if closed {
		res.Closed++
	}
	if r == nil {
		return
	}
	res.WireBytes += c.wire.Load() - r.wire0
	res.Expected += r.n
	res.Delivered += r.unique
	var got int64
	for _, w := range r.seen {
		got += int64(bits.OnesCount64(w))
	}
	res.Missing += r.n - got
	if got < r.n {
		res.ConnsMissing++
	}
	res.Dup += r.dup
	res.OutOfOrder += r.ooo
	res.Stale += r.stale
	if r.firstNs != 0 && (res.FirstNs == 0 || r.firstNs < res.FirstNs) {
		res.FirstNs = r.firstNs
	}
	res.LastNs = max(res.LastNs, r.lastNs)
	for _, l := range r.lat {
		h.Add(uint64(l))
	}
}
