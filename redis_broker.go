package ws

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/redis/go-redis/v9"
)

// RedisBroker is a MessageBroker that carries publications between nodes
// through Redis pub/sub, so a Hub on each node sees every publication.
//
// Channel names: a ws channel "chat" is the Redis channel
// KeyPrefix+"ch:chat" ("ws:ch:chat"). On Redis Cluster the broker uses
// sharded pub/sub (SPUBLISH/SSUBSCRIBE, Redis 7+): channels are spread by
// hash over ClusterShards partitions, and partition i's channels carry the
// hash tag "{s<i>}" ("ws:{s3}:ch:chat") so each partition lives in one slot
// and needs one subscription connection.
//
// Delivery: Publish sends at most one PUBLISH, and only while this
// node's subscriptions are live (see Publish for what its result
// promises); Subscribe returns once Redis has confirmed the
// subscription. Handlers run on the receive goroutine of the channel's
// connection, one payload at a time, in the order Redis delivered them.
// While Redis is unreachable, Publish fails at once with an error
// wrapping ErrBrokerUnavailable and Healthy reports false; the broker
// reconnects, resubscribes every channel and waits for the other nodes
// to do the same before it accepts publications again. Publications
// accepted by Redis while this node's subscription connection was down
// are lost to its subscribers (pub/sub is at most once).
//
// RedisBroker is safe for concurrent use. See docs/redis.md.
type RedisBroker struct {
	client     redis.UniversalClient
	ownsClient bool
	prefix     string
	sharded    bool           // SPUBLISH/SSUBSCRIBE with hash-tagged partitions
	shards     []*pubsubShard // fixed at construction
	pipe       *publishPipe   // batches concurrent publishes (redis_pipeline.go)
	ops        keyLock        // orders Subscribe/Unsubscribe of one channel
	done       chan struct{}  // closed by Close
	wg         sync.WaitGroup // the shards' goroutines
	closed     atomic.Bool
	closeOnce  sync.Once
	closeErr   error          // written once under closeOnce
	history    historyBatcher // groups concurrent history publications
	watch      *masterWatch   // with Sentinel options, else nil
	guardKey   string         // the key of the replica guard (redis_replica.go); "" on Redis Cluster
}

var (
	_ MessageBroker = (*RedisBroker)(nil)
	_ BrokerHealth  = (*RedisBroker)(nil)
)

// NewRedisBroker returns a broker for the Redis server at addr
// ("host:port") with default options. It does not fail: if Redis is not
// reachable, Publish and Subscribe return errors and Healthy reports
// false until it is.
func NewRedisBroker(addr string) *RedisBroker {
	b, err := NewRedisBrokerWithOptions(RedisOptions{Addrs: []string{addr}})
	if err != nil {
		panic("ws: NewRedisBroker: default options rejected: " + err.Error()) // unreachable
	}
	return b
}

// NewRedisBrokerWithOptions returns a broker configured by opts (server,
// Cluster or Sentinel, credentials, TLS, key prefix). It fails only on
// invalid options; connection problems show later, as for NewRedisBroker.
func NewRedisBrokerWithOptions(opts RedisOptions) (*RedisBroker, error) {
	o, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	if o.MasterName == "" {
		return newRedisBroker(o.newClient(), true, o), nil
	}
	w := newMasterWatch(o)
	b := newRedisBroker(o.newClientDialed(w.dialed), true, o)
	b.watch = w
	w.follow(b)
	return b, nil
}

// NewRedisBrokerFromClient returns a broker that uses client, which it
// does not close. Of opts only the broker's fields (HealthInterval,
// ClusterShards, DisableShardedPubSub, ResubscribeWait, Logger) and
// KeyPrefix apply; the connection settings are the client's own. Its
// retries (MaxRetries) apply to every command but PUBLISH and the history
// scripts, which the broker sends at most once: a retried PUBLISH whose
// first attempt reached Redis is delivered twice. With ContextTimeoutEnabled
// a ctx deadline bounds Publish; DialerRetries 1 makes a refused dial
// fail at once. On a Sentinel client (redis.NewFailoverClient) the broker
// adds a dial hook to client, to move its subscriptions when the client
// starts dialing a new master; the hook does nothing after Close.
func NewRedisBrokerFromClient(client redis.UniversalClient, opts RedisOptions) (*RedisBroker, error) {
	if client == nil {
		return nil, &ConfigError{Field: "client", Reason: "is nil"}
	}
	o, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	w := watchFailoverClient(client, o) // redis_sentinel.go
	b := newRedisBroker(client, false, o)
	if w != nil {
		b.watch = w
		w.follow(b)
	}
	return b, nil
}

