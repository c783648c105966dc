package ws

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// presenceNode is one identity of a RedisStorage in Redis: a random ID
// with a heartbeat key and an index of the channels it has entries in.
// A storage keeps one identity for its life unless Redis declares it
// dead (its heartbeat expired while it was stalled) or may have lost what
// it wrote (the heartbeat key is gone, or the Redis process changed);
// then it takes a new identity (rotate), because what was written under
// the old one is, or is about to be, reaped or is no longer to be
// trusted. MaintainPresence then claims the storage's live connections
// under the new identity and reaps the old one.
type presenceNode struct {
	id    string
	ready chan struct{} // closed by the heartbeat goroutine once registered
	// runs are the run_id of each Redis master when the node registered;
	// written before ready is closed, read-only after.
	runs map[string]string

	// ops orders the index updates of one channel: the first local
	// connection adds the channel to the index before its entry is
	// written, and the index entry goes only after the last one is gone.
	ops  keyLock
	mu   sync.Mutex
	refs map[string]int // guarded by mu; local entries (and adds in flight) per channel
	// failed is why the last registration attempt failed (NOPERM, a
	// refused connection), for the calls waiting on ready; nil before a
	// failure and once registered. Written by the heartbeat goroutine.
	failed atomic.Pointer[error]
	// attempt is closed, and replaced, after each failed registration
	// attempt (failed is stored first), so the calls waiting on ready can
	// look at why. Guarded by mu.
	attempt chan struct{}
}

func newPresenceNode() *presenceNode {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails
	return &presenceNode{id: hex.EncodeToString(b[:]), ready: make(chan struct{}), refs: make(map[string]int), attempt: make(chan struct{})}
}

func (n *presenceNode) registered() bool {
	select {
	case <-n.ready:
		return true
	default:
		return false
	}
}

// acquire counts k more local entries in ch, first adding ch to the
// node's channel index if it was not there, so a reaper always finds the
// entries that are about to be written.
func (n *presenceNode) acquire(ctx context.Context, s *RedisStorage, ch string, k int) error {
	unlock, err := n.ops.lock(ctx, ch)
	if err != nil {
		return err
	}
	defer unlock()
	n.mu.Lock()
	first := n.refs[ch] == 0
	n.mu.Unlock()
	if first {
		if err := s.index(ctx, n.id, ch); err != nil {
			return err
		}
	}
	n.mu.Lock()
	n.refs[ch] += k
	n.mu.Unlock()
	return nil
}

// index adds node id to the node set and ch to the node's channel index.
// Re-adding the node to the node set is a no-op normally; for a node that
// was reaped while stalled and has not yet noticed, it makes reapers look
// at it again, so the entry it is about to write is reaped too instead of
// outliving it. The two SADDs do not depend on each other and both come
// before the entry, so they share one round trip: the storage's
// autoPipeline sends them together, with every other node's joins. (Not
// a pipeline of their own, which would take a pooled connection for
// itself: in a reconnect storm, thousands of channels at once ran the
// pool out.) Every other joiner of ch on this node waits for them
// (acquire's lock): one SADD after the other cost each of them one
// more round trip, which in a reconnect storm on a 2-core machine was
// up to a second.
//
// A replica refuses them (READONLY), and they go again on another
// connection (onPrimary); adding again is a no-op.
func (s *RedisStorage) index(ctx context.Context, id, ch string) error {
	return onPrimary(s.client, func() error {
		node := redis.NewIntCmd(ctx, "sadd", s.keys.nodes(), id)
		channel := redis.NewIntCmd(ctx, "sadd", s.keys.nodeChannels(id), ch)
		if s.scripts != nil {
			return s.scripts.processAll(ctx, node, channel)
		}
		return processInTurn(ctx, s.client, node, channel)
	})
}

// release counts k local entries of ch gone (or never written) and drops
// ch from the index after the last. A failure leaves ch in the index,
// which costs a reaper one empty look at the channel and nothing else.
func (n *presenceNode) release(ctx context.Context, s *RedisStorage, ch string, k int) {
	unlock, err := n.ops.lock(ctx, ch)
	if err != nil {
		return
	}
	defer unlock()
	n.mu.Lock()
	n.refs[ch] -= k
	last := n.refs[ch] <= 0
	if last {
		delete(n.refs, ch)
	}
	n.mu.Unlock()
	if last {
		_ = s.client.SRem(ctx, s.keys.nodeChannels(n.id), ch).Err()
	}
}

// idle reports whether the node has no entries (nor adds in flight).
func (n *presenceNode) idle() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return len(n.refs) == 0
}

