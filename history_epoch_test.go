package ws_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	ws "github.com/vortechron/go-ws"
	"github.com/vortechron/go-ws/internal/redistest"
)

// When the history is lost its epoch changes: a client that comes back
// with a position of the old epoch is told recovered:false, and one that
// stays subscribed through the loss gets a fresh subscribed frame.

func TestHistoryEpochChangesWhenHubRestarts(t *testing.T) {
	cfg := historyConfig(ws.Config{})
	first := newNode(t, nil, nil, cfg, nil)
	c := first.dial(t, "")
	pos := positionOf(c.subscribeSince("history-restart", nil))
	publishN(t, first.hub, "history-restart", 1, 3)
	pos.Offset = c.expectMessages("history-restart", 1, 3, 1)
	first.stop()

	second := newNode(t, nil, nil, cfg, nil)
	again := second.dial(t, "")
	m := again.subscribeSince("history-restart", &pos)
	require.Equal(t, false, m["recovered"], "got %v", m)
	require.NotEqual(t, pos.Epoch, m["epoch"], "a new hub's history has a new epoch")
	require.Equal(t, float64(0), m["offset"])
	publishN(t, second.hub, "history-restart", 4, 4)
	again.expectMessages("history-restart", 4, 4, 1)
}

func TestHistoryEpochChangesWhenRedisIsFlushed(t *testing.T) {
	srv := redistest.StartServer(t)
	n := redisNodes(t, 1, ws.RedisOptions{Addrs: []string{srv.Addr}}, historyConfig(ws.Config{}), nil)[0]
	c := n.dial(t, "")
	pos := positionOf(c.subscribeSince("history-flush", nil))
	publishN(t, n.hub, "history-flush", 1, 3)
	pos.Offset = c.expectMessages("history-flush", 1, 3, 1)
	c.Conn.Close()
	n.waitConnections(t, 0)

	require.NoError(t, srv.FlushAll(context.Background()))
	again := n.dial(t, "")
	m := again.subscribeSince("history-flush", &pos)
	require.Equal(t, false, m["recovered"], "got %v", m)
	require.NotEqual(t, pos.Epoch, m["epoch"], "history flushed from Redis has a new epoch")
	require.Equal(t, float64(0), m["offset"])
	publishN(t, n.hub, "history-flush", 4, 4)
	again.expectMessages("history-flush", 4, 4, 1)
}

// TestHistoryResetsSubscribersWhenRedisIsFlushed: a client subscribed
// while Redis loses the history is told so, in order, by a fresh
// subscribed frame with recovered:false, and goes on from there.
func TestHistoryResetsSubscribersWhenRedisIsFlushed(t *testing.T) {
	srv := redistest.StartServer(t)
	nodes := redisNodes(t, 2, ws.RedisOptions{Addrs: []string{srv.Addr}}, historyConfig(ws.Config{}), nil)
	c := nodes[1].dial(t, "")
	pos := positionOf(c.subscribeSince("history-live", nil))
	publishN(t, nodes[0].hub, "history-live", 1, 2)
	c.expectMessages("history-live", 1, 2, pos.Offset+1)

	require.NoError(t, srv.FlushAll(context.Background()))
	publishN(t, nodes[0].hub, "history-live", 3, 3)
	m := c.expect(map[string]any{"type": "subscribed", "channel": "history-live", "recovered": false})
	reset := positionOf(m)
	require.NotEqual(t, pos.Epoch, reset.Epoch)
	require.Equal(t, uint64(1), reset.Offset, "the publication that showed the loss is where the channel stands")
	publishN(t, nodes[0].hub, "history-live", 4, 5)
	c.expectMessages("history-live", 4, 5, 2)
	c.expectQuiet()
	require.Equal(t, int64(1), nodes[1].hub.Stats().HistoryResets)
}

