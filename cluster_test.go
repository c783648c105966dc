package ws_test

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	ws "github.com/vortechron/go-ws"
	"github.com/vortechron/go-ws/internal/redistest"
)

// Tests of several hubs joined by a real Redis server: each hub is one
// node with its own RedisBroker and RedisStorage, as separate processes
// behind a load balancer would be.

// redisNodes starts n hubs on Redis at addrs, sharing one key prefix,
// and waits until each is Ready.
func redisNodes(tb testing.TB, n int, o ws.RedisOptions, cfg ws.Config, opts *ws.Options) []*testNode {
	tb.Helper()
	nodes := startRedisNodes(tb, n, o, cfg, opts)
	awaitReady(tb, nodes...)
	return nodes
}

// startRedisNodes is redisNodes without waiting: the hubs may still be
// connecting to Redis when it returns.
func startRedisNodes(tb testing.TB, n int, o ws.RedisOptions, cfg ws.Config, opts *ws.Options) []*testNode {
	tb.Helper()
	return startRedisNodesWith(tb, n, o, cfg, opts, nil)
}

// startRedisNodesWith is startRedisNodes with node i's broker replaced by
// what wrap returns for it and its storage (unless wrap is nil), for tests
// that stand between a node and Redis.
func startRedisNodesWith(tb testing.TB, n int, o ws.RedisOptions, cfg ws.Config, opts *ws.Options,
	wrap func(i int, b *ws.RedisBroker, s *ws.RedisStorage) ws.MessageBroker) []*testNode {
	tb.Helper()
	if o.KeyPrefix == "" {
		o.KeyPrefix = redistest.Prefix(tb)
		redistest.CleanupKeys(tb, o.Addrs[0], o.KeyPrefix)
	}
	nodes := make([]*testNode, n)
	for i := range nodes {
		b, err := ws.NewRedisBrokerWithOptions(o)
		require.NoError(tb, err)
		s, err := ws.NewRedisStorageWithOptions(o)
		require.NoError(tb, err)
		var broker ws.MessageBroker = b
		if wrap != nil {
			broker = wrap(i, b, s)
		}
		nodes[i] = newNode(tb, broker, s, cfg, opts)
	}
	return nodes
}

func TestRedisPublishReachesEveryNodeOnceInOrder(t *testing.T) {
	addr := redistest.Addr(t)
	nodes := redisNodes(t, 3, ws.RedisOptions{Addrs: []string{addr}}, ws.Config{}, nil)
	var clients []*testClient
	for _, n := range nodes {
		for range 2 {
			c := n.dial(t, "")
			c.subscribe("news")
			clients = append(clients, c)
		}
	}
	const total = 200
	for i := range total {
		require.NoError(t, nodes[0].hub.Publish(context.Background(), "news", i))
	}
	require.NoError(t, nodes[0].hub.Publish(context.Background(), "news", "end"))
	for ci, c := range clients {
		for i := range total {
			m := c.expect(map[string]any{"type": "message", "channel": "news"})
			require.Equal(t, float64(i), m["message"], "client %d: message %d out of order or duplicated", ci, i)
		}
		// A duplicate of any message would arrive before the marker.
		c.expect(map[string]any{"type": "message", "message": "end"})
		c.expectQuiet()
	}
}

