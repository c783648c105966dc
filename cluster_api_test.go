package ws_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	ws "github.com/vortechron/go-ws"
	"github.com/vortechron/go-ws/internal/bridge"
	"github.com/vortechron/go-ws/internal/redistest"
)

// Tests of the cluster-wide server API (Hub.Channels, Channel,
// DisconnectUser, UnsubscribeUser, PublishToUser) and of the hooks
// (OnChannelOccupied/OnChannelVacated, OnSubscribe/OnUnsubscribe). The
// scenarios are the same for every backend: one in-memory node, three
// nodes joined by an in-process bus, three nodes over Redis, and three
// over a Redis Cluster.

// clusterBackend is one backend the scenarios run on. prepare runs once
// per backend, in the backend's subtest, and returns how to start n nodes
// for one scenario; a backend of one node returns one whatever n is, and
// scenarios place clients with env.node(i).
type clusterBackend struct {
	name    string
	prepare func(t *testing.T) startNodes
}

type startNodes func(t *testing.T, n int, cfg ws.Config, opts *ws.Options) []*testNode

var clusterBackends = []clusterBackend{
	{"memory", func(*testing.T) startNodes {
		return func(t *testing.T, _ int, cfg ws.Config, opts *ws.Options) []*testNode {
			return []*testNode{newNode(t, nil, nil, cfg, opts)}
		}
	}},
	{"bus", func(*testing.T) startNodes {
		return func(t *testing.T, n int, cfg ws.Config, opts *ws.Options) []*testNode {
			return newCluster(t, max(n, 2), cfg, opts)
		}
	}},
	{"redis", func(t *testing.T) startNodes {
		addr := redistest.Addr(t)
		return func(t *testing.T, n int, cfg ws.Config, opts *ws.Options) []*testNode {
			return redisNodes(t, n, ws.RedisOptions{Addrs: []string{addr}}, cfg, opts)
		}
	}},
	{"redis-cluster", func(t *testing.T) startNodes {
		if testing.Short() {
			t.Skip("starts a Redis Cluster; skipped with -short")
		}
		cluster := redistest.StartCluster(t)
		return func(t *testing.T, n int, cfg ws.Config, opts *ws.Options) []*testNode {
			return redisNodes(t, n, ws.RedisOptions{Addrs: cluster.Addrs, KeyPrefix: redistest.Prefix(t)}, cfg, opts)
		}
	}},
}

// hookLog records hook calls as lines ("occupied news", "sub alice news").
type hookLog struct {
	mu    sync.Mutex
	lines []string // guarded by mu
}

func (l *hookLog) add(format string, args ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lines = append(l.lines, fmt.Sprintf(format, args...))
}

func (l *hookLog) all() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.lines)
}

func (l *hookLog) count(line string) int {
	n := 0
	for _, got := range l.all() {
		if got == line {
			n++
		}
	}
	return n
}

// matching returns the lines that start with prefix, in order.
func (l *hookLog) matching(prefix string) []string {
	var out []string
	for _, got := range l.all() {
		if strings.HasPrefix(got, prefix) {
			out = append(out, got)
		}
	}
	return out
}

// wait waits until line was recorded n times.
func (l *hookLog) wait(tb testing.TB, line string, n int) {
	tb.Helper()
	require.Eventually(tb, func() bool { return l.count(line) >= n }, 10*time.Second, 2*time.Millisecond,
		"waiting for %d of %q; have %d", n, line, l.count(line))
}

// apiEnv is one scenario's nodes, the hooks they called and the IDs of
// the connections they accepted.
type apiEnv struct {
	nodes []*testNode
	hooks *hookLog
	log   *errorLog

	ids connIDs

	mu  sync.Mutex
	seq int // guarded by mu; for settle's channels
}

func newAPIEnv(t *testing.T, start startNodes, n int, cfg ws.Config) *apiEnv {
	e := &apiEnv{hooks: &hookLog{}, log: &errorLog{}}
	cfg.OnChannelOccupied = func(ch string) { e.hooks.add("occupied %s", ch) }
	cfg.OnChannelVacated = func(ch string) { e.hooks.add("vacated %s", ch) }
	opts := e.ids.record(presenceOptions(e.log))
	opts.OnSubscribe = func(c *ws.Client, ch string) { e.hooks.add("sub %s %s", c.UserID, ch) }
	opts.OnUnsubscribe = func(c *ws.Client, ch string) { e.hooks.add("unsub %s %s", c.UserID, ch) }
	e.nodes = start(t, n, cfg, opts)
	return e
}

