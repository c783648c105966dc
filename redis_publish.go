package ws

import (
	"context"
	"errors"
	"fmt"
	"net"

	"github.com/redis/go-redis/v9"
)

// Publish sends payload with one PUBLISH (SPUBLISH on Redis Cluster),
// in a pipeline shared with the Publish calls made at the same time
// (redis_pipeline.go).
//
// nil means Redis accepted the publication while this node's
// subscription connection for the channel was live: up, every channel
// confirmed by Redis since its last reconnect, the resubscribe window
// over, and no failure seen until the reply came. Every node whose
// subscription connection stays up until the message reaches it
// delivers it, in order; a node whose connection breaks first loses it
// (Redis pub/sub is at most once) and reports unhealthy.
//
// An error wrapping ErrBrokerUnavailable means nothing was sent: the
// broker is not live (Redis unreachable, resubscribing, waiting for the
// other nodes, or silent for three HealthIntervals), or the command
// failed before it could reach Redis (see publishNotSent). Retrying
// later cannot duplicate it.
//
// An error wrapping ErrPublishUncertain means the command may have been
// executed: a timeout or a lost connection while waiting for the reply,
// or the subscription connection failed while the publish was in
// flight. Some, all or none of the subscribers may receive it; retrying
// may deliver it twice.
//
// Publish does not wait for a connection to come back, except on a new
// broker: its first publishes wait, within ctx and three health
// intervals, for the subscription connection to go live, so a hub may
// publish as soon as it is made. It returns within
// ctx's deadline, or without one within about DialTimeout (when it must
// open a connection) plus WriteTimeout plus ReadTimeout (one more for a
// new connection's handshake), or PoolTimeout when all PoolSize
// connections are busy; a call made while both pipelines are in flight
// (or one, with fewer than eight calls waiting) first waits for one of
// them to end, within the same bounds.
func (b *RedisBroker) Publish(ctx context.Context, channel string, payload []byte) error {
	if b.closed.Load() {
		return ErrHubClosed
	}
	i := b.shardOf(channel)
	sh := b.shards[i]
	session, err := sh.admit(ctx)
	if err != nil {
		return fmt.Errorf("%w: redis publish on %q: %w", ErrBrokerUnavailable, channel, err)
	}
	if err := b.pipe.publish(ctx, b.redisChannel(i, channel), payload); err != nil {
		if errors.Is(err, errReplica) {
			sh.replicaSeen(session)
		}
		if publishNotSent(err) {
			return fmt.Errorf("%w: redis publish on %q: %w", ErrBrokerUnavailable, channel, err)
		}
		return fmt.Errorf("%w: redis publish on %q: %w", ErrPublishUncertain, channel, err)
	}
	if !sh.stillLive(session) {
		return fmt.Errorf("%w: redis publish on %q: the subscription connection failed while publishing", ErrPublishUncertain, channel)
	}
	return nil
}

// publishOnce sends one PUBLISH for rch (see publishCountedOnce).
func (b *RedisBroker) publishOnce(ctx context.Context, rch string, payload []byte) error {
	_, err := b.publishCountedOnce(ctx, rch, payload)
	return err
}

// publishCountedOnce sends one PUBLISH for rch and returns how many
// subscribers received it. On Redis Cluster it goes to the node that owns
// rch's slot through that node's own client, because the cluster client
// would send a command again, maybe to another node, after a timeout or a
// dropped connection, and a PUBLISH sent twice is delivered twice.
// Elsewhere it goes after the replica guard (redis_replica.go).
func (b *RedisBroker) publishCountedOnce(ctx context.Context, rch string, payload []byte) (int64, error) {
	if b.guardKey != "" {
		var cmd *redis.IntCmd
		replica, _ := sendGuarded(ctx, b.client, b.guardKey, func(pipe redis.Pipeliner) { cmd = publishAtMostOnce(ctx, pipe, false, rch, payload) })
		if replica && cmd.Err() == nil {
			return 0, errReplica
		}
		return cmd.Result()
	}
	var c processor = b.client
	cc, cluster := b.client.(*redis.ClusterClient)
	if cluster {
		node, err := cc.MasterForKey(ctx, rch)
		if err != nil {
			return 0, &noConnError{err: err}
		}
		c = node
	}
	cmd := publishAtMostOnce(ctx, c, b.sharded, rch, payload)
	if _, moved := redis.IsMovedError(cmd.Err()); moved && cluster {
		cc.ReloadState(ctx) // the slot moved: learn where to
	}
	return cmd.Result()
}

