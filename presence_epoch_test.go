package ws_test

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"

	ws "github.com/vortechron/go-ws"
)

// lossyStore is a presence storage that loses everything on lose(), as a
// Redis restarted without persistence does: what comes after is a fresh
// MemoryStorage, whose epochs are new.
type lossyStore struct {
	mu  sync.Mutex
	cur *ws.MemoryStorage // guarded by mu
}

func newLossyStore() *lossyStore { return &lossyStore{cur: ws.NewMemoryStorage()} }

func (s *lossyStore) get() *ws.MemoryStorage {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cur
}

func (s *lossyStore) lose() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.cur = ws.NewMemoryStorage()
}

func (s *lossyStore) AddPresence(ctx context.Context, conn ws.PresenceConn) (ws.PresenceEvent, bool, error) {
	return s.get().AddPresence(ctx, conn)
}

func (s *lossyStore) RemovePresence(ctx context.Context, conn ws.PresenceConn) (ws.PresenceEvent, bool, error) {
	return s.get().RemovePresence(ctx, conn)
}

func (s *lossyStore) PresenceMembers(ctx context.Context, channel string) ([]ws.PresenceMember, ws.PresenceVersion, error) {
	return s.get().PresenceMembers(ctx, channel)
}

func (s *lossyStore) Close() error { return nil }

// heldLists is one node's view of a storage whose member-list reads wait,
// while held, until release.
type heldLists struct {
	ws.StorageClient
	mu   sync.Mutex
	gate chan struct{} // guarded by mu; non-nil while held
}

func (h *heldLists) hold() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.gate = make(chan struct{})
}

func (h *heldLists) release() {
	h.mu.Lock()
	defer h.mu.Unlock()
	close(h.gate)
	h.gate = nil
}

func (h *heldLists) PresenceMembers(ctx context.Context, channel string) ([]ws.PresenceMember, ws.PresenceVersion, error) {
	h.mu.Lock()
	gate := h.gate
	h.mu.Unlock()
	if gate != nil {
		select {
		case <-gate:
		case <-ctx.Done():
			return nil, ws.PresenceVersion{}, ctx.Err()
		}
	}
	return h.StorageClient.PresenceMembers(ctx, channel)
}

// dropsAnnouncements is one node's broker on a bus that loses the next
// drop presence announcements on their way to the node, as a node whose
// publisher's broker was down meanwhile would never get them.
type dropsAnnouncements struct {
	*busBroker
	drop atomic.Int64
}

func (d *dropsAnnouncements) Subscribe(ctx context.Context, channel string, handler func([]byte)) error {
	return d.busBroker.Subscribe(ctx, channel, func(payload []byte) {
		if len(payload) > 1 && payload[1] == 'p' && d.drop.Add(-1) >= 0 {
			return
		}
		handler(payload)
	})
}

// TestPresenceEarlyAnnouncementsDieWithTheirEpoch: an announcement that
// came ahead of a lost one waits for it; if the storage then loses the
// channel's state (a new epoch), what waited belongs to the old epoch and
// must go. A node used to keep it, and once the new epoch's versions
// reached its number, it delivered it as the new epoch's: observers got
// the join of a user who was gone, the node took itself to be a version
// ahead, dropped the new epoch's real announcement of that version, and
// presence maintenance saw nothing to mend. The chaos soak found it
// after a Redis restart, with three users left in every observer's list.
//
// Node A's alice misses carol's join (E1 v3) while dave's (E1 v4) waits;
// the storage loses everything before A reads the list that would fill
// the gap, and erin, frank, greg and harry join in the new epoch (E2 v1
// to v4). alice must get the new list (erin) and then frank, greg and
// harry: never dave, who is not in the new epoch's storage.
func TestPresenceEarlyAnnouncementsDieWithTheirEpoch(t *testing.T) {
	const ch = "presence-epoch"
	bus := newBus()
	store := newLossyStore()
	heldA := &heldLists{StorageClient: store}
	brokerA := &dropsAnnouncements{busBroker: bus.broker()}
	a := newNode(t, brokerA, heldA, ws.Config{}, infoOptions())
	b := newNode(t, bus.broker(), store, ws.Config{}, infoOptions())

	alice := a.dial(t, "alice")
	alice.subscribePresence(ch, "alice")
	bob := b.dial(t, "bob")
	bob.subscribePresence(ch, "alice", "bob")
	alice.expectPresence(ch, "join", "bob", []string{"alice", "bob"}, 2)

	heldA.hold()          // A's resync reads wait
	brokerA.drop.Store(1) // carol's join never reaches A
	b.dial(t, "carol").subscribePresence(ch, "alice", "bob", "carol")
	b.dial(t, "dave").subscribePresence(ch, "alice", "bob", "carol", "dave") // reaches A early: it waits for v3
	store.lose()
	b.dial(t, "erin").subscribePresence(ch, "erin")
	heldA.release() // A reads the new epoch's list

	alice.expectPresence(ch, "members", "", []string{"erin"}, 1)
	b.dial(t, "frank").subscribePresence(ch, "erin", "frank")
	b.dial(t, "greg").subscribePresence(ch, "erin", "frank", "greg")
	b.dial(t, "harry").subscribePresence(ch, "erin", "frank", "greg", "harry")
	alice.expectPresence(ch, "join", "frank", []string{"erin", "frank"}, 2)
	alice.expectPresence(ch, "join", "greg", []string{"erin", "frank", "greg"}, 3)
	alice.expectPresence(ch, "join", "harry", []string{"erin", "frank", "greg", "harry"}, 4)
	alice.expectQuiet()
}
