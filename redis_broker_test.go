package ws

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/vortechron/go-ws/internal/redistest"
)

// newTestRedisBroker returns a broker on opts that t closes when it ends.
func newTestRedisBroker(t *testing.T, opts RedisOptions) *RedisBroker {
	t.Helper()
	b, err := NewRedisBrokerWithOptions(opts)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, b.Close()) })
	return b
}

func TestRedisBrokerContract(t *testing.T) {
	addr := redistest.Addr(t)
	noLeaks(t)
	newBroker := func(t *testing.T) MessageBroker {
		return newTestRedisBroker(t, RedisOptions{Addrs: []string{addr}, KeyPrefix: redistest.Prefix(t)})
	}
	testBrokerContract(t, newBroker)
	testBrokerMultiNode(t, newBroker)
}

func TestNewRedisBrokerBecomesHealthy(t *testing.T) {
	addr := redistest.Addr(t)
	noLeaks(t)
	b := NewRedisBroker(addr)
	require.Eventually(t, b.Healthy, contractWait, 5*time.Millisecond, "broker never became healthy")
	require.NoError(t, b.Close())
	require.False(t, b.Healthy(), "a closed broker must not be healthy")
	require.ErrorIs(t, b.Publish(context.Background(), "x", nil), ErrHubClosed)
	require.NoError(t, b.Close(), "second Close")
}

// TestRedisBrokerSurvivesRedisRestart kills its own redis-server under a
// subscribed broker and starts it again on the same port.
func TestRedisBrokerSurvivesRedisRestart(t *testing.T) {
	noLeaks(t)
	srv := redistest.StartServer(t)
	b := newTestRedisBroker(t, RedisOptions{
		Addrs: []string{srv.Addr}, HealthInterval: 50 * time.Millisecond, DialTimeout: 500 * time.Millisecond,
	})
	ctx := testCtx(t)
	var r recorder
	require.NoError(t, b.Subscribe(ctx, "fault", r.handle))
	require.NoError(t, b.Publish(ctx, "fault", []byte("before")))
	r.waitFor(t, 1)
	require.Eventually(t, b.Healthy, contractWait, 5*time.Millisecond)
	// A broker that fails before it ever counted the brokers on its
	// control channel waits ResubscribeWait after the reconnect; this test
	// is about the quick path.
	waitCounted(t, b)

	srv.Kill()
	killed := time.Now()
	require.Eventually(t, func() bool { return !b.Healthy() }, contractWait, 5*time.Millisecond,
		"broker still healthy after Redis died")
	detected := time.Since(killed)
	err := b.Publish(ctx, "fault", []byte("lost"))
	require.ErrorIs(t, err, ErrBrokerUnavailable, "got %v, want an error wrapping ErrBrokerUnavailable", err)
	// Subscribe fails at once (it does not wait for Redis to come back),
	// long before its ctx ends.
	long, cancel := context.WithTimeout(ctx, time.Minute)
	err = b.Subscribe(long, "while-down", func([]byte) {})
	cancel()
	require.ErrorIs(t, err, ErrBrokerUnavailable, "subscribe while Redis is down")
	require.NotErrorIs(t, err, context.DeadlineExceeded, "subscribe while Redis is down waited for its ctx")

	restarted := time.Now()
	require.NoError(t, srv.Restart())
	require.Eventually(t, b.Healthy, 10*time.Second, 5*time.Millisecond, "broker did not recover")
	recovered := time.Since(restarted)
	// The subscription came back without anyone calling Subscribe again,
	// and a healthy broker publishes (go-redis drops pooled connections
	// that died with the old server before using them).
	// The handler is told the subscription was restored (an empty
	// payload) before what follows.
	require.NoError(t, b.Publish(testCtx(t), "fault", []byte("after")))
	got := r.waitFor(t, 3)
	require.Equal(t, []string{"before", "", "after"}, got)
	t.Logf("unhealthy %v after kill; healthy %v after restart", detected.Round(time.Millisecond), recovered.Round(time.Millisecond))
}

// waitCounted waits until every shard of b has counted the brokers on its
// control channel.
func waitCounted(t *testing.T, b *RedisBroker) {
	t.Helper()
	require.Eventually(t, func() bool {
		for _, sh := range b.shards {
			sh.mu.RLock()
			n := sh.link.peers
			sh.mu.RUnlock()
			if n == 0 {
				return false
			}
		}
		return true
	}, contractWait, 2*time.Millisecond, "the broker never counted the brokers on its control channel")
}