func (e *apiEnv) node(i int) *testNode { return e.nodes[i%len(e.nodes)] }

// id returns the connection ID the server gave c.
func (e *apiEnv) id(c *testClient) string { return e.ids.id(c.TB, c) }

// settle waits until every hook each node had queued has run: on each
// node it occupies and vacates a channel of its own and waits for both
// hooks. A node records occupancy in order and runs its hooks in order,
// so the vacate's hook comes after every earlier one of that node.
// Callers first wait for the nodes to have dropped the channels they
// expect gone (waitChannels).
func (e *apiEnv) settle(t *testing.T) {
	t.Helper()
	for i, n := range e.nodes {
		e.mu.Lock()
		e.seq++
		ch := fmt.Sprintf("zz-settle-%d-%d", i, e.seq)
		e.mu.Unlock()
		c := n.dial(t, "")
		join(c, ch)
		e.hooks.wait(t, "occupied "+ch, 1)
		leave(c, ch)
		e.hooks.wait(t, "vacated "+ch, 1)
	}
}

// waitChannels waits until every node has want channels with local
// subscribers.
func (e *apiEnv) waitChannels(t *testing.T, want int64) {
	t.Helper()
	for _, n := range e.nodes {
		n.waitChannels(t, want)
	}
}

func apiCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// The scenarios read frames with the helpers below, which pass over the
// fresh presence "members" lists that the server may send at any time
// (docs/protocol.md: after a gap, or when two reads of a list race),
// unless a list is what they wait for.

// expectNext reads frames until one that is not such a list and checks
// the given fields of it.
func expectNext(c *testClient, fields map[string]any) map[string]any {
	c.TB.Helper()
	for {
		m := c.next()
		if m["type"] == "presence" && m["event"] == "members" && fields["event"] != "members" {
			continue
		}
		for k, want := range fields {
			require.Equal(c.TB, want, m[k], "field %q of frame %v", k, m)
		}
		return m
	}
}

// join subscribes c to channel and expects the acknowledgement.
func join(c *testClient, channel string) {
	c.TB.Helper()
	c.send(map[string]any{"action": "subscribe", "channel": channel})
	expectNext(c, map[string]any{"type": "subscribed", "channel": channel})
}

// leave unsubscribes c from channel and expects the acknowledgement.
func leave(c *testClient, channel string) {
	c.TB.Helper()
	c.send(map[string]any{"action": "unsubscribe", "channel": channel})
	expectNext(c, map[string]any{"type": "unsubscribed", "channel": channel})
}

// joinPresence subscribes c to a presence channel and checks the list it
// gets.
func joinPresence(c *testClient, channel string, users ...string) {
	c.TB.Helper()
	join(c, channel)
	m := expectNext(c, map[string]any{"type": "presence", "channel": channel, "event": "members", "count": float64(len(users))})
	require.Equal(c.TB, users, memberIDs(c.TB, m))
}

// expectMember reads c's next join or leave on channel and checks it.
func expectMember(c *testClient, channel, event, user string, users ...string) {
	c.TB.Helper()
	m := expectNext(c, map[string]any{"type": "presence", "channel": channel, "event": event, "count": float64(len(users))})
	require.Equal(c.TB, user, m["user"].(map[string]any)["id"], "frame %v", m)
	require.Equal(c.TB, users, memberIDs(c.TB, m))
}

// quiet proves no other frame is waiting for c (see wstest.Client.Quiet).
func quiet(c *testClient) {
	c.TB.Helper()
	c.send(map[string]any{"action": "ping"})
	expectNext(c, map[string]any{"type": "pong"})
}

func TestClusterAPI(t *testing.T) {
	scenarios := []struct {
		name string
		run  func(t *testing.T, start startNodes)
	}{
		{"channels, counts and members across nodes", testAPIChannels},
		{"disconnecting a user whose tabs are on two nodes", testAPIDisconnectUser},
		{"unsubscribing a user from a channel on two nodes", testAPIUnsubscribeUser},
		{"sending to a user on every node", testAPIPublishToUser},
		{"occupied and vacated once per cluster", testAPIOccupancy},
		{"subscribe and unsubscribe hooks", testAPISubscriptionHooks},
	}
	for _, b := range clusterBackends {
		t.Run(b.name, func(t *testing.T) {
			start := b.prepare(t)
			for _, sc := range scenarios {
				t.Run(sc.name, func(t *testing.T) { sc.run(t, start) })
			}
		})
	}
}

