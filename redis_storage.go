package ws

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// RedisStorage is a StorageClient (and PresenceMaintainer) that keeps
// presence in Redis, shared by every node of a cluster.
//
// Each RedisStorage is a node with a random ID. Its heartbeat key lives
// NodeTTL and is refreshed every NodeTTL/3 by a goroutine that Close
// stops. Connections are counted per user in Lua scripts, so joins and
// leaves are decided atomically across nodes, and the same scripts number
// them with the channel's version. When a node dies, its heartbeat
// expires and MaintainPresence (on any node) removes its connections
// within NodeTTL + MaintainInterval.
//
// The storage remembers the connections it added and has not removed.
// When Redis loses them (FLUSHALL, a restart without persistence, a
// failover to a replica that lagged) or declares the node dead while it
// was only stalled, MaintainPresence writes them back under a new node ID
// and returns the joins that result. See docs/redis.md for the bounds.
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
//	ws:presence:{C}:dead        SET    nodes reaped here and fenced adds (tombstones)
//	ws:presence:{C}:version     HASH   epoch, seq, run (Redis run_id)
//
// The braces are Redis Cluster hash tags: one channel's keys share a slot,
// so its scripts run on Redis Cluster. Nothing scans the keyspace; the
// reaper reads the node set and the channel index of dead nodes only.
type RedisStorage struct {
	client        redis.UniversalClient
	ownsClient    bool
	keys          presenceKeys
	guard         string // the replica guard's key, "" on Redis Cluster (redis_replica.go)
	ttl           time.Duration
	maintainEvery time.Duration
	logger        *slog.Logger

	mu      sync.Mutex
	node    *presenceNode                        // guarded by mu; replaced by rotate
	retired []string                             // guarded by mu; IDs this storage wrote under before, not yet reaped
	heal    bool                                 // guarded by mu; live connections must be claimed under node
	live    map[string]map[string]PresenceMember // guarded by mu; channel -> connID -> member, added and not removed
	orphans map[string]map[string]PresenceMember // guarded by mu; channel -> connID -> member whose removal failed
	fences  map[string]map[string][]string       // guarded by mu; channel -> connID -> tokens of adds whose outcome is unknown
	adds    atomic.Uint64                        // add scripts run, numbering their tokens

	// connOps orders the add, removal, claim and retried removal of one
	// connection in one channel (key: channel, NUL, connID).
	connOps keyLock
	// maintaining admits one MaintainPresence at a time.
	maintaining chan struct{}
	// occ is the node's channel occupancy (redis_occupancy.go).
	occ redisOccupancy

	scripts   *autoPipeline // gathers concurrent scripts; nil on a client given to FromClient
	kick      chan struct{} // wakes the heartbeat goroutine after a rotation
	done      chan struct{} // closed by Close
	wg        sync.WaitGroup
	closeOnce sync.Once
	closeErr  error // written once under closeOnce
}

var (
	_ StorageClient      = (*RedisStorage)(nil)
	_ PresenceMaintainer = (*RedisStorage)(nil)
	_ PresenceCounter    = (*RedisStorage)(nil)
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
// KeyPrefix apply. The client's retries (MaxRetries) apply to every
// command but the Lua scripts, which the storage sends at most once: a
// retried script loses its joined/left answer. A script that a replica
// refused (READONLY) goes again, on another connection.
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
		client:        client,
		ownsClient:    owns,
		keys:          presenceKeys{prefix: o.KeyPrefix},
		ttl:           o.NodeTTL,
		maintainEvery: min(o.ReapInterval, o.NodeTTL/2),
		logger:        o.Logger,
		node:          newPresenceNode(),
		live:          make(map[string]map[string]PresenceMember),
		orphans:       make(map[string]map[string]PresenceMember),
		fences:        make(map[string]map[string][]string),
		maintaining:   make(chan struct{}, 1),
		occ:           redisOccupancy{sem: make(chan struct{}, 1)},
		kick:          make(chan struct{}, 1),
		done:          make(chan struct{}),
	}
	s.guard = guardKeyFor(client, o.KeyPrefix)
	if owns {
		s.scripts = installAutoPipeline(client, s.guard, &s.wg, s.done) // redis_autopipeline.go
	}
	s.wg.Add(1)
	go s.heartbeat()
	return s
}

// NodeID returns the ID under which this storage currently writes
// presence. It changes when Redis declared the node dead or lost its
// data.
func (s *RedisStorage) NodeID() string { return s.current().id }

