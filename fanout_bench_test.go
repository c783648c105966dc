package ws

import (
	"net"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/vortechron/go-ws/internal/wire"
)

// signalConn is a net.Conn whose writes succeed at once; it signals once
// its bytes reach a target, so a benchmark waits without spinning and its
// CPU time is the hub's work alone.
type signalConn struct {
	net.Conn
	mu      sync.Mutex
	n       int64
	target  int64
	reached chan struct{}
}

func (c *signalConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	c.n += int64(len(p))
	if c.reached != nil && c.n >= c.target {
		close(c.reached)
		c.reached = nil
	}
	c.mu.Unlock()
	return len(p), nil
}
func (c *signalConn) SetWriteDeadline(time.Time) error { return nil }
func (c *signalConn) SetReadDeadline(time.Time) error  { return nil }
func (c *signalConn) Close() error                     { return nil }

// expect arms the signal for want more bytes.
func (c *signalConn) expect(want int64) <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	ch := make(chan struct{})
	c.target = c.n + want
	c.reached = ch
	return ch
}

// BenchmarkFanOut measures fan-out of publications on a channel without
// history to n subscribers, as BenchmarkDeliver does, in rounds of 100
// publications (within the send queue's bound), waiting for every byte
// without spinning: its CPU time per delivery is comparable across
// builds on a busy machine.
func BenchmarkFanOut(b *testing.B) {
	for _, n := range []int{100, 1000, 10000} {
		b.Run(strconv.Itoa(n), func(b *testing.B) {
			h := benchHub(b)
			ch := newChannel("bench", len(h.shards))
			conns := make([]*signalConn, n)
			for i := range n {
				conns[i] = &signalConn{}
				c := &Client{ID: h.newClientID(), hub: h, nc: conns[i]}
				c.out.init(h, c.ID, c.nc, h.shards[i%len(h.shards)])
				c.released.Store(true)
				ch.add(c)
			}
			env := encodeEnvelope(&wire.Event{Kind: wire.Message, Channel: "bench",
				Data: []byte(`{"seq":1,"body":"0123456789012345678901234567890123456789012345678901234567890123456789"}`)}, "")
			ev, _, _ := decodeEnvelope("bench", env)
			size := int64(len(encodeFrame(nativeProtocol{}, &ev)))
			b.ReportAllocs()
			b.ResetTimer()
			for left := b.N; left > 0; {
				round := min(left, 100)
				left -= round
				waits := make([]<-chan struct{}, n)
				for i, c := range conns {
					waits[i] = c.expect(size * int64(round))
				}
				for range round {
					h.deliver(ch, env)
				}
				for _, w := range waits {
					<-w
				}
			}
		})
	}
}