func testAPIChannels(t *testing.T, start startNodes) {
	e := newAPIEnv(t, start, 3, ws.Config{})
	ctx := apiCtx(t)
	const room = "presence-room"
	bob := e.node(2).dial(t, "bob")
	joinPresence(bob, room, "bob")
	alice1 := e.node(0).dial(t, "alice")
	joinPresence(alice1, room, "alice", "bob")
	expectMember(bob, room, "join", "alice", "alice", "bob")
	alice2 := e.node(1).dial(t, "alice")
	joinPresence(alice2, room, "alice", "bob")
	carol := e.node(0).dial(t, "carol")
	join(carol, "news")
	join(bob, "news")
	anon := e.node(1).dial(t, "")
	join(anon, "news-extra")

	for i := range e.nodes {
		h := e.node(i).hub
		all, err := h.Channels(ctx, "")
		require.NoError(t, err)
		require.Equal(t, []ws.ChannelInfo{
			{Name: "news", Subscriptions: 2},
			{Name: "news-extra", Subscriptions: 1},
			{Name: room, Subscriptions: 3, Users: 2},
		}, all, "Channels on node %d", i)
		news, err := h.Channels(ctx, "news")
		require.NoError(t, err)
		require.Equal(t, []ws.ChannelInfo{{Name: "news", Subscriptions: 2}, {Name: "news-extra", Subscriptions: 1}}, news)
		presence, err := h.Channels(ctx, "presence-")
		require.NoError(t, err)
		require.Equal(t, []ws.ChannelInfo{{Name: room, Subscriptions: 3, Users: 2}}, presence)
		none, err := h.Channels(ctx, "private-")
		require.NoError(t, err)
		require.Empty(t, none)

		info, err := h.Channel(ctx, room)
		require.NoError(t, err)
		require.Equal(t, ws.ChannelInfo{Name: room, Subscriptions: 3, Users: 2}, info)
		info, err = h.Channel(ctx, "nobody-here")
		require.NoError(t, err)
		require.Equal(t, ws.ChannelInfo{Name: "nobody-here"}, info)
		require.Equal(t, []string{"alice", "bob"}, e.node(i).members(t, room))
	}
	_, err := e.node(0).hub.Channel(ctx, "no spaces")
	require.ErrorIs(t, err, ws.ErrInvalidChannel)

	// bob goes: his subscriptions leave the counts, and his membership
	// the presence channel.
	bob.Conn.Close()
	require.Eventually(t, func() bool {
		got, err := e.node(1).hub.Channels(ctx, "")
		return err == nil && slices.Equal(got, []ws.ChannelInfo{
			{Name: "news", Subscriptions: 1},
			{Name: "news-extra", Subscriptions: 1},
			{Name: room, Subscriptions: 2, Users: 1},
		})
	}, 10*time.Second, 5*time.Millisecond)
	require.Empty(t, e.log.all())
}

// aliceInTwoTabs puts bob (on node bobNode) and alice, with one tab on
// node 0 and one on node 1, in the presence channel room, and waits until
// bob saw alice join.
func (e *apiEnv) aliceInTwoTabs(t *testing.T, room string, bobNode int) (bob, alice1, alice2 *testClient) {
	bob = e.node(bobNode).dial(t, "bob")
	joinPresence(bob, room, "bob")
	alice1 = e.node(0).dial(t, "alice")
	joinPresence(alice1, room, "alice", "bob")
	expectMember(bob, room, "join", "alice", "alice", "bob")
	alice2 = e.node(1).dial(t, "alice")
	joinPresence(alice2, room, "alice", "bob")
	return bob, alice1, alice2
}