// heartbeat registers the current identity and keeps its heartbeat key
// alive until Close. It is the only goroutine that closes node.ready.
func (s *RedisStorage) heartbeat() {
	defer s.wg.Done()
	for {
		n := s.current()
		wait := s.ttl / 3
		if !n.registered() {
			if err := s.register(n); err != nil {
				s.logger.Warn("ws: redis presence node registration failed", "node", n.id, "error", err)
				n.failed.Store(&err)
				n.mu.Lock()
				close(n.attempt)
				n.attempt = make(chan struct{})
				n.mu.Unlock()
				wait = min(wait, 500*time.Millisecond)
			} else {
				n.failed.Store(nil)
				close(n.ready)
			}
		} else {
			s.beat(n)
		}
		t := time.NewTimer(wait)
		select {
		case <-s.done:
			t.Stop()
			return
		case <-s.kick:
		case <-t.C:
		}
		t.Stop()
	}
}

// register notes which Redis processes the node writes to, then writes
// the heartbeat key, then adds the node to the node set, so a reaper never
// sees a registered node without a heartbeat. (A restart between the
// first two steps costs one needless rotation, never a missed one.)
func (s *RedisStorage) register(n *presenceNode) error {
	ctx, cancel := context.WithTimeout(context.Background(), s.ttl/3)
	defer cancel()
	runs, err := s.serverRuns(ctx)
	if err != nil {
		return err
	}
	n.runs = runs
	if err := onPrimary(s.client, func() error { return s.client.Set(ctx, s.keys.alive(n.id), "1", s.ttl).Err() }); err != nil {
		return err
	}
	return onPrimary(s.client, func() error { return s.client.SAdd(ctx, s.keys.nodes(), n.id).Err() })
}

// beat refreshes the heartbeat key. It refreshes only a key that still
// exists: a key that expired means the node was (or will be) reaped, or
// Redis lost its data, and the node must not come back to life under the
// same ID.
func (s *RedisStorage) beat(n *presenceNode) {
	ctx, cancel := context.WithTimeout(context.Background(), s.ttl/3)
	defer cancel()
	var ok bool
	err := onPrimary(s.client, func() (err error) {
		ok, err = s.client.SetXX(ctx, s.keys.alive(n.id), "1", s.ttl).Result()
		return err
	})
	switch {
	case err != nil:
		s.logger.Warn("ws: redis presence heartbeat failed", "node", n.id, "error", err)
	case !ok:
		s.rotate(n, "heartbeat key gone")
	}
}

// rotate replaces the identity old, if it is still current, with a new
// one, marks the live connections for MaintainPresence to claim under it
// and old for reaping, and wakes the heartbeat goroutine to register the
// new identity.
func (s *RedisStorage) rotate(old *presenceNode, why string) {
	s.mu.Lock()
	if s.node == old {
		s.node = newPresenceNode()
		s.retired = append(s.retired, old.id)
		s.heal = true
		s.logger.Warn("ws: redis presence node takes a new ID; its presence is restored at the next maintenance",
			"reason", why, "old", old.id, "new", s.node.id)
	}
	s.mu.Unlock()
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// current returns the identity in use.
func (s *RedisStorage) current() *presenceNode {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.node
}

// session returns the current identity once it is registered.
func (s *RedisStorage) session(ctx context.Context) (*presenceNode, error) {
	n := s.current()
	for {
		n.mu.Lock()
		attempt := n.attempt
		n.mu.Unlock()
		if n.registered() {
			return n, nil
		}
		if failed := n.failed.Load(); failed != nil && refusal(*failed) {
			// Redis refuses what registering needs until an operator
			// changes its ACL or password: waiting out ctx cannot help.
			return nil, fmt.Errorf("presence node not registered: %w", *failed)
		}
		select {
		case <-n.ready:
			return n, nil
		case <-attempt: // an attempt failed: look at why
		case <-ctx.Done():
			if failed := n.failed.Load(); failed != nil {
				// Say why the node is not registered, not only that ctx ended.
				return nil, fmt.Errorf("presence node not registered (last attempt: %v): %w", *failed, ctx.Err())
			}
			return nil, ctx.Err()
		case <-s.done:
			return nil, ErrHubClosed
		}
	}
}

// refusal reports whether err is Redis refusing a command or a connection
// to this user (an ACL without the command, a wrong password): an
// answer that stays the same until an operator changes Redis.
func refusal(err error) bool {
	return redis.HasErrorPrefix(err, "NOPERM") || redis.HasErrorPrefix(err, "WRONGPASS") || redis.HasErrorPrefix(err, "NOAUTH")
}
