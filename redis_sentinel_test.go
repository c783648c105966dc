package ws_test

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	ws "github.com/vortechron/go-ws"
	"github.com/vortechron/go-ws/internal/redistest"
)

// TestSentinelFailoverKeepsTheCluster proves, in docs/redis.md (Redis
// Sentinel): two nodes on Redis Sentinel (RedisOptions.MasterName) come
// back after their master crashes and Sentinel promotes the replica:
// healthy again, publishing across nodes, and presence right on both
// nodes and for a user who joins afterwards. Clients stay connected.
func TestSentinelFailoverKeepsTheCluster(t *testing.T) {
	sentinelFailoverKeepsTheCluster(t, redistest.SentinelAuth{})
}

// TestSentinelWithPasswordsFailoverKeepsTheCluster proves, in
// docs/redis.md (Redis Sentinel): the same with passwords on the servers
// (RedisOptions.Password) and on the Sentinels
// (RedisOptions.SentinelPassword).
func TestSentinelWithPasswordsFailoverKeepsTheCluster(t *testing.T) {
	sentinelFailoverKeepsTheCluster(t, redistest.SentinelAuth{Password: "server-secret", SentinelPassword: "sentinel-secret"})
}

func sentinelFailoverKeepsTheCluster(t *testing.T, auth redistest.SentinelAuth) {
	if testing.Short() {
		t.Skip("starts Redis Sentinel; skipped with -short")
	}
	leakCheck(t)
	sen := redistest.StartSentinelWithAuth(t, auth)
	o := ws.RedisOptions{Addrs: []string{sen.Addr}, MasterName: redistest.MasterName, KeyPrefix: redistest.Prefix(t),
		Password: auth.Password, SentinelPassword: auth.SentinelPassword}
	var log errorLog
	ns := redisNodes(t, 2, o, ws.Config{}, presenceOptions(&log))
	a, b := ns[0], ns[1]
	healthy := func() bool { return a.hub.Health().BrokerHealthy && b.hub.Health().BrokerHealthy }
	require.Eventually(t, healthy, 10*time.Second, 5*time.Millisecond, "the brokers never became healthy")

	const room = "presence-room"
	alice := a.dial(t, "alice")
	alice.subscribePresence(room, "alice")
	bob := b.dial(t, "bob")
	bob.subscribePresence(room, "alice", "bob")
	alice.expectPresence(room, "join", "bob", []string{"alice", "bob"}, 2)
	bob.subscribe("news")
	ctx := context.Background()
	require.NoError(t, a.hub.Publish(ctx, "news", "before"))
	bob.expect(map[string]any{"type": "message", "channel": "news", "message": "before"})

	sen.KillMaster(t)
	promoted := time.Now()
	require.Eventually(t, healthy, 30*time.Second, 5*time.Millisecond, "the brokers did not come back on the promoted replica")
	t.Logf("both brokers healthy %v after the promotion", time.Since(promoted).Round(time.Millisecond))
	require.NoError(t, a.hub.Publish(ctx, "news", "after"))
	for {
		m := bob.next() // presence frames may come first: the hub checks its lists after a reconnect
		if m["type"] == "message" {
			require.Equal(t, "after", m["message"], "got %v, want the publication made after the failover", m)
			break
		}
		require.Equal(t, "presence", m["type"], "got %v, want presence frames or the publication", m)
	}
	for _, n := range ns {
		require.Eventually(t, func() bool { return equalIDs(n.members(t, room), "alice", "bob") }, 30*time.Second, 10*time.Millisecond,
			"members on a node after the failover: %v", n.members(t, room))
	}
	carol := b.dial(t, "carol")
	carol.subscribePresence(room, "alice", "bob", "carol")
	require.Equal(t, int64(1), a.hub.Stats().ConnectionsTotal, "alice stayed connected")
	require.Equal(t, int64(2), b.hub.Stats().ConnectionsTotal, "bob stayed connected")
}