// AddPresence records conn. It waits (within ctx) for the node's first
// heartbeat to be written.
func (s *RedisStorage) AddPresence(ctx context.Context, conn PresenceConn) (PresenceEvent, bool, error) {
	unlock, err := s.connOps.lock(ctx, connKey(conn))
	if err != nil {
		return PresenceEvent{}, false, s.wrap("add", conn.Channel, err)
	}
	defer unlock()
	// A node that finds itself reaped takes a new identity and tries again;
	// twice in a row means its heartbeat cannot keep up, so give up.
	for range 3 {
		n, err := s.session(ctx)
		if err != nil {
			return PresenceEvent{}, false, s.wrap("add", conn.Channel, err)
		}
		if err := n.acquire(ctx, s, conn.Channel, 1); err != nil {
			return PresenceEvent{}, false, s.wrap("add", conn.Channel, err)
		}
		token := fenceToken(conn.ConnID, s.adds.Add(1))
		r := newScriptReply(runOnPrimary(ctx, s.client, addPresenceScript, s.keys.channel(conn.Channel),
			conn.ConnID, n.id, conn.Member.UserID, string(conn.Member.Info), newEpoch(), token).Result())
		code := r.int(0)
		var ev PresenceEvent
		if code == 1 {
			ev = PresenceEvent{Conn: conn, Version: r.version(1, 2), Count: int(r.int(3))}
		}
		switch {
		case r.err != nil:
			// The entry may or may not be written, or be written later:
			// a script that timed out here may still reach Redis, or
			// wait in a stopped Redis, and run after the caller removed
			// the connection. Its removal fences it. Keeping the index
			// entry is the safe side.
			s.fence(conn, token)
			return PresenceEvent{}, false, s.wrap("add", conn.Channel, r.err)
		case code == -2:
			return PresenceEvent{}, false, s.wrap("add", conn.Channel, errFenced)
		case code == -1:
			s.rotate(n, "reaped while stalled")
			continue
		case code == 0:
			n.release(ctx, s, conn.Channel, 1)
		}
		s.track(conn, n)
		return ev, code == 1, nil
	}
	return PresenceEvent{}, false, s.wrap("add", conn.Channel, errors.New("node was declared dead repeatedly; is NodeTTL too short?"))
}

// RemovePresence removes conn, whichever node added it. Even when it
// fails, the storage forgets conn (it is never restored), and
// MaintainPresence retries the removal.
func (s *RedisStorage) RemovePresence(ctx context.Context, conn PresenceConn) (PresenceEvent, bool, error) {
	unlock, err := s.connOps.lock(ctx, connKey(conn))
	if err != nil {
		s.untrack(conn)
		s.orphan(conn)
		return PresenceEvent{}, false, s.wrap("remove", conn.Channel, err)
	}
	defer unlock()
	s.untrack(conn)
	ev, left, err := s.remove(ctx, conn)
	if err != nil {
		s.orphan(conn)
		return PresenceEvent{}, false, s.wrap("remove", conn.Channel, err)
	}
	return ev, left, nil
}

// remove runs the removal script for conn; the caller holds its connOps
// lock.
func (s *RedisStorage) remove(ctx context.Context, conn PresenceConn) (PresenceEvent, bool, error) {
	args := []any{conn.ConnID, newEpoch()}
	if tokens := s.fenceTokens(conn); len(tokens) > 0 {
		args = append(args, fenceTTL.Milliseconds())
		for _, t := range tokens {
			args = append(args, t)
		}
	}
	r := newScriptReply(runOnPrimary(ctx, s.client, removePresenceScript, s.keys.channel(conn.Channel), args...).Result())
	if r.err == nil && len(args) > 2 {
		s.unfence(conn)
	}
	left, node := r.int(0), r.str(1)
	var ev PresenceEvent
	if left == 1 {
		ev = PresenceEvent{Conn: PresenceConn{Channel: conn.Channel, ConnID: conn.ConnID, Member: member(r.str(2), r.str(3))},
			Left: true, Version: r.version(4, 5), Count: int(r.int(6))}
	}
	if r.err != nil {
		return PresenceEvent{}, false, r.err
	}
	if n := s.current(); node != "" && node == n.id {
		n.release(ctx, s, conn.Channel, 1)
	}
	return ev, left == 1, nil
}

