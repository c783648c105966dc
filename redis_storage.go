package ws

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// RedisStorage is a StorageClient (and PresenceReaper) that keeps
// presence in Redis, shared by every node of a cluster.
//
// Each RedisStorage is a node with a random ID. Its heartbeat key lives
// NodeTTL and is refreshed every NodeTTL/3 by a goroutine that Close
// stops. Connections are counted per user in Lua scripts, so joins and
// leaves are decided atomically across nodes. When a node dies, its
// heartbeat expires and ReapPresence (on any node) removes its
// connections within NodeTTL + ReapInterval.
//
// Keys, with the default KeyPrefix "ws:", ID a node ID and C a channel:
//
//	ws:nodes                    SET    IDs of nodes that may own entries
//	ws:node:{ID}:alive          STRING heartbeat, expires after NodeTTL
//	ws:node:{ID}:channels       SET    channels the node has entries in
//	ws:presence:{C}:conns       HASH   connID -> "nodeID|userID"
//	ws:presence:{C}:users       HASH   userID -> number of connections
//	ws:presence:{C}:info        HASH   userID -> info JSON
//	ws:presence:{C}:nodes       HASH   nodeID -> number of connections
//	ws:presence:{C}:dead        SET    nodes reaped here (tombstones)
//
// The braces are Redis Cluster hash tags: one channel's keys share a slot,
// so its scripts run on Redis Cluster. Nothing scans the keyspace; the
// reaper reads the node set and the channel index of dead nodes only.
// See docs/redis.md.
type RedisStorage struct {
	client       redis.UniversalClient
	ownsClient   bool
	keys         presenceKeys
	ttl          time.Duration
	reapInterval time.Duration
	logger       *slog.Logger

	mu   sync.Mutex
	node *presenceNode // guarded by mu; replaced by rotate

	kick      chan struct{} // wakes the heartbeat goroutine after a rotation
	done      chan struct{} // closed by Close
	wg        sync.WaitGroup
	closeOnce sync.Once
	closeErr  error // written once under closeOnce
}

var (
	_ StorageClient   = (*RedisStorage)(nil)
	_ PresenceReaper  = (*RedisStorage)(nil)
	_ PresenceCounter = (*RedisStorage)(nil)
)

// NewRedisStorage returns a presence store on the Redis server at addr
// ("host:port") with default options. It does not fail: if Redis is not
// reachable its methods return errors until it is.
func NewRedisStorage(addr string) *RedisStorage {
	s, err := NewRedisStorageWithOptions(RedisOptions{Addrs: []string{addr}})
	if err != nil {
		panic("ws: NewRedisStorage: default options rejected: " + err.Error()) // unreachable
	}
	return s
}

// NewRedisStorageWithOptions returns a presence store configured by opts.
// It fails only on invalid options.
func NewRedisStorageWithOptions(opts RedisOptions) (*RedisStorage, error) {
	o, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	return newRedisStorage(o.newClient(), true, o), nil
}

// NewRedisStorageFromClient returns a presence store that uses client,
// which it does not close. Of opts only the storage's fields and
// KeyPrefix apply. The client's retries should be off (MaxRetries -1): a
// retried script loses its joined/left answer.
func NewRedisStorageFromClient(client redis.UniversalClient, opts RedisOptions) (*RedisStorage, error) {
	if client == nil {
		return nil, &ConfigError{Field: "client", Reason: "is nil"}
	}
	o, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	return newRedisStorage(client, false, o), nil
}

func newRedisStorage(client redis.UniversalClient, owns bool, o RedisOptions) *RedisStorage {
	s := &RedisStorage{
		client:       client,
		ownsClient:   owns,
		keys:         presenceKeys{prefix: o.KeyPrefix},
		ttl:          o.NodeTTL,
		reapInterval: o.ReapInterval,
		logger:       o.Logger,
		node:         newPresenceNode(),
		kick:         make(chan struct{}, 1),
		done:         make(chan struct{}),
	}
	s.wg.Add(1)
	go s.heartbeat()
	return s
}

// NodeID returns the ID under which this storage currently writes
// presence. It changes only if Redis declared the node dead.
func (s *RedisStorage) NodeID() string { return s.current().id }