func TestRedisPresenceAndWhispersAcrossNodes(t *testing.T) {
	addr := redistest.Addr(t)
	log := &errorLog{}
	a, b, c := func(ns []*testNode) (*testNode, *testNode, *testNode) { return ns[0], ns[1], ns[2] }(
		redisNodes(t, 3, ws.RedisOptions{Addrs: []string{addr}}, ws.Config{}, presenceOptions(log)))
	const room = "presence-room"

	bob := c.dial(t, "bob")
	bob.subscribePresence(room, "bob")

	// alice opens a tab on a, then one on b: bob sees one join.
	alice1 := a.dial(t, "alice")
	alice1.subscribePresence(room, "alice", "bob")
	bob.expectPresence(room, "join", "alice", []string{"alice", "bob"}, 2)
	alice2 := b.dial(t, "alice")
	alice2.subscribePresence(room, "alice", "bob")
	bob.expectQuiet()
	require.Equal(t, []string{"alice", "bob"}, a.members(t, room))

	// A whisper from alice's tab on a reaches bob on c and her own tab
	// on b, once each, and not the sender.
	alice1.send(map[string]any{"action": "whisper", "channel": room, "event": "typing", "data": map[string]any{"on": true}, "from": "mallory"})
	want := map[string]any{"type": "whisper", "from": "alice", "event": "typing", "channel": room, "data": map[string]any{"on": true}}
	bob.expect(want)
	alice2.expect(want)
	bob.expectQuiet()
	alice2.expectQuiet()
	alice1.expectQuiet()

	// Closing the tab on a leaves alice present through b; dropping the
	// tab on b makes her leave, once.
	alice1.Conn.Close()
	a.waitConnections(t, 0)
	bob.expectQuiet()
	alice2.drop()
	bob.expectPresence(room, "leave", "alice", []string{"bob"}, 1)
	b.waitConnections(t, 0)
	bob.expectQuiet()
	require.Equal(t, []string{"bob"}, c.members(t, room))
	require.Empty(t, log.all())
}

func TestRedisRestartResumesDeliveryWithoutReconnecting(t *testing.T) {
	srv := redistest.StartServer(t)
	nodes := redisNodes(t, 2, ws.RedisOptions{Addrs: []string{srv.Addr}, HealthInterval: 100 * time.Millisecond}, ws.Config{}, nil)
	a, b := nodes[0], nodes[1]
	ca, cb := a.dial(t, ""), b.dial(t, "")
	ca.subscribe("news")
	cb.subscribe("news")
	require.NoError(t, a.hub.Publish(context.Background(), "news", "before"))
	ca.expect(map[string]any{"type": "message", "message": "before"})
	cb.expect(map[string]any{"type": "message", "message": "before"})

	health := func(n *testNode) int {
		rec := httptest.NewRecorder()
		n.hub.HealthHandler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/healthz", nil))
		return rec.Code
	}
	require.Equal(t, http.StatusOK, health(a))

	srv.Kill()
	require.Eventually(t, func() bool { return !a.hub.Health().BrokerHealthy && !b.hub.Health().BrokerHealthy }, 10*time.Second, 10*time.Millisecond)
	require.Equal(t, http.StatusServiceUnavailable, health(a), "health while Redis is down")
	err := a.hub.Publish(context.Background(), "news", "lost")
	require.ErrorIs(t, err, ws.ErrBrokerUnavailable)
	// The clients stay connected through the outage.
	ca.expectQuiet()
	cb.expectQuiet()

	require.NoError(t, srv.Restart())
	require.Eventually(t, func() bool { return a.hub.Health().BrokerHealthy && b.hub.Health().BrokerHealthy }, 20*time.Second, 10*time.Millisecond)
	require.Equal(t, http.StatusOK, health(a), "health after Redis returned")
	require.NoError(t, b.hub.Publish(context.Background(), "news", "after"))
	ca.expect(map[string]any{"type": "message", "message": "after"})
	cb.expect(map[string]any{"type": "message", "message": "after"})
	require.Equal(t, int64(1), a.hub.Stats().ConnectionsTotal, "the client on a reconnected")
	require.Equal(t, int64(1), b.hub.Stats().ConnectionsTotal, "the client on b reconnected")
}

