package ws

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// claimBatch bounds the connections one claim script writes back, so no
// script holds Redis for long.
const claimBatch = 256

// MaintainPresence keeps Redis's presence true to the cluster. In order:
//
//  1. If Redis may have lost what this node wrote (its heartbeat key is
//     gone, or a Redis master is not the process it was at the last call:
//     a restart or a failover), the node takes a new ID.
//  2. After a new ID, every connection the storage added and has not
//     removed is written back under it (one script per channel and 256
//     connections); those whose user had gone from the channel come back
//     as joins.
//  3. Removals that failed earlier are tried again.
//  4. Nodes whose heartbeat expired, this node's former IDs included, are
//     reaped: one script per channel in their index removes their
//     connections and returns the users who thereby left.
//
// It costs one INFO per Redis master, one EXISTS, one SMEMBERS and one
// pipelined EXISTS per known node; the rest only when there is something
// to restore or reap. Several nodes may maintain at once: every change
// is one atomic script, so each join and leave is returned to exactly one
// caller. On error it returns the events it did make together with the
// error: they are already applied in Redis, so the caller must announce
// them even then. A later call finishes the rest.
func (s *RedisStorage) MaintainPresence(ctx context.Context) ([]PresenceEvent, error) {
	select {
	case s.maintaining <- struct{}{}:
		defer func() { <-s.maintaining }()
	case <-ctx.Done():
		return nil, s.wrapMaintain(ctx.Err())
	}
	var (
		events []PresenceEvent
		errs   []error
	)
	collect := func(evs []PresenceEvent, err error) {
		events = append(events, evs...)
		if err != nil {
			errs = append(errs, err)
		}
	}
	if err := s.checkLoss(ctx); err != nil {
		errs = append(errs, err)
	}
	s.mu.Lock()
	heal := s.heal
	s.mu.Unlock()
	if heal {
		collect(s.claimAll(ctx))
	}
	collect(s.retryOrphans(ctx))
	collect(s.reap(ctx))
	return events, s.wrapMaintain(errors.Join(errs...))
}

func (s *RedisStorage) wrapMaintain(err error) error {
	if err == nil || errors.Is(err, ErrHubClosed) {
		return err
	}
	return fmt.Errorf("%w: redis presence maintenance: %w", ErrStorageUnavailable, err)
}

// checkLoss gives the node a new ID if Redis may have lost what it
// wrote: a Redis master is not the process the node registered on (it
// restarted, or a replica took over), or the node's heartbeat key is gone
// (FLUSHALL, or the node stalled and was declared dead).
func (s *RedisStorage) checkLoss(ctx context.Context) error {
	n := s.current()
	if !n.registered() {
		return nil
	}
	runs, err := s.serverRuns(ctx)
	if err != nil {
		return err
	}
	if !maps.Equal(n.runs, runs) {
		s.rotate(n, "Redis server restarted or failed over")
		return nil
	}
	alive, err := s.client.Exists(ctx, s.keys.alive(n.id)).Result()
	if err != nil {
		return err
	}
	if alive == 0 {
		s.rotate(n, "heartbeat key gone")
	}
	return nil
}

// serverRuns returns the run_id of every Redis master, by address.
func (s *RedisStorage) serverRuns(ctx context.Context) (map[string]string, error) {
	out := make(map[string]string)
	c, ok := s.client.(*redis.ClusterClient)
	if !ok {
		id, err := runID(ctx, s.client)
		out[""] = id
		return out, err
	}
	var mu sync.Mutex
	err := c.ForEachMaster(ctx, func(ctx context.Context, m *redis.Client) error {
		id, err := runID(ctx, m)
		mu.Lock()
		out[m.Options().Addr] = id
		mu.Unlock()
		return err
	})
	return out, err
}

func runID(ctx context.Context, c redis.Cmdable) (string, error) {
	info, err := c.Info(ctx, "server").Result()
	if err != nil {
		return "", err
	}
	for line := range strings.Lines(info) {
		if id, ok := strings.CutPrefix(strings.TrimSpace(line), "run_id:"); ok {
			return id, nil
		}
	}
	return "", errors.New("INFO server has no run_id")
}

