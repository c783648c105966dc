package ws

import (
	"context"
	"net"
	"runtime"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/vortechron/go-ws/internal/wire"
)

// discardConn is a net.Conn whose writes succeed at once; it isolates the
// hub's own cost from the kernel's.
type discardConn struct {
	net.Conn
	mu sync.Mutex
	n  int64
}

func (d *discardConn) Write(p []byte) (int, error) {
	d.mu.Lock()
	d.n += int64(len(p))
	d.mu.Unlock()
	return len(p), nil
}
func (d *discardConn) SetWriteDeadline(time.Time) error { return nil }
func (d *discardConn) SetReadDeadline(time.Time) error  { return nil }
func (d *discardConn) Close() error                     { return nil }

func benchHub(b *testing.B) *Hub {
	b.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	h := NewHub(ctx, nil, nil, Config{})
	go h.Run()
	b.Cleanup(func() { cancel(); <-h.Done() })
	// A post reaches a shard only once Run has started it.
	for _, s := range h.shards {
		for {
			s.mu.Lock()
			live := s.live
			s.mu.Unlock()
			if live {
				break
			}
			runtime.Gosched()
		}
	}
	return h
}

// fakeClient is a client of h on shard i, writing to a discardConn.
func fakeClient(h *Hub, i int) *Client {
	c := &Client{ID: h.newClientID(), hub: h, nc: &discardConn{}}
	c.out.init(h, c.ID, c.nc, h.shards[i%len(h.shards)])
	c.released.Store(true) // it never took an admission slot
	return c
}

// BenchmarkDeliver measures fan-out of one publication to n subscribers:
// frame once, post to the shards, enqueue on each client and drain into
// discarding connections (through each client's goroutine writer, as for
// connections without a raw descriptor). It publishes in rounds of 100,
// which the send queue holds, and spins until every byte of a round is
// written before the next, so that no -benchtime outruns the writers and
// drops the subscribers as slow consumers.
func BenchmarkDeliver(b *testing.B) {
	for _, n := range []int{100, 1000, 10000} {
		b.Run(strconv.Itoa(n), func(b *testing.B) {
			h := benchHub(b)
			ch := newChannel("bench", len(h.shards))
			conns := make([]*discardConn, n)
			for i := range n {
				c := fakeClient(h, i)
				conns[i] = c.nc.(*discardConn)
				ch.add(c)
			}
			env := encodeEnvelope(&wire.Event{Kind: wire.Message, Channel: "bench",
				Data: []byte(`{"seq":1,"body":"0123456789012345678901234567890123456789012345678901234567890123456789"}`)}, "")
			ev, _, _ := decodeEnvelope("bench", env)
			want := int64(len(encodeFrame(nativeProtocol{}, &ev)))
			b.ReportAllocs()
			b.ResetTimer()
			for sent := 0; sent < b.N; {
				round := min(b.N-sent, 100)
				for range round {
					h.deliver(ch, env)
				}
				sent += round
				awaitBytes(b, h, conns, want*int64(sent))
			}
			b.StopTimer()
			b.ReportMetric(float64(b.N)*float64(n)/b.Elapsed().Seconds(), "deliveries/s")
		})
	}
}

// awaitBytes spins until every conn has been written total bytes. It
// fails if the hub dropped a subscriber as a slow consumer, whose bytes
// would never all come.
func awaitBytes(b *testing.B, h *Hub, conns []*discardConn, total int64) {
	for _, d := range conns {
		for {
			d.mu.Lock()
			done := d.n == total
			d.mu.Unlock()
			if done {
				break
			}
			if dropped := h.Stats().SlowConsumers; dropped > 0 {
				b.Fatalf("%d of %d subscribers were dropped as slow consumers", dropped, len(conns))
			}
			runtime.Gosched()
		}
	}
}

// BenchmarkPublishEncode measures what a publication costs before
// fan-out: Publish's encoding and, on each node, decoding the envelope
// and framing it for the native protocol.
func BenchmarkPublishEncode(b *testing.B) {
	msg := map[string]any{"seq": 1, "body": "0123456789012345678901234567890123456789"}
	b.ReportAllocs()
	for range b.N {
		raw, _ := marshalMessage(msg)
		env := encodeEnvelope(&wire.Event{Kind: wire.Message, Channel: "news", Data: raw}, "")
		ev, _, _ := decodeEnvelope("news", env)
		_ = encodeFrame(nativeProtocol{}, &ev)
	}
}

// BenchmarkSubscribeChurn measures adding and removing one subscriber on
// a channel that already has n (the copy-on-write snapshot update).
func BenchmarkSubscribeChurn(b *testing.B) {
	for _, n := range []int{100, 10000} {
		b.Run(strconv.Itoa(n), func(b *testing.B) {
			h := benchHub(b)
			ch := newChannel("bench", len(h.shards))
			for i := range n {
				ch.add(fakeClient(h, i))
			}
			c := fakeClient(h, 0)
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				ch.add(c)
				ch.remove(c)
			}
		})
	}
}

// BenchmarkChannelBuild measures subscribing n clients to one channel, one
// after the other, as a big channel fills up: each add costs O(1)
// amortised, so the per-subscriber cost stays flat as n grows.
func BenchmarkChannelBuild(b *testing.B) {
	for _, n := range []int{1000, 100000} {
		b.Run(strconv.Itoa(n), func(b *testing.B) {
			h := benchHub(b)
			clients := make([]*Client, n)
			for i := range clients {
				clients[i] = fakeClient(h, 0)
			}
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				ch := newChannel("bench", 1)
				for _, c := range clients {
					ch.add(c)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/subscriber")
		})
	}
}

// BenchmarkClientFrame measures the hot path of one client frame: decode
// the JSON and validate a whisper's fields.
func BenchmarkClientFrame(b *testing.B) {
	raw := []byte(`{"action":"whisper","channel":"presence-room-1","event":"typing","data":{"isTyping":true}}`)
	b.ReportAllocs()
	for range b.N {
		in, err := decodeInbound(raw)
		if err != nil || ValidChannelName(in.Channel) != nil {
			b.Fatal("bad frame")
		}
	}
}
