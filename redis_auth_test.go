package ws

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/vortechron/go-ws/internal/redistest"
)

// TestRedisOverTLSWithPassword proves, in docs/redis.md (Options): a
// broker and a storage made from options with TLSConfig and Password
// keep their whole contracts (broker, storage, occupancy, history) on a
// redis-server that accepts only TLS and requires the password, as
// managed Redis services do (TLS in transit, AUTH). A wrong password, or
// no TLS, is an error that says so.
func TestRedisOverTLSWithPassword(t *testing.T) {
	if testing.Short() {
		t.Skip("starts its own redis-server; skipped with -short")
	}
	const password = "s3cret-for-the-test"
	srv, tlsConfig := redistest.StartTLSServer(t, password)
	opts := func(t *testing.T) RedisOptions {
		return RedisOptions{Addrs: []string{srv.Addr}, Password: password, TLSConfig: tlsConfig.Clone(), KeyPrefix: redistest.Prefix(t)}
	}
	t.Run("contracts", func(t *testing.T) {
		noLeaks(t)
		testRedisContracts(t, opts, nil)
	})
	t.Run("wrong password", func(t *testing.T) {
		noLeaks(t)
		o := opts(t)
		o.Password = "not-the-password"
		b := newTestRedisBroker(t, o)
		err := b.Publish(testCtx(t), "news", []byte("x"))
		require.ErrorIs(t, err, ErrBrokerUnavailable)
		require.ErrorContains(t, err, "WRONGPASS", "got %v, want the server's refusal in the error", err)
		s, err := NewRedisStorageWithOptions(o)
		require.NoError(t, err)
		_, _, err = s.PresenceMembers(testCtx(t), "presence-room")
		require.ErrorContains(t, err, "WRONGPASS", "got %v, want the server's refusal in the error", err)
		require.ErrorContains(t, s.Close(), "WRONGPASS", "closing cannot take the node out of Redis")
	})
	t.Run("no TLS", func(t *testing.T) {
		noLeaks(t)
		o := opts(t)
		o.TLSConfig = nil
		b := newTestRedisBroker(t, o)
		err := b.Publish(testCtx(t), "news", []byte("x"))
		require.True(t, errors.Is(err, ErrBrokerUnavailable), "got %v, want ErrBrokerUnavailable", err)
		t.Logf("plain connection to the TLS port: %v", err)
	})
}