// TestSentinelSwitchoverKeepsPublishing proves, in docs/redis.md (Redis
// Sentinel): during a planned failover (SENTINEL FAILOVER: the master runs
// on and becomes a replica of the promoted one, about 16 s later here)
// publications that return nil still reach every node. go-redis moves the
// brokers' pools to the new master at once but leaves their subscription
// connections on the old one, which gets nothing published on the new
// one until it replicates from it: before the brokers followed the
// master, 1,687 of 1,921 such publications were lost.
func TestSentinelSwitchoverKeepsPublishing(t *testing.T) {
	if testing.Short() {
		t.Skip("starts Redis Sentinel; skipped with -short")
	}
	tests := []struct {
		name string
		// nodes starts two nodes on the Sentinel set.
		nodes func(t *testing.T, sen *redistest.Sentinel, prefix string) []*testNode
		// most is how many nil publications may be lost: the broker
		// follows its client's dials to the new master, through the
		// dialer it gives a client it makes, or through a dial hook on an
		// application's Sentinel client. (Before the hook, the broker on a
		// given client noticed only within a HealthInterval that the new
		// master did not see its subscriptions: 3 to 18 lost at 100 ms.)
		most int
	}{
		{"options", func(t *testing.T, sen *redistest.Sentinel, prefix string) []*testNode {
			o := ws.RedisOptions{Addrs: []string{sen.Addr}, MasterName: redistest.MasterName, KeyPrefix: prefix}
			return redisNodes(t, 2, o, ws.Config{}, nil)
		}, 5},
		{"given client", func(t *testing.T, sen *redistest.Sentinel, prefix string) []*testNode {
			ns := make([]*testNode, 2)
			for i := range ns {
				client := redis.NewFailoverClient(&redis.FailoverOptions{MasterName: redistest.MasterName, SentinelAddrs: []string{sen.Addr}})
				t.Cleanup(func() { _ = client.Close() }) // after the node stops
				b, err := ws.NewRedisBrokerFromClient(client, ws.RedisOptions{KeyPrefix: prefix})
				require.NoError(t, err)
				ns[i] = newNode(t, b, nil, ws.Config{}, nil)
			}
			awaitReady(t, ns...)
			return ns
		}, 5},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			leakCheck(t)
			sen := redistest.StartSentinel(t)
			ns := tt.nodes(t, sen, redistest.Prefix(t))
			switchoverLosses(t, sen, ns[0], ns[1], tt.most)
		})
	}
}

// switchoverLosses has node a publish every 5 ms through a switchover of
// sen and requires that at most most of the publications that returned
// nil miss a client on either node.
func switchoverLosses(t *testing.T, sen *redistest.Sentinel, a, b *testNode, most int) {
	t.Helper()
	healthy := func() bool { return a.hub.Health().BrokerHealthy && b.hub.Health().BrokerHealthy }
	require.Eventually(t, healthy, 10*time.Second, 5*time.Millisecond, "the brokers never became healthy")
	ca, cb := a.dial(t, ""), b.dial(t, "")
	ca.subscribe("news")
	cb.subscribe("news")

	ctx := context.Background()
	stop := make(chan struct{})
	published := make(chan []string, 1)
	failed := 0
	go func() {
		var ok []string
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		for i := 0; ; i++ {
			select {
			case <-stop:
				published <- ok
				return
			case <-tick.C:
			}
			p := fmt.Sprintf("p%d", i)
			if err := a.hub.Publish(ctx, "news", p); err == nil {
				ok = append(ok, p)
			} else {
				failed++ // refused while the brokers move, or uncertain
			}
		}
	}()
	start := time.Now()
	sen.Switchover(t)
	t.Logf("switchover took %v", time.Since(start).Round(time.Millisecond))
	close(stop)
	ok := <-published
	require.NotEmpty(t, ok)
	for _, c := range []*testClient{ca, cb} {
		got := readMessages(t, c, ok)
		lost := notIn(ok, got)
		t.Logf("%d publications returned nil, %d failed; %d of the nil ones lost", len(ok), failed, len(lost))
		require.LessOrEqual(t, len(lost), most, "publications that returned nil and never arrived: %v", lost)
	}
}

// readMessages reads c's publications until it has seen every text in
// want or none comes for 5 s, and returns the texts it saw. Publications
// that failed as uncertain may arrive too, so it does not stop at a count.
func readMessages(t *testing.T, c *testClient, want []string) map[string]bool {
	t.Helper()
	got := make(map[string]bool, len(want))
	missing := len(want)
	wanted := make(map[string]bool, len(want))
	for _, w := range want {
		wanted[w] = true
	}
	for missing > 0 {
		require.NoError(t, c.Conn.SetReadDeadline(time.Now().Add(5*time.Second)))
		var m map[string]any
		if err := c.Conn.ReadJSON(&m); err != nil {
			break
		}
		if text, ok := m["message"].(string); ok && m["type"] == "message" && !got[text] {
			got[text] = true
			if wanted[text] {
				missing--
			}
		}
	}
	return got
}

// notIn returns the texts of want that got lacks, in want's order.
func notIn(want []string, got map[string]bool) []string {
	var lost []string
	for _, w := range want {
		if !got[w] {
			lost = append(lost, w)
		}
	}
	return lost
}

func equalIDs(got []string, want ...string) bool {
	if len(got) != len(want) {
		return false
	}
	for i := range got {
		if got[i] != want[i] {
			return false
		}
	}
	return true
}

// TestSentinelDiscoveredSentinelIsNotAMasterMove proves, in
// docs/redis.md (Redis Sentinel): a broker made from options with one of
// two Sentinels in Addrs does not resubscribe when the listed Sentinel
// dies and go-redis turns to the other, which it learnt from the listed
// one. The broker watches its client's dials for master moves and the
// Sentinels are dialed through the same dialer: before the broker asked
// the Sentinels for the others too, the dial to the unlisted one looked
// like a master move and dropped every subscription for a resubscribe.
func TestSentinelDiscoveredSentinelIsNotAMasterMove(t *testing.T) {
	sentinelDiscoveredIsNotAMasterMove(t, redistest.SentinelAuth{})
}