// TestRedisBrokerStartedDuringOutageWaits: a broker whose Redis was down
// when it started has no count of the other brokers from before, so once
// its channels are back it waits ResubscribeWait before it publishes.
func TestRedisBrokerStartedDuringOutageWaits(t *testing.T) {
	noLeaks(t)
	srv := redistest.StartServer(t)
	srv.Kill()
	const wait = 500 * time.Millisecond
	b := newTestRedisBroker(t, RedisOptions{Addrs: []string{srv.Addr}, HealthInterval: 50 * time.Millisecond, ResubscribeWait: wait})
	ctx := testCtx(t)
	require.ErrorIs(t, b.Publish(ctx, "x", []byte("p")), ErrBrokerUnavailable)
	require.NoError(t, srv.Restart())
	sh := b.shards[0]
	state := func() linkState { sh.mu.RLock(); defer sh.mu.RUnlock(); return sh.link.state }
	require.Eventually(t, func() bool { return state() == linkAwaitingPeers }, contractWait, time.Millisecond,
		"got state %v, want it to await peers after the first connection", state())
	err := b.Publish(ctx, "x", []byte("p"))
	require.ErrorIs(t, err, ErrBrokerUnavailable, "publish while awaiting peers")
	require.ErrorContains(t, err, "waiting for the other nodes")
	require.Eventually(t, b.Healthy, contractWait, time.Millisecond)
	sh.mu.RLock()
	waited := time.Since(sh.link.since)
	sh.mu.RUnlock()
	require.GreaterOrEqual(t, waited, wait, "got healthy %v after the channels were back, want at least ResubscribeWait", waited)
	require.NoError(t, b.Publish(ctx, "x", []byte("p")))
}

// TestRedisClusterBrokersCountEachOther: on Redis Cluster each partition
// counts the brokers on its control channel (PUBSUB SHARDNUMSUB on the
// slot's node), and a new broker's announcement makes the others count
// it at once.
func TestRedisClusterBrokersCountEachOther(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a Redis Cluster; skipped with -short")
	}
	noLeaks(t)
	cluster := redistest.StartCluster(t)
	o := RedisOptions{Addrs: cluster.Addrs, KeyPrefix: redistest.Prefix(t), ClusterShards: 4, HealthInterval: time.Minute}
	a := newTestRedisBroker(t, o)
	waitCounted(t, a)
	b := newTestRedisBroker(t, o)
	// HealthInterval is a minute, so only the announcement can make a count 2 now.
	for _, br := range []*RedisBroker{a, b} {
		require.Eventually(t, func() bool {
			for _, sh := range br.shards {
				sh.mu.RLock()
				n := sh.link.peers
				sh.mu.RUnlock()
				if n != 2 {
					return false
				}
			}
			return true
		}, contractWait, 5*time.Millisecond, "every partition should count 2 brokers")
	}
	ctx := testCtx(t)
	var r recorder
	require.NoError(t, b.Subscribe(ctx, "news", r.handle))
	require.NoError(t, a.Publish(ctx, "news", []byte("hello")))
	require.Equal(t, []string{"hello"}, r.waitFor(t, 1))
}

// TestRedisClusterSlotMoveKeepsSubscriptions: when a resharding moves a
// partition's slot to another master, the old owner drops the slot's
// subscriptions (one sunsubscribe reply each) while the connection stays
// up. Every broker subscribes its partition again on the new owner, and
// publications made once they are back reach the subscribers, including
// on channels subscribed after the move.
func TestRedisClusterSlotMoveKeepsSubscriptions(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a Redis Cluster; skipped with -short")
	}
	noLeaks(t)
	cluster := redistest.StartCluster(t)
	prefix := redistest.Prefix(t)
	o := RedisOptions{Addrs: cluster.Addrs, KeyPrefix: prefix, ClusterShards: 1}
	a, b, news := brokerPair(t, o)
	ctx := testCtx(t)
	before := []uint64{session(a), session(b)}
	slot := cluster.Slot(t, prefix+"{s0}:ctl")
	cluster.MoveSlot(t, slot, (cluster.Owner(t, slot)+1)%len(cluster.Addrs))

	require.Eventually(t, func() bool {
		return session(a) > before[0] && session(b) > before[1] && a.Healthy() && b.Healthy()
	}, contractWait, 5*time.Millisecond, "the brokers did not subscribe again on the slot's new owner (sessions %d, %d; healthy %v, %v)",
		session(a), session(b), a.Healthy(), b.Healthy())
	require.NoError(t, a.Publish(ctx, "news", []byte("after")))
	// The subscription was restored: its handler is told publications
	// may have been missed (an empty payload), then gets the new one.
	require.Equal(t, []string{"before", "", "after"}, news.waitFor(t, 3))
	var later recorder
	require.NoError(t, b.Subscribe(ctx, "later", later.handle))
	require.NoError(t, a.Publish(ctx, "later", []byte("hello")))
	require.Equal(t, []string{"hello"}, later.waitFor(t, 1))
}