func testAPIDisconnectUser(t *testing.T, start startNodes) {
	e := newAPIEnv(t, start, 3, ws.Config{})
	ctx := apiCtx(t)
	const room = "presence-room"
	bob, alice1, alice2 := e.aliceInTwoTabs(t, room, 0)

	require.NoError(t, e.node(2).hub.DisconnectUser(ctx, "alice"))
	require.Equal(t, ws.CloseTerminated, alice1.expectClose())
	require.Equal(t, ws.CloseTerminated, alice2.expectClose())
	// Both tabs are gone: alice leaves, once.
	expectMember(bob, room, "leave", "alice", "bob")
	require.Eventually(t, func() bool {
		info, err := e.node(2).hub.Channel(ctx, room)
		return err == nil && info == ws.ChannelInfo{Name: room, Subscriptions: 1, Users: 1}
	}, 10*time.Second, 5*time.Millisecond)
	quiet(bob)

	require.NoError(t, e.node(1).hub.DisconnectUser(ctx, "nobody"), "a user without connections")
	require.Error(t, e.node(1).hub.DisconnectUser(ctx, ""))
	quiet(bob)
	require.Empty(t, e.log.all())
}

func testAPIUnsubscribeUser(t *testing.T, start startNodes) {
	e := newAPIEnv(t, start, 3, ws.Config{})
	ctx := apiCtx(t)
	const room = "presence-room"
	bob, alice1, alice2 := e.aliceInTwoTabs(t, room, 2)
	join(alice1, "news")

	require.NoError(t, e.node(2).hub.UnsubscribeUser(ctx, "alice", room))
	// UnsubscribeUser has returned: both tabs are out, and alice's leave
	// (one, for both tabs) is published.
	expectNext(alice1, map[string]any{"type": "unsubscribed", "channel": room})
	expectNext(alice2, map[string]any{"type": "unsubscribed", "channel": room})
	expectMember(bob, room, "leave", "alice", "bob")
	info, err := e.node(0).hub.Channel(ctx, room)
	require.NoError(t, err)
	require.Equal(t, ws.ChannelInfo{Name: room, Subscriptions: 1, Users: 1}, info)
	require.Equal(t, []string{"bob"}, e.node(1).members(t, room))
	e.hooks.wait(t, "unsub alice "+room, 2)

	// The tabs stay connected and in their other channels, and may come
	// back: alice joins again, once.
	require.NoError(t, e.node(0).hub.Publish(ctx, "news", "still here"))
	expectNext(alice1, map[string]any{"type": "message", "channel": "news", "message": "still here"})
	joinPresence(alice2, room, "alice", "bob")
	expectMember(bob, room, "join", "alice", "alice", "bob")
	quiet(alice1)
	quiet(bob)

	require.NoError(t, e.node(1).hub.UnsubscribeUser(ctx, "carol", room), "a user without connections")
	require.ErrorIs(t, e.node(1).hub.UnsubscribeUser(ctx, "alice", "no spaces"), ws.ErrInvalidChannel)
	require.Empty(t, e.log.all())
}

func testAPIPublishToUser(t *testing.T, start startNodes) {
	e := newAPIEnv(t, start, 3, ws.Config{})
	ctx := apiCtx(t)
	alice1 := e.node(0).dial(t, "alice")
	alice2 := e.node(1).dial(t, "alice")
	bob := e.node(2).dial(t, "bob")
	for _, c := range []*testClient{alice1, alice2, bob} {
		quiet(c) // registered (and OnConnect has recorded its ID): the hub reads once it has
	}
	h := e.node(2).hub

	require.NoError(t, h.PublishToUser(ctx, "alice", map[string]any{"n": 1}, ws.PublishOptions{Event: "note"}))
	want := map[string]any{"type": "message", "channel": ws.UserChannel, "event": "note", "message": map[string]any{"n": float64(1)}}
	alice1.expect(want)
	alice2.expect(want)

	// Except leaves one tab out; later messages are in order after it.
	require.NoError(t, h.PublishToUser(ctx, "alice", "not for tab 1", ws.PublishOptions{Except: e.id(alice1)}))
	require.NoError(t, h.PublishToUser(ctx, "alice", "for both", ws.PublishOptions{}))
	require.NoError(t, h.PublishToUser(ctx, "bob", "for bob", ws.PublishOptions{}))
	expectNext(alice1, map[string]any{"type": "message", "channel": ws.UserChannel, "message": "for both"})
	expectNext(alice2, map[string]any{"type": "message", "message": "not for tab 1"})
	expectNext(alice2, map[string]any{"type": "message", "message": "for both"})
	// bob's first frame is his own message: he got none of alice's.
	m := expectNext(bob, map[string]any{"type": "message", "channel": ws.UserChannel, "message": "for bob"})
	require.NotContains(t, m, "event")

	require.Error(t, h.PublishToUser(ctx, "", "x", ws.PublishOptions{}))
	require.Error(t, h.PublishToUser(ctx, "alice", []byte("not json"), ws.PublishOptions{}))
	quiet(alice1)
	quiet(alice2)
}

