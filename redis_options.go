package ws

import (
	"context"
	"crypto/tls"
	"io"
	"log/slog"
	"net"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// Defaults of RedisOptions, used where a field is left zero.
const (
	// DefaultRedisKeyPrefix starts every key and pub/sub channel ws uses.
	DefaultRedisKeyPrefix = "ws:"
	// DefaultRedisNodeTTL is how long a node's heartbeat outlives it.
	DefaultRedisNodeTTL = 20 * time.Second
	// DefaultRedisReapInterval is how often the Hub reaps dead nodes.
	DefaultRedisReapInterval = 10 * time.Second
	// DefaultRedisHealthInterval is how often an idle broker pings Redis.
	DefaultRedisHealthInterval = time.Second
	// DefaultRedisClusterShards is how many sharded pub/sub connections a
	// broker opens on Redis Cluster.
	DefaultRedisClusterShards = 16
	// DefaultRedisDialTimeout bounds opening one connection (TCP and TLS).
	DefaultRedisDialTimeout = time.Second
	// DefaultRedisReadTimeout bounds waiting for one reply.
	DefaultRedisReadTimeout = time.Second
	// DefaultRedisDialRetryBackoff is the wait between dial attempts when
	// DialRetries is set.
	DefaultRedisDialRetryBackoff = 100 * time.Millisecond
	// DefaultRedisResubscribeWait bounds how long a broker back from a
	// connection failure waits for the other nodes to resubscribe.
	DefaultRedisResubscribeWait = 5 * time.Second
)

// RedisOptions configures RedisBroker and RedisStorage. It is passed by
// value; the zero value of each field means the default written on it.
// A broker and a storage of one application must use the same KeyPrefix.
type RedisOptions struct {
	// Addrs are "host:port" addresses. One address is a single server
	// (or, with ClusterMode, a cluster's entry point); two or more are
	// Redis Cluster nodes; with MasterName they are Sentinels.
	// Empty means "127.0.0.1:6379".
	Addrs []string
	// ClusterMode treats a single address as a Redis Cluster node.
	ClusterMode bool
	// MasterName, when set, selects Redis Sentinel: Addrs are sentinels
	// and MasterName is the monitored master.
	MasterName string

	// Username and Password authenticate to Redis (ACL or requirepass).
	Username string
	Password string
	// SentinelUsername and SentinelPassword authenticate to Sentinels.
	SentinelUsername string
	SentinelPassword string
	// DB selects the database on a single server or Sentinel master.
	// Redis Cluster has only database 0.
	DB int
	// TLSConfig enables TLS when non-nil.
	TLSConfig *tls.Config
	// DialTimeout bounds opening one connection to Redis, TLS handshake
	// included. Zero means 1s.
	DialTimeout time.Duration
	// DialRetries is how many times a failed dial is tried again before
	// the command that needed the connection fails. Zero means none, so a
	// command fails as soon as Redis refuses the connection; go-redis on
	// its own retries four times with 100ms between, which made every
	// publish during an outage take 0.4s to fail.
	DialRetries int
	// DialRetryBackoff is the wait between dial attempts when DialRetries
	// is positive. Zero means 100ms.
	DialRetryBackoff time.Duration
	// ReadTimeout bounds waiting for one reply; a command whose reply
	// does not come in time fails (for a publish: with an error wrapping
	// ErrPublishUncertain). A ctx deadline that comes sooner wins. Zero
	// means 1s.
	ReadTimeout time.Duration
	// WriteTimeout bounds writing one command. Zero means ReadTimeout.
	WriteTimeout time.Duration
	// PoolSize is the number of pooled connections per Redis node.
	// Zero means go-redis's default (10 per CPU).
	PoolSize int

	// KeyPrefix starts every key and pub/sub channel, so several
	// applications can share one Redis. It may not contain '{' or '}'
	// (they would break Redis Cluster hash tags). Zero means "ws:".
	KeyPrefix string

	// HealthInterval is how often the broker pings Redis over its
	// subscription connection when no other traffic arrives. The broker
	// reports unhealthy when no reply has come for three intervals.
	// Zero means 1s.
	HealthInterval time.Duration
	// ClusterShards is how many sharded pub/sub partitions (and
	// subscription connections) a broker uses on Redis Cluster; channels
	// are spread over them by hash. Zero means 16.
	ClusterShards int
	// DisableShardedPubSub makes the broker use PUBLISH/SUBSCRIBE on
	// Redis Cluster instead of SPUBLISH/SSUBSCRIBE (for clusters older
	// than Redis 7). Classic pub/sub is broadcast to every cluster node.
	DisableShardedPubSub bool
	// ResubscribeWait bounds the resubscribe window: after its
	// subscription connection comes back from a failure and Redis has
	// confirmed every channel again, a broker waits until as many brokers
	// are subscribed as were before the failure (so the other nodes,
	// which lost their connections too, are back) before it accepts
	// publications again, but never longer than ResubscribeWait. Zero
	// means 5s. See docs/redis.md, "Failures".
	ResubscribeWait time.Duration

	// NodeTTL is how long a storage's heartbeat key lives; the heartbeat
	// refreshes it every NodeTTL/3. A node that stops for longer is dead
	// and its presence is reaped. Zero means 20s, so with the default
	// ReapInterval a dead node's members leave within 30s.
	NodeTTL time.Duration
	// ReapInterval is how often the Hub maintains presence (reaps dead
	// nodes, restores presence Redis lost): RedisStorage.MaintainInterval
	// reports it, or NodeTTL/2 if that is shorter. Presence of a crashed
	// node is gone at most NodeTTL + MaintainInterval after the crash.
	// Zero means 10s.
	ReapInterval time.Duration

	// Logger receives connection-state changes. Nil means silent.
	Logger *slog.Logger
}

// withDefaults fills zero fields and validates the result.
func (o RedisOptions) withDefaults() (RedisOptions, error) {
	if len(o.Addrs) == 0 {
		o.Addrs = []string{"127.0.0.1:6379"}
	}
	if o.KeyPrefix == "" {
		o.KeyPrefix = DefaultRedisKeyPrefix
	}
	if o.DialTimeout == 0 {
		o.DialTimeout = DefaultRedisDialTimeout
	}
	if o.DialRetryBackoff == 0 {
		o.DialRetryBackoff = DefaultRedisDialRetryBackoff
	}
	if o.ReadTimeout == 0 {
		o.ReadTimeout = DefaultRedisReadTimeout
	}
	if o.WriteTimeout == 0 {
		o.WriteTimeout = o.ReadTimeout
	}
	if o.ResubscribeWait == 0 {
		o.ResubscribeWait = DefaultRedisResubscribeWait
	}
	if o.HealthInterval == 0 {
		o.HealthInterval = DefaultRedisHealthInterval
	}
	if o.ClusterShards == 0 {
		o.ClusterShards = DefaultRedisClusterShards
	}
	if o.NodeTTL == 0 {
		o.NodeTTL = DefaultRedisNodeTTL
	}
	if o.ReapInterval == 0 {
		o.ReapInterval = DefaultRedisReapInterval
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	switch {
	case strings.ContainsAny(o.KeyPrefix, "{}"):
		return o, &ConfigError{Field: "RedisOptions.KeyPrefix", Reason: "may not contain '{' or '}'"}
	case o.HealthInterval < 10*time.Millisecond:
		return o, &ConfigError{Field: "RedisOptions.HealthInterval", Reason: "must be at least 10ms"}
	case o.ClusterShards < 1:
		return o, &ConfigError{Field: "RedisOptions.ClusterShards", Reason: "must be positive"}
	case o.NodeTTL < 300*time.Millisecond:
		return o, &ConfigError{Field: "RedisOptions.NodeTTL", Reason: "must be at least 300ms"}
	case o.ReapInterval < 0:
		return o, &ConfigError{Field: "RedisOptions.ReapInterval", Reason: "may not be negative"}
	case o.DialTimeout < 0:
		return o, &ConfigError{Field: "RedisOptions.DialTimeout", Reason: "may not be negative"}
	case o.DialRetries < 0:
		return o, &ConfigError{Field: "RedisOptions.DialRetries", Reason: "may not be negative"}
	case o.DialRetryBackoff < 0:
		return o, &ConfigError{Field: "RedisOptions.DialRetryBackoff", Reason: "may not be negative"}
	case o.ReadTimeout < 0:
		return o, &ConfigError{Field: "RedisOptions.ReadTimeout", Reason: "may not be negative"}
	case o.WriteTimeout < 0:
		return o, &ConfigError{Field: "RedisOptions.WriteTimeout", Reason: "may not be negative"}
	case o.ResubscribeWait < 0:
		return o, &ConfigError{Field: "RedisOptions.ResubscribeWait", Reason: "may not be negative"}
	}
	return o, nil
}

// newClient builds the go-redis client the options describe. Command
// retries are off: a retried PUBLISH could be delivered twice, and a
// retried presence script would lose its joined/left answer. (On Redis
// Cluster the client still retries a command on another node after some
// failures; the broker avoids that by publishing on the slot's node
// client, see RedisBroker.publishOnce.) Dial retries follow DialRetries;
// the socket deadlines follow ReadTimeout and WriteTimeout, or ctx's
// deadline when it is sooner.
func (o RedisOptions) newClient() redis.UniversalClient { return o.newClientDialed(nil) }

// newClientDialed is newClient calling dialed, when not nil, with the
// context and address of every connection it opens (with Sentinel, the
// master's address at the time, or a Sentinel's).
func (o RedisOptions) newClientDialed(dialed func(ctx context.Context, addr string)) redis.UniversalClient {
	return redis.NewUniversalClient(&redis.UniversalOptions{
		Addrs:                 o.Addrs,
		IsClusterMode:         o.ClusterMode,
		MasterName:            o.MasterName,
		Username:              o.Username,
		Password:              o.Password,
		SentinelUsername:      o.SentinelUsername,
		SentinelPassword:      o.SentinelPassword,
		DB:                    o.DB,
		TLSConfig:             o.TLSConfig,
		Dialer:                o.dialer(dialed),
		DialTimeout:           o.DialTimeout,
		DialerRetries:         o.DialRetries + 1, // go-redis counts attempts
		DialerRetryTimeout:    o.DialRetryBackoff,
		ReadTimeout:           o.ReadTimeout,
		WriteTimeout:          o.WriteTimeout,
		ContextTimeoutEnabled: true,
		PoolSize:              o.PoolSize,
		MaxRetries:            -1,
	})
}

// dialer opens connections as go-redis's own dialer does (TCP keep-alive,
// TLS when TLSConfig is set) and marks every failure as a noConnError,
// so a publish that failed for want of a connection is known not to have
// been sent. It calls dialed, when not nil, with the context and address
// of each connection it opened.
func (o RedisOptions) dialer(dialed func(ctx context.Context, addr string)) func(ctx context.Context, network, addr string) (net.Conn, error) {
	nd := &net.Dialer{
		Timeout: o.DialTimeout,
		// go-redis's default: probe after 30s idle, dead after 3 probes 5s apart.
		KeepAliveConfig: net.KeepAliveConfig{Enable: true, Idle: 30 * time.Second, Interval: 5 * time.Second, Count: 3},
	}
	var td *tls.Dialer
	if o.TLSConfig != nil {
		td = &tls.Dialer{NetDialer: nd, Config: o.TLSConfig}
	}
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		var c net.Conn
		var err error
		if td != nil {
			c, err = td.DialContext(ctx, network, addr)
		} else {
			c, err = nd.DialContext(ctx, network, addr)
		}
		if err != nil {
			return nil, &noConnError{err: err}
		}
		if dialed != nil {
			dialed(ctx, addr)
		}
		return c, nil
	}
}

// isCluster reports whether client talks to Redis Cluster.
func isCluster(client redis.UniversalClient) bool {
	_, ok := client.(*redis.ClusterClient)
	return ok
}
