package ws_test

import (
	"bytes"
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

// holdingBroker is a node's broker on a bus. It holds back the second
// publication on the channel hold, closing holding, and publishes it
// right after the third, out of order; delivered, if set, is called with
// each publication once every node's handler has had it. It has no
// PublishCounted, so the hub publishes through it.
type holdingBroker struct {
	b         *busBroker
	hold      string
	holding   chan struct{}
	delivered func(payload []byte)

	mu   sync.Mutex
	n    int    // publications on hold; guarded by mu
	held []byte // guarded by mu
}

func (b *bus) holdingBroker(hold string) *holdingBroker {
	return &holdingBroker{b: b.broker(), hold: hold, holding: make(chan struct{})}
}

func (h *holdingBroker) Publish(ctx context.Context, channel string, payload []byte) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if channel == h.hold {
		h.n++
		if h.n == 2 {
			h.held = append([]byte(nil), payload...)
			close(h.holding)
			return nil
		}
	}
	if err := h.publish(ctx, channel, payload); err != nil {
		return err
	}
	if held := h.held; channel == h.hold && held != nil {
		h.held = nil
		return h.publish(ctx, channel, held)
	}
	return nil
}

func (h *holdingBroker) publish(ctx context.Context, channel string, payload []byte) error {
	if err := h.b.Publish(ctx, channel, payload); err != nil {
		return err
	}
	if h.delivered != nil {
		h.delivered(payload)
	}
	return nil
}

func (h *holdingBroker) Subscribe(ctx context.Context, channel string, handler func([]byte)) error {
	return h.b.Subscribe(ctx, channel, handler)
}

func (h *holdingBroker) Unsubscribe(ctx context.Context, channel string) error {
	return h.b.Unsubscribe(ctx, channel)
}

func (h *holdingBroker) Close() error { return h.b.Close() }

// infoOptions are userOptions with every member's info {"name":"Ms <id>"}.
func infoOptions() *ws.Options {
	opts := userOptions()
	opts.GetUserInfo = func(r *http.Request, userID string) any { return map[string]string{"name": "Ms " + userID} }
	return opts
}

// member is the user of a presence frame with infoOptions.
func member(id string) map[string]any {
	return map[string]any{"id": id, "info": map[string]any{"name": "Ms " + id}}
}

// TestPresenceKeepsCopiesOfWhatItHoldsBack: a join that arrives ahead of
// the one before it waits in the node's presence sequencer until that one
// comes, after the broker's handler has returned. The broker may reuse the
// payload meanwhile, so what waits must be a copy: carol's join reaches
// alice with carol's info and the list of three, not the bytes the broker
// wrote over it.
func TestPresenceKeepsCopiesOfWhatItHoldsBack(t *testing.T) {
	const ch = "presence-order"
	bus := newBus()
	bus.reuse = true
	b := bus.holdingBroker(ch)
	n := newNode(t, b, nil, ws.Config{}, infoOptions())
	alice := n.dial(t, "alice") // publication 1: alice's join
	join(alice, ch)
	require.Equal(t, "members", alice.next()["event"])
	bob := n.dial(t, "bob") // publication 2, held back (bob's list waits for it)
	join(bob, ch)
	<-b.holding                 // bob's join is decided (version 2) before carol's
	carol := n.dial(t, "carol") // publication 3, then 2
	join(carol, ch)
	for _, who := range []string{"bob", "carol"} {
		m := alice.next()
		require.Equal(t, "join", m["event"], "alice's frame: %v", m)
		require.Equal(t, member(who), m["user"], "alice's frame: %v", m)
	}
	alice.expectQuiet()
}

// heldRead is a memory storage whose member-list reads made while the
// channel has one member are answered, with what they read then, only
// once release is closed: Redis replies that come late.
type heldRead struct {
	*ws.MemoryStorage
	release chan struct{}
	holding chan struct{} // closed when the first read is held
	once    sync.Once
}

func (s *heldRead) PresenceMembers(ctx context.Context, channel string) ([]ws.PresenceMember, ws.PresenceVersion, error) {
	members, v, err := s.MemoryStorage.PresenceMembers(ctx, channel)
	if len(members) == 1 {
		s.once.Do(func() { close(s.holding) })
		<-s.release
	}
	return members, v, err
}

// TestPresenceKeepsCopiesOfStrays is TestPresenceKeepsCopiesOfWhatItHoldsBack
// for the other wait: bob's join reaches the node while alice's list (and
// her own join) are still on their way, and waits for them; the list
// turns out to be older, so bob's join is then sent to alice, after the
// broker has reused its bytes.
func TestPresenceKeepsCopiesOfStrays(t *testing.T) {
	const ch = "presence-stray"
	storage := &heldRead{MemoryStorage: ws.NewMemoryStorage(), release: make(chan struct{}), holding: make(chan struct{})}
	bus := newBus()
	bus.reuse = true
	var once sync.Once
	released := func(payload []byte) {
		if bytes.Contains(payload, []byte("Ms bob")) {
			once.Do(func() { close(storage.release) })
		}
	}
	nodes := make([]*testNode, 2)
	for i := range nodes {
		hb := bus.holdingBroker("")
		hb.delivered = released
		nodes[i] = newNode(t, hb, storage, ws.Config{}, infoOptions())
	}
	a, b := nodes[0], nodes[1]
	alice := a.dial(t, "alice") // the reads for her join and her list are held
	join(alice, ch)
	<-storage.holding       // alice's entry is stored (version 1) before bob's
	bob := b.dial(t, "bob") // on the other node: bob's join reaches a, then the reads are answered
	join(bob, ch)
	m := alice.next()
	require.Equal(t, "members", m["event"], "alice's frame: %v", m)
	require.Equal(t, []any{member("alice")}, m["users"], "alice's list, as read before bob came: %v", m)
	m = alice.next()
	require.Equal(t, "join", m["event"], "alice's frame: %v", m)
	require.Equal(t, member("bob"), m["user"], "alice's frame: %v", m)
	alice.expectQuiet()
}