// PresenceMembers returns the channel's members ordered by UserID and its
// version, read in one script (membersScript) so the two agree. It does not check
// which Redis process wrote the version: whatever it reads is a state
// Redis really had, named by its own version (after a restart from an
// older file, an older one); only numbering new changes needs the check.
func (s *RedisStorage) PresenceMembers(ctx context.Context, channel string) ([]PresenceMember, PresenceVersion, error) {
	keys := s.keys.channel(channel)
	res, err := runOnPrimary(ctx, s.client, membersScript, []string{keys[2], keys[5]}, s.guard).Slice()
	if err == nil && (len(res) < 2 || len(res)%2 != 0) {
		err = fmt.Errorf("unexpected members reply of %d values", len(res))
	}
	if err != nil {
		return nil, PresenceVersion{}, s.wrap("members", channel, err)
	}
	var v PresenceVersion
	v.Epoch, _ = res[0].(string)
	if seq, _ := res[1].(string); seq != "" { // none yet: a channel nobody joined since it emptied
		v.Seq, _ = strconv.ParseUint(seq, 10, 64)
	}
	out := make([]PresenceMember, 0, len(res)/2-1)
	for i := 2; i < len(res); i += 2 {
		uid, _ := res[i].(string)
		data, _ := res[i+1].(string)
		out = append(out, member(uid, data))
	}
	slices.SortFunc(out, func(a, b PresenceMember) int { return strings.Compare(a.UserID, b.UserID) })
	return out, v, nil
}

// PresenceCount returns the number of members of channel with one HLEN,
// so join and leave frames of large channels cost O(1). Like
// PresenceMembers it reads on the primary: a replica refuses it.
func (s *RedisStorage) PresenceCount(ctx context.Context, channel string) (int, error) {
	n, err := runOnPrimary(ctx, s.client, countScript, s.keys.channel(channel)[2:3], s.guard).Int()
	if err != nil {
		return 0, s.wrap("count", channel, err)
	}
	return int(n), nil
}

// MaintainInterval returns how often the Hub should call
// MaintainPresence: RedisOptions.ReapInterval, or NodeTTL/2 if that is
// shorter, so lost presence is restored within NodeTTL.
func (s *RedisStorage) MaintainInterval() time.Duration { return s.maintainEvery }

// Close stops the heartbeat and takes the node out of Redis: its
// heartbeat key, its channel index and its entry in the node set. If the
// node still has presence recorded (the Hub did not remove it all), only
// the heartbeat key goes, so the next MaintainPresence on another node
// removes that presence and announces the leaves. If the storage created
// its client, it closes it. Later calls return the first call's result.
func (s *RedisStorage) Close() error {
	s.closeOnce.Do(func() {
		close(s.done)
		s.wg.Wait()
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		var errs []error
		// Each is a few DELs and SREMs, safe to send again off a
		// replica (redis_replica.go).
		if err := onPrimary(s.client, func() error { return s.deregister(ctx) }); err != nil {
			errs = append(errs, err)
		}
		if err := onPrimary(s.client, func() error { return s.deregisterOccupancy(ctx) }); err != nil {
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

// deregister removes the node from Redis on Close.
func (s *RedisStorage) deregister(ctx context.Context) error {
	n := s.current()
	s.mu.Lock()
	holds := len(s.live) > 0 || len(s.orphans) > 0 || len(s.retired) > 0 || !n.idle()
	s.mu.Unlock()
	if holds {
		return s.client.Del(ctx, s.keys.alive(n.id)).Err()
	}
	// The index and the node set are different slots on Redis Cluster, so
	// these are separate commands; the heartbeat goes first, as anything
	// left behind is then reapable.
	if err := s.client.Del(ctx, s.keys.alive(n.id)).Err(); err != nil {
		return err
	}
	if err := s.client.Del(ctx, s.keys.nodeChannels(n.id)).Err(); err != nil {
		return err
	}
	return s.client.SRem(ctx, s.keys.nodes(), n.id).Err()
}

// wrap makes err a storage failure: it matches ErrStorageUnavailable and
// keeps err's own chain (a context deadline, say) for errors.Is.
func (s *RedisStorage) wrap(op, channel string, err error) error {
	if errors.Is(err, ErrHubClosed) {
		return err
	}
	return fmt.Errorf("%w: redis presence %s on %q: %w", ErrStorageUnavailable, op, channel, err)
}

// member builds a PresenceMember from its stored form ("" info: none).
func member(uid, info string) PresenceMember {
	m := PresenceMember{UserID: uid}
	if info != "" {
		m.Info = json.RawMessage(info)
	}
	return m
}

// connKey names conn for connOps.
func connKey(conn PresenceConn) string { return conn.Channel + "\x00" + conn.ConnID }
