package ws_test

import (
	"context"
	"net/http"
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

// reusingBroker is a MemoryBroker-like broker that reads every delivery
// into one buffer and overwrites it once the handler returns, as the
// MessageBroker contract allows ("must not keep payload after it returns
// unless it copies it"). It also holds back the second publication on
// the channel hold and delivers it right after the third, out of order.
type reusingBroker struct {
	mu       sync.Mutex
	handlers map[string]func([]byte) // guarded by mu
	buf      []byte                  // guarded by mu
	hold     string
	n        int    // publications on hold; guarded by mu
	held     []byte // guarded by mu
}

func (b *reusingBroker) Publish(ctx context.Context, channel string, payload []byte) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if channel == b.hold {
		b.n++
		if b.n == 2 {
			b.held = append([]byte(nil), payload...)
			return nil
		}
	}
	b.deliver(channel, payload)
	if channel == b.hold && b.held != nil {
		b.deliver(channel, b.held)
		b.held = nil
	}
	return nil
}

func (b *reusingBroker) deliver(channel string, payload []byte) {
	if h := b.handlers[channel]; h != nil {
		b.buf = append(b.buf[:0], payload...)
		h(b.buf)
		for i := range b.buf {
			b.buf[i] = 'X'
		}
	}
}

func (b *reusingBroker) Subscribe(ctx context.Context, channel string, handler func([]byte)) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.handlers[channel] = handler
	return nil
}

func (b *reusingBroker) Unsubscribe(ctx context.Context, channel string) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	delete(b.handlers, channel)
	return nil
}

func (b *reusingBroker) Close() error { return nil }

// TestPresenceKeepsCopiesOfWhatItHoldsBack: a join that arrives ahead of
// the one before it waits in the node's presence sequencer until that one
// comes, after the broker's handler has returned. The broker may reuse the
// payload meanwhile, so what waits must be a copy: carol's join reaches
// alice with carol's info and the list of three, not the bytes the broker
// wrote over it.
func TestPresenceKeepsCopiesOfWhatItHoldsBack(t *testing.T) {
	const ch = "presence-order"
	b := &reusingBroker{handlers: map[string]func([]byte){}, hold: ch}
	opts := userOptions()
	opts.GetUserInfo = func(r *http.Request, userID string) any { return map[string]string{"name": "Ms " + userID} }
	n := newNode(t, b, nil, ws.Config{}, opts)
	alice := n.dial(t, "alice") // publication 1: alice's join
	join(alice, ch)
	require.Equal(t, "members", alice.next()["event"])
	bob := n.dial(t, "bob") // publication 2, held back (bob's list waits for it)
	join(bob, ch)
	carol := n.dial(t, "carol") // publication 3, then 2
	join(carol, ch)
	for _, who := range []string{"bob", "carol"} {
		m := alice.next()
		require.Equal(t, "join", m["event"], "alice's frame: %v", m)
		require.Equal(t, map[string]any{"id": who, "info": map[string]any{"name": "Ms " + who}}, m["user"], "alice's frame: %v", m)
	}
	alice.expectQuiet()
}
