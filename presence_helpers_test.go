package ws_test

import (
	"context"
	"errors"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/require"

	ws "github.com/vortechron/go-ws"
	"github.com/vortechron/go-ws/internal/wstest"
)

// Helpers for the presence, whisper and auth tests: several nodes in one
// process, a record of what ErrorHandler saw, and frame assertions.

// bus connects the brokers of several in-process nodes, the way Redis
// pub/sub connects real ones: a publication on any node reaches the
// channel's handler on every node that subscribed, exactly once.
type bus struct {
	mu       sync.RWMutex
	handlers map[string]map[*busBroker]func([]byte) // guarded by mu

	// reuse makes the bus hand every handler the payload in one buffer,
	// overwritten once the handler returns, as a broker that reads into
	// one buffer may (MessageBroker.Subscribe: a handler "must not keep
	// payload after it returns unless it copies it").
	reuse bool
	bufMu sync.Mutex
	buf   []byte // guarded by bufMu
}

// call hands payload to handler h, in the reused buffer with reuse.
func (b *bus) call(h func([]byte), payload []byte) {
	if !b.reuse {
		h(payload)
		return
	}
	b.bufMu.Lock()
	defer b.bufMu.Unlock()
	b.buf = append(b.buf[:0], payload...)
	h(b.buf)
	for i := range b.buf {
		b.buf[i] = 'X'
	}
}

func newBus() *bus { return &bus{handlers: make(map[string]map[*busBroker]func([]byte))} }

// busBroker is one node's MessageBroker on a bus. It counts publications
// per channel so tests can check that one client action is one broker
// publication.
type busBroker struct {
	bus       *bus
	mu        sync.Mutex
	published map[string]int // guarded by mu
}

var _ ws.MessageBroker = (*busBroker)(nil)

func (b *bus) broker() *busBroker { return &busBroker{bus: b, published: make(map[string]int)} }

// Publish calls every node's handler for channel before it returns, on the
// publishing goroutine, as MemoryBroker does.
func (b *busBroker) Publish(ctx context.Context, channel string, payload []byte) error {
	_, err := b.PublishCounted(ctx, channel, payload)
	return err
}

// PublishCounted lets the test bus count a publication's receivers, as
// Redis does.
func (b *busBroker) PublishCounted(ctx context.Context, channel string, payload []byte) (int, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	b.mu.Lock()
	b.published[channel]++
	b.mu.Unlock()
	b.bus.mu.RLock()
	defer b.bus.mu.RUnlock()
	for _, h := range b.bus.handlers[channel] {
		b.bus.call(h, payload)
	}
	return len(b.bus.handlers[channel]), nil
}

func (b *busBroker) Subscribe(ctx context.Context, channel string, handler func([]byte)) error {
	b.bus.mu.Lock()
	defer b.bus.mu.Unlock()
	if b.bus.handlers[channel] == nil {
		b.bus.handlers[channel] = make(map[*busBroker]func([]byte))
	}
	b.bus.handlers[channel][b] = handler
	return nil
}

func (b *busBroker) Unsubscribe(ctx context.Context, channel string) error {
	b.bus.mu.Lock()
	defer b.bus.mu.Unlock()
	delete(b.bus.handlers[channel], b)
	return nil
}

func (b *busBroker) Close() error {
	b.bus.mu.Lock()
	defer b.bus.mu.Unlock()
	for _, hs := range b.bus.handlers {
		delete(hs, b)
	}
	return nil
}

// publications returns how many times this node published on channel.
func (b *busBroker) publications(channel string) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.published[channel]
}

// newCluster starts n nodes that share one bus and one presence storage.
// With n == 1 the node uses the in-memory defaults (nil broker and
// storage), so the single-process configuration is what gets tested.
func newCluster(tb testing.TB, n int, cfg ws.Config, opts *ws.Options) []*testNode {
	tb.Helper()
	if n == 1 {
		return []*testNode{newNode(tb, nil, nil, cfg, opts)}
	}
	b, storage := newBus(), ws.NewMemoryStorage()
	nodes := make([]*testNode, n)
	for i := range nodes {
		nodes[i] = newNode(tb, b.broker(), storage, cfg, opts)
	}
	awaitReady(tb, nodes...)
	return nodes
}

// errorLog records what Options.ErrorHandler receives.
type errorLog struct {
	mu   sync.Mutex
	errs []error // guarded by mu
}

func (l *errorLog) handle(err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.errs = append(l.errs, err)
}

func (l *errorLog) all() []error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.errs)
}

// lastError returns the newest recorded error that errors.As matches T,
// failing the test if there is none. The hub reports an error before it
// answers the client, so after reading the error frame it is here.
func lastError[T error](tb testing.TB, l *errorLog) T {
	tb.Helper()
	errs := l.all()
	for i := len(errs) - 1; i >= 0; i-- {
		var target T
		if errors.As(errs[i], &target) {
			return target
		}
	}
	var zero T
	tb.Fatalf("ErrorHandler got no %T; got %v", zero, errs)
	return zero
}