// TestSentinelMasterCrashResubscribesOnce: when the master dies and
// Sentinel promotes the replica, each broker's subscription connection
// reconnects to the new master once, and its subscriptions are restored
// once (one empty payload). The broker watches its client's dials for
// master moves (through the dialer it gives a client it makes, or a dial
// hook on an application's Sentinel client); it took the reconnect's own
// dial to the new master for one and replaced the connection: a second
// resubscribe right after the first, or a second more unhealthy.
func TestSentinelMasterCrashResubscribesOnce(t *testing.T) {
	if testing.Short() {
		t.Skip("starts Redis Sentinel; skipped with -short")
	}
	for _, given := range []bool{false, true} {
		t.Run(map[bool]string{false: "options", true: "given client"}[given], func(t *testing.T) {
			noLeaks(t)
			sen := redistest.StartSentinel(t)
			o := RedisOptions{Addrs: []string{sen.Addr}, MasterName: redistest.MasterName, KeyPrefix: redistest.Prefix(t)}
			newBroker := func() *RedisBroker { return newTestRedisBroker(t, o) }
			if given {
				newBroker = func() *RedisBroker {
					client := redis.NewFailoverClient(&redis.FailoverOptions{MasterName: redistest.MasterName, SentinelAddrs: []string{sen.Addr}})
					t.Cleanup(func() { _ = client.Close() })
					b, err := NewRedisBrokerFromClient(client, RedisOptions{KeyPrefix: o.KeyPrefix})
					require.NoError(t, err)
					t.Cleanup(func() { require.NoError(t, b.Close()) }) // before the client's
					return b
				}
			}
			a, b, news := brokerPairOf(t, newBroker(), newBroker())
			ctx := testCtx(t)
			before := []uint64{session(a), session(b)}
			pubsubs := []*redis.PubSub{a.shards[0].pubsub(), b.shards[0].pubsub()}

			sen.KillMaster(t)
			// Healthy with no replacement asked for or pending: a second
			// resubscribe, if any, has begun.
			settled := func(br *RedisBroker) bool {
				sh := br.shards[0]
				return br.Healthy() && sh.moving.Load() == nil && sh.replacing.Load() == nil
			}
			require.Eventually(t, func() bool { return settled(a) && settled(b) }, 30*time.Second, 5*time.Millisecond,
				"the brokers did not come back on the promoted replica")
			require.NoError(t, a.Publish(ctx, "news", []byte("after")))
			require.Equal(t, []string{"before", "", "after"}, news.waitFor(t, 3), "restored once, then the new publication")
			require.Equal(t, []uint64{before[0] + 1, before[1] + 1}, []uint64{session(a), session(b)}, "connections since the crash")
			// go-redis reconnected each PubSub in place; replacing one (as
			// when a master moves) would have cost a second connection, or
			// the receive loop's backoff before it (a second longer
			// unhealthy).
			require.True(t, a.shards[0].pubsub() == pubsubs[0] && b.shards[0].pubsub() == pubsubs[1], "a broker replaced its PubSub")
		})
	}
}

// brokerPair returns two brokers made from o, each having counted the
// brokers on its control channel, and the recorder b subscribed to
// "news", which has had a's publication "before".
func brokerPair(t *testing.T, o RedisOptions) (a, b *RedisBroker, news *recorder) {
	t.Helper()
	return brokerPairOf(t, newTestRedisBroker(t, o), newTestRedisBroker(t, o))
}

// brokerPairOf is brokerPair of two brokers already made.
func brokerPairOf(t *testing.T, a, b *RedisBroker) (*RedisBroker, *RedisBroker, *recorder) {
	t.Helper()
	waitCounted(t, a)
	waitCounted(t, b)
	ctx := testCtx(t)
	news := &recorder{}
	require.NoError(t, b.Subscribe(ctx, "news", news.handle))
	require.NoError(t, a.Publish(ctx, "news", []byte("before")))
	require.Equal(t, []string{"before"}, news.waitFor(t, 1))
	return a, b, news
}

// session returns the number of br's first shard's current connection.
func session(br *RedisBroker) uint64 {
	sh := br.shards[0]
	sh.mu.RLock()
	defer sh.mu.RUnlock()
	return sh.link.session
}