// claimAll writes every live connection back under the current identity
// and, once all are there, lets the former identities be reaped.
func (s *RedisStorage) claimAll(ctx context.Context) ([]PresenceEvent, error) {
	n, err := s.session(ctx)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	s.heal = false
	s.mu.Unlock()
	live := s.snapshot(s.live)
	var (
		events []PresenceEvent
		errs   []error
	)
	for _, ch := range sortedChannels(live) {
		for conns := live[ch]; len(conns) > 0; {
			k := min(len(conns), claimBatch)
			evs, err := s.claim(ctx, n, ch, conns[:k])
			events = append(events, evs...)
			if err != nil {
				errs = append(errs, fmt.Errorf("restore %q: %w", ch, err))
				break
			}
			conns = conns[k:]
		}
	}
	if len(errs) > 0 || s.current() != n {
		s.mu.Lock()
		s.heal = true
		s.mu.Unlock()
		return events, errors.Join(errs...)
	}
	// Every live connection is under n now; what the former identities
	// still hold is stale, so they may be reaped.
	s.mu.Lock()
	retired := slices.Clone(s.retired)
	s.mu.Unlock()
	for _, id := range retired {
		if err := s.client.Del(ctx, s.keys.alive(id)).Err(); err != nil {
			return events, err
		}
	}
	return events, nil
}

// claim writes batch, live connections of channel ch, under identity n.
func (s *RedisStorage) claim(ctx context.Context, n *presenceNode, ch string, batch []PresenceConn) ([]PresenceEvent, error) {
	// Holding each connection keeps a removal from running between the
	// check that it is live and the script, which would write it back.
	var held []PresenceConn
	for _, c := range batch {
		unlock, err := s.connOps.lock(ctx, connKey(c))
		if err != nil {
			return nil, err
		}
		defer unlock()
		if s.holds(s.live, c) {
			held = append(held, c)
		}
	}
	if len(held) == 0 {
		return nil, nil
	}
	if err := n.acquire(ctx, s, ch, len(held)); err != nil {
		return nil, err
	}
	args := make([]any, 0, 2+3*len(held))
	args = append(args, n.id, newEpoch())
	for _, c := range held {
		args = append(args, c.ConnID, c.Member.UserID, string(c.Member.Info))
	}
	r := newScriptReply(runOnPrimary(ctx, s.client, claimPresenceScript, s.keys.channel(ch), args...).Result())
	if r.int(0) == -1 && r.err == nil {
		n.release(ctx, s, ch, len(held))
		s.rotate(n, "reaped while stalled")
		return nil, errors.New("node was reaped meanwhile; restoring under a new ID at the next maintenance")
	}
	epoch := r.str(1)
	var events []PresenceEvent
	already := 0
	for i, c := range held {
		switch code, seq, count := r.int(2+3*i), r.int(3+3*i), r.int(4+3*i); code {
		case 0:
			already++
		case 3:
			events = append(events, PresenceEvent{Conn: c, Version: PresenceVersion{Epoch: epoch, Seq: uint64(seq)}, Count: int(count)})
		}
	}
	if r.err != nil {
		// The connections may or may not be written; keeping the index
		// references is the safe side.
		return nil, r.err
	}
	if already > 0 {
		n.release(ctx, s, ch, already)
	}
	return events, nil
}

// retryOrphans removes again the connections whose removal failed.
func (s *RedisStorage) retryOrphans(ctx context.Context) ([]PresenceEvent, error) {
	orphans := s.snapshot(s.orphans)
	var events []PresenceEvent
	for _, ch := range sortedChannels(orphans) {
		for _, c := range orphans[ch] {
			ev, left, err := s.retryRemove(ctx, c)
			if err != nil {
				return events, fmt.Errorf("remove %q: %w", ch, err)
			}
			if left {
				events = append(events, ev)
			}
		}
	}
	return events, nil
}