// presenceOptions identifies users by X-User, allows every private and
// presence channel without "secret" in its name, gives each user the info
// {"name": upper-case ID}, enables whispers and records errors in log.
func presenceOptions(log *errorLog) *ws.Options {
	opts := userOptions()
	opts.GetUserInfo = func(r *http.Request, userID string) any {
		return map[string]string{"name": strings.ToUpper(userID)}
	}
	opts.ErrorHandler = log.handle
	return opts
}

// nextOfType reads frames until one of type typ arrives, skipping
// publications (type "message") only; any other frame fails the test.
func (c *testClient) nextOfType(typ string) map[string]any {
	c.TB.Helper()
	for {
		m := c.next()
		if m["type"] == typ {
			return m
		}
		require.Equal(c.TB, "message", m["type"], "got frame %v while waiting for a %q frame", m, typ)
	}
}

// expectPresence reads the next frame and checks it is a presence frame of
// event on channel, naming user (for join and leave) and listing users
// (nil: the frame must leave users out). It returns the frame.
func (c *testClient) expectPresence(channel, event, user string, users []string, count int) map[string]any {
	c.TB.Helper()
	m := c.expect(map[string]any{"type": "presence", "channel": channel, "event": event, "count": float64(count)})
	if user == "" {
		require.NotContains(c.TB, m, "user", "got %v, want no user field on a %s frame", m, event)
	} else {
		u, ok := m["user"].(map[string]any)
		require.True(c.TB, ok, "got %v, want a user object", m)
		require.Equal(c.TB, user, u["id"], "got user %v, want %q", u, user)
	}
	if users == nil {
		require.NotContains(c.TB, m, "users", "got %v, want users left out", m)
	} else {
		require.Equal(c.TB, users, memberIDs(c.TB, m), "users of %v", m)
	}
	return m
}

// memberIDs returns the ids in a presence frame's users list, in order.
func memberIDs(tb testing.TB, m map[string]any) []string {
	tb.Helper()
	list, ok := m["users"].([]any)
	require.True(tb, ok, "got users %v, want a list", m["users"])
	ids := make([]string, 0, len(list))
	for _, u := range list {
		ids = append(ids, u.(map[string]any)["id"].(string))
	}
	return ids
}

// subscribePresence subscribes c to a presence channel and checks the
// member list it gets, returning that frame.
func (c *testClient) subscribePresence(channel string, users ...string) map[string]any {
	c.TB.Helper()
	c.subscribe(channel)
	return c.expectPresence(channel, "members", "", users, len(users))
}

// drop ends the TCP connection without a close frame, as a crashed
// browser or a pulled cable would.
func (c *testClient) drop() {
	c.TB.Helper()
	require.NoError(c.TB, c.Conn.NetConn().Close())
}

// members returns the user IDs hub.PresenceMembers reports for channel.
func (n *testNode) members(tb testing.TB, channel string) []string {
	tb.Helper()
	ms, err := n.hub.PresenceMembers(context.Background(), channel)
	require.NoError(tb, err)
	ids := make([]string, 0, len(ms))
	for _, m := range ms {
		ids = append(ids, m.UserID)
	}
	return ids
}

// waitConnections waits until n has want open connections. A connection
// counts until it has left its presence channels and OnDisconnect has
// run, so afterwards every leave it caused has been published.
func (n *testNode) waitConnections(tb testing.TB, want int64) {
	tb.Helper()
	require.Eventually(tb, func() bool { return n.hub.Stats().Connections == want },
		10*time.Second, 2*time.Millisecond, "waiting for %d connections, have %d", want, n.hub.Stats().Connections)
}

// waitChannels waits until the node has want channels with local
// subscribers; a channel whose last subscriber left counts until the node
// has dropped it (its broker subscription and its sequencers).
func (n *testNode) waitChannels(tb testing.TB, want int64) {
	tb.Helper()
	require.Eventually(tb, func() bool { return n.hub.Stats().Channels == want },
		10*time.Second, 2*time.Millisecond, "waiting for %d channels, have %d", want, n.hub.Stats().Channels)
}

// dialSlowReader connects like dial but with a tiny TCP receive buffer,
// so a client that stops reading fills its server-side queue quickly.
func (n *testNode) dialSlowReader(tb testing.TB, user string) *testClient {
	tb.Helper()
	d := websocket.Dialer{NetDialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
		if tc, ok := c.(*net.TCPConn); ok {
			_ = tc.SetReadBuffer(4 << 10)
		}
		return c, err
	}}
	h := http.Header{}
	h.Set("X-User", user)
	return &testClient{wstest.DialWith(tb, &d, n.url, h)}
}

// countingStorage wraps MemoryStorage and counts the calls the hub makes.
type countingStorage struct {
	*ws.MemoryStorage
	listCalls  atomic.Int64
	countCalls atomic.Int64
}

func (s *countingStorage) PresenceMembers(ctx context.Context, channel string) ([]ws.PresenceMember, ws.PresenceVersion, error) {
	s.listCalls.Add(1)
	return s.MemoryStorage.PresenceMembers(ctx, channel)
}

func (s *countingStorage) PresenceCount(ctx context.Context, channel string) (int, error) {
	s.countCalls.Add(1)
	return s.MemoryStorage.PresenceCount(ctx, channel)
}