// TestRedisRefusedHandshakeIsAnError proves, in docs/redis.md (What
// Publish returns): when Redis refuses a new connection's handshake with
// an error reply, every publication and presence call that needed that
// connection fails with Redis's reason, and none returns nil. go-redis
// leaves a pipeline's commands without an error in that case, and the
// publish pipeline read them as sent: after a password change, 21
// publications in a row returned nil and none was delivered. The
// subscription connections, opened before, stay up, so the brokers stay
// healthy throughout.
func TestRedisRefusedHandshakeIsAnError(t *testing.T) {
	if testing.Short() {
		t.Skip("starts its own redis-server; skipped with -short")
	}
	// Each refusal drops the clients' pool connections (not the
	// subscription connections, nor admin's) and has Redis refuse new
	// ones, in one transaction so that no pool connection comes back in
	// between.
	tests := []struct {
		name    string
		refuse  func(ctx context.Context, admin *redis.Conn, pipe redis.Pipeliner) error
		restore []any  // the CONFIG SET that ends the refusal
		want    string // in every error; "" for any error
		// unhealthy: the broker reports the refusal (an authentication
		// error) as unhealthy until it ends.
		unhealthy bool
	}{
		{"password changed", func(ctx context.Context, _ *redis.Conn, pipe redis.Pipeliner) error {
			return pipe.ConfigSet(ctx, "requirepass", "rotated").Err()
		}, []any{"CONFIG", "SET", "requirepass", "before"}, "WRONGPASS", true},
		{"max clients reached", func(ctx context.Context, admin *redis.Conn, pipe redis.Pipeliner) error {
			subs, err := admin.Do(ctx, "CLIENT", "LIST", "TYPE", "pubsub").Text()
			if err != nil {
				return err
			}
			return pipe.ConfigSet(ctx, "maxclients", strconv.Itoa(strings.Count(subs, "\n")+1)).Err() // and admin
		}, []any{"CONFIG", "SET", "maxclients", "10000"}, "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			noLeaks(t)
			srv := redistest.StartServer(t)
			ctx := testCtx(t)
			const password = "before"
			first := redis.NewClient(&redis.Options{Addr: srv.Addr, MaxRetries: -1})
			require.NoError(t, first.ConfigSet(ctx, "requirepass", password).Err())
			require.NoError(t, first.Close())
			// One connection, which CLIENT KILL ... SKIPME yes spares.
			adminClient := redis.NewClient(&redis.Options{Addr: srv.Addr, Password: password, MaxRetries: -1})
			t.Cleanup(func() { _ = adminClient.Close() })
			admin := adminClient.Conn()
			t.Cleanup(func() { _ = admin.Close() })
			o := RedisOptions{Addrs: []string{srv.Addr}, Password: password, KeyPrefix: redistest.Prefix(t), HealthInterval: 100 * time.Millisecond}
			a, _, news := brokerPair(t, o)
			s, err := NewRedisStorageWithOptions(o)
			require.NoError(t, err)
			t.Cleanup(func() { _ = s.Close() }) // it cannot take its node out of Redis any more
			join := PresenceConn{Channel: "presence-room", ConnID: "c1", Member: PresenceMember{UserID: "alice"}}
			_, _, err = s.AddPresence(ctx, join)
			require.NoError(t, err)

			_, err = admin.TxPipelined(ctx, func(pipe redis.Pipeliner) error {
				pipe.ClientKillByFilter(ctx, "TYPE", "normal", "SKIPME", "yes")
				return tt.refuse(ctx, admin, pipe)
			})
			require.NoError(t, err)

			errs := make(chan error, 20)
			for i := range cap(errs) {
				go func() { errs <- a.Publish(ctx, "news", []byte("after "+strconv.Itoa(i))) }()
			}
			for range cap(errs) {
				err := <-errs
				require.Error(t, err, "a publication Redis never got returned nil")
				if tt.want == "" {
					// Redis closes the connection after its reply, and a
					// write may fail first: outcome unknown, not nil.
					require.True(t, errors.Is(err, ErrBrokerUnavailable) || errors.Is(err, ErrPublishUncertain), "got %v", err)
					continue
				}
				require.ErrorIs(t, err, ErrBrokerUnavailable, "got %v, want ErrBrokerUnavailable: not sent", err)
				require.ErrorContains(t, err, tt.want)
			}
			_, err = a.PublishHistory(ctx, "news", []byte("kept"), HistoryOptions{Size: 10})
			require.Error(t, err, "a publication with history")
			require.ErrorContains(t, err, tt.want)
			_, _, err = s.AddPresence(ctx, PresenceConn{Channel: "presence-room", ConnID: "c2", Member: PresenceMember{UserID: "bob"}})
			require.Error(t, err)
			require.ErrorContains(t, err, tt.want)
			_, _, err = s.PresenceMembers(ctx, "presence-room")
			require.Error(t, err)
			require.ErrorContains(t, err, tt.want)
			require.Equal(t, []string{"before"}, news.all(), "nothing was published after the refusal")
			if tt.unhealthy {
				require.Eventually(t, func() bool { return !a.Healthy() }, 3*time.Second, 5*time.Millisecond,
					"the broker stayed healthy while Redis refused its new connections")
			}

			require.NoError(t, admin.Do(ctx, tt.restore...).Err())
			require.Eventually(t, a.Healthy, 3*time.Second, 5*time.Millisecond, "the broker did not become healthy again")
			require.NoError(t, a.Publish(ctx, "news", []byte("restored")))
			require.Equal(t, []string{"before", "restored"}, news.waitFor(t, 2))
		})
	}
}

// leastPrivilegeACL is the ACL rule docs/redis.md (Access control) gives
// for the user ws connects as, with its key and channel pattern for the
// tests' key prefixes ("wstest:..."): the commands the broker and the
// storage send (their Lua scripts' included) and none other.
const leastPrivilegeACL = "on >ws-password resetkeys ~wstest:* resetchannels &wstest:* -@all " +
	"+hello +auth +ping +info " +
	"+publish +spublish +subscribe +ssubscribe +unsubscribe +sunsubscribe +pubsub|numsub +pubsub|shardnumsub " +
	"+evalsha +eval " +
	"+get +set +del +exists +pexpire +pttl " +
	"+hget +hset +hdel +hincrby +hlen +hmget +hgetall +hexists " +
	"+sadd +srem +smembers +sismember +scard " +
	"+rpush +lrange +ltrim +llen"