// AddPresence records conn. It waits (within ctx) for the node's first
// heartbeat to be written.
func (s *RedisStorage) AddPresence(ctx context.Context, conn PresenceConn) (bool, error) {
	// A node that finds itself reaped takes a new identity and tries again;
	// twice in a row means its heartbeat cannot keep up, so give up.
	for range 3 {
		n, err := s.session(ctx)
		if err != nil {
			return false, s.wrap("add", conn.Channel, err)
		}
		if err := n.acquire(ctx, s, conn.Channel); err != nil {
			return false, s.wrap("add", conn.Channel, err)
		}
		res, err := addPresenceScript.Run(ctx, s.client, s.keys.channel(conn.Channel),
			conn.ConnID, n.id, conn.Member.UserID, string(conn.Member.Info)).Int()
		switch {
		case err != nil:
			// The entry may or may not be written; keeping the index
			// entry is the safe side.
			return false, s.wrap("add", conn.Channel, err)
		case res == -1:
			s.rotate(n)
			continue
		case res == 0:
			n.release(ctx, s, conn.Channel)
			return false, nil
		default:
			return res == 1, nil
		}
	}
	return false, s.wrap("add", conn.Channel, errors.New("node was declared dead repeatedly; is NodeTTL too short?"))
}

// RemovePresence removes conn, whichever node added it.
func (s *RedisStorage) RemovePresence(ctx context.Context, conn PresenceConn) (bool, error) {
	res, err := removePresenceScript.Run(ctx, s.client, s.keys.channel(conn.Channel)[:4], conn.ConnID).Slice()
	if err != nil {
		return false, s.wrap("remove", conn.Channel, err)
	}
	if len(res) != 2 {
		return false, s.wrap("remove", conn.Channel, fmt.Errorf("unexpected script reply %v", res))
	}
	left, _ := res[0].(int64)
	node, _ := res[1].(string)
	if n := s.current(); node != "" && node == n.id {
		n.release(ctx, s, conn.Channel)
	}
	return left == 1, nil
}

// PresenceMembers returns the channel's members ordered by UserID, read
// in one command so the list is a consistent snapshot.
func (s *RedisStorage) PresenceMembers(ctx context.Context, channel string) ([]PresenceMember, error) {
	info, err := s.client.HGetAll(ctx, s.keys.channel(channel)[2]).Result()
	if err != nil {
		return nil, s.wrap("members", channel, err)
	}
	out := make([]PresenceMember, 0, len(info))
	for uid, data := range info {
		m := PresenceMember{UserID: uid}
		if data != "" {
			m.Info = json.RawMessage(data)
		}
		out = append(out, m)
	}
	slices.SortFunc(out, func(a, b PresenceMember) int { return strings.Compare(a.UserID, b.UserID) })
	return out, nil
}

// PresenceCount returns the number of members of channel with one HLEN,
// so join and leave frames of large channels cost O(1).
func (s *RedisStorage) PresenceCount(ctx context.Context, channel string) (int, error) {
	n, err := s.client.HLen(ctx, s.keys.channel(channel)[2]).Result()
	if err != nil {
		return 0, s.wrap("count", channel, err)
	}
	return int(n), nil
}

// ReapInterval returns RedisOptions.ReapInterval.
func (s *RedisStorage) ReapInterval() time.Duration { return s.reapInterval }

// Close stops the heartbeat and deletes the node's heartbeat key, so any
// presence the node still holds is reaped at the next ReapPresence
// anywhere instead of after NodeTTL. If the storage created its client, it
// closes it. Later calls return the first call's result.
func (s *RedisStorage) Close() error {
	s.closeOnce.Do(func() {
		close(s.done)
		s.wg.Wait()
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		var errs []error
		if err := s.client.Del(ctx, s.keys.alive(s.current().id)).Err(); err != nil {
			errs = append(errs, err)
		}
		if s.ownsClient {
			if err := s.client.Close(); err != nil {
				errs = append(errs, err)
			}
		}
		if err := errors.Join(errs...); err != nil {
			s.closeErr = fmt.Errorf("ws: redis storage close: %w", err)
		}
	})
	return s.closeErr
}

func (s *RedisStorage) wrap(op, channel string, err error) error {
	if errors.Is(err, ErrHubClosed) {
		return err
	}
	return fmt.Errorf("ws: redis presence %s on %q: %w", op, channel, err)
}
