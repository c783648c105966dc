package ws_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	ws "github.com/vortechron/go-ws"
)

// Guarantees of docs/recovery.md and docs/protocol.md that the other
// history tests leave out, end to end over WebSocket, on the in-memory
// backends and on Redis.

// shortHistory is a Config in which channel keeps its last 10
// publications for ttl, and no other channel has history.
func shortHistory(channel string, ttl time.Duration) ws.Config {
	return ws.Config{History: func(ch string) ws.HistoryOptions {
		if ch == channel {
			return ws.HistoryOptions{Size: 10, TTL: ttl}
		}
		return ws.HistoryOptions{}
	}}
}

// TestHistoryQuietChannelKeepsItsPosition proves docs/recovery.md: "The
// channel's epoch and latest offset are kept longer, at least a day
// (historyMetaTTL), so a client that was away from a quiet channel learns
// that it missed nothing instead of being told its history is lost", and
// that a subscribe with since is answered "recovered":false "when
// publications after it were already dropped (... or TTL passed)".
func TestHistoryQuietChannelKeepsItsPosition(t *testing.T) {
	const channel, ttl = "history-quiet", 100 * time.Millisecond
	cfg := shortHistory(channel, ttl)
	for _, be := range nodeBackends {
		t.Run(be.name, func(t *testing.T) {
			n := be.start(t, 1, cfg, userOptions())[0]
			ctx := context.Background()
			c := n.dial(t, "")
			first := positionOf(c.subscribeSince(channel, nil))
			publishN(t, n.hub, channel, 1, 3)
			last := position{Offset: c.expectMessages(channel, 1, 3, first.Offset+1), Epoch: first.Epoch}
			c.Conn.Close()
			n.waitChannels(t, 0) // the subscribes below read the history, not the node's latest

			// Nobody reads or publishes the channel for three times its
			// TTL (reading it would keep its position alive).
			<-time.After(3 * ttl) // the quiet spell's length, not a wait for an event
			res, err := n.hub.History(ctx, channel, ws.HistoryQuery{})
			require.NoError(t, err)
			require.Empty(t, res.Publications, "got %v, want the publications expired after TTL", res.Publications)

			behind := n.dial(t, "")
			m := behind.subscribeSince(channel, &position{Offset: last.Offset - 1, Epoch: last.Epoch})
			require.Equal(t, false, m["recovered"], "a position whose next publication expired: got %v, want recovered false", m)
			require.Equal(t, last, positionOf(m), "got %v, want the channel's position", m)
			behind.expectQuiet()
			behind.Conn.Close()
			n.waitChannels(t, 0)

			upToDate := n.dial(t, "")
			m = upToDate.subscribeSince(channel, &last)
			require.Equal(t, true, m["recovered"], "the last position of a quiet channel: got %v, want recovered true", m)
			require.Equal(t, last, positionOf(m), "got %v, want the same epoch and offset", m)
			upToDate.expectQuiet()
			publishN(t, n.hub, channel, 4, 4)
			upToDate.expectMessages(channel, 4, 4, last.Offset+1)
			upToDate.expectQuiet()
		})
	}
}

// TestHistoryFollowingNodeRecoversPastTTL proves the exception
// docs/recovery.md makes to "recovered":false once TTL passed: "a node
// that already follows the channel for other subscribers answers from the
// latest publications it holds itself ... a position whose publications
// TTL has just removed from the history can still be "recovered":true,
// with those publications, while hub.History from the same position
// returns ErrHistoryLost".
func TestHistoryFollowingNodeRecoversPastTTL(t *testing.T) {
	const channel, ttl = "history-followed", 100 * time.Millisecond
	cfg := shortHistory(channel, ttl)
	for _, be := range nodeBackends {
		t.Run(be.name, func(t *testing.T) {
			n := be.start(t, 1, cfg, userOptions())[0]
			keeper := n.dial(t, "") // keeps the node following the channel
			first := positionOf(keeper.subscribeSince(channel, nil))
			publishN(t, n.hub, channel, 1, 3)
			keeper.expectMessages(channel, 1, 3, first.Offset+1)

			<-time.After(3 * ttl) // the quiet spell's length, not a wait for an event
			since := ws.HistoryPosition{Offset: first.Offset + 1, Epoch: first.Epoch}
			_, err := n.hub.History(context.Background(), channel, ws.HistoryQuery{Since: &since})
			require.ErrorIs(t, err, ws.ErrHistoryLost, "the history after TTL, from offset %d", since.Offset)

			back := n.dial(t, "")
			m := back.subscribeSince(channel, &position{Offset: since.Offset, Epoch: since.Epoch})
			require.Equal(t, true, m["recovered"], "a position the node still holds: got %v, want recovered true", m)
			back.expectMessages(channel, 2, 3, since.Offset+1)
			back.expectQuiet()
		})
	}
}

