package ws_test

import (
	"context"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	ws "github.com/vortechron/go-ws"
)

// lateReads is a memory storage whose member-list reads Redis answers
// late: every read after the first waits until a second member's entry
// is stored, and reads return in the order they were made.
type lateReads struct {
	*ws.MemoryStorage

	mu    sync.Mutex
	cond  *sync.Cond
	adds  int // AddPresence calls that returned
	reads int // reads made
	done  int // reads returned
}

func newLateReads() *lateReads {
	s := &lateReads{MemoryStorage: ws.NewMemoryStorage()}
	s.cond = sync.NewCond(&s.mu)
	return s
}

func (s *lateReads) AddPresence(ctx context.Context, conn ws.PresenceConn) (ws.PresenceEvent, bool, error) {
	ev, changed, err := s.MemoryStorage.AddPresence(ctx, conn)
	s.count(&s.adds)
	return ev, changed, err
}

func (s *lateReads) PresenceMembers(ctx context.Context, channel string) ([]ws.PresenceMember, ws.PresenceVersion, error) {
	s.mu.Lock()
	n := s.reads
	s.reads++
	for (n > 0 && s.adds < 2) || s.done < n {
		s.cond.Wait()
	}
	s.mu.Unlock()
	members, v, err := s.MemoryStorage.PresenceMembers(ctx, channel)
	s.count(&s.done)
	return members, v, err
}

// count adds one to n, a counter of s, and wakes the reads waiting on it.
func (s *lateReads) count(n *int) {
	s.mu.Lock()
	*n++
	s.cond.Broadcast()
	s.mu.Unlock()
}

// TestJoinAfterFirstSubscriberIsAJoin proves docs/presence.md's promise
// that a member sees later arrivals as "join" frames: the first subscriber
// of a presence channel on a node gets its list, and the next member's
// arrival as a join, even when Redis answers reads late. A node used to
// read the list once more when its own announcement of the first join
// came back before that subscriber's list was sent; a read that Redis
// answered after the next join was stored then sent every subscriber a
// fresh list with the newcomer in it, and the join itself was dropped as
// already applied: the client saw "here" again instead of "joining".
func TestJoinAfterFirstSubscriberIsAJoin(t *testing.T) {
	storage := newLateReads()
	n := newNode(t, ws.NewMemoryBroker(), storage, ws.Config{}, userOptions())
	const ch = "presence-late"
	alice := n.dial(t, "alice")
	join(alice, ch)
	m := alice.next()
	require.Equal(t, "members", m["event"], "alice's first frame after subscribed: %v", m)
	require.EqualValues(t, 1, m["count"], "alice's list: %v", m)

	bob := n.dial(t, "bob")
	join(bob, ch)
	require.EqualValues(t, 2, expectNext(bob, map[string]any{"type": "presence", "event": "members"})["count"])
	m = alice.next()
	require.Equal(t, "join", m["event"], "alice's next frame: got %v, want bob's join", m)
	require.Equal(t, "bob", m["user"].(map[string]any)["id"])
	alice.expectQuiet()
}
