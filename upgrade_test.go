package ws_test

import (
	"context"
	"fmt"
	"log/slog"
	"testing"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"
	ws "github.com/vortechron/go-ws"
	"github.com/vortechron/go-ws/internal/redistest"
)

// TestOlderReleaseOnTheBrokerIsNamed: a node of an older ws release
// (envelope version 1, what releases before the wire-codec seam
// published) on the same Redis as this one, as during a rolling upgrade.
// Its publications are dropped with a log line that says what is wrong
// and what to do (once a minute at most, as they come at that node's
// publication rate), and the node goes on delivering its own.
func TestOlderReleaseOnTheBrokerIsNamed(t *testing.T) {
	addr := redistest.Addr(t)
	prefix := redistest.Prefix(t)
	redistest.CleanupKeys(t, addr, prefix)
	rec := &recordHandler{}
	n := redisNodes(t, 1, ws.RedisOptions{Addrs: []string{addr}, KeyPrefix: prefix}, ws.Config{Logger: slog.New(rec)}, nil)[0]
	c := n.dial(t, "")
	c.subscribe("news")

	rc := redis.NewClient(&redis.Options{Addr: addr})
	t.Cleanup(func() { _ = rc.Close() })
	ctx := context.Background()
	// What a node of the older release published for Publish(ctx, "news",
	// {"from":"old"}): version, kind, the length of the connection to
	// skip, then the client frame.
	old := "\x01m\x00" + `{"type":"message","channel":"news","message":{"from":"old"}}`
	for range 3 {
		got, err := rc.Publish(ctx, prefix+"ch:news", old).Result()
		require.NoError(t, err)
		require.EqualValues(t, 1, got, "the node's subscription to news on Redis")
	}
	require.NoError(t, n.hub.Publish(ctx, "news", map[string]string{"from": "new"}))

	// Redis hands them to the node in that order, and the node logs a
	// payload it drops before it reads the next: by the time the client
	// gets the last publication, the others were counted and logged.
	require.Equal(t, map[string]any{"from": "new"}, c.expect(map[string]any{"type": "message"})["message"])
	require.EqualValues(t, 3, n.hub.Stats().Errors["protocol"], "each dropped payload is counted")
	// One line a minute at most, however many come: the other two were
	// counted and not logged.
	lines := rec.withMessage("ws: dropped broker payload")
	require.Len(t, lines, 1)
	r := lines[0]
	msg := fmt.Sprint(recordAttrs(r)["err"])
	require.Equal(t, slog.LevelWarn, r.Level)
	require.Contains(t, msg, "envelope version 1: from a node running another ws release, older than this node's, which reads version 2 only")
	require.Contains(t, msg, "every node on one broker must run a release with the same envelope version")
	require.Equal(t, "news", recordAttrs(r)["channel"])
	require.EqualValues(t, 1, recordAttrs(r)["dropped"])
}

// TestNewerEnvelopeVersionIsNamed: the same from the other side, a node
// of a later release whose envelope version this node does not read.
func TestNewerEnvelopeVersionIsNamed(t *testing.T) {
	rec := &recordHandler{}
	b := ws.NewMemoryBroker()
	n := newNode(t, b, nil, ws.Config{Logger: slog.New(rec)}, nil)
	c := n.dial(t, "")
	c.subscribe("news")
	require.NoError(t, b.Publish(context.Background(), "news", []byte("\x03m\x00\x00\x00\x00\x00\x00\x00\x00\x00{}")))
	require.NoError(t, n.hub.Publish(context.Background(), "news", "after"))
	require.Equal(t, "after", c.expect(map[string]any{"type": "message"})["message"])
	lines := rec.withMessage("ws: dropped broker payload")
	require.Len(t, lines, 1)
	msg := fmt.Sprint(recordAttrs(lines[0])["err"])
	require.Contains(t, msg, "envelope version 3: from a node running another ws release, newer than this node's")
}