func newRedisBroker(client redis.UniversalClient, owns bool, o RedisOptions) *RedisBroker {
	b := &RedisBroker{
		client:     client,
		ownsClient: owns,
		prefix:     o.KeyPrefix,
		sharded:    isCluster(client) && !o.DisableShardedPubSub,
		done:       make(chan struct{}),
		guardKey:   guardKeyFor(client, o.KeyPrefix),
	}
	b.pipe = newPublishPipe(client, b.sharded, b.guardKey)
	b.pipe.start(&b.wg, b.done)
	n := 1
	if b.sharded {
		n = o.ClusterShards
	}
	for i := range n {
		ctl := b.prefix + "ctl"
		if b.sharded {
			ctl = b.prefix + "{s" + strconv.Itoa(i) + "}:ctl"
		}
		count := b.peerCounter(ctl)
		p := peers{
			count:    count,
			announce: func(ctx context.Context) error { return b.publishOnce(ctx, ctl, []byte("hello")) },
			probe:    b.prober(count),
		}
		sh := newPubsubShard(client, b.sharded, ctl, o, p, b.done)
		b.shards = append(b.shards, sh)
		sh.start(&b.wg)
	}
	return b
}

// shardOf returns the partition of channel.
func (b *RedisBroker) shardOf(channel string) int {
	if len(b.shards) == 1 {
		return 0
	}
	h := fnv.New32a()
	h.Write([]byte(channel))
	return int(h.Sum32() % uint32(len(b.shards)))
}

// redisChannel is the Redis channel that carries channel in partition i.
func (b *RedisBroker) redisChannel(i int, channel string) string {
	if !b.sharded {
		return b.prefix + "ch:" + channel
	}
	return b.prefix + "{s" + strconv.Itoa(i) + "}:ch:" + channel
}

// Subscribe sends SUBSCRIBE (SSUBSCRIBE on Redis Cluster) and returns
// once Redis confirmed it, or with an error wrapping ErrBrokerUnavailable
// when ctx ends first or the command cannot be written (Redis
// unreachable: it does not wait for Redis to come back). While the broker
// moves its own subscription connection it waits for the next one to
// confirm the channel. Calling it again for a subscribed channel replaces
// the handler.
func (b *RedisBroker) Subscribe(ctx context.Context, channel string, handler func([]byte)) error {
	if handler == nil {
		return fmt.Errorf("ws: redis subscribe %q: nil handler", channel)
	}
	if b.closed.Load() {
		return ErrHubClosed
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("%w: redis subscribe %q: %w", ErrBrokerUnavailable, channel, err)
	}
	unlock, err := b.ops.lock(ctx, channel)
	if err != nil {
		return fmt.Errorf("%w: redis subscribe %q: %w", ErrBrokerUnavailable, channel, err)
	}
	defer unlock()
	i := b.shardOf(channel)
	if err := b.shards[i].subscribe(ctx, b.redisChannel(i, channel), handler); err != nil {
		if errors.Is(err, ErrHubClosed) {
			return err
		}
		return fmt.Errorf("%w: redis subscribe %q: %w", ErrBrokerUnavailable, channel, err)
	}
	return nil
}

// Unsubscribe stops delivery for channel at once, then tells Redis. An
// error means only that Redis may keep sending, and the broker drops what
// it sends.
func (b *RedisBroker) Unsubscribe(ctx context.Context, channel string) error {
	if b.closed.Load() {
		return nil
	}
	unlock, err := b.ops.lock(ctx, channel)
	if err != nil {
		return fmt.Errorf("ws: redis unsubscribe %q: %w", channel, err)
	}
	defer unlock()
	i := b.shardOf(channel)
	if err := b.shards[i].unsubscribe(ctx, []string{b.redisChannel(i, channel)}); err != nil {
		return fmt.Errorf("ws: redis unsubscribe %q: %w", channel, err)
	}
	return nil
}

// Healthy reports whether every subscription connection is live (up,
// every channel confirmed again by Redis after a reconnect, and the
// resubscribe window over) and has answered within three
// HealthIntervals: whether Publish would send on every channel. It does
// not block.
func (b *RedisBroker) Healthy() bool {
	if b.closed.Load() {
		return false
	}
	for _, sh := range b.shards {
		if !sh.healthy() {
			return false
		}
	}
	return true
}

// Close unsubscribes everything, stops the broker's goroutines and, if
// the broker created its client, closes it. Later calls return the first
// call's result.
func (b *RedisBroker) Close() error {
	b.closeOnce.Do(func() {
		b.closed.Store(true)
		close(b.done)
		var errs []error
		for _, sh := range b.shards {
			if err := sh.close(); err != nil {
				errs = append(errs, err)
			}
		}
		b.wg.Wait()
		if b.watch != nil {
			b.watch.stop()
		}
		if b.ownsClient {
			if err := b.client.Close(); err != nil {
				errs = append(errs, err)
			}
		}
		if err := errors.Join(errs...); err != nil {
			b.closeErr = fmt.Errorf("ws: redis broker close: %w", err)
		}
	})
	return b.closeErr
}