// TestHistoryExceptSkipsOneOffset proves docs/recovery.md:
// "PublishOptions.Except skips one connection: that connection sees the
// offsets jump over the publication it did not get" (and is not reset
// for it), while every other subscriber gets it at its offset.
func TestHistoryExceptSkipsOneOffset(t *testing.T) {
	const channel = "history-except"
	for _, be := range nodeBackends {
		t.Run(be.name, func(t *testing.T) {
			var ids connIDs
			n := be.start(t, 1, historyConfig(ws.Config{}), ids.record(userOptions()))[0]
			ctx := context.Background()
			left, other := n.dial(t, ""), n.dial(t, "")
			start := positionOf(left.subscribeSince(channel, nil))
			require.Equal(t, start, positionOf(other.subscribeSince(channel, nil)))

			publishN(t, n.hub, channel, 1, 1)
			require.NoError(t, n.hub.PublishWith(ctx, channel, map[string]int{"n": 2}, ws.PublishOptions{Except: ids.id(t, left)}))
			publishN(t, n.hub, channel, 3, 3)

			other.expectMessages(channel, 1, 3, start.Offset+1)
			other.expectQuiet()
			left.expectMessages(channel, 1, 1, start.Offset+1)
			left.expectMessages(channel, 3, 3, start.Offset+3) // the next frame: no message 2, no reset
			left.expectQuiet()
		})
	}
}

// TestSinceWithoutHistoryIsIgnored proves docs/protocol.md: "A since on a
// channel without history is ignored: subscribed has no offset, epoch or
// recovered", and docs/recovery.md: with a broker that does not implement
// ws.HistoryBroker, "Config.History has no effect: no channel has history
// and clients see no offsets".
func TestSinceWithoutHistoryIsIgnored(t *testing.T) {
	type node func(t *testing.T) *testNode
	withBackend := func(be nodeBackend) node {
		return func(t *testing.T) *testNode { return be.start(t, 1, historyConfig(ws.Config{}), userOptions())[0] }
	}
	noHistoryBroker := func(t *testing.T) *testNode {
		n := newNode(t, newBus().broker(), ws.NewMemoryStorage(), historyConfig(ws.Config{}), userOptions())
		awaitReady(t, n)
		return n
	}
	tests := []struct {
		name    string
		node    node
		channel string
	}{
		{"plain channel, memory", withBackend(nodeBackends[0]), "news"},
		{"plain channel, redis", withBackend(nodeBackends[1]), "news"},
		{"broker without history", noHistoryBroker, "history-feed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n := tt.node(t)
			c := n.dial(t, "")
			c.send(map[string]any{"action": "subscribe", "channel": tt.channel, "since": position{Offset: 5, Epoch: "e1"}})
			m := c.next()
			require.Equal(t, map[string]any{"type": "subscribed", "channel": tt.channel}, m, "got %v, want a subscribed frame without a position", m)
			c.expectQuiet()
			require.NoError(t, n.hub.Publish(context.Background(), tt.channel, "hi"))
			m = c.next()
			require.Equal(t, map[string]any{"type": "message", "channel": tt.channel, "message": "hi"}, m, "got %v, want a message without an offset", m)
			_, err := n.hub.History(context.Background(), tt.channel, ws.HistoryQuery{})
			require.ErrorIs(t, err, ws.ErrNoHistory)
		})
	}
}

// TestHistoryKeepsNoWhispers proves docs/recovery.md: "Whispers and
// presence frames are not kept; they are delivered live only": on a
// history channel a whisper carries no offset, takes none from the
// publications, and is not recovered.
func TestHistoryKeepsNoWhispers(t *testing.T) {
	const channel = "history-whispers"
	for _, be := range nodeBackends {
		t.Run(be.name, func(t *testing.T) {
			n := be.start(t, 1, historyConfig(ws.Config{}), userOptions())[0]
			alice, bob := n.dial(t, "alice"), n.dial(t, "bob")
			start := positionOf(alice.subscribeSince(channel, nil))
			bob.subscribeSince(channel, nil)

			alice.send(map[string]any{"action": "whisper", "channel": channel, "event": "typing", "data": true})
			w := bob.expect(map[string]any{"type": "whisper", "channel": channel, "from": "alice"})
			require.NotContains(t, w, "offset", "got %v, want a whisper without an offset", w)
			publishN(t, n.hub, channel, 1, 1)
			bob.expectMessages(channel, 1, 1, start.Offset+1)
			alice.expectMessages(channel, 1, 1, start.Offset+1) // and not her own whisper
			bob.expectQuiet()

			res, err := n.hub.History(context.Background(), channel, ws.HistoryQuery{})
			require.NoError(t, err)
			require.Equal(t, []uint64{start.Offset + 1}, offsets(res.Publications), "got %v, want the publication alone", res.Publications)

			carol := n.dial(t, "carol")
			m := carol.subscribeSince(channel, &start)
			require.Equal(t, true, m["recovered"], "got %v", m)
			carol.expectMessages(channel, 1, 1, start.Offset+1)
			carol.expectQuiet()
		})
	}
}
