package ws_test

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/require"

	ws "github.com/vortechron/go-ws"
)

// historyFrame is the part of a server frame these tests look at.
type historyFrame struct {
	Type      string          `json:"type"`
	Channel   string          `json:"channel"`
	Message   json.RawMessage `json:"message"`
	Offset    *uint64         `json:"offset"`
	Epoch     string          `json:"epoch"`
	Recovered *bool           `json:"recovered"`
	Code      string          `json:"code"`
}

// follower reads a history channel on one connection, off the test's
// goroutine, and keeps the offsets and messages it got in order.
type follower struct {
	conn *websocket.Conn
	sub  historyFrame // the subscribed frame
	got  []uint64     // offsets of the messages, in the order received
	msgs []json.RawMessage
	err  error
}

// follow dials url, subscribes to channel (with since unless nil) and
// reads until a message with offset until has arrived, or it fails.
func follow(url, channel string, since *position, until uint64) *follower {
	f := &follower{}
	f.conn, _, f.err = websocket.DefaultDialer.Dial(url, nil)
	if f.err != nil {
		return f
	}
	defer f.conn.Close()
	sub := map[string]any{"action": "subscribe", "channel": channel}
	if since != nil {
		sub["since"] = since
	}
	if f.err = f.conn.WriteJSON(sub); f.err != nil {
		return f
	}
	for {
		_ = f.conn.SetReadDeadline(time.Now().Add(20 * time.Second))
		var fr historyFrame
		if f.err = f.conn.ReadJSON(&fr); f.err != nil {
			return f
		}
		switch {
		case fr.Type == "subscribed" && f.sub.Type == "":
			f.sub = fr
		case fr.Type == "message" && fr.Offset != nil:
			f.got = append(f.got, *fr.Offset)
			f.msgs = append(f.msgs, fr.Message)
			if *fr.Offset >= until {
				return f
			}
		default:
			f.err = fmt.Errorf("unexpected frame %+v", fr)
			return f
		}
	}
}

// checkFollowed requires f to have got every offset after from up to
// until exactly once, in order, each with the message the history keeps.
func checkFollowed(t *testing.T, name string, f *follower, from, until uint64, want map[uint64]json.RawMessage) {
	t.Helper()
	require.NoError(t, f.err, "%s", name)
	require.Equal(t, "subscribed", f.sub.Type, "%s", name)
	require.Len(t, f.got, int(until-from), "%s: got %d messages, want offsets %d..%d", name, len(f.got), from+1, until)
	for i, off := range f.got {
		require.Equal(t, from+1+uint64(i), off, "%s: message %d has offset %d, want %d (a gap, a duplicate or out of order)", name, i, off, from+1+uint64(i))
		require.JSONEq(t, string(want[off]), string(f.msgs[i]), "%s: message at offset %d", name, off)
	}
}