// publishNotSent reports whether err, from publishOnce, proves that Redis
// did not execute the command. These do:
//
//   - *noConnError, or a *net.OpError whose Op is "dial": there was no
//     connection (a refused or timed-out dial, a failed TLS handshake,
//     no node known for the slot);
//   - redis.ErrClosed, redis.ErrPoolTimeout, redis.ErrPoolExhausted: no
//     connection could be taken from the pool;
//   - context.Canceled, context.DeadlineExceeded: go-redis returns these
//     only while it waits for a connection (an expired deadline during
//     I/O is a net timeout instead);
//   - a *net.OpError whose Op is "write": the command was not written
//     whole, and Redis never runs part of a command (but a failed write
//     of a pipeline of several commands is a *partialWriteError: the
//     first ones may have run);
//   - a Redis error reply (redis.Error: MOVED, LOADING, NOAUTH, OOM,
//     CLUSTERDOWN...): Redis refused the command.
//
// Everything else leaves the outcome unknown: a read timeout, EOF or a
// reset connection while waiting for the reply, a malformed reply, a
// failure while a new connection's handshake waited for its reply (it
// reads like a reply timeout), and any error ws does not recognise.
func publishNotSent(err error) bool {
	var noConn *noConnError
	var op *net.OpError
	var reply redis.Error
	var partial *partialWriteError
	switch {
	case errors.As(err, &partial): // see redis_pipeline.go
		return false
	case errors.As(err, &noConn):
		return true
	case errors.Is(err, redis.ErrClosed), errors.Is(err, redis.ErrPoolTimeout), errors.Is(err, redis.ErrPoolExhausted):
		return true
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return true
	case errors.As(err, &reply):
		return true
	case errors.As(err, &op):
		return op.Op == "dial" || op.Op == "write"
	}
	return false
}

// noConnError is a failure to get a connection for a command, which was
// therefore not sent: a dial error (see RedisOptions.dialer) or no node
// known for a cluster slot.
type noConnError struct{ err error }

func (e *noConnError) Error() string { return e.err.Error() }
func (e *noConnError) Unwrap() error { return e.err }

// prober returns a request, on a connection of the client's pool, that
// the server holding a control channel's subscriptions answers: its peer
// count (count, from peerCounter, which asks that server), or where Redis
// cannot count them (classic pub/sub on a cluster) a PING of whichever
// node the client sends it to.
func (b *RedisBroker) prober(count func(context.Context) (int, error)) func(context.Context) error {
	if count != nil {
		return func(ctx context.Context) error { _, err := count(ctx); return err }
	}
	return func(ctx context.Context) error { return b.client.Ping(ctx).Err() }
}

// peerCounter returns a function counting the brokers subscribed to the
// control channel ctl, or nil where Redis cannot tell: with classic
// pub/sub on a cluster each node counts only its own subscribers.
func (b *RedisBroker) peerCounter(ctl string) func(context.Context) (int, error) {
	cc, cluster := b.client.(*redis.ClusterClient)
	switch {
	case cluster && !b.sharded:
		return nil
	case cluster:
		return func(ctx context.Context) (int, error) {
			node, err := cc.MasterForKey(ctx, ctl)
			if err != nil {
				return 0, err
			}
			n, err := node.PubSubShardNumSub(ctx, ctl).Result()
			return int(n[ctl]), err
		}
	default:
		// After the replica guard: a count from a replica would be of
		// its own subscribers (redis_replica.go).
		return func(ctx context.Context) (int, error) {
			var num *redis.MapStringIntCmd
			if replica, _ := sendGuarded(ctx, b.client, b.guardKey, func(pipe redis.Pipeliner) { num = pipe.PubSubNumSub(ctx, ctl) }); replica {
				return 0, errReplica
			}
			n, err := num.Result()
			return int(n[ctl]), err
		}
	}
}