// TestHistoryNodeReadsBackWhatItsBrokerMissed: node A's path to Redis is
// cut while node B publishes; once A's broker is back, its subscriber
// gets the publications it missed, in order, with nothing published after
// to reveal the gap, and without reconnecting.
func TestHistoryNodeReadsBackWhatItsBrokerMissed(t *testing.T) {
	addr := redistest.Addr(t)
	prefix := redistest.Prefix(t)
	redistest.CleanupKeys(t, addr, prefix)
	proxy := redistest.StartProxy(t, addr)
	cfg := historyConfig(ws.Config{})
	a := redisNodes(t, 1, ws.RedisOptions{Addrs: []string{proxy.Addr}, KeyPrefix: prefix, HealthInterval: 100 * time.Millisecond}, cfg, nil)[0]
	b := redisNodes(t, 1, ws.RedisOptions{Addrs: []string{addr}, KeyPrefix: prefix}, cfg, nil)[0]

	c := a.dial(t, "")
	pos := positionOf(c.subscribeSince("history-cut", nil))
	publishN(t, b.hub, "history-cut", 1, 2)
	c.expectMessages("history-cut", 1, 2, pos.Offset+1)

	proxy.Cut()
	require.Eventually(t, func() bool { return !a.hub.Health().BrokerHealthy }, 10*time.Second, 5*time.Millisecond)
	publishN(t, b.hub, "history-cut", 3, 7)
	proxy.Restore()
	c.expectMessages("history-cut", 3, 7, pos.Offset+3)
	require.Eventually(t, func() bool { return b.hub.Health().BrokerHealthy }, 10*time.Second, 5*time.Millisecond)
	publishN(t, b.hub, "history-cut", 8, 8)
	c.expectMessages("history-cut", 8, 8, pos.Offset+8)
	c.expectQuiet()
	require.Equal(t, int64(1), a.hub.Stats().ConnectionsTotal, "the client never reconnected")
}

// TestHistoryEpochChangesWhenRedisRestartsFromSnapshot: Redis restarts
// from a snapshot taken before the last publications, so its history
// lacks offsets that clients saw. The epoch changes: a client coming back
// with such an offset is told recovered:false, and one that stayed
// subscribed is reset.
func TestHistoryEpochChangesWhenRedisRestartsFromSnapshot(t *testing.T) {
	srv := redistest.StartServer(t)
	nodes := redisNodes(t, 2, ws.RedisOptions{Addrs: []string{srv.Addr}, HealthInterval: 100 * time.Millisecond}, historyConfig(ws.Config{}), nil)
	stays := nodes[0].dial(t, "")
	goes := nodes[1].dial(t, "")
	pos := positionOf(stays.subscribeSince("history-snap", nil))
	goes.subscribeSince("history-snap", nil)
	publishN(t, nodes[0].hub, "history-snap", 1, 3)
	rc := redis.NewClient(&redis.Options{Addr: srv.Addr})
	require.NoError(t, rc.Save(context.Background()).Err()) // the snapshot has offsets 1..3
	require.NoError(t, rc.Close())
	publishN(t, nodes[0].hub, "history-snap", 4, 5)
	stays.expectMessages("history-snap", 1, 5, pos.Offset+1)
	last := goes.expectMessages("history-snap", 1, 5, pos.Offset+1)
	goes.Conn.Close()

	srv.Kill()
	require.NoError(t, srv.Restart())
	require.Eventually(t, func() bool { return nodes[0].hub.Health().BrokerHealthy && nodes[1].hub.Health().BrokerHealthy },
		20*time.Second, 5*time.Millisecond)
	publishN(t, nodes[0].hub, "history-snap", 6, 6)
	m := stays.expect(map[string]any{"type": "subscribed", "channel": "history-snap", "recovered": false})
	require.NotEqual(t, pos.Epoch, m["epoch"], "a restarted Redis whose history lacks offsets handed out starts a new epoch")

	back := nodes[1].dial(t, "")
	m = back.subscribeSince("history-snap", &position{Offset: last, Epoch: pos.Epoch})
	require.Equal(t, false, m["recovered"], "got %v", m)
	require.NotEqual(t, pos.Epoch, m["epoch"])
}