// TestRedisBrokerUnreachable needs no Redis: nothing listens on the port.
func TestRedisBrokerUnreachable(t *testing.T) {
	noLeaks(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := l.Addr().String()
	require.NoError(t, l.Close())

	b := NewRedisBroker(addr)
	t.Cleanup(func() { require.NoError(t, b.Close()) })
	require.False(t, b.Healthy())
	ctx := testCtx(t)
	err = b.Publish(ctx, "x", []byte("p"))
	require.ErrorIs(t, err, ErrBrokerUnavailable)
	short, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel()
	err = b.Subscribe(short, "x", func([]byte) {})
	require.ErrorIs(t, err, ErrBrokerUnavailable)
}

// TestRedisBrokerErrorsAfterServerGoes uses miniredis for the error path
// only: a publish to a server that went away wraps ErrBrokerUnavailable.
func TestRedisBrokerErrorsAfterServerGoes(t *testing.T) {
	noLeaks(t)
	mr := miniredis.NewMiniRedis()
	require.NoError(t, mr.Start())
	b := newTestRedisBroker(t, RedisOptions{Addrs: []string{mr.Addr()}, DialTimeout: 200 * time.Millisecond})
	ctx := testCtx(t)
	require.NoError(t, b.Publish(ctx, "x", []byte("ok")))
	mr.Close()
	err := b.Publish(ctx, "x", []byte("lost"))
	require.ErrorIs(t, err, ErrBrokerUnavailable)
	require.ErrorContains(t, err, `"x"`, "the error names the channel")
}

func TestRedisOptionsValidation(t *testing.T) {
	tests := []struct {
		name  string
		opts  RedisOptions
		field string
	}{
		{"brace in prefix", RedisOptions{KeyPrefix: "app{1}:"}, "RedisOptions.KeyPrefix"},
		{"tiny health interval", RedisOptions{HealthInterval: time.Millisecond}, "RedisOptions.HealthInterval"},
		{"negative shards", RedisOptions{ClusterShards: -1}, "RedisOptions.ClusterShards"},
		{"tiny node TTL", RedisOptions{NodeTTL: 10 * time.Millisecond}, "RedisOptions.NodeTTL"},
		{"negative reap interval", RedisOptions{ReapInterval: -time.Second}, "RedisOptions.ReapInterval"},
		{"negative dial timeout", RedisOptions{DialTimeout: -time.Second}, "RedisOptions.DialTimeout"},
		{"negative dial retries", RedisOptions{DialRetries: -1}, "RedisOptions.DialRetries"},
		{"negative dial retry backoff", RedisOptions{DialRetryBackoff: -time.Second}, "RedisOptions.DialRetryBackoff"},
		{"negative read timeout", RedisOptions{ReadTimeout: -time.Second}, "RedisOptions.ReadTimeout"},
		{"negative write timeout", RedisOptions{WriteTimeout: -time.Second}, "RedisOptions.WriteTimeout"},
		{"negative resubscribe wait", RedisOptions{ResubscribeWait: -time.Second}, "RedisOptions.ResubscribeWait"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := NewRedisBrokerWithOptions(tt.opts)
			var cerr *ConfigError
			require.ErrorAs(t, err, &cerr)
			require.Equal(t, tt.field, cerr.Field, "got field %q, want %q", cerr.Field, tt.field)
			_, err = NewRedisStorageWithOptions(tt.opts)
			require.ErrorAs(t, err, &cerr)
		})
	}
	o, err := RedisOptions{}.withDefaults()
	require.NoError(t, err)
	require.Equal(t, []string{"127.0.0.1:6379"}, o.Addrs)
	require.Equal(t, DefaultRedisKeyPrefix, o.KeyPrefix)
	require.Equal(t, DefaultRedisNodeTTL, o.NodeTTL)
	require.Equal(t, DefaultRedisReapInterval, o.ReapInterval)
	require.Equal(t, DefaultRedisDialTimeout, o.DialTimeout)
	require.Zero(t, o.DialRetries)
	require.Equal(t, DefaultRedisReadTimeout, o.ReadTimeout)
	require.Equal(t, DefaultRedisReadTimeout, o.WriteTimeout, "WriteTimeout follows ReadTimeout")
	require.Equal(t, DefaultRedisResubscribeWait, o.ResubscribeWait)
	o, err = RedisOptions{ReadTimeout: 3 * time.Second}.withDefaults()
	require.NoError(t, err)
	require.Equal(t, 3*time.Second, o.WriteTimeout, "WriteTimeout follows ReadTimeout")
}

// replyError stands for an error reply from Redis, as go-redis's own
// (internal) type does.
type replyError string