func TestRedisClusterNodesShareChannelsAndPresence(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a three-node Redis Cluster; skipped with -short")
	}
	cluster := redistest.StartCluster(t)
	log := &errorLog{}
	nodes := redisNodes(t, 2, ws.RedisOptions{Addrs: cluster.Addrs, KeyPrefix: "wscluster:"}, ws.Config{}, presenceOptions(log))
	a, b := nodes[0], nodes[1]
	alice, bob := a.dial(t, "alice"), b.dial(t, "bob")
	for i := range 20 { // channels spread over the cluster's slots and shards
		ch := fmt.Sprintf("news-%d", i)
		alice.subscribe(ch)
		bob.subscribe(ch)
		require.NoError(t, a.hub.Publish(context.Background(), ch, i))
		alice.expect(map[string]any{"type": "message", "channel": ch, "message": float64(i)})
		bob.expect(map[string]any{"type": "message", "channel": ch, "message": float64(i)})
	}
	alice.subscribePresence("presence-x", "alice")
	bob.subscribePresence("presence-x", "alice", "bob")
	alice.expectPresence("presence-x", "join", "bob", []string{"alice", "bob"}, 2)
	bob.Conn.Close()
	alice.expectPresence("presence-x", "leave", "bob", []string{"alice"}, 1)
	require.Empty(t, log.all())
}

func TestRedisCrashedNodeLeaves(t *testing.T) {
	addr := redistest.Addr(t)
	prefix := redistest.Prefix(t)
	redistest.CleanupKeys(t, addr, prefix)
	const nodeTTL, reap = time.Second, 100 * time.Millisecond
	survivor := redisNodes(t, 1, ws.RedisOptions{Addrs: []string{addr}, KeyPrefix: prefix, NodeTTL: nodeTTL, ReapInterval: reap}, ws.Config{}, userOptions())[0]

	// The child is this test binary acting as a node (child_test.go).
	child := exec.Command(os.Args[0], "-test.run=^$")
	child.Env = append(os.Environ(), "WS_TEST_CHILD=crashed-node", "WS_TEST_CHILD_PREFIX="+prefix, "WS_TEST_CHILD_REDIS="+addr)
	stdout, err := child.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, child.Start())
	t.Cleanup(func() { _ = child.Process.Kill(); _ = child.Wait() })
	lines := bufio.NewScanner(stdout)
	var url string
	for lines.Scan() {
		if u, ok := strings.CutPrefix(lines.Text(), "URL "); ok {
			url = u
			break
		}
	}
	require.NotEmpty(t, url, "the child node printed no URL")

	bob := survivor.dial(t, "bob")
	bob.subscribePresence("presence-room", "bob")
	ghost := (&testNode{url: url}).dial(t, "ghost")
	ghost.subscribePresence("presence-room", "bob", "ghost")
	bob.expectPresence("presence-room", "join", "ghost", []string{"bob", "ghost"}, 2)

	killed := time.Now()
	require.NoError(t, child.Process.Signal(syscall.SIGKILL))
	_ = child.Wait()
	bob.Conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	bob.expectPresence("presence-room", "leave", "ghost", []string{"bob"}, 1)
	took := time.Since(killed)
	t.Logf("the crashed node's member left %v after SIGKILL (bound NodeTTL+ReapInterval = %v)", took.Round(time.Millisecond), nodeTTL+reap)
	require.Less(t, took, nodeTTL+reap+time.Second, "leave came later than the documented bound")
	require.Equal(t, []string{"bob"}, survivor.members(t, "presence-room"))
}

// TestRedisPublishRightAfterStart: a hub publishing on a RedisBroker it
// has just made, without waiting for anything, has its publication
// accepted: a new broker's first publish waits for the subscription
// connection to go live (within three health intervals), and is not
// refused in the moment it does.
func TestRedisPublishRightAfterStart(t *testing.T) {
	addr := redistest.Addr(t)
	for i := range 40 {
		// Not redisNodes: waiting for Ready would wait for the link.
		n := startRedisNodes(t, 1, ws.RedisOptions{Addrs: []string{addr}}, historyConfig(ws.Config{}), nil)[0]
		channel := "news"
		if i%2 == 1 {
			channel = "history-start" // the history script path
		}
		require.NoError(t, n.hub.Publish(context.Background(), channel, i), "start %d", i)
		n.stop()
	}
}