func (s *RedisStorage) retryRemove(ctx context.Context, c PresenceConn) (PresenceEvent, bool, error) {
	unlock, err := s.connOps.lock(ctx, connKey(c))
	if err != nil {
		return PresenceEvent{}, false, err
	}
	defer unlock()
	if !s.holds(s.orphans, c) { // added again meanwhile
		return PresenceEvent{}, false, nil
	}
	ev, left, err := s.remove(ctx, c)
	if err != nil {
		return PresenceEvent{}, false, err
	}
	s.mu.Lock()
	dropConn(s.orphans, c)
	s.mu.Unlock()
	return ev, left, nil
}

// reap removes the presence of every node whose heartbeat expired.
func (s *RedisStorage) reap(ctx context.Context) ([]PresenceEvent, error) {
	ids, err := s.client.SMembers(ctx, s.keys.nodes()).Result()
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	ids = append(ids, s.retired...)
	s.mu.Unlock()
	slices.Sort(ids)
	ids = slices.Compact(ids)
	dead, err := s.deadNodes(ctx, ids, nil)
	if err != nil {
		return nil, err
	}
	var (
		events []PresenceEvent
		errs   []error
	)
	for _, id := range dead {
		evs, err := s.reapNode(ctx, id)
		events = append(events, evs...)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		s.mu.Lock()
		s.retired = slices.DeleteFunc(s.retired, func(r string) bool { return r == id })
		s.mu.Unlock()
	}
	return events, errors.Join(errs...)
}

// deadNodes returns the nodes among ids, other than this node and those
// keep names, whose heartbeat key is gone, with one pipelined EXISTS for
// all of them.
func (s *RedisStorage) deadNodes(ctx context.Context, ids []string, keep map[string]bool) ([]string, error) {
	self := s.current().id
	pipe := s.client.Pipeline()
	alive := make(map[string]*redis.IntCmd, len(ids))
	for _, id := range ids {
		if id != self && !keep[id] {
			alive[id] = pipe.Exists(ctx, s.keys.alive(id))
		}
	}
	if len(alive) == 0 {
		return nil, nil
	}
	if err := execPipe(ctx, pipe); err != nil {
		return nil, err
	}
	var dead []string
	for id, cmd := range alive {
		if cmd.Val() == 0 {
			dead = append(dead, id)
		}
	}
	return dead, nil
}

// reapNode removes dead node id from every channel in its index, then
// forgets the index and the node. If a channel fails, the index stays for
// the next reap.
func (s *RedisStorage) reapNode(ctx context.Context, id string) ([]PresenceEvent, error) {
	channels, err := s.client.SMembers(ctx, s.keys.nodeChannels(id)).Result()
	if err != nil {
		return nil, fmt.Errorf("node %s: %w", id, err)
	}
	tombstone := max(10*s.ttl, time.Minute).Milliseconds()
	var events []PresenceEvent
	for _, ch := range channels {
		r := newScriptReply(runOnPrimary(ctx, s.client, reapPresenceScript, s.keys.channel(ch), id, tombstone, newEpoch()).Result())
		if r.len() == 0 && r.err == nil {
			continue
		}
		epoch := r.str(0)
		for i := 1; i+4 < r.len(); i += 5 {
			events = append(events, PresenceEvent{
				Conn:    PresenceConn{Channel: ch, ConnID: r.str(i + 1), Member: member(r.str(i), r.str(i+2))},
				Left:    true,
				Version: PresenceVersion{Epoch: epoch, Seq: uint64(r.int(i + 3))},
				Count:   int(r.int(i + 4)),
			})
		}
		if r.err != nil {
			return events, fmt.Errorf("node %s channel %q: %w", id, ch, r.err)
		}
	}
	if err := s.client.Del(ctx, s.keys.nodeChannels(id)).Err(); err != nil {
		return events, fmt.Errorf("node %s: %w", id, err)
	}
	if err := s.client.SRem(ctx, s.keys.nodes(), id).Err(); err != nil {
		return events, fmt.Errorf("node %s: %w", id, err)
	}
	return events, nil
}