func testAPIOccupancy(t *testing.T, start startNodes) {
	e := newAPIEnv(t, start, 3, ws.Config{})
	const ch = "room"
	// First subscriber anywhere: occupied. More, on other nodes, and
	// the first ones leaving: nothing. The last one leaving: vacated.
	c0 := e.node(0).dial(t, "")
	join(c0, ch)
	e.hooks.wait(t, "occupied "+ch, 1)
	c1 := e.node(1).dial(t, "")
	join(c1, ch)
	c2 := e.node(2).dial(t, "")
	join(c2, ch)
	leave(c0, ch)
	c1.Conn.Close()
	leave(c2, ch)
	e.hooks.wait(t, "vacated "+ch, 1)
	e.waitChannels(t, 0)
	e.settle(t)
	require.Equal(t, 1, e.hooks.count("occupied "+ch), "hooks: %v", e.hooks.all())
	require.Equal(t, 1, e.hooks.count("vacated "+ch), "hooks: %v", e.hooks.all())

	// Churn: clients on every node subscribe and unsubscribe at random,
	// concurrently. However the transitions interleave, each channel is
	// occupied and vacated alternately, so once everyone has left, each
	// was vacated exactly as often as occupied.
	channels := []string{"churn-a", "churn-b", "churn-c"}
	var clients []*testClient
	for i := range 3 * len(e.nodes) {
		clients = append(clients, e.node(i).dial(t, ""))
	}
	var wg sync.WaitGroup
	errs := make(chan error, len(clients))
	for i, c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := churn(c, channels, rand.New(rand.NewPCG(uint64(i), 12))); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	e.waitChannels(t, 0)
	e.settle(t)
	for _, ch := range channels {
		o, v := e.hooks.count("occupied "+ch), e.hooks.count("vacated "+ch)
		require.Positive(t, o, "%s never occupied", ch)
		require.Equal(t, o, v, "%s: got %d occupied and %d vacated; hooks %v", ch, o, v, e.hooks.matching("occupied churn"))
	}
	t.Logf("churn: %d occupied, %d vacated", len(e.hooks.matching("occupied churn")), len(e.hooks.matching("vacated churn")))
}

// churn has c subscribe to and unsubscribe from channels at random, 30
// times, then leave every channel it is in. It returns the first error
// instead of failing the test, so it can run on a goroutine of its own.
func churn(c *testClient, channels []string, rng *rand.Rand) error {
	in := map[string]bool{}
	toggle := func(ch string) error {
		action, ack := "subscribe", "subscribed"
		if in[ch] {
			action, ack = "unsubscribe", "unsubscribed"
		}
		if err := c.Conn.WriteJSON(map[string]any{"action": action, "channel": ch}); err != nil {
			return err
		}
		_ = c.Conn.SetReadDeadline(time.Now().Add(10 * time.Second))
		var m map[string]any
		if err := c.Conn.ReadJSON(&m); err != nil {
			return err
		}
		if m["type"] != ack || m["channel"] != ch {
			return fmt.Errorf("got %v, want %s of %s", m, ack, ch)
		}
		in[ch] = !in[ch]
		return nil
	}
	for range 30 {
		if err := toggle(channels[rng.IntN(len(channels))]); err != nil {
			return err
		}
	}
	for _, ch := range channels {
		if in[ch] {
			if err := toggle(ch); err != nil {
				return err
			}
		}
	}
	return nil
}

