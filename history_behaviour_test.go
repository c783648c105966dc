package ws_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	ws "github.com/vortechron/go-ws"
)

// A presence channel can keep history too: subscribed (with the history
// position) comes first, whispers in flight never overtake it, and the
// member list and the recovered messages follow (in either order: the
// list is read after the subscribe, the messages are older).
func TestHistoryOnPresenceChannel(t *testing.T) {
	cfg := ws.Config{History: func(channel string) ws.HistoryOptions {
		if strings.HasPrefix(channel, "presence-") {
			return ws.HistoryOptions{Size: 100}
		}
		return ws.HistoryOptions{}
	}}
	n := newNode(t, nil, nil, cfg, presenceOptions(&errorLog{}))
	const room = "presence-chat"
	bob := n.dial(t, "bob")
	bobAt := positionOf(bob.subscribeSince(room, nil))
	bob.expectPresence(room, "members", "", []string{"bob"}, 1)
	publishN(t, n.hub, room, 1, 3)
	bob.expectMessages(room, 1, 3, bobAt.Offset+1)

	// bob whispers while alice subscribes with since.
	for range 50 {
		bob.send(map[string]any{"action": "whisper", "channel": room, "event": "typing", "data": true})
	}
	alice := n.dial(t, "alice")
	m := alice.subscribeSince(room, &position{Offset: bobAt.Offset + 1, Epoch: bobAt.Epoch})
	require.Equal(t, true, m["recovered"])
	// Then the member list and the two missed messages, in order, with
	// any of bob's whispers around them.
	members, offsets := 0, []any{}
	for members == 0 || len(offsets) < 2 {
		f := alice.next()
		switch f["type"] {
		case "whisper":
		case "presence":
			require.Equal(t, "members", f["event"])
			members++
		case "message":
			offsets = append(offsets, f["offset"])
		default:
			t.Fatalf("unexpected frame %v", f)
		}
	}
	require.Equal(t, 1, members)
	require.Equal(t, []any{float64(bobAt.Offset + 2), float64(bobAt.Offset + 3)}, offsets)
}

// Subscribing again to a history channel one is in answers with the
// channel's position and sends nothing again.
func TestHistoryRepeatedSubscribe(t *testing.T) {
	n := newNode(t, nil, nil, historyConfig(ws.Config{}), nil)
	c := n.dial(t, "")
	at := positionOf(c.subscribeSince("history-again", nil))
	publishN(t, n.hub, "history-again", 1, 2)
	c.expectMessages("history-again", 1, 2, at.Offset+1)
	m := c.subscribeSince("history-again", nil)
	require.Equal(t, position{Offset: at.Offset + 2, Epoch: at.Epoch}, positionOf(m))
	m = c.subscribeSince("history-again", &position{Offset: at.Offset, Epoch: at.Epoch})
	require.Equal(t, true, m["recovered"], "the subscription goes on: nothing was lost")
	c.expectQuiet()
	publishN(t, n.hub, "history-again", 3, 3)
	c.expectMessages("history-again", 3, 3, at.Offset+3)
}

// Unsubscribing while a backlog is being recovered stops it: after
// "unsubscribed" at most what was queued meanwhile (half the queue)
// arrives, then nothing.
func TestHistoryUnsubscribeStopsRecovery(t *testing.T) {
	const queue = 64
	n := newNode(t, nil, nil, historyConfig(ws.Config{SendQueueSize: queue}), nil)
	c := n.dial(t, "")
	at := positionOf(c.subscribeSince("history-stop", nil))
	c.Conn.Close()
	// 12 MB of backlog: more than the socket buffers hold, so the
	// recovery is still being paced when the unsubscribe arrives.
	pad := strings.Repeat("x", 4096)
	for i := 1; i <= 3000; i++ {
		require.NoError(t, n.hub.Publish(context.Background(), "history-stop", map[string]any{"n": i, "pad": pad}))
	}

	r := n.dial(t, "")
	m := r.subscribeSince("history-stop", &at)
	require.Equal(t, true, m["recovered"])
	for i := 1; i <= 10; i++ {
		r.expect(map[string]any{"type": "message", "offset": float64(at.Offset + uint64(i))})
	}
	r.send(map[string]any{"action": "unsubscribe", "channel": "history-stop"})
	got := 10
	for {
		f := r.next()
		if f["type"] == "unsubscribed" {
			break
		}
		require.Equal(t, "message", f["type"], "got %v", f)
		got++
	}
	require.Less(t, got, 3000, "the recovery went on after the unsubscribe")
	after := 0
	r.send(map[string]any{"action": "ping"})
	for {
		f := r.next()
		if f["type"] == "pong" {
			break
		}
		require.Equal(t, "message", f["type"], "got %v", f)
		after++
	}
	require.LessOrEqual(t, after, queue/2, "messages after unsubscribed")
	require.NoError(t, n.hub.Publish(context.Background(), "history-stop", 3001))
	r.expectQuiet()
	require.Eventually(t, func() bool { return n.hub.Stats().Subscriptions == 0 }, 5*time.Second, time.Millisecond)
}