// failingStorage wraps MemoryStorage and fails the calls it is told to.
type failingStorage struct {
	*ws.MemoryStorage
	failAdd  atomic.Bool
	failList atomic.Bool
}

var errStorageDown = errors.New("storage down")

func (s *failingStorage) AddPresence(ctx context.Context, conn ws.PresenceConn) (ws.PresenceEvent, bool, error) {
	if s.failAdd.Load() {
		return ws.PresenceEvent{}, false, errStorageDown
	}
	return s.MemoryStorage.AddPresence(ctx, conn)
}

func (s *failingStorage) PresenceMembers(ctx context.Context, channel string) ([]ws.PresenceMember, ws.PresenceVersion, error) {
	if s.failList.Load() {
		return nil, ws.PresenceVersion{}, errStorageDown
	}
	return s.MemoryStorage.PresenceMembers(ctx, channel)
}

// staleStorage wraps MemoryStorage. Once stale is set, the first
// PresenceMembers call of channel takes a snapshot of the channel, closes
// held and waits for gate; that call and the next ones, stale in all,
// return the snapshot, as reads that announcements of later changes
// overtook do.
type staleStorage struct {
	*ws.MemoryStorage
	channel string
	stale   atomic.Int64
	held    chan struct{} // closed when the snapshot is taken
	gate    chan struct{} // closed by the test to let the first read return
	late    atomic.Int64  // stale lists returned once gate was closed

	mu      sync.Mutex
	taken   bool                // guarded by mu
	members []ws.PresenceMember // guarded by mu
	version ws.PresenceVersion  // guarded by mu
}

func newStaleStorage(channel string) *staleStorage {
	return &staleStorage{MemoryStorage: ws.NewMemoryStorage(), channel: channel, held: make(chan struct{}), gate: make(chan struct{})}
}

func (s *staleStorage) PresenceMembers(ctx context.Context, channel string) ([]ws.PresenceMember, ws.PresenceVersion, error) {
	if channel != s.channel || s.stale.Load() <= 0 {
		return s.MemoryStorage.PresenceMembers(ctx, channel)
	}
	s.mu.Lock()
	if !s.taken {
		m, v, err := s.MemoryStorage.PresenceMembers(ctx, channel)
		if err != nil {
			s.mu.Unlock()
			return nil, ws.PresenceVersion{}, err
		}
		s.members, s.version, s.taken = m, v, true
		close(s.held)
		s.mu.Unlock()
		select {
		case <-s.gate:
		case <-ctx.Done():
			return nil, ws.PresenceVersion{}, ctx.Err()
		}
		s.mu.Lock()
	}
	m, v := s.members, s.version
	s.mu.Unlock()
	if s.stale.Add(-1) >= 0 {
		select {
		case <-s.gate:
			s.late.Add(1)
		default:
		}
		return m, v, nil
	}
	return s.MemoryStorage.PresenceMembers(ctx, channel)
}

// nextSlow reads the next frame, waiting up to 15 s: longer than next
// waits, for frames that come after a storage call's 5 s deadline.
func (c *testClient) nextSlow() map[string]any {
	c.TB.Helper()
	require.NoError(c.TB, c.Conn.SetReadDeadline(time.Now().Add(15*time.Second)))
	var m map[string]any
	require.NoError(c.TB, c.Conn.ReadJSON(&m))
	return m
}

// slowPresenceStorage wraps MemoryStorage as a storage that is slow under
// load: AddPresence (when joinLeft is set) and RemovePresence (when
// leaveLeft is set) record the change and return only that long before
// their ctx's deadline, and PresenceMembers takes listTook (or until its
// ctx ends, with its error).
type slowPresenceStorage struct {
	*ws.MemoryStorage
	joinLeft, leaveLeft, listTook time.Duration
}

func (s *slowPresenceStorage) AddPresence(ctx context.Context, conn ws.PresenceConn) (ws.PresenceEvent, bool, error) {
	ev, joined, err := s.MemoryStorage.AddPresence(ctx, conn)
	holdUntilLeft(ctx, s.joinLeft)
	return ev, joined, err
}

func (s *slowPresenceStorage) RemovePresence(ctx context.Context, conn ws.PresenceConn) (ws.PresenceEvent, bool, error) {
	ev, left, err := s.MemoryStorage.RemovePresence(ctx, conn)
	holdUntilLeft(ctx, s.leaveLeft)
	return ev, left, err
}

// holdUntilLeft returns when only left remains before ctx's deadline, or
// at once when left is 0 or ctx has no deadline.
func holdUntilLeft(ctx context.Context, left time.Duration) {
	deadline, ok := ctx.Deadline()
	if left == 0 || !ok {
		return
	}
	t := time.NewTimer(time.Until(deadline) - left)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}

func (s *slowPresenceStorage) PresenceMembers(ctx context.Context, channel string) ([]ws.PresenceMember, ws.PresenceVersion, error) {
	t := time.NewTimer(s.listTook)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
		return nil, ws.PresenceVersion{}, ctx.Err()
	}
	return s.MemoryStorage.PresenceMembers(ctx, channel)
}