func testAPISubscriptionHooks(t *testing.T, start startNodes) {
	e := newAPIEnv(t, start, 2, ws.Config{})
	ctx := apiCtx(t)
	alice := e.node(0).dial(t, "alice")
	join(alice, "news")
	join(alice, "news") // again: answered, but no second hook
	leave(alice, "news")
	joinPresence(alice, "presence-a", "alice")
	join(alice, "b")
	join(alice, "c")
	require.NoError(t, e.node(1).hub.UnsubscribeUser(ctx, "alice", "c"))
	expectNext(alice, map[string]any{"type": "unsubscribed", "channel": "c"})
	alice.Conn.Close() // leaves presence-a and b
	want := []string{"sub alice news", "unsub alice news", "sub alice presence-a", "sub alice b", "sub alice c",
		"unsub alice c", "unsub alice presence-a", "unsub alice b"}
	e.hooks.wait(t, "unsub alice b", 1) // the last of them
	var got []string
	for _, l := range e.hooks.all() {
		if strings.HasSuffix(strings.Fields(l)[0], "sub") && strings.Fields(l)[1] == "alice" {
			got = append(got, l)
		}
	}
	require.Equal(t, want, got)
}

// TestClusterAPIWhenANodeDoesNotAnswer: a node that receives requests
// but never answers (stuck, or something else subscribed to the control
// channel) makes the API wait ClusterTimeout and return what the others
// said, with ErrClusterIncomplete.
func TestClusterAPIWhenANodeDoesNotAnswer(t *testing.T) {
	b := newBus()
	storage := ws.NewMemoryStorage()
	cfg := ws.Config{ClusterTimeout: 200 * time.Millisecond}
	a := newNode(t, b.broker(), storage, cfg, userOptions())
	n2 := newNode(t, b.broker(), storage, cfg, userOptions())
	awaitReady(t, a, n2)
	mute := b.broker()
	require.NoError(t, mute.Subscribe(context.Background(), "#cluster", func([]byte) {}))
	t.Cleanup(func() { _ = mute.Close() })
	c := n2.dial(t, "")
	join(c, "news")

	start := time.Now()
	got, err := a.hub.Channels(context.Background(), "")
	require.ErrorIs(t, err, ws.ErrClusterIncomplete)
	require.GreaterOrEqual(t, time.Since(start), cfg.ClusterTimeout)
	require.Equal(t, []ws.ChannelInfo{{Name: "news", Subscriptions: 1}}, got, "the answers that came")
	t.Logf("error: %v", err)

	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	err = a.hub.DisconnectUser(ctx, "alice")
	require.ErrorIs(t, err, ws.ErrClusterIncomplete)
	require.ErrorIs(t, err, context.DeadlineExceeded, "ctx's deadline came first")
}

// countlessBroker hides MemoryBroker's PublishCounted.
type countlessBroker struct{ ws.MessageBroker }

// TestClusterAPIWithABrokerThatCannotCount: without PublishCounter the
// hub cannot know how many answers to expect, so it waits ClusterTimeout
// and returns what came, without an error.
func TestClusterAPIWithABrokerThatCannotCount(t *testing.T) {
	cfg := ws.Config{ClusterTimeout: 100 * time.Millisecond}
	n := newNode(t, countlessBroker{ws.NewMemoryBroker()}, nil, cfg, nil)
	awaitReady(t, n) // ClusterTimeout starts before the hub waits to be Ready
	c := n.dial(t, "")
	join(c, "news")
	got, err := n.hub.Channels(context.Background(), "")
	require.NoError(t, err)
	require.Equal(t, []ws.ChannelInfo{{Name: "news", Subscriptions: 1}}, got)
}

// TestClusterAPIBeforeRunAndAfterShutdown: the API needs a running hub.
func TestClusterAPIBeforeRunAndAfterShutdown(t *testing.T) {
	h := ws.NewHub(context.Background(), nil, nil, ws.Config{})
	_, err := h.Channels(context.Background(), "")
	require.ErrorIs(t, err, ws.ErrHubNotRunning)
	n := newNode(t, nil, nil, ws.Config{}, nil)
	n.stop()
	_, err = n.hub.Channel(context.Background(), "news")
	require.ErrorIs(t, err, ws.ErrHubClosed)
	err = n.hub.PublishToUser(context.Background(), "alice", "x", ws.PublishOptions{})
	require.True(t, errors.Is(err, ws.ErrHubClosed), "got %v", err)
	require.NoError(t, h.Shutdown(context.Background()))
}

