package ws

import (
	"context"
	"net"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/vortechron/go-ws/internal/frame"
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
func (d *discardConn) Close() error                     { return nil }

func benchHub(b *testing.B) *Hub {
	b.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	h := NewHub(ctx, nil, nil, Config{})
	go h.Run()
	b.Cleanup(func() { cancel(); <-h.Done() })
	return h
}

func fakeClient(h *Hub) *Client {
	return &Client{ID: newID(), hub: h, nc: &discardConn{}, writerDone: make(chan struct{}), release: func() {}}
}

// BenchmarkDeliver measures fan-out of one publication to n subscribers:
// decode the envelope, frame once, enqueue on each client, with writer
// goroutines draining into discarding connections.
func BenchmarkDeliver(b *testing.B) {
	for _, n := range []int{100, 1000, 10000} {
		b.Run(strconv.Itoa(n), func(b *testing.B) {
			h := benchHub(b)
			ch := newChannel("bench")
			for range n {
				ch.add(fakeClient(h))
			}
			env := encodeEnvelope(kindMessage, "", encodeMessage("bench", []byte(`{"seq":1,"body":"0123456789012345678901234567890123456789012345678901234567890123456789"}`)))
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				h.deliver(ch, env)
			}
			b.StopTimer()
			b.ReportMetric(float64(b.N)*float64(n)/b.Elapsed().Seconds(), "deliveries/s")
		})
	}
}

// BenchmarkPublishEncode measures what Publish does once per publication.
func BenchmarkPublishEncode(b *testing.B) {
	msg := map[string]any{"seq": 1, "body": "0123456789012345678901234567890123456789"}
	b.ReportAllocs()
	for range b.N {
		raw, _ := marshalMessage(msg)
		env := encodeEnvelope(kindMessage, "", encodeMessage("news", raw))
		_, _, body, _ := decodeEnvelope(env)
		_ = frame.Text(body)
	}
}

// BenchmarkSubscribeChurn measures adding and removing one subscriber on
// a channel that already has n (the copy-on-write snapshot update).
func BenchmarkSubscribeChurn(b *testing.B) {
	for _, n := range []int{100, 10000} {
		b.Run(strconv.Itoa(n), func(b *testing.B) {
			h := benchHub(b)
			ch := newChannel("bench")
			for range n {
				ch.add(fakeClient(h))
			}
			c := fakeClient(h)
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				ch.add(c)
				ch.remove(c)
			}
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
