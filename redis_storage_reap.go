package ws

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// ReapPresence removes the presence of nodes whose heartbeat expired and
// returns one entry per user who thereby left a channel. It costs one
// SMEMBERS and one pipelined EXISTS per known node; only dead nodes cost
// more: one script per channel in their index. Several nodes may reap at
// once: each channel's removal is one atomic script, so each departure is
// returned to exactly one caller. On error it returns the departures it
// did make together with the error: they are already removed from Redis,
// so the caller must announce them even then. A later call finishes the
// rest.
func (s *RedisStorage) ReapPresence(ctx context.Context) ([]PresenceConn, error) {
	ids, err := s.client.SMembers(ctx, s.keys.nodes()).Result()
	if err != nil {
		return nil, fmt.Errorf("ws: redis presence reap: %w", err)
	}
	self := s.current().id
	pipe := s.client.Pipeline()
	alive := make(map[string]*redis.IntCmd, len(ids))
	for _, id := range ids {
		if id != self {
			alive[id] = pipe.Exists(ctx, s.keys.alive(id))
		}
	}
	if len(alive) == 0 {
		return nil, nil
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return nil, fmt.Errorf("ws: redis presence reap: %w", err)
	}
	var (
		out  []PresenceConn
		errs []error
	)
	for id, cmd := range alive {
		if cmd.Val() != 0 {
			continue
		}
		left, err := s.reapNode(ctx, id)
		out = append(out, left...)
		if err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return out, fmt.Errorf("ws: redis presence reap: %w", err)
	}
	return out, nil
}

// reapNode removes dead node id from every channel in its index, then
// forgets the index and the node. If a channel fails, the index stays for
// the next reap.
func (s *RedisStorage) reapNode(ctx context.Context, id string) ([]PresenceConn, error) {
	channels, err := s.client.SMembers(ctx, s.keys.nodeChannels(id)).Result()
	if err != nil {
		return nil, fmt.Errorf("node %s: %w", id, err)
	}
	tombstone := max(10*s.ttl, time.Minute).Milliseconds()
	var out []PresenceConn
	for _, ch := range channels {
		res, err := reapPresenceScript.Run(ctx, s.client, s.keys.channel(ch), id, tombstone).StringSlice()
		if err != nil {
			return out, fmt.Errorf("node %s channel %q: %w", id, ch, err)
		}
		for i := 0; i+2 < len(res); i += 3 {
			m := PresenceMember{UserID: res[i]}
			if res[i+2] != "" {
				m.Info = json.RawMessage(res[i+2])
			}
			out = append(out, PresenceConn{Channel: ch, ConnID: res[i+1], Member: m})
		}
	}
	if err := s.client.Del(ctx, s.keys.nodeChannels(id)).Err(); err != nil {
		return out, fmt.Errorf("node %s: %w", id, err)
	}
	if err := s.client.SRem(ctx, s.keys.nodes(), id).Err(); err != nil {
		return out, fmt.Errorf("node %s: %w", id, err)
	}
	return out, nil
}
