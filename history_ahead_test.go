package ws

import (
	"context"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/vortechron/go-ws/internal/wire"
	"github.com/vortechron/go-ws/internal/wstest"
)

// TestHistoryClientAheadOfNode: a client comes back with a position the
// node has not reached yet (it came from a node further ahead, and the
// publications are still on their way to this one). It waits until the
// node catches up, then gets the live publications after its position:
// none of those it has, none lost.
func TestHistoryClientAheadOfNode(t *testing.T) {
	b := NewMemoryBroker()
	ctx, cancel := context.WithCancel(context.Background())
	h := NewHub(ctx, b, nil, Config{History: func(string) HistoryOptions { return HistoryOptions{Size: 100} }})
	go h.Run()
	srv := httptest.NewServer(Handler(h, nil))
	t.Cleanup(func() { cancel(); <-h.Done(); srv.Close() })
	url := "ws" + strings.TrimPrefix(srv.URL, "http")

	first := wstest.Dial(t, url, nil)
	first.Send(map[string]any{"action": "subscribe", "channel": "feed"})
	sub := first.Expect(map[string]any{"type": "subscribed", "offset": float64(0)})
	epoch := sub["epoch"].(string)

	// Three publications reach the history but not yet this node.
	b.mu.Lock()
	handler := b.handlers["feed"]
	delete(b.handlers, "feed")
	b.mu.Unlock()
	var held [][]byte
	for i := 1; i <= 3; i++ {
		env := encodeEnvelope(&wire.Event{Kind: wire.Message, Channel: "feed", Data: []byte{'0' + byte(i)}}, "")
		pos, err := b.PublishHistory(ctx, "feed", env, HistoryOptions{Size: 100})
		require.NoError(t, err)
		held = append(held, appendPositioned(nil, pos, env))
	}
	b.mu.Lock()
	b.handlers["feed"] = handler
	b.mu.Unlock()

	ahead := wstest.Dial(t, url, nil)
	ahead.Send(map[string]any{"action": "subscribe", "channel": "feed", "since": map[string]any{"offset": 3, "epoch": epoch}})
	ahead.Expect(map[string]any{"type": "subscribed", "recovered": true, "offset": float64(0)})
	ahead.Quiet() // waiting for the node

	for _, p := range held { // the publications arrive
		handler(p)
	}
	for i := 1; i <= 3; i++ {
		first.Expect(map[string]any{"type": "message", "offset": float64(i)})
	}
	require.NoError(t, h.Publish(ctx, "feed", 4))
	first.Expect(map[string]any{"type": "message", "offset": float64(4)})
	ahead.Expect(map[string]any{"type": "message", "offset": float64(4), "message": float64(4)})
	ahead.Quiet()
}
