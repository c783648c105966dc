package ws

// What the cluster API (cluster.go) asks of Redis beyond the MessageBroker
// and StorageClient contracts: a publish that counts its receivers, and
// the member counts of many presence channels in one round trip.

import (
	"context"
	"errors"
	"fmt"

	"github.com/redis/go-redis/v9"
)

var _ PublishCounter = (*RedisBroker)(nil)

// PublishCounted is Publish, returning also the number of subscription
// connections Redis handed the publication to (the integer reply of
// PUBLISH, or SPUBLISH on Redis Cluster): one per broker subscribed to
// channel. With classic pub/sub on Redis Cluster (DisableShardedPubSub)
// PUBLISH counts only the subscribers of the node it reached, so the
// count is -1 (unknown).
func (b *RedisBroker) PublishCounted(ctx context.Context, channel string, payload []byte) (int, error) {
	if b.closed.Load() {
		return 0, ErrHubClosed
	}
	if _, cluster := b.client.(*redis.ClusterClient); cluster && !b.sharded {
		return -1, b.Publish(ctx, channel, payload)
	}
	i := b.shardOf(channel)
	sh := b.shards[i]
	session, err := sh.admit(ctx)
	if err != nil {
		return 0, fmt.Errorf("%w: redis publish on %q: %w", ErrBrokerUnavailable, channel, err)
	}
	n, err := b.publishCountedOnce(ctx, b.redisChannel(i, channel), payload)
	if err != nil {
		if errors.Is(err, errReplica) {
			sh.replicaSeen(session)
		}
		if publishNotSent(err) {
			return 0, fmt.Errorf("%w: redis publish on %q: %w", ErrBrokerUnavailable, channel, err)
		}
		return 0, fmt.Errorf("%w: redis publish on %q: %w", ErrPublishUncertain, channel, err)
	}
	if !sh.stillLive(session) {
		return 0, fmt.Errorf("%w: redis publish on %q: the subscription connection failed while publishing", ErrPublishUncertain, channel)
	}
	return int(n), nil
}

// presenceCounts returns the member count of each presence channel, with
// one pipelined HLEN each: one round trip (per Redis Cluster node). The
// pipeline starts with the replica guard (redis_replica.go), and goes
// again while a replica refuses it, as the scripts do: a replica would
// count from older data.
func (s *RedisStorage) presenceCounts(ctx context.Context, channels []string) ([]int, error) {
	cmds := make([]*redis.IntCmd, len(channels))
	err := onPrimary(s.client, func() error {
		_, err := sendGuarded(ctx, s.client, s.guard, func(pipe redis.Pipeliner) {
			for i, ch := range channels {
				cmds[i] = pipe.HLen(ctx, s.keys.channel(ch)[2])
			}
		})
		return err
	})
	if err != nil {
		return nil, s.wrap("count", fmt.Sprintf("%d channels", len(channels)), err)
	}
	out := make([]int, len(channels))
	for i, cmd := range cmds {
		out[i] = int(cmd.Val())
	}
	return out, nil
}
