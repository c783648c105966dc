package ws

// Channel occupancy in Redis: RedisStorage as ChannelOccupancy and
// OccupancyMaintainer.
//
// Keys, with the default KeyPrefix "ws:", ID a node ID and C a channel:
//
//	ws:occupied:{C}          SET  IDs of the nodes with subscribers of C
//	ws:occupancy:nodes       SET  IDs of nodes that may hold occupancy
//	ws:node:{ID}:occupied    SET  channels whose occupied set holds ID
//
// A node here is the storage's current identity, the one its presence is
// written under, so its heartbeat key (ws:node:{ID}:alive) says whether
// it lives, and it changes when Redis lost what the node wrote (see
// presenceNode). Every change to an occupied set is one script that also
// reads the set's size, so exactly one caller sees a set go from empty to
// one node (occupied) or from one node to empty (vacated). The node's
// index is written before its entries and cleared after them, so a
// reaper always finds the entries of a node that died.

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"strconv"
	"strings"

	"github.com/redis/go-redis/v9"
)

var (
	_ ChannelOccupancy    = (*RedisStorage)(nil)
	_ OccupancyMaintainer = (*RedisStorage)(nil)
)

// redisOccupancy is RedisStorage's record of its own occupancy.
type redisOccupancy struct {
	// sem holds one token, taken while the node's occupancy changes
	// (occupy, vacate, claim, deregister), so those happen one at a time.
	sem chan struct{}
	// held maps each channel the node occupies to the node ID its entry
	// was written under; guarded by sem.
	held map[string]string
}

