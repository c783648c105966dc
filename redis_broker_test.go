package ws

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
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

	srv.Kill()
	killed := time.Now()
	require.Eventually(t, func() bool { return !b.Healthy() }, contractWait, 5*time.Millisecond,
		"broker still healthy after Redis died")
	detected := time.Since(killed)
	err := b.Publish(ctx, "fault", []byte("lost"))
	require.ErrorIs(t, err, ErrBrokerUnavailable, "got %v, want an error wrapping ErrBrokerUnavailable", err)
	short, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	err = b.Subscribe(short, "while-down", func([]byte) {})
	cancel()
	require.ErrorIs(t, err, ErrBrokerUnavailable, "subscribe while Redis is down")

	restarted := time.Now()
	require.NoError(t, srv.Restart())
	require.Eventually(t, b.Healthy, 10*time.Second, 5*time.Millisecond, "broker did not recover")
	recovered := time.Since(restarted)
	// The subscription came back without anyone calling Subscribe again.
	// Publish may fail once on a pooled connection that died with the old
	// server, so retry it; every payload that arrives is the new one.
	require.Eventually(t, func() bool { return b.Publish(ctx, "fault", []byte("after")) == nil },
		contractWait, 10*time.Millisecond)
	got := r.waitFor(t, 2)
	require.Equal(t, "before", got[0])
	for _, p := range got[1:] {
		require.Equal(t, "after", p, "got %q after restart, want only \"after\"", p)
	}
	t.Logf("unhealthy %v after kill; healthy %v after restart", detected.Round(time.Millisecond), recovered.Round(time.Millisecond))
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
}