// TestRedisLeastPrivilegeACLUser proves docs/redis.md (Access control):
// a broker and a storage connecting as an ACL user that may run only the
// commands of leastPrivilegeACL, on keys and channels under the key
// prefix, keep their whole contracts (broker, storage, occupancy,
// history).
func TestRedisLeastPrivilegeACLUser(t *testing.T) {
	if testing.Short() {
		t.Skip("starts its own redis-server; skipped with -short")
	}
	noLeaks(t)
	srv := redistest.StartServer(t)
	admin := redis.NewClient(&redis.Options{Addr: srv.Addr, MaxRetries: -1})
	t.Cleanup(func() { _ = admin.Close() })
	args := []any{"ACL", "SETUSER", "ws"}
	for _, rule := range strings.Fields(leastPrivilegeACL) {
		args = append(args, rule)
	}
	require.NoError(t, admin.Do(testCtx(t), args...).Err())
	opts := func(t *testing.T) RedisOptions {
		return RedisOptions{Addrs: []string{srv.Addr}, Username: "ws", Password: "ws-password", KeyPrefix: redistest.Prefix(t)}
	}
	testRedisContracts(t, opts, nil)
	require.Empty(t, deniedCommands(t, srv), "what Redis refused the user (ACL LOG)")

	// A command missing from the rule is an error that names it. INFO
	// is one the storage needs before its first presence call (it
	// records each Redis process's run_id); such calls used to wait out
	// their ctx and say only "context deadline exceeded", then waited it
	// out and said why. Now they fail as soon as Redis refused the
	// registration, the first call included, which the registration's
	// first attempt answers; and so does each later one.
	t.Run("without info", func(t *testing.T) {
		require.NoError(t, admin.Do(testCtx(t), "ACL", "SETUSER", "ws", "-info").Err())
		t.Cleanup(func() { _ = admin.Do(context.Background(), "ACL", "SETUSER", "ws", "+info").Err() })
		s := newTestRedisStorage(t, opts(t))
		for i := range 3 {
			ctx, cancel := context.WithTimeout(testCtx(t), 5*time.Second)
			start := time.Now()
			_, _, err := s.AddPresence(ctx, PresenceConn{Channel: "presence-room", ConnID: fmt.Sprint("c", i), Member: PresenceMember{UserID: "alice"}})
			took := time.Since(start)
			cancel()
			require.ErrorContains(t, err, "NOPERM", "call %d: got %v, want the refused command named", i, err)
			require.ErrorContains(t, err, "info")
			require.NotErrorIs(t, err, context.DeadlineExceeded, "call %d waited out its ctx", i)
			require.Less(t, took, time.Second, "call %d took %v", i, took)
		}
	})
}

// TestRedisClusterLeastPrivilegeACLUser proves docs/redis.md (Access
// control) on Redis Cluster: a broker (on sharded pub/sub) and a storage
// connecting as an ACL user with leastPrivilegeACL and what go-redis
// reads the cluster's layout with (clusterACL), set on every node, keep
// their whole contracts.
func TestRedisClusterLeastPrivilegeACLUser(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a Redis Cluster; skipped with -short")
	}
	noLeaks(t)
	cluster := redistest.StartCluster(t)
	for _, s := range cluster.Servers {
		args := []string{"ACL", "SETUSER", "ws"}
		args = append(args, strings.Fields(leastPrivilegeACL+" "+clusterACL)...)
		out, err := s.CLI(testCtx(t), args...)
		require.NoError(t, err, "ACL SETUSER on %s: %s", s.Addr, out)
		require.Contains(t, out, "OK", "ACL SETUSER on %s", s.Addr)
	}
	opts := func(t *testing.T) RedisOptions {
		return RedisOptions{Addrs: cluster.Addrs, Username: "ws", Password: "ws-password", KeyPrefix: redistest.Prefix(t), ClusterShards: 4}
	}
	testRedisContracts(t, opts, func(t *testing.T, b *RedisBroker) {
		require.True(t, b.sharded, "broker on Redis Cluster must use sharded pub/sub")
	})
	for _, s := range cluster.Servers {
		require.Empty(t, deniedCommands(t, s), "what Redis refused the user on %s (ACL LOG)", s.Addr)
	}
}

// clusterACL is what docs/redis.md (Access control) adds to the rule on
// Redis Cluster: the commands go-redis reads the cluster's layout and its
// commands' key positions with.
const clusterACL = "+cluster|slots +cluster|shards +command"

// deniedCommands returns what s's ACL LOG holds: the commands, keys and
// channels it refused a user (NOPERM), and failed logins.
func deniedCommands(t *testing.T, s *redistest.Server) []any {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: s.Addr, MaxRetries: -1})
	defer c.Close()
	log, err := c.Do(testCtx(t), "ACL", "LOG").Slice()
	require.NoError(t, err)
	return log
}