func (o *redisOccupancy) lock(ctx context.Context) (unlock func(), err error) {
	select {
	case o.sem <- struct{}{}:
		if o.held == nil {
			o.held = make(map[string]string)
		}
		return func() { <-o.sem }, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (k presenceKeys) occupancyNodes() string { return k.prefix + "occupancy:nodes" }
func (k presenceKeys) nodeOccupied(id string) string {
	return k.prefix + "node:{" + id + "}:occupied"
}

// occupied returns the key of channel ch's occupied set, hash-tagged by
// the channel name like its presence keys (or by its hash when the name
// is empty or holds a brace).
func (k presenceKeys) occupied(ch string) string {
	if ch == "" || strings.ContainsAny(ch, "{}") {
		h := fnv.New64a()
		h.Write([]byte(ch))
		return k.prefix + "occupied:{" + strconv.FormatUint(h.Sum64(), 16) + "}:" + ch
	}
	return k.prefix + "occupied:{" + ch + "}"
}

// occupyScript adds node ARGV[1] to the occupied set KEYS[1]; 1 if the
// channel thereby became occupied.
var occupyScript = redis.NewScript(`
if redis.call('SADD', KEYS[1], ARGV[1]) == 1 and redis.call('SCARD', KEYS[1]) == 1 then return 1 end
return 0
`)

// vacateScript removes node ARGV[1] from the occupied set KEYS[1]; 1 if
// the channel thereby became vacant.
var vacateScript = redis.NewScript(`
if redis.call('SREM', KEYS[1], ARGV[1]) == 1 and redis.call('EXISTS', KEYS[1]) == 0 then return 1 end
return 0
`)

// claimScript moves the node's entry in KEYS[1] from its former ID
// ARGV[2] to its current ID ARGV[1]; 1 if the set was empty (Redis lost
// it, or the former ID was reaped), so the channel became occupied again.
var claimScript = redis.NewScript(`
local vacant = redis.call('EXISTS', KEYS[1]) == 0
redis.call('SREM', KEYS[1], ARGV[2])
redis.call('SADD', KEYS[1], ARGV[1])
if vacant then return 1 end
return 0
`)

// OccupyChannels adds this node to the occupied set of each channel, after
// adding the channels to the node's index. Cost: one round trip for the
// whole batch (two on Redis Cluster: see runIndexed).
func (s *RedisStorage) OccupyChannels(ctx context.Context, channels []string) ([]string, error) {
	if len(channels) == 0 {
		return nil, nil
	}
	unlock, err := s.occ.lock(ctx)
	if err != nil {
		return nil, s.wrapOccupancy("occupy", err)
	}
	defer unlock()
	n, err := s.session(ctx)
	if err != nil {
		return nil, s.wrapOccupancy("occupy", err)
	}
	vals, errs, err := s.runIndexed(ctx, n.id, occupyScript, channels, func(int) []any { return []any{n.id} })
	var occupied []string
	for i, ch := range channels {
		if errs[i] != nil {
			continue // may or may not be written; the Hub retries
		}
		s.occ.held[ch] = n.id
		if vals[i] == 1 {
			occupied = append(occupied, ch)
		}
	}
	return occupied, s.wrapOccupancy("occupy", err)
}

// VacateChannels removes this node from the occupied set of each channel,
// then the channels from the node's index. Cost: two round trips for the
// whole batch.
func (s *RedisStorage) VacateChannels(ctx context.Context, channels []string) ([]string, error) {
	if len(channels) == 0 {
		return nil, nil
	}
	unlock, err := s.occ.lock(ctx)
	if err != nil {
		return nil, s.wrapOccupancy("vacate", err)
	}
	defer unlock()
	current := s.current().id
	ids := make([]string, len(channels))
	for i, ch := range channels {
		if ids[i] = s.occ.held[ch]; ids[i] == "" {
			ids[i] = current // never recorded: removing it is a no-op
		}
	}
	vals, errs, err := s.runEach(ctx, vacateScript, channels, func(i int) []any { return []any{ids[i]} }, nil)
	var vacated []string
	pipe := s.client.Pipeline()
	for i, ch := range channels {
		if errs[i] != nil {
			continue
		}
		delete(s.occ.held, ch)
		pipe.SRem(ctx, s.keys.nodeOccupied(ids[i]), ch)
		if vals[i] == 1 {
			vacated = append(vacated, ch)
		}
	}
	// A channel left in the index costs a reaper one empty look, so a
	// failure here is not reported.
	if pipe.Len() > 0 {
		_ = execPipe(ctx, pipe)
	}
	return vacated, s.wrapOccupancy("vacate", err)
}

// MaintainOccupancy first writes back, under the node's current ID, the
// occupancy it holds under a former one (after Redis lost what the node
// wrote or declared it dead: see MaintainPresence), reporting the
// channels whose occupied set had emptied meanwhile as occupied again.
// Then it reaps the nodes whose heartbeat expired: it removes them from
// every occupied set in their index and reports the channels that
// thereby emptied as vacated. It costs one SMEMBERS and one pipelined
// EXISTS per known node; the rest only when there is something to claim
// or reap.
func (s *RedisStorage) MaintainOccupancy(ctx context.Context) ([]OccupancyChange, error) {
	var errs []error
	changes, keep, err := s.claimOccupancy(ctx)
	if err != nil {
		errs = append(errs, fmt.Errorf("restore: %w", err))
	}
	vacated, err := s.reapOccupancy(ctx, keep)
	changes = append(changes, vacated...)
	if err != nil {
		errs = append(errs, fmt.Errorf("reap: %w", err))
	}
	return changes, s.wrapOccupancy("maintenance", errors.Join(errs...))
}

// claimOccupancy moves the node's entries written under former IDs to
// its current one. It returns the IDs it could not move entries from:
// those must not be reaped yet.
func (s *RedisStorage) claimOccupancy(ctx context.Context) ([]OccupancyChange, map[string]bool, error) {
	unlock, err := s.occ.lock(ctx)
	if err != nil {
		return nil, nil, err
	}
	defer unlock()
	n := s.current()
	var stale []string
	keep := make(map[string]bool)
	for ch, id := range s.occ.held {
		if id != n.id {
			stale = append(stale, ch)
			keep[id] = true
		}
	}
	if len(stale) == 0 || !n.registered() {
		return nil, keep, nil
	}
	former := make([]string, len(stale))
	for i, ch := range stale {
		former[i] = s.occ.held[ch]
	}
	vals, errs, err := s.runIndexed(ctx, n.id, claimScript, stale, func(i int) []any { return []any{n.id, former[i]} })
	var changes []OccupancyChange
	for i, ch := range stale {
		if errs[i] != nil {
			continue
		}
		s.occ.held[ch] = n.id
		if vals[i] == 1 {
			changes = append(changes, OccupancyChange{Channel: ch, Occupied: true})
		}
	}
	clear(keep)
	for _, id := range s.occ.held {
		if id != n.id {
			keep[id] = true
		}
	}
	return changes, keep, err
}

// reapOccupancy removes the occupancy of every node whose heartbeat
// expired, except this node's IDs in keep.
func (s *RedisStorage) reapOccupancy(ctx context.Context, keep map[string]bool) ([]OccupancyChange, error) {
	ids, err := s.client.SMembers(ctx, s.keys.occupancyNodes()).Result()
	if err != nil {
		return nil, err
	}
	dead, err := s.deadNodes(ctx, ids, keep)
	if err != nil {
		return nil, err
	}
	var (
		changes []OccupancyChange
		errs    []error
	)
	for _, id := range dead {
		vacated, err := s.reapNodeOccupancy(ctx, id)
		for _, ch := range vacated {
			changes = append(changes, OccupancyChange{Channel: ch})
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("node %s: %w", id, err))
		}
	}
	return changes, errors.Join(errs...)
}

// reapNodeOccupancy removes dead node id from the occupied set of every
// channel in its index, then forgets the index and the node. If a
// channel fails, the index stays for the next reap.
func (s *RedisStorage) reapNodeOccupancy(ctx context.Context, id string) ([]string, error) {
	channels, err := s.client.SMembers(ctx, s.keys.nodeOccupied(id)).Result()
	if err != nil {
		return nil, err
	}
	var vacated []string
	for len(channels) > 0 {
		batch := channels[:min(len(channels), occupancyBatch)]
		channels = channels[len(batch):]
		vals, errs, err := s.runEach(ctx, vacateScript, batch, func(int) []any { return []any{id} }, nil)
		for i, ch := range batch {
			if errs[i] == nil && vals[i] == 1 {
				vacated = append(vacated, ch)
			}
		}
		if err != nil {
			return vacated, err
		}
	}
	if err := s.client.Del(ctx, s.keys.nodeOccupied(id)).Err(); err != nil {
		return vacated, err
	}
	return vacated, s.client.SRem(ctx, s.keys.occupancyNodes(), id).Err()
}

// runIndexed adds channels to node id's index and id to the node set, and
// then runs script for each channel as runEach does. The index must be
// written before the entries, so a reaper always finds them; and for a
// node that was reaped while stalled and has not noticed yet, re-adding
// it to the node set makes reapers look at it again, so what it is about
// to write is reaped too instead of outliving it. On one server the
// index commands and the scripts share one pipeline, which Redis runs in
// order on one connection: one round trip. Redis Cluster may run the
// parts of a pipeline on different nodes in any order, so there the
// index is written first, in a round trip of its own.
func (s *RedisStorage) runIndexed(ctx context.Context, id string, script *redis.Script, channels []string, args func(i int) []any) ([]int64, []error, error) {
	members := make([]any, len(channels))
	for i, ch := range channels {
		members[i] = ch
	}
	index := func(pipe redis.Pipeliner) []redis.Cmder {
		return []redis.Cmder{
			pipe.SAdd(ctx, s.keys.occupancyNodes(), id),
			pipe.SAdd(ctx, s.keys.nodeOccupied(id), members...),
		}
	}
	if isCluster(s.client) {
		pipe := s.client.Pipeline()
		index(pipe)
		if err := execPipe(ctx, pipe); err != nil {
			return nil, nil, err
		}
		index = nil
	}
	return s.runEach(ctx, script, channels, args, index)
}

// deregisterOccupancy takes the node out of the occupancy node set on
// Close, if it holds no occupancy; otherwise the heartbeat key, which
// Close deletes, lets the next reaper vacate what it held.
func (s *RedisStorage) deregisterOccupancy(ctx context.Context) error {
	unlock, err := s.occ.lock(ctx)
	if err != nil {
		return err
	}
	defer unlock()
	if len(s.occ.held) > 0 {
		return nil
	}
	id := s.current().id
	if err := s.client.Del(ctx, s.keys.nodeOccupied(id)).Err(); err != nil {
		return err
	}
	return s.client.SRem(ctx, s.keys.occupancyNodes(), id).Err()
}

// runEach runs script once for each channel, on the channel's occupied
// set with args(i), in one pipeline (EVALSHA, then EVAL for the servers
// that do not have the script cached yet). prelude, if not nil, queues
// commands at the head of the first pipeline; if one of them fails,
// nothing else counts. What a replica refused (READONLY: the scripts and
// the prelude write first, so it did nothing) goes again while the pool
// may hold connections to the old primary (replicaRetry). It returns each
// reply, each error, and the first error.
func (s *RedisStorage) runEach(ctx context.Context, script *redis.Script, channels []string, args func(i int) []any, prelude func(redis.Pipeliner) []redis.Cmder) ([]int64, []error, error) {
	vals := make([]int64, len(channels))
	errs := make([]error, len(channels))
	pending := make([]int, len(channels))
	for i := range pending {
		pending[i] = i
	}
	var retry replicaRetry
	for len(pending) > 0 {
		s.runPending(ctx, script, channels, pending, args, prelude, vals, errs)
		var refused []int
		for _, i := range pending {
			if redis.IsReadOnlyError(errs[i]) {
				refused = append(refused, i)
			}
		}
		if len(refused) == 0 || !retry.again(s.client) {
			break
		}
		pending = refused
	}
	var first error
	failed := 0
	for _, err := range errs {
		if err != nil {
			if first == nil {
				first = err
			}
			failed++
		}
	}
	if failed > 1 {
		first = fmt.Errorf("%d of %d channels failed, the first: %w", failed, len(channels), first)
	}
	return vals, errs, first
}

// runPending is one attempt of runEach for the channels pending holds,
// writing their replies and errors into vals and errs.
func (s *RedisStorage) runPending(ctx context.Context, script *redis.Script, channels []string, pending []int, args func(i int) []any, prelude func(redis.Pipeliner) []redis.Cmder, vals []int64, errs []error) {
	for _, eval := range []bool{false, true} {
		pipe := s.client.Pipeline()
		var head []redis.Cmder
		if prelude != nil && !eval {
			head = prelude(pipe)
		}
		cmds := make([]*redis.Cmd, len(pending))
		for j, i := range pending {
			keys := []string{s.keys.occupied(channels[i])}
			if eval {
				cmds[j] = script.Eval(ctx, once(pipe), keys, args(i)...)
			} else {
				cmds[j] = script.EvalSha(ctx, once(pipe), keys, args(i)...)
			}
		}
		_ = execPipe(ctx, pipe)
		for _, c := range head {
			if err := c.Err(); err != nil {
				for _, i := range pending {
					errs[i] = err
				}
				return
			}
		}
		var again []int
		for j, i := range pending {
			v, err := cmds[j].Int64()
			if err != nil && !eval && redis.HasErrorPrefix(err, "NOSCRIPT") {
				again = append(again, i)
				continue
			}
			vals[i], errs[i] = v, err
		}
		if pending = again; len(pending) == 0 {
			return
		}
	}
}

// wrapOccupancy makes err a storage failure, like wrap.
func (s *RedisStorage) wrapOccupancy(op string, err error) error {
	if err == nil || errors.Is(err, ErrHubClosed) {
		return err
	}
	return fmt.Errorf("%w: redis occupancy %s: %w", ErrStorageUnavailable, op, err)
}
