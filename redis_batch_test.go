package ws

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/vortechron/go-ws/internal/redistest"
)

// subscribeCalls reads how many SUBSCRIBE and SSUBSCRIBE commands the
// server at addr has run.
func subscribeCalls(t *testing.T, srv *redistest.Server) int {
	t.Helper()
	out, err := srv.CLI(testCtx(t), "INFO", "commandstats")
	require.NoError(t, err)
	n := 0
	for _, line := range strings.Split(out, "\n") {
		for _, cmd := range []string{"cmdstat_subscribe:calls=", "cmdstat_ssubscribe:calls="} {
			if rest, ok := strings.CutPrefix(strings.TrimSpace(line), cmd); ok {
				v, _, _ := strings.Cut(rest, ",")
				k, err := strconv.Atoi(v)
				require.NoError(t, err)
				n += k
			}
		}
	}
	return n
}

// TestSubscribeBatchIsOneCommand subscribes 500 channels in one
// SubscribeBatch: one SUBSCRIBE, every channel confirmed and delivering;
// a channel listed twice gets the later handler, a nil handler its own
// error; UnsubscribeBatch stops some of them with one command.
func TestSubscribeBatchIsOneCommand(t *testing.T) {
	noLeaks(t)
	srv := redistest.StartServer(t)
	b := newTestRedisBroker(t, RedisOptions{Addrs: []string{srv.Addr}})
	pub := newTestRedisBroker(t, RedisOptions{Addrs: []string{srv.Addr}})
	require.Eventually(t, func() bool { return b.Healthy() && pub.Healthy() }, contractWait, 5*time.Millisecond)
	ctx := testCtx(t)

	const n = 500
	recs := make([]*recorder, n)
	var subs []BrokerSubscription
	for i := range recs {
		recs[i] = &recorder{}
		subs = append(subs, BrokerSubscription{Channel: "c" + strconv.Itoa(i), Handler: recs[i].handle})
	}
	var first recorder
	subs = append([]BrokerSubscription{{Channel: "c0", Handler: first.handle}}, subs...) // replaced by the later entry
	subs = append(subs, BrokerSubscription{Channel: "nil"})
	before := subscribeCalls(t, srv)
	errs := b.SubscribeBatch(ctx, subs)
	require.Equal(t, 1, subscribeCalls(t, srv)-before, "SUBSCRIBE commands for %d channels", n)
	require.Len(t, errs, len(subs))
	for i, err := range errs[:len(errs)-1] {
		require.NoError(t, err, "entry %d", i)
	}
	require.ErrorContains(t, errs[len(errs)-1], "nil handler")

	for i := range n {
		require.NoError(t, pub.Publish(ctx, "c"+strconv.Itoa(i), []byte("p"+strconv.Itoa(i))))
	}
	for i, r := range recs {
		require.Equal(t, []string{"p" + strconv.Itoa(i)}, r.waitFor(t, 1))
	}
	require.Empty(t, first.all(), "the earlier handler of a channel listed twice")

	var gone []string
	for i := range n / 2 {
		gone = append(gone, "c"+strconv.Itoa(i))
	}
	require.NoError(t, b.UnsubscribeBatch(ctx, append(gone, gone[0], "never-subscribed")))
	for i := range n {
		require.NoError(t, pub.Publish(ctx, "c"+strconv.Itoa(i), []byte("q")))
	}
	recs[n-1].waitFor(t, 2) // the last publication reached a channel still subscribed
	for i, r := range recs {
		want := 2
		if i < n/2 {
			want = 1
		}
		require.Eventually(t, func() bool { return len(r.all()) == want }, contractWait, time.Millisecond,
			"channel %d: got %d deliveries, want %d", i, len(r.all()), want)
	}
}

// TestSubscribeBatchWhileRedisIsDown: every entry fails with an error
// wrapping ErrBrokerUnavailable once ctx ends, and nothing is left behind
// for the reconnect to restore.
func TestSubscribeBatchWhileRedisIsDown(t *testing.T) {
	noLeaks(t)
	srv := redistest.StartServer(t)
	b := newTestRedisBroker(t, RedisOptions{Addrs: []string{srv.Addr}, HealthInterval: 50 * time.Millisecond})
	require.Eventually(t, b.Healthy, contractWait, 5*time.Millisecond)
	srv.Kill()
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	errs := b.SubscribeBatch(ctx, []BrokerSubscription{{Channel: "a", Handler: func([]byte) {}}, {Channel: "b", Handler: func([]byte) {}}})
	for _, err := range errs {
		require.ErrorIs(t, err, ErrBrokerUnavailable)
	}
	sh := b.shards[0]
	sh.mu.RLock()
	defer sh.mu.RUnlock()
	require.Len(t, sh.subs, 1, "only the control channel is left: %v", sh.subs)
}

// TestSubscribeBatchOnRedisCluster spreads a batch over the partitions:
// one SSUBSCRIBE per partition, every channel delivering.
func TestSubscribeBatchOnRedisCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a Redis Cluster; skipped with -short")
	}
	noLeaks(t)
	cluster := redistest.StartCluster(t)
	o := RedisOptions{Addrs: cluster.Addrs, KeyPrefix: redistest.Prefix(t), ClusterShards: 4}
	b := newTestRedisBroker(t, o)
	pub := newTestRedisBroker(t, o)
	require.Eventually(t, func() bool { return b.Healthy() && pub.Healthy() }, contractWait, 5*time.Millisecond)
	ctx := testCtx(t)
	recs := make([]*recorder, 64)
	var subs []BrokerSubscription
	for i := range recs {
		recs[i] = &recorder{}
		subs = append(subs, BrokerSubscription{Channel: "k" + strconv.Itoa(i), Handler: recs[i].handle})
	}
	before := 0
	for _, s := range cluster.Servers {
		before += subscribeCalls(t, s)
	}
	for i, err := range b.SubscribeBatch(ctx, subs) {
		require.NoError(t, err, "entry %d", i)
	}
	after := 0
	for _, s := range cluster.Servers {
		after += subscribeCalls(t, s)
	}
	require.LessOrEqual(t, after-before, 4, "SSUBSCRIBE commands: one per partition")
	for i := range recs {
		require.NoError(t, pub.Publish(ctx, "k"+strconv.Itoa(i), []byte("x")))
	}
	for _, r := range recs {
		r.waitFor(t, 1)
	}
}