// TestSignedInUserJoinsTheUserIndex: a connection that had no user and
// gets one later (the Pusher protocol's pusher:signin, through
// bridge.SetUser) is that user's for PublishToUser and DisconnectUser.
// Here the user is set in OnConnect, before the connection's goroutine
// reads its first frame.
func TestSignedInUserJoinsTheUserIndex(t *testing.T) {
	results := make(chan []error, 1)
	n := newNode(t, nil, nil, ws.Config{}, &ws.Options{OnConnect: func(c *ws.Client) {
		results <- []error{bridge.SetUser(c, "bob"), bridge.SetUser(c, "bob"), bridge.SetUser(c, "carol"), bridge.SetUser(c, "")}
	}})
	c := n.dial(t, "")
	errs := <-results
	require.NoError(t, errs[0], "signing in")
	require.NoError(t, errs[1], "signing in again as the same user")
	require.Error(t, errs[2], "signing in as another user")
	require.Error(t, errs[3], "signing in as nobody")
	ctx := apiCtx(t)
	require.NoError(t, n.hub.PublishToUser(ctx, "bob", "hello", ws.PublishOptions{}))
	expectNext(c, map[string]any{"type": "message", "channel": ws.UserChannel, "message": "hello"})
	require.NoError(t, n.hub.DisconnectUser(ctx, "bob"))
	require.Equal(t, ws.CloseTerminated, c.expectClose())
}

// flakyOccupancy is a MemoryStorage whose occupancy calls fail while
// failing is set.
type flakyOccupancy struct {
	*ws.MemoryStorage
	failing atomic.Bool
	calls   atomic.Int64
}

func (s *flakyOccupancy) OccupyChannels(ctx context.Context, channels []string) ([]string, error) {
	s.calls.Add(1)
	if s.failing.Load() {
		return nil, errStorageDown
	}
	return s.MemoryStorage.OccupyChannels(ctx, channels)
}

func (s *flakyOccupancy) VacateChannels(ctx context.Context, channels []string) ([]string, error) {
	s.calls.Add(1)
	if s.failing.Load() {
		return nil, errStorageDown
	}
	return s.MemoryStorage.VacateChannels(ctx, channels)
}

// TestOccupancyStorageFailureDelaysTheHookNotTheSubscribe: while the
// storage fails, subscribes still succeed; the occupancy is recorded,
// and the hook called, once the storage is back.
func TestOccupancyStorageFailureDelaysTheHookNotTheSubscribe(t *testing.T) {
	storage := &flakyOccupancy{MemoryStorage: ws.NewMemoryStorage()}
	storage.failing.Store(true)
	hooks := &hookLog{}
	n := newNode(t, nil, storage, ws.Config{
		OnChannelOccupied: func(ch string) { hooks.add("occupied %s", ch) },
		OnChannelVacated:  func(ch string) { hooks.add("vacated %s", ch) },
	}, nil)
	c := n.dial(t, "")
	join(c, "news")
	require.Eventually(t, func() bool { return storage.calls.Load() >= 2 }, 10*time.Second, time.Millisecond, "retried")
	require.Empty(t, hooks.all())
	storage.failing.Store(false)
	hooks.wait(t, "occupied news", 1)
	leave(c, "news")
	hooks.wait(t, "vacated news", 1)
	require.Equal(t, []string{"occupied news", "vacated news"}, hooks.all())
}

// TestOccupancyHooksAddedThroughTheBridge: a package that serves a hub
// it did not configure (the Pusher webhooks) adds occupancy hooks before
// Run; they are called beside Config's.
func TestOccupancyHooksAddedThroughTheBridge(t *testing.T) {
	hooks := &hookLog{}
	ctx, cancel := context.WithCancel(context.Background())
	hub := ws.NewHub(ctx, nil, nil, ws.Config{OnChannelOccupied: func(ch string) { hooks.add("config occupied %s", ch) }})
	require.NoError(t, bridge.AddOccupancyHooks(hub,
		func(ch string) { hooks.add("bridge occupied %s", ch) }, func(ch string) { hooks.add("bridge vacated %s", ch) }))
	go hub.Run()
	srv := httptest.NewServer(ws.Handler(hub, nil))
	t.Cleanup(func() { cancel(); <-hub.Done(); srv.Close() })
	n := &testNode{hub: hub, url: "ws" + strings.TrimPrefix(srv.URL, "http")}
	c := n.dial(t, "")
	join(c, "news")
	hooks.wait(t, "bridge occupied news", 1)
	hooks.wait(t, "config occupied news", 1)
	leave(c, "news")
	hooks.wait(t, "bridge vacated news", 1)
	require.Error(t, bridge.AddOccupancyHooks(hub, func(string) {}, nil), "after Run")
}
