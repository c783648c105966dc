package pusher_test

import (
	"context"
	"runtime"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	ws "github.com/vortechron/go-ws"
)

// reusingBroker is the in-memory broker handing every handler the
// payload in one buffer, overwritten once the handlers return, as a
// broker that reads into one buffer may: MessageBroker.Subscribe says a
// handler "must not keep payload after it returns unless it copies it".
type reusingBroker struct {
	*ws.MemoryBroker
	mu  sync.Mutex
	buf []byte // guarded by mu
}

func (b *reusingBroker) Publish(ctx context.Context, channel string, payload []byte) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf = append(b.buf[:0], payload...)
	err := b.MemoryBroker.Publish(ctx, channel, b.buf)
	for i := range b.buf {
		b.buf[i] = 'X'
	}
	return err
}

// TestPublicationsOutliveTheBrokersBuffer: a channel's publications are
// encoded for a protocol when the delivery finds subscribers of it, and
// a Pusher client that subscribes while a publication waits for its
// write shard gets that publication encoded later, after the broker's
// handler returned. What it gets must still be the publication, not
// what a broker that reuses its buffer wrote there since.
//
// Native subscribers on every write shard keep each delivery posted to
// the shard the Pusher client lands on, and in every round a burst of
// publications runs while the Pusher client subscribes, so that the
// subscribe may fall between a delivery's encoding and its fan-out.
func TestPublicationsOutliveTheBrokersBuffer(t *testing.T) {
	const rounds, burst = 300, 40
	// The native subscribers never read: their queues hold every round.
	cfg := ws.Config{SendQueueSize: rounds * burst * 2, SendQueueBytes: 64 << 20}
	n := newNode(t, &reusingBroker{MemoryBroker: ws.NewMemoryBroker()}, nil, cfg, userOptions(), nil)
	for range runtime.GOMAXPROCS(0) { // one per write shard (round robin)
		c := n.dialNative(t, "")
		c.send(map[string]any{"action": "subscribe", "channel": "news"})
		c.expect("subscribed")
	}
	p := n.dial(t, nil)

	const text = "a publication the broker's buffer held"
	start, published := make(chan struct{}), make(chan error, 1)
	go func() {
		defer close(published)
		for i := 0; ; {
			if _, ok := <-start; !ok {
				return
			}
			var err error
			for range burst {
				if err = n.hub.Publish(context.Background(), "news", map[string]any{"n": i, "text": text}); err != nil {
					break
				}
				i++
			}
			published <- err
		}
	}()
	defer close(start)

	// check reads frames until one with event want, checking every
	// publication on the way.
	seen := 0
	check := func(want string) {
		t.Helper()
		for {
			f := p.next()
			if f["event"] == want {
				return
			}
			require.Equal(t, "message", f["event"], "frame %v", f)
			d, ok := f["data"].(map[string]any)
			require.True(t, ok, "a publication's data is the object published, got %v", f)
			require.Equal(t, text, d["text"], "frame %v", f)
			seen++
		}
	}
	for range rounds {
		start <- struct{}{}
		p.send("pusher:subscribe", map[string]any{"channel": "news"}, "")
		check("pusher_internal:subscription_succeeded")
		require.NoError(t, <-published)
		p.send("pusher:unsubscribe", map[string]any{"channel": "news"}, "")
		p.send("pusher:ping", map[string]any{}, "")
		check("pusher:pong")
	}
	t.Logf("%d subscribes, %d publications checked", rounds, seen)
}