// TestHistoryRecoveryRacesPublications: 20 clients subscribe with since
// while 10,000 messages are published as fast as possible; each gets
// every publication after its since exactly once, in offset order, the
// recovered ones and the live ones joined without a gap or a duplicate.
func TestHistoryRecoveryRacesPublications(t *testing.T) {
	for _, be := range historyBackends() {
		t.Run(be.name, func(t *testing.T) {
			const total, clients, publishers = 10_000, 20, 4
			nodes := 1
			if be.name == "redis" {
				nodes = 2
			}
			// Under -race on a shared machine a reader may fall behind
			// the live stream for a while: a deep queue keeps the test
			// about ordering, not about slow consumers.
			cfg := historyConfig(ws.Config{SendQueueSize: 1 << 16, SendQueueBytes: 64 << 20})
			ns := be.nodes(t, nodes, cfg)
			const channel = "history-race"
			ctx := context.Background()
			start, err := ns[0].hub.History(ctx, channel, ws.HistoryQuery{Limit: 1})
			require.NoError(t, err)
			epoch := start.Latest.Epoch
			require.Equal(t, uint64(0), start.Latest.Offset)

			// The publishers count what they published; client k starts once
			// k*total/(clients+1) are, with since half of that.
			var published atomic.Int64
			marks := make([]chan struct{}, clients)
			for k := range marks {
				marks[k] = make(chan struct{})
			}
			var markOnce [clients]sync.Once
			pubErr := make(chan error, publishers)
			for g := range publishers {
				go func() {
					for i := range total / publishers {
						if err := ns[0].hub.Publish(ctx, channel, map[string]int{"g": g, "i": i}); err != nil {
							pubErr <- err
							return
						}
						n := published.Add(1)
						for k := range clients {
							if n >= int64(k*total/(clients+1)) {
								markOnce[k].Do(func() { close(marks[k]) })
							}
						}
					}
					pubErr <- nil
				}()
			}
			results := make([]*follower, clients)
			sinces := make([]uint64, clients)
			var wg sync.WaitGroup
			for k := range clients {
				wg.Add(1)
				go func() {
					defer wg.Done()
					<-marks[k]
					sinces[k] = uint64(published.Load() / 2)
					url := ns[k%len(ns)].url
					results[k] = follow(url, channel, &position{Offset: sinces[k], Epoch: epoch}, total)
				}()
			}
			for range publishers {
				require.NoError(t, <-pubErr)
			}
			wg.Wait()

			all, err := ns[0].hub.History(ctx, channel, ws.HistoryQuery{})
			require.NoError(t, err)
			require.Equal(t, uint64(total), all.Latest.Offset)
			want := make(map[uint64]json.RawMessage, total)
			next := make([]int, publishers) // each publisher's messages keep their order too
			for _, p := range all.Publications {
				want[p.Offset] = p.Message
				var m struct{ G, I int }
				require.NoError(t, json.Unmarshal(p.Message, &m))
				require.Equal(t, next[m.G], m.I, "publisher %d's messages out of order at offset %d", m.G, p.Offset)
				next[m.G]++
			}
			for k, f := range results {
				require.Equal(t, true, f.sub.Recovered != nil && *f.sub.Recovered, "client %d (since %d): %+v", k, sinces[k], f.sub)
				checkFollowed(t, fmt.Sprintf("client %d (since %d)", k, sinces[k]), f, sinces[k], total, want)
			}
			var recovered int64
			for _, n := range ns {
				recovered += n.hub.Stats().Recovered
				require.Zero(t, n.hub.Stats().SlowConsumers)
			}
			require.Equal(t, int64(clients), recovered)
		})
	}
}

// TestHistoryRecoversBacklogLargerThanQueue: a client that comes back to
// a backlog of ten times the default send queue, with the default limits,
// gets all of it, paced as it reads, and is not cut as a slow consumer.
func TestHistoryRecoversBacklogLargerThanQueue(t *testing.T) {
	for _, be := range historyBackends() {
		t.Run(be.name, func(t *testing.T) {
			const backlog = 10 * 1024 // ten times Config.SendQueueSize's default
			n := be.nodes(t, 1, historyConfig(ws.Config{}))[0]
			const channel = "history-backlog"
			c := n.dial(t, "")
			start := positionOf(c.subscribeSince(channel, nil))
			c.Conn.Close()

			ctx := context.Background()
			body := make([]byte, 200) // 10240 frames of ~300 bytes: over SendQueueBytes' 4 MiB as well
			for i := range body {
				body[i] = 'x'
			}
			for i := 1; i <= backlog; i++ {
				require.NoError(t, n.hub.Publish(ctx, channel, map[string]any{"n": i, "pad": string(body)}))
			}
			want := map[uint64]json.RawMessage{}
			all, err := n.hub.History(ctx, channel, ws.HistoryQuery{})
			require.NoError(t, err)
			for _, p := range all.Publications {
				want[p.Offset] = p.Message
			}
			f := follow(n.url, channel, &start, start.Offset+backlog)
			require.Equal(t, true, f.sub.Recovered != nil && *f.sub.Recovered, "got %+v", f.sub)
			checkFollowed(t, "backlog", f, start.Offset, start.Offset+backlog, want)
			st := n.hub.Stats()
			require.Zero(t, st.SlowConsumers)
			require.Equal(t, int64(1), st.Recovered)
		})
	}
}