// TestHistoryEpochChangesWhenItsHashIsLostAlone: the channel's meta hash
// goes (evicted, deleted by hand) while the marker of its last run_id
// check still lives. Neither a publication nor a read goes on with the
// old epoch from the marker and offsets counted again from 1: both start
// a new epoch, as when the whole history is lost.
func TestHistoryEpochChangesWhenItsHashIsLostAlone(t *testing.T) {
	addr := redistest.Addr(t)
	prefix := redistest.Prefix(t)
	redistest.CleanupKeys(t, addr, prefix)
	n := redisNodes(t, 1, ws.RedisOptions{Addrs: []string{addr}, KeyPrefix: prefix}, historyConfig(ws.Config{}), nil)[0]
	rc := redis.NewClient(&redis.Options{Addr: addr})
	t.Cleanup(func() { rc.Close() })
	ctx := context.Background()
	meta, marker := prefix+"hmeta:{%s}", prefix+"hchk:{%s}"
	loseHash := func(channel string) {
		t.Helper()
		// A check marker lives 10 ms; set one that outlives the test's
		// next step, as a check made a moment ago leaves.
		epoch, err := rc.HGet(ctx, fmt.Sprintf(meta, channel), "e").Result()
		require.NoError(t, err, "the meta hash holds the epoch")
		require.NoError(t, rc.Set(ctx, fmt.Sprintf(marker, channel), epoch, time.Minute).Err())
		require.Equal(t, int64(1), rc.Del(ctx, fmt.Sprintf(meta, channel)).Val(), "the meta hash exists")
	}

	c := n.dial(t, "")
	pos := positionOf(c.subscribeSince("history-lone", nil))
	publishN(t, n.hub, "history-lone", 1, 3)
	c.expectMessages("history-lone", 1, 3, pos.Offset+1)
	loseHash("history-lone")
	publishN(t, n.hub, "history-lone", 4, 4)
	m := c.expect(map[string]any{"type": "subscribed", "channel": "history-lone", "recovered": false})
	require.NotEqual(t, pos.Epoch, m["epoch"], "a publication after the hash went starts a new epoch: %v", m)
	require.Equal(t, float64(1), m["offset"], "got %v", m)

	publishN(t, n.hub, "history-read", 1, 2)
	before, err := n.hub.History(ctx, "history-read", ws.HistoryQuery{})
	require.NoError(t, err)
	require.Equal(t, uint64(2), before.Latest.Offset)
	loseHash("history-read")
	after, err := n.hub.History(ctx, "history-read", ws.HistoryQuery{})
	require.NoError(t, err, "a read after the hash went answers")
	require.NotEqual(t, before.Latest.Epoch, after.Latest.Epoch, "a read after the hash went starts a new epoch")
	require.Equal(t, uint64(0), after.Latest.Offset)
	require.Empty(t, after.Publications)
}

// TestHistoryPublishesAfterRedisForgetsItsScripts: Redis lost the cached
// history script (SCRIPT FLUSH, as after a restart); the next
// publication, sent by the script's hash, is sent again whole, and
// nothing is lost or doubled.
func TestHistoryPublishesAfterRedisForgetsItsScripts(t *testing.T) {
	srv := redistest.StartServer(t)
	n := redisNodes(t, 1, ws.RedisOptions{Addrs: []string{srv.Addr}}, historyConfig(ws.Config{}), nil)[0]
	c := n.dial(t, "")
	pos := positionOf(c.subscribeSince("history-noscript", nil))
	publishN(t, n.hub, "history-noscript", 1, 2)
	c.expectMessages("history-noscript", 1, 2, pos.Offset+1)
	out, err := srv.CLI(context.Background(), "SCRIPT", "FLUSH")
	require.NoError(t, err, out)
	publishN(t, n.hub, "history-noscript", 3, 5)
	c.expectMessages("history-noscript", 3, 5, pos.Offset+3)
	c.expectQuiet()
}