// TestSentinelWithPasswordsDiscoveredSentinelIsNotAMasterMove proves, in
// docs/redis.md (Redis Sentinel): the same with passwords on the servers
// and on the Sentinels, which the broker's own question to a Sentinel
// (SENTINEL SENTINELS) needs too.
func TestSentinelWithPasswordsDiscoveredSentinelIsNotAMasterMove(t *testing.T) {
	sentinelDiscoveredIsNotAMasterMove(t, redistest.SentinelAuth{Password: "server-secret", SentinelPassword: "sentinel-secret"})
}

func sentinelDiscoveredIsNotAMasterMove(t *testing.T, auth redistest.SentinelAuth) {
	if testing.Short() {
		t.Skip("starts Redis Sentinel; skipped with -short")
	}
	leakCheck(t)
	sen := redistest.StartSentinelWithAuth(t, auth)
	other := sen.AddSentinel(t)
	logs := &recordHandler{}
	o := ws.RedisOptions{Addrs: []string{sen.Addr}, MasterName: redistest.MasterName, KeyPrefix: redistest.Prefix(t), Logger: slog.New(logs),
		Password: auth.Password, SentinelPassword: auth.SentinelPassword}
	n := redisNodes(t, 1, o, ws.Config{}, nil)[0]
	require.Eventually(t, func() bool { return n.hub.Health().BrokerHealthy }, 10*time.Second, 5*time.Millisecond, "the broker never became healthy")
	logged := func(msg string) func() bool {
		return func() bool {
			return len(logs.where(func(r slog.Record) bool { return strings.Contains(recordLine(r), msg) })) > 0
		}
	}
	require.Eventually(t, logged("sentinel discovered sentinel="+other), 10*time.Second, 5*time.Millisecond,
		"the broker did not learn the unlisted Sentinel %s", other)
	c := n.dial(t, "")
	c.subscribe("news")

	// go-redis asks a Sentinel for the master when it opens a connection:
	// with the listed one dead and the pool's connections killed, the
	// next publication's connection asks the unlisted one.
	sen.KillSentinel(sen.Addr)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	_, err := sen.Master.CLI(ctx, "CLIENT", "KILL", "TYPE", "normal")
	require.NoError(t, err)
	require.Eventually(t, func() bool { return n.hub.Publish(ctx, "news", "after") == nil }, 20*time.Second, 10*time.Millisecond,
		"no publication went through after the listed Sentinel died")
	c.expect(map[string]any{"type": "message", "channel": "news", "message": "after"})
	out, err := sen.CLI(ctx, other, "CLIENT", "LIST")
	require.NoError(t, err)
	require.Contains(t, out, "cmd=subscribe", "go-redis did not turn to the unlisted Sentinel:\n%s", out)
	for _, r := range logs.where(func(r slog.Record) bool { return strings.Contains(recordLine(r), "connection lost") }) {
		t.Errorf("the broker took the dial to the unlisted Sentinel for a master move: %s", recordLine(r))
	}
	require.True(t, n.hub.Health().BrokerHealthy)
}

// TestSentinelWrongPasswordSaysSo proves, in docs/redis.md (Redis
// Sentinel): a node on Sentinel with a password missing or wrong fails at
// once, with Redis's own refusal in the error: Publish with
// ErrBrokerUnavailable and a presence call with ErrStorageUnavailable.
func TestSentinelWrongPasswordSaysSo(t *testing.T) {
	if testing.Short() {
		t.Skip("starts Redis Sentinel; skipped with -short")
	}
	leakCheck(t)
	auth := redistest.SentinelAuth{Password: "server-secret", SentinelPassword: "sentinel-secret"}
	sen := redistest.StartSentinelWithAuth(t, auth)
	for _, c := range []struct {
		name string
		o    ws.RedisOptions
		says string
	}{
		{"no Sentinel password", ws.RedisOptions{Password: auth.Password}, "NOAUTH"},
		{"no server password", ws.RedisOptions{SentinelPassword: auth.SentinelPassword}, "NOAUTH"},
		{"wrong server password", ws.RedisOptions{Password: "wrong", SentinelPassword: auth.SentinelPassword}, "WRONGPASS"},
	} {
		t.Run(c.name, func(t *testing.T) {
			o := c.o
			o.Addrs, o.MasterName, o.KeyPrefix = []string{sen.Addr}, redistest.MasterName, redistest.Prefix(t)
			b, err := ws.NewRedisBrokerWithOptions(o)
			require.NoError(t, err)
			defer func() { require.NoError(t, b.Close()) }()
			s, err := ws.NewRedisStorageWithOptions(o)
			require.NoError(t, err)
			defer func() { _ = s.Close() }() // fails too: it cannot remove the node's keys
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			start := time.Now()
			err = b.Publish(ctx, "news", []byte("x"))
			require.ErrorIs(t, err, ws.ErrBrokerUnavailable)
			require.ErrorContains(t, err, c.says)
			_, _, err = s.PresenceMembers(ctx, "presence-room")
			require.ErrorIs(t, err, ws.ErrStorageUnavailable)
			require.ErrorContains(t, err, c.says)
			require.Less(t, time.Since(start), 3*time.Second, "time to fail both")
		})
	}
}