func (e replyError) Error() string { return string(e) }
func (replyError) RedisError()     {}

var _ redis.Error = replyError("")

// TestPublishErrorClassification pins which failures mean "not sent"
// (ErrBrokerUnavailable) and which leave the outcome unknown
// (ErrPublishUncertain).
func TestPublishErrorClassification(t *testing.T) {
	opErr := func(op string, err error) error { return &net.OpError{Op: op, Net: "tcp", Err: err} }
	tests := []struct {
		name    string
		err     error
		notSent bool
	}{
		{"dial refused (ws dialer)", &noConnError{err: opErr("dial", syscall.ECONNREFUSED)}, true},
		{"dial refused (client passed in)", opErr("dial", syscall.ECONNREFUSED), true},
		{"no cluster node", &noConnError{err: errors.New("redis: cluster has no nodes")}, true},
		{"client closed", redis.ErrClosed, true},
		{"pool timeout", redis.ErrPoolTimeout, true},
		{"pool exhausted", redis.ErrPoolExhausted, true},
		{"ctx cancelled waiting for a connection", context.Canceled, true},
		{"ctx deadline waiting for a connection", context.DeadlineExceeded, true},
		{"write timeout", opErr("write", os.ErrDeadlineExceeded), true},
		{"write reset", opErr("write", syscall.ECONNRESET), true},
		{"error reply", replyError("LOADING Redis is loading the dataset in memory"), true},
		{"moved", replyError("MOVED 3999 127.0.0.1:7001"), true},
		{"read timeout", opErr("read", os.ErrDeadlineExceeded), false},
		{"read reset", opErr("read", syscall.ECONNRESET), false},
		{"EOF", io.EOF, false},
		{"unexpected EOF", io.ErrUnexpectedEOF, false},
		{"set deadline", opErr("set", net.ErrClosed), false},
		{"unknown", errors.New("something else"), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := publishNotSent(fmt.Errorf("wrapped: %w", tt.err))
			require.Equal(t, tt.notSent, got, "publishNotSent(%v): got %v, want %v", tt.err, got, tt.notSent)
		})
	}
}

// TestDialFailureIsNotSent: with nothing listening, a PUBLISH on a client
// built from RedisOptions fails with an error that publishNotSent
// recognises, at once by default and after the retries when DialRetries
// asks for them (go-redis's own default of 5 attempts 100ms apart made
// each publish during an outage take 0.4s).
func TestDialFailureIsNotSent(t *testing.T) {
	noLeaks(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := l.Addr().String()
	require.NoError(t, l.Close())
	for _, retries := range []int{0, 2} {
		o, err := RedisOptions{Addrs: []string{addr}, DialRetries: retries, DialRetryBackoff: 50 * time.Millisecond}.withDefaults()
		require.NoError(t, err)
		c := o.newClient()
		start := time.Now()
		err = c.Publish(testCtx(t), "x", "p").Err()
		took := time.Since(start)
		require.NoError(t, c.Close())
		require.Error(t, err)
		require.True(t, publishNotSent(err), "got %v (%T), want an error publishNotSent recognises", err, err)
		t.Logf("DialRetries %d: failed after %v: %v", retries, took.Round(time.Millisecond), err)
		require.GreaterOrEqual(t, took, time.Duration(retries)*50*time.Millisecond, "the retries were not made")
		if retries == 0 {
			require.Less(t, took, 200*time.Millisecond, "a refused dial without retries should fail at once")
		}
	}
}

// uncertainBroker is a MemoryBroker whose publishes end in doubt.
type uncertainBroker struct{ *MemoryBroker }

func (uncertainBroker) Publish(context.Context, string, []byte) error {
	return fmt.Errorf("%w: test", ErrPublishUncertain)
}

// TestHubPublishKeepsUncertainApart: the Hub passes ErrPublishUncertain
// on without making it ErrBrokerUnavailable, which would invite a retry.
func TestHubPublishKeepsUncertainApart(t *testing.T) {
	noLeaks(t)
	ctx, cancel := context.WithCancel(context.Background())
	h := NewHub(ctx, uncertainBroker{NewMemoryBroker()}, nil, Config{})
	done := make(chan error, 1)
	go func() { done <- h.Run() }()
	t.Cleanup(func() { cancel(); <-done })
	err := h.Publish(ctx, "news", "x")
	require.ErrorIs(t, err, ErrPublishUncertain)
	require.NotErrorIs(t, err, ErrBrokerUnavailable, "got %v, want an error that does not match ErrBrokerUnavailable", err)
}
