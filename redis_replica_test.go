package ws_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	ws "github.com/vortechron/go-ws"
	"github.com/vortechron/go-ws/internal/redistest"
)

// TestFailoverBehindOneAddress proves, in docs/redis.md (Failover behind
// one address): when the primary behind the nodes' one Redis address
// fails over (Redis's own FAILOVER, then the address moves to the new
// primary) the connections opened before stay on the old primary, now a
// replica, and the nodes move off it by themselves:
//
//   - the cluster API asked on a node whose connections stayed counts
//     every node's subscribers, new nodes included;
//   - a publication that returned nil, from a node whose connections
//     stayed or from a node started after, reaches every node; before
//     the broker checked, all 120 publications of the old node returned
//     nil and none reached the new node;
//   - presence joins on every node succeed at once, with no error frame
//     (the replica refused the first script of each node with READONLY);
//   - every node's subscription connection ends on the new primary, even
//     on a node that never publishes.
func TestFailoverBehindOneAddress(t *testing.T) {
	rr := startReplicated(t)
	prefix := redistest.Prefix(t)
	o := ws.RedisOptions{Addrs: []string{rr.Addr}, KeyPrefix: prefix}
	var log errorLog
	ns := redisNodes(t, 2, o, ws.Config{}, presenceOptions(&log))
	a, b := ns[0], ns[1]
	const room = "presence-room"
	alice := a.dial(t, "alice")
	alice.subscribePresence(room, "alice")
	bob := b.dial(t, "bob")
	bob.subscribePresence(room, "alice", "bob")
	alice.expectPresence(room, "join", "bob", []string{"alice", "bob"}, 2)
	na, nb := a.dial(t, ""), b.dial(t, "")
	na.subscribe("news")
	nb.subscribe("news")

	rr.Failover(t)
	c := redisNodes(t, 1, o, ws.Config{}, presenceOptions(&log))[0]
	nc := c.dial(t, "")
	nc.subscribe("news")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	// The cluster API first: a count from the old primary would leave
	// out node c, whose subscription is on the new one. Until every node
	// has moved, an answer published on the old primary reaches nobody
	// (the asker says ErrClusterIncomplete), and a node whose
	// subscription is still there is out of the cluster's reach, its
	// subscribers included, so the count leaves it out; a node that never
	// publishes moves within a HealthInterval.
	var info ws.ChannelInfo
	require.Eventually(t, func() bool {
		var err error
		info, err = a.hub.Channel(ctx, "news")
		require.True(t, err == nil || errors.Is(err, ws.ErrPublishUncertain) || errors.Is(err, ws.ErrBrokerUnavailable) || errors.Is(err, ws.ErrClusterIncomplete), "cluster API: %v", err)
		return err == nil && info.Subscriptions == 3
	}, 10*time.Second, 5*time.Millisecond, "node a never counted one subscriber of news per node after the failover")

	var ok, failed []string
	for i := range 120 {
		for _, n := range []struct {
			name string
			node *testNode
		}{{"a", a}, {"c", c}} {
			p := fmt.Sprintf("%s%d", n.name, i)
			if err := n.node.hub.Publish(ctx, "news", p); err == nil {
				ok = append(ok, p)
			} else {
				require.True(t, errors.Is(err, ws.ErrPublishUncertain) || errors.Is(err, ws.ErrBrokerUnavailable), "publish %s: %v", p, err)
				failed = append(failed, p)
			}
		}
	}
	t.Logf("%d publications returned nil; failed while the nodes moved: %v", len(ok), failed)
	require.LessOrEqual(t, len(failed), 20, "publications failed after the failover")
	for i, cl := range []*testClient{na, nb, nc} {
		got := readMessages(t, cl, ok)
		lost := notIn(ok, got)
		require.Empty(t, lost, "node %c: publications that returned nil and never arrived (%d of %d)", 'a'+i, len(lost), len(ok))
	}

	carol := a.dial(t, "carol")
	carol.subscribePresence(room, "alice", "bob", "carol")
	dave := b.dial(t, "dave")
	dave.subscribePresence(room, "alice", "bob", "carol", "dave")
	erin := c.dial(t, "erin")
	erin.subscribePresence(room, "alice", "bob", "carol", "dave", "erin")
	for _, n := range []*testNode{a, b, c} {
		require.Eventually(t, func() bool {
			return equalIDs(n.members(t, room), "alice", "bob", "carol", "dave", "erin")
		}, 10*time.Second, 10*time.Millisecond, "members on a node: %v", n.members(t, room))
	}
	require.Empty(t, log.all(), "errors on the nodes after the failover")

	// Node b never published, and its subscription connection moved too.
	numsub := func(s *redistest.Server) string {
		out, err := s.CLI(ctx, "PUBSUB", "NUMSUB", prefix+"ctl")
		require.NoError(t, err)
		return strings.Join(strings.Fields(out), " ")
	}
	require.Eventually(t, func() bool {
		return numsub(rr.Primary) == prefix+"ctl 3" && numsub(rr.Replica) == prefix+"ctl 0"
	}, 10*time.Second, 10*time.Millisecond, "the brokers' subscriptions: %q on the new primary, %q on the old",
		numsub(rr.Primary), numsub(rr.Replica))
}

// TestFailoverBehindOneAddressWithAGivenClient proves, in docs/redis.md
// (Failover behind one address): the broker checks a client the
// application gave it (NewRedisBrokerFromClient) as it checks its own.
// While the address still names the old primary (its move is late) every
// publication fails, and the broker opens a connection there at most
// every 250 ms; once the address moves, publications go through again
// within a second (the broker moves its subscriptions off the replica
// too; before it did, it waited the whole ResubscribeWait of 5 s for its
// own subscription to show on the primary), and none of those that
// returned nil misses a subscriber of the new primary.
// The subscriber is a plain Redis client, so no other broker announces
// itself and makes this one count its peers, and the HealthInterval is
// longer than the test: only the broker's publications can tell it.
func TestFailoverBehindOneAddressWithAGivenClient(t *testing.T) {
	rr := startReplicated(t)
	prefix := redistest.Prefix(t)
	client := redis.NewClient(&redis.Options{Addr: rr.Addr, MaxRetries: -1})
	t.Cleanup(func() { _ = client.Close() })
	b, err := ws.NewRedisBrokerFromClient(client, ws.RedisOptions{KeyPrefix: prefix, HealthInterval: time.Hour})
	require.NoError(t, err)
	t.Cleanup(func() { _ = b.Close() }) // before the client's
	require.Eventually(t, b.Healthy, 10*time.Second, 5*time.Millisecond, "the broker never became healthy")
	// Fail over only once the broker has counted the brokers: without a
	// count from before it waits ResubscribeWait once the address moved
	// (TestBrokerStartedOnAReplica), and the test would measure that.
	ws.WaitCounted(t, b)

	rr.Promote(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	other := redis.NewClient(&redis.Options{Addr: rr.Primary.Addr})
	t.Cleanup(func() { _ = other.Close() })
	sub := other.Subscribe(ctx, prefix+"ch:news")
	t.Cleanup(func() { _ = sub.Close() })
	_, err = sub.Receive(ctx)
	require.NoError(t, err)

	publish := publishEvery5ms(ctx, t, b)
	dials := func() int { return connectionsReceived(ctx, t, rr.Replica) }
	before, start := dials(), time.Now()
	for i := range 200 {
		require.False(t, publish(fmt.Sprint("early", i)), "publication %d returned nil while the address named a replica", i)
	}
	opened := dials() - before - 1 // less the INFO's own
	t.Logf("200 publications failed in %v; the broker opened %d connections to the replica", time.Since(start).Round(time.Millisecond), opened)
	require.LessOrEqual(t, opened, int(time.Since(start)/(250*time.Millisecond))+3, "connections opened to the replica")

	rr.MoveAddress()
	ok, failed := publishHundred(ctx, publish)
	t.Logf("after the address moved: %d publications returned nil, %d failed first", len(ok), failed)
	require.Less(t, failed, 200, "publications failed after the address moved (one every 5 ms)")
	got := map[string]bool{}
	for missing := len(ok); missing > 0; {
		m, err := sub.ReceiveTimeout(ctx, 5*time.Second)
		if err != nil {
			break
		}
		if msg, isMsg := m.(*redis.Message); isMsg && !got[msg.Payload] {
			got[msg.Payload] = true
			missing--
		}
	}
	lost := notIn(ok, got)
	require.Empty(t, lost, "publications that returned nil and never reached a subscriber of the new primary (%d of %d)", len(lost), len(ok))
}

// TestBrokerStartedOnAReplica proves, in docs/redis.md (Failover behind
// one address): a broker started while its address names a replica (a
// node starting during a failover) accepts no publication until the
// address names the primary, and then delivers every publication that
// returned nil to its own subscribers. Such a broker has no count of the
// brokers from before, and it used not to count while it waited for
// them: when the address moved during the wait, it went live after
// ResubscribeWait with its subscription connection still on the old
// primary, and its publications returned nil and never reached its own
// subscribers (100 of 100 lost, until a count a HealthInterval later
// would have moved the connection). The old primary here is cut off from
// the new one, as a failed primary is: a replica still linked gets its
// primary's publications.
func TestBrokerStartedOnAReplica(t *testing.T) {
	rr := startReplicated(t)
	rr.Promote(t) // the address names the old primary, now a replica
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	// A replica gets its primary's publications: cut it off, as a failed
	// primary is, so that a subscription left there shows.
	rr.CutReplicaLink(t)
	// The address moves while the broker waits for the brokers it never
	// counted: a second into the wait.
	const wait = 3 * time.Second
	b, err := ws.NewRedisBrokerWithOptions(ws.RedisOptions{Addrs: []string{rr.Addr}, KeyPrefix: redistest.Prefix(t),
		HealthInterval: time.Hour, ResubscribeWait: wait})
	require.NoError(t, err)
	t.Cleanup(func() { _ = b.Close() })
	got := make(chan string, 1000)
	require.NoError(t, b.Subscribe(ctx, "news", func(p []byte) { got <- string(p) }))

	publish := publishEvery5ms(ctx, t, b)
	for i, end := 0, time.Now().Add(time.Second); time.Now().Before(end); i++ {
		require.False(t, publish(fmt.Sprint("early", i)), "publication %d returned nil while the address named a replica", i)
		require.False(t, b.Healthy(), "the broker became healthy while the address named a replica")
	}

	rr.MoveAddress()
	ok, failed := publishHundred(ctx, publish)
	t.Logf("after the address moved: %d publications returned nil, %d failed first", len(ok), failed)
	requireReceived(t, got, ok)
}

// TestBrokerLeavesTheReplicaWhenTheAddressMovesMidMove proves, in
// docs/redis.md (Failover behind one address): a broker that found its
// pool on a replica, and whose new subscription connection reached that
// replica just before the address moved, moves that connection again
// once its pool reaches the primary. Before, its first count found the
// primary, so it took the connection for one dialled there and went live
// with its subscriptions on the old primary: with that server cut off
// from the new one, every publication returned nil and none reached the
// broker's own subscriber (and with other brokers on the new primary, no
// count would ever have found it out). The address's bytes are held from
// the moment the broker finds the replica until the address has moved,
// so the new connection reaches the old primary and the first count the
// new one.
func TestBrokerLeavesTheReplicaWhenTheAddressMovesMidMove(t *testing.T) {
	rr := startReplicated(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	// Pooled connections idle for 50 ms are dropped, so the first count
	// after the move dials rather than reuse one to the old primary.
	client := redis.NewClient(&redis.Options{Addr: rr.Addr, MaxRetries: -1, ConnMaxIdleTime: 50 * time.Millisecond})
	t.Cleanup(func() { _ = client.Close() })
	logs := &recordHandler{notify: make(chan slog.Record, 64)}
	b, err := ws.NewRedisBrokerFromClient(client, ws.RedisOptions{KeyPrefix: redistest.Prefix(t),
		HealthInterval: time.Hour, ResubscribeWait: 200 * time.Millisecond, Logger: slog.New(logs)})
	require.NoError(t, err)
	t.Cleanup(func() { _ = b.Close() }) // before the client's
	got := make(chan string, 1000)
	require.NoError(t, b.Subscribe(ctx, "news", func(p []byte) { got <- string(p) }))
	require.Eventually(t, b.Healthy, 10*time.Second, 5*time.Millisecond, "the broker never became healthy")
	ws.WaitCounted(t, b)

	rr.Promote(t)
	// The old primary keeps nothing published on the new one; the test
	// watches it directly, not through the address.
	rr.CutReplicaLink(t)
	old := redis.NewClient(&redis.Options{Addr: rr.Replica.Addr})
	t.Cleanup(func() { _ = old.Close() })
	require.Error(t, b.Publish(ctx, "news", []byte("refused")), "a publication to a replica")
	for r := range logs.notify {
		if strings.Contains(r.Message, "connection lost") {
			break
		}
	}
	rr.Stall() // 50 ms before the broker dials its new subscription connection
	// That connection reaches the old primary and sends nothing yet.
	require.Eventually(t, func() bool {
		list, err := old.ClientList(ctx).Result()
		return err == nil && strings.Contains(list, "cmd=NULL")
	}, 10*time.Second, time.Millisecond, "the new subscription connection never reached the old primary")
	rr.MoveAddress()
	rr.Resume()

	ok, failed := publishHundred(ctx, publishEvery5ms(ctx, t, b))
	t.Logf("after the address moved: %d publications returned nil, %d failed first", len(ok), failed)
	requireReceived(t, got, ok)
}

// publishEvery5ms returns a publish of payload p on b's channel "news",
// one every 5 ms, that reports whether it returned nil and fails t on an
// error that is neither unavailable nor uncertain.
func publishEvery5ms(ctx context.Context, t *testing.T, b *ws.RedisBroker) func(p string) bool {
	tick := time.NewTicker(5 * time.Millisecond)
	t.Cleanup(tick.Stop)
	return func(p string) bool {
		<-tick.C
		err := b.Publish(ctx, "news", []byte(p))
		require.True(t, err == nil || errors.Is(err, ws.ErrPublishUncertain) || errors.Is(err, ws.ErrBrokerUnavailable), "publish %s: %v", p, err)
		return err == nil
	}
}

// publishHundred publishes "0", "1", ... with publish until 100 returned
// nil, and returns those and how many failed first.
func publishHundred(ctx context.Context, publish func(string) bool) (ok []string, failed int) {
	for i := 0; len(ok) < 100 && ctx.Err() == nil; i++ {
		if p := fmt.Sprint(i); publish(p) {
			ok = append(ok, p)
		} else {
			failed++
		}
	}
	return ok, failed
}

// requireReceived fails t unless every payload of ok comes on got, the
// broker's own subscriber, within 5 s. Other payloads are ignored: an
// empty one says a subscription was restored on a new connection, and
// the tests' refused publications may have reached a replica's.
func requireReceived(t *testing.T, got <-chan string, ok []string) {
	t.Helper()
	want := map[string]bool{}
	for _, p := range ok {
		want[p] = true
	}
	received := map[string]bool{}
	timeout := time.NewTimer(5 * time.Second)
	defer timeout.Stop()
	for len(received) < len(want) {
		select {
		case p := <-got:
			if want[p] {
				received[p] = true
			}
		case <-timeout.C:
			lost := notIn(ok, received)
			require.Empty(t, lost, "publications that returned nil and never reached the broker's own subscriber (%d of %d)", len(lost), len(ok))
		}
	}
}

// TestSubscribeWhileTheConnectionMoves proves, in docs/redis.md
// (Subscribe confirmation): Subscribe returns nil, the channel
// confirmed, while the broker moves its subscription connection, here
// off a replica, the first thing a broker started on one does. Before, a Subscribe that wrote to
// the connection the broker had just closed failed with "redis: client
// is closed" though the next connection subscribed the channel.
func TestSubscribeWhileTheConnectionMoves(t *testing.T) {
	rr := startReplicated(t)
	rr.Promote(t) // the address names a replica: the broker moves at once
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	logs := &recordHandler{}
	b, err := ws.NewRedisBrokerWithOptions(ws.RedisOptions{Addrs: []string{rr.Addr}, KeyPrefix: redistest.Prefix(t),
		HealthInterval: time.Hour, Logger: slog.New(logs)})
	require.NoError(t, err)
	t.Cleanup(func() { _ = b.Close() })
	// (A Subscribe written just before the old connection closed waits out
	// the move; those started meanwhile must not fail.)
	n, failed := duringMove(ctx, t, logs, func(i int) error {
		return b.Subscribe(ctx, fmt.Sprint("room", i), func([]byte) {})
	})
	require.Empty(t, failed[:min(len(failed), 3)], "subscriptions that failed while the broker moved its connection: %d of %d", len(failed), n)
	t.Logf("%d subscriptions, none failed", n)
}

// TestUnsubscribeWhileTheConnectionMoves proves, in docs/redis.md
// (Subscribe confirmation): Unsubscribe returns nil while the broker
// moves its subscription connection (here off a replica, after a
// failover behind one address), since the next connection subscribes
// only the channels still subscribed. Before, one written to the
// connection the broker had just closed failed with "redis: client is
// closed", which the Hub logs as a failed unsubscribe.
func TestUnsubscribeWhileTheConnectionMoves(t *testing.T) {
	rr := startReplicated(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	logs := &recordHandler{}
	prefix := redistest.Prefix(t)
	b, err := ws.NewRedisBrokerWithOptions(ws.RedisOptions{Addrs: []string{rr.Addr}, KeyPrefix: prefix,
		HealthInterval: time.Hour, Logger: slog.New(logs)})
	require.NoError(t, err)
	t.Cleanup(func() { _ = b.Close() })
	subs := make([]ws.BrokerSubscription, 1000)
	for i := range subs {
		subs[i] = ws.BrokerSubscription{Channel: fmt.Sprint("room", i), Handler: func([]byte) {}}
	}
	for i, err := range b.SubscribeBatch(ctx, subs) {
		require.NoError(t, err, "subscription %d", i)
	}
	rr.Promote(t) // the address still names the old primary
	// The publication finds the replica, and the broker moves.
	require.Error(t, b.Publish(ctx, "news", []byte("refused")), "a publication to a replica")
	n, failed := duringMove(ctx, t, logs, func(i int) error {
		if i >= len(subs) {
			return errors.New("more unsubscriptions than subscriptions")
		}
		return b.Unsubscribe(ctx, subs[i].Channel)
	})
	require.Empty(t, failed[:min(len(failed), 3)], "unsubscriptions that failed while the broker moved its connection: %d of %d", len(failed), n)
	t.Logf("%d unsubscriptions, none failed", n)

	// The next connection (on the old primary, which the address still
	// names) holds the channels left and none of those unsubscribed.
	old := redis.NewClient(&redis.Options{Addr: rr.Replica.Addr})
	t.Cleanup(func() { _ = old.Close() })
	numsub := func(i int) int64 {
		m, err := old.PubSubNumSub(ctx, prefix+"ch:"+subs[i].Channel).Result()
		require.NoError(t, err)
		return m[prefix+"ch:"+subs[i].Channel]
	}
	require.Eventually(t, func() bool { return numsub(len(subs)-1) == 1 }, 10*time.Second, time.Millisecond,
		"the channels left were never subscribed on the next connection")
	for i := range n {
		require.Zero(t, numsub(i), "unsubscribed channel %d still subscribed", i)
	}
}

// duringMove starts call(0), call(1), ... each in a goroutine of its
// own, one every millisecond, until 200 ms after the broker logged to
// logs that its subscription connection was lost (four times the 50 ms
// it waits before it dials the next one), waits for them, and returns
// how many it started and the errors of those that failed.
func duringMove(ctx context.Context, t *testing.T, logs *recordHandler, call func(i int) error) (n int, failed []string) {
	t.Helper()
	moved := func() bool {
		return len(logs.where(func(r slog.Record) bool { return strings.Contains(r.Message, "connection lost") })) > 0
	}
	var (
		mu sync.Mutex
		wg sync.WaitGroup
	)
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	var end time.Time
	for ; (end.IsZero() || time.Now().Before(end)) && ctx.Err() == nil; n++ {
		<-tick.C
		if end.IsZero() && moved() {
			end = time.Now().Add(200 * time.Millisecond)
		}
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			if err := call(i); err != nil {
				mu.Lock()
				failed = append(failed, fmt.Sprintf("%d: %v", i, err))
				mu.Unlock()
			}
		}(n)
	}
	wg.Wait()
	require.True(t, moved(), "the broker never moved its connection")
	return n, failed
}

// TestFailoverBehindOneAddressWithAGivenStore proves, in docs/redis.md
// (Failover behind one address): a presence store on the application's
// own client joins (on a channel it had and on one new to it), leaves and
// lists at once after the primary behind its
// address failed over, whatever the client's retries: the replica refuses
// each script at its first write, and the store sends it again on
// another connection, for as long as the pool may hold connections to
// the old primary. Before, with the client's retries off (what the docs
// asked for), the first call on each pooled connection to the old
// primary failed with READONLY; with 8 connections pooled, as on a busy
// node, and at most 4 sends, the first join of a channel new to the node
// still failed.
func TestFailoverBehindOneAddressWithAGivenStore(t *testing.T) {
	rr := startReplicated(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	stores := map[string]*ws.RedisStorage{}
	for _, retries := range []int{-1, 0} { // off, and go-redis's default (3)
		client := redis.NewClient(&redis.Options{Addr: rr.Addr, MaxRetries: retries})
		t.Cleanup(func() { _ = client.Close() })
		s, err := ws.NewRedisStorageFromClient(client, ws.RedisOptions{KeyPrefix: redistest.Prefix(t) + strconv.Itoa(retries) + ":"})
		require.NoError(t, err)
		t.Cleanup(func() { _ = s.Close() }) // before the client's
		stores[fmt.Sprint("MaxRetries ", retries)] = s
	}
	conn := func(i int) ws.PresenceConn {
		u := fmt.Sprint("user", i)
		return ws.PresenceConn{Channel: "presence-room", ConnID: "conn" + u, Member: ws.PresenceMember{UserID: u}}
	}
	for name, s := range stores {
		for i := range 3 {
			_, joined, err := s.AddPresence(ctx, conn(i))
			require.NoError(t, err, "%s: join %d before the failover", name, i)
			require.True(t, joined, "%s: join %d", name, i)
		}
	}

	// Several pooled connections to the old primary, as a busy node has.
	for name, s := range stores {
		_, err := s.OccupyChannels(ctx, []string{"news", "sport"})
		require.NoError(t, err, "%s: occupy before the failover", name)
		var wg sync.WaitGroup
		for range 8 {
			wg.Go(func() { _, _, _ = s.PresenceMembers(ctx, "presence-room") })
		}
		wg.Wait()
	}
	rr.Failover(t)
	for name, s := range stores {
		// Occupancy first, on a connection to the old primary: a vacate
		// (one pipeline of scripts), then an occupy (a node's index and
		// the scripts in one pipeline).
		vacated, err := s.VacateChannels(ctx, []string{"news"})
		require.NoError(t, err, "%s: vacate after the failover", name)
		require.Equal(t, []string{"news"}, vacated, "%s: vacated", name)
		occupied, err := s.OccupyChannels(ctx, []string{"weather"})
		require.NoError(t, err, "%s: occupy after the failover", name)
		require.Equal(t, []string{"weather"}, occupied, "%s: occupied", name)
		// Then a channel new to the node, on a connection to the old
		// primary: its first join also indexes the channel under the node
		// (two SADDs, before the script).
		other := ws.PresenceConn{Channel: "presence-other", ConnID: "conn-other", Member: ws.PresenceMember{UserID: "user0"}}
		_, joined, err := s.AddPresence(ctx, other)
		require.NoError(t, err, "%s: first join of a channel new to the node, after the failover", name)
		require.True(t, joined, "%s: join of presence-other", name)
		for i := 3; i < 6; i++ {
			_, joined, err := s.AddPresence(ctx, conn(i))
			require.NoError(t, err, "%s: join %d after the failover", name, i)
			require.True(t, joined, "%s: join %d", name, i)
		}
		_, left, err := s.RemovePresence(ctx, conn(0))
		require.NoError(t, err, "%s: leave after the failover", name)
		require.True(t, left, "%s: leave", name)
		members, _, err := s.PresenceMembers(ctx, "presence-room")
		require.NoError(t, err, "%s: list after the failover", name)
		var ids []string
		for _, m := range members {
			ids = append(ids, m.UserID)
		}
		require.Equal(t, []string{"user1", "user2", "user3", "user4", "user5"}, ids, "%s: members on the new primary", name)
	}
}

// TestPresenceReadsRefuseAReplica proves, in docs/redis.md (Failover
// behind one address): a member list or count that reaches a replica is
// not answered from the replica's data, which may be older than the
// primary's (replication is asynchronous). Here the replica's link is cut
// after the failover, so it keeps the state of then; before, it answered
// the list of three members with no error, where the primary held four,
// and a joiner's own list could lack the joiner. Now the read is refused
// (unavailable, naming READONLY) until the address names the primary, and
// then holds the four. The storage's own client, and a client of the
// application's with its retries off and on, behave alike.
func TestPresenceReadsRefuseAReplica(t *testing.T) {
	rr := startReplicated(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	prefix := redistest.Prefix(t)
	stores := eachClient(t, rr, prefix, ws.NewRedisStorageWithOptions, ws.NewRedisStorageFromClient)
	own := stores["own client"]
	conn := func(i int) ws.PresenceConn {
		u := fmt.Sprint("user", i)
		return ws.PresenceConn{Channel: "presence-room", ConnID: "conn" + u, Member: ws.PresenceMember{UserID: u}}
	}
	for i := range 3 {
		_, _, err := own.AddPresence(ctx, conn(i))
		require.NoError(t, err, "join %d before the failover", i)
	}
	for name, s := range stores {
		members, _, err := s.PresenceMembers(ctx, "presence-room")
		require.NoError(t, err, "%s: list before the failover", name)
		require.Len(t, members, 3, "%s: list before the failover", name) // a pooled connection to the old primary
	}

	rr.Promote(t) // the address still names the old primary
	rr.CutReplicaLink(t)
	direct, err := ws.NewRedisStorageWithOptions(ws.RedisOptions{Addrs: []string{rr.Primary.Addr}, KeyPrefix: prefix})
	require.NoError(t, err)
	t.Cleanup(func() { _ = direct.Close() })
	_, joined, err := direct.AddPresence(ctx, conn(3))
	require.NoError(t, err, "join on the new primary")
	require.True(t, joined)

	for name, s := range stores {
		before := connectionsReceived(ctx, t, rr.Replica)
		members, _, err := s.PresenceMembers(ctx, "presence-room")
		require.ErrorIs(t, err, ws.ErrStorageUnavailable, "%s: list while the address names a replica: got %d members", name, len(members))
		require.ErrorContains(t, err, "READONLY", name)
		n, err := s.PresenceCount(ctx, "presence-room")
		require.ErrorIs(t, err, ws.ErrStorageUnavailable, "%s: count while the address names a replica: got %d", name, n)
		require.ErrorContains(t, err, "READONLY", name)
		// A refused call stops once a send that dialled is refused: at
		// most two dials, where it used to dial up to 64 times 64 (and,
		// on the storage's own client, twice that: its pipelines
		// retried, and the call around them). Less the second count's
		// own connection, with room for a heartbeat.
		opened := connectionsReceived(ctx, t, rr.Replica) - before - 1
		t.Logf("%s: 2 refused calls opened %d connections to the replica", name, opened)
		require.LessOrEqual(t, opened, 2*2+1, "%s: connections opened to the replica by 2 refused calls", name)
	}

	rr.MoveAddress()
	for name, s := range stores {
		members, _, err := s.PresenceMembers(ctx, "presence-room")
		require.NoError(t, err, "%s: list once the address moved", name)
		require.Len(t, members, 4, "%s: list once the address moved", name)
		n, err := s.PresenceCount(ctx, "presence-room")
		require.NoError(t, err, "%s: count once the address moved", name)
		require.Equal(t, 4, n, "%s: count once the address moved", name)
	}
}

// TestHistoryReadsRefuseAReplica proves, in docs/redis.md (Failover
// behind one address): a history read that reaches a replica is not
// answered from the replica's data. The read script writes only when its
// check marker has gone, so while the marker lived (10 ms after each use
// of the channel) a replica answered it: before, with the replica's link
// cut after the failover, the read returned the 3 publications of before
// with no error, in the epoch of before, where the primary had gone on,
// and a subscriber recovering from it would have been told it missed
// nothing. Now it fails with ErrBrokerUnavailable, naming READONLY, until
// the address names the primary, and then returns what the primary holds
// (a new epoch: the history's Redis changed, see docs/recovery.md).
func TestHistoryReadsRefuseAReplica(t *testing.T) {
	rr := startReplicated(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	prefix := redistest.Prefix(t)
	opts := ws.HistoryOptions{Size: 10, TTL: time.Minute}
	brokers := eachClient(t, rr, prefix, ws.NewRedisBrokerWithOptions, ws.NewRedisBrokerFromClient)
	own := brokers["own client"]
	for _, b := range brokers {
		require.Eventually(t, b.Healthy, 10*time.Second, 5*time.Millisecond, "a broker never became healthy")
	}
	for i := range 3 {
		_, err := own.PublishHistory(ctx, "h", []byte(fmt.Sprint("p", i)), opts)
		require.NoError(t, err, "publication %d before the failover", i)
	}
	for name, b := range brokers {
		page, err := b.ReadHistory(ctx, "h", ws.HistoryRange{Limit: 10})
		require.NoError(t, err, "%s: read before the failover", name) // a pooled connection to the old primary
		require.Len(t, page.Entries, 3, "%s: read before the failover", name)
	}

	rr.Promote(t) // the address still names the old primary
	rr.CutReplicaLink(t)
	// The read script checks Redis's run_id only once its check marker,
	// refreshed by every read and publication for 10 ms, has gone; on a
	// channel used more often the replica always holds a live one. Here
	// the marker is made to last on the replica.
	epoch, err := rr.Replica.CLI(ctx, "HGET", prefix+"hmeta:{h}", "e")
	require.NoError(t, err)
	for _, args := range [][]string{
		{"CONFIG", "SET", "replica-read-only", "no"},
		{"SET", prefix + "hchk:{h}", strings.TrimSpace(epoch), "PX", "60000"},
		{"CONFIG", "SET", "replica-read-only", "yes"},
	} {
		out, err := rr.Replica.CLI(ctx, args...)
		require.NoError(t, err, "%v: %s", args, out)
	}
	direct, err := ws.NewRedisBrokerWithOptions(ws.RedisOptions{Addrs: []string{rr.Primary.Addr}, KeyPrefix: prefix})
	require.NoError(t, err)
	t.Cleanup(func() { _ = direct.Close() })
	require.Eventually(t, direct.Healthy, 10*time.Second, 5*time.Millisecond, "the broker on the new primary never became healthy")
	_, err = direct.PublishHistory(ctx, "h", []byte("p3"), opts)
	require.NoError(t, err, "publication on the new primary")
	want, err := direct.ReadHistory(ctx, "h", ws.HistoryRange{Limit: 10})
	require.NoError(t, err, "read on the new primary")
	require.NotEmpty(t, want.Entries, "read on the new primary")

	for name, b := range brokers {
		page, err := b.ReadHistory(ctx, "h", ws.HistoryRange{Limit: 10})
		require.ErrorIs(t, err, ws.ErrBrokerUnavailable, "%s: read while the address names a replica: got %d publications", name, len(page.Entries))
		require.ErrorContains(t, err, "READONLY", name)
	}

	rr.MoveAddress()
	for name, b := range brokers {
		page, err := b.ReadHistory(ctx, "h", ws.HistoryRange{Limit: 10})
		require.NoError(t, err, "%s: read once the address moved", name)
		require.Equal(t, want, page, "%s: read once the address moved", name)
	}
}

// eachClient makes one T, a storage or a broker, on rr's address for
// each kind of client: its own (own), and a client of the application's
// (given) with go-redis's retries off and at their default. Each is
// closed at t's cleanup, before its client.
func eachClient[T interface{ Close() error }](t *testing.T, rr *redistest.Replicated, prefix string,
	own func(ws.RedisOptions) (T, error), given func(redis.UniversalClient, ws.RedisOptions) (T, error)) map[string]T {
	t.Helper()
	v, err := own(ws.RedisOptions{Addrs: []string{rr.Addr}, KeyPrefix: prefix})
	require.NoError(t, err)
	t.Cleanup(func() { _ = v.Close() })
	out := map[string]T{"own client": v}
	for _, retries := range []int{-1, 0} {
		client := redis.NewClient(&redis.Options{Addr: rr.Addr, MaxRetries: retries})
		t.Cleanup(func() { _ = client.Close() })
		v, err := given(client, ws.RedisOptions{KeyPrefix: prefix})
		require.NoError(t, err)
		t.Cleanup(func() { _ = v.Close() })
		out[fmt.Sprint("given client, MaxRetries ", retries)] = v
	}
	return out
}

// connectionsReceived returns how many connections s has accepted, its
// INFO's own included.
func connectionsReceived(ctx context.Context, t *testing.T, s *redistest.Server) int {
	t.Helper()
	info, err := s.CLI(ctx, "INFO", "stats")
	require.NoError(t, err)
	for _, l := range strings.Fields(info) {
		if v, ok := strings.CutPrefix(l, "total_connections_received:"); ok {
			n, err := strconv.Atoi(v)
			require.NoError(t, err)
			return n
		}
	}
	t.Fatalf("no total_connections_received in INFO stats: %s", info)
	return 0
}

// startReplicated skips t under -short, has it checked for leaked
// goroutines, and starts a primary, its replica and the one address in
// front of them (redistest.StartReplicated).
func startReplicated(t *testing.T) *redistest.Replicated {
	t.Helper()
	if testing.Short() {
		t.Skip("starts two redis-servers; skipped with -short")
	}
	leakCheck(t)
	return redistest.StartReplicated(t)
}
