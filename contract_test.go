package ws

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/vortechron/go-ws/internal/redistest"
)

// Shared contract suites for MessageBroker and StorageClient. Every
// implementation runs them: the in-memory ones here, the Redis ones in
// redis_broker_test.go, redis_storage_test.go and the cluster test.

const contractWait = 5 * time.Second

// noLeaks fails tb if goroutines started during the test are still
// running once every cleanup registered after it has run (cleanups run
// last-in first-out, so call it first).
func noLeaks(tb testing.TB) {
	tb.Helper()
	opt := goleak.IgnoreCurrent()
	tb.Cleanup(func() { verifyNoLeaks(tb, opt) })
}

// leakGrace is how long goroutines of a closed client get to end before
// they count as leaked. go-redis's dial prober (started by a pool whose
// dials all failed) sleeps a second between tries and sees that its pool
// was closed only after the sleep; goleak alone waits about half a
// second, and then reported it (1 run in 3 of the Sentinel tests).
const leakGrace = 2 * time.Second

// verifyNoLeaks fails tb if goroutines that opts do not ignore are still
// running leakGrace after the call. One that never ends (a client never
// closed, whose prober retries forever) is still reported.
func verifyNoLeaks(tb testing.TB, opts ...goleak.Option) {
	tb.Helper()
	var err error
	for end := time.Now().Add(leakGrace); ; {
		// Find itself retries for about half a second before it reports.
		if err = goleak.Find(opts...); err == nil || time.Now().After(end) {
			break
		}
	}
	if err != nil {
		tb.Error(err)
	}
}

func testCtx(tb testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), contractWait)
	tb.Cleanup(cancel)
	return ctx
}

// recorder is a broker handler that keeps what it was given.
type recorder struct {
	mu  sync.Mutex
	got []string // guarded by mu
}

func (r *recorder) handle(p []byte) {
	r.mu.Lock()
	r.got = append(r.got, string(p))
	r.mu.Unlock()
}

func (r *recorder) all() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.got...)
}

func (r *recorder) waitFor(tb testing.TB, n int) []string {
	tb.Helper()
	require.Eventually(tb, func() bool { return len(r.all()) >= n }, contractWait, 2*time.Millisecond,
		"got %d payloads, want %d", len(r.all()), n)
	return r.all()
}

// testBrokerContract runs the MessageBroker contract. newBroker returns a
// new broker that the test owns (it registers its own Close in
// t.Cleanup).
func testBrokerContract(t *testing.T, newBroker func(t *testing.T) MessageBroker) {
	tests := []struct {
		name string
		run  func(t *testing.T, b MessageBroker)
	}{
		{"publish after subscribe is delivered once", func(t *testing.T, b MessageBroker) {
			ctx := testCtx(t)
			var r recorder
			require.NoError(t, b.Subscribe(ctx, "news", r.handle))
			require.NoError(t, b.Publish(ctx, "news", []byte("one")))
			r.waitFor(t, 1)
			// A second, later publication shows nothing else was queued.
			require.NoError(t, b.Publish(ctx, "news", []byte("two")))
			require.Equal(t, []string{"one", "two"}, r.waitFor(t, 2))
		}},
		{"1000 publications arrive in order", func(t *testing.T, b MessageBroker) {
			ctx := testCtx(t)
			var r recorder
			require.NoError(t, b.Subscribe(ctx, "seq", r.handle))
			want := make([]string, 1000)
			for i := range want {
				want[i] = strconv.Itoa(i)
				require.NoError(t, b.Publish(ctx, "seq", []byte(want[i])))
			}
			require.Equal(t, want, r.waitFor(t, len(want)))
		}},
		{"channels are independent", func(t *testing.T, b MessageBroker) {
			ctx := testCtx(t)
			recs := make([]recorder, 20)
			for i := range recs {
				require.NoError(t, b.Subscribe(ctx, "room-"+strconv.Itoa(i), recs[i].handle))
			}
			for i := range recs {
				require.NoError(t, b.Publish(ctx, "room-"+strconv.Itoa(i), []byte("for "+strconv.Itoa(i))))
			}
			for i := range recs {
				require.Equal(t, []string{"for " + strconv.Itoa(i)}, recs[i].waitFor(t, 1))
			}
		}},
		{"unsubscribe stops delivery and resubscribe resumes it", func(t *testing.T, b MessageBroker) {
			ctx := testCtx(t)
			var old, fresh recorder
			require.NoError(t, b.Subscribe(ctx, "flip", old.handle))
			require.NoError(t, b.Publish(ctx, "flip", []byte("before")))
			old.waitFor(t, 1)
			require.NoError(t, b.Unsubscribe(ctx, "flip"))
			require.NoError(t, b.Publish(ctx, "flip", []byte("nobody")))
			require.NoError(t, b.Subscribe(ctx, "flip", fresh.handle))
			require.NoError(t, b.Publish(ctx, "flip", []byte("after")))
			require.Equal(t, []string{"after"}, fresh.waitFor(t, 1))
			require.Equal(t, []string{"before"}, old.all(), "unsubscribed handler was called again")
		}},
		{"no handler call after unsubscribe returns", func(t *testing.T, b MessageBroker) {
			ctx := testCtx(t)
			var returned, late atomic.Bool
			var calls atomic.Int64
			require.NoError(t, b.Subscribe(ctx, "busy", func([]byte) {
				calls.Add(1)
				if returned.Load() {
					late.Store(true)
				}
			}))
			stop := make(chan struct{})
			var wg sync.WaitGroup
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					select {
					case <-stop:
						return
					default:
						_ = b.Publish(ctx, "busy", []byte("x"))
					}
				}
			}()
			require.Eventually(t, func() bool { return calls.Load() > 10 }, contractWait, time.Millisecond)
			require.NoError(t, b.Unsubscribe(ctx, "busy"))
			returned.Store(true)
			// Keep publishing a little while after, then check.
			target := calls.Load()
			require.NoError(t, b.Publish(ctx, "busy", []byte("last")))
			close(stop)
			wg.Wait()
			require.False(t, late.Load(), "handler called after Unsubscribe returned (calls %d at return, %d now)", target, calls.Load())
		}},
		{"unsubscribing an unknown channel is not an error", func(t *testing.T, b MessageBroker) {
			require.NoError(t, b.Unsubscribe(testCtx(t), "never-subscribed"))
		}},
		{"subscribe honours a done context", func(t *testing.T, b MessageBroker) {
			ctx, cancel := context.WithCancel(context.Background())
			cancel()
			require.Error(t, b.Subscribe(ctx, "late", func([]byte) {}))
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.run(t, newBroker(t))
		})
	}
}

// testBrokerMultiNode runs the cases that need two nodes on one backend:
// newBroker called twice with the same t returns two brokers that share
// it. Only brokers that span processes (Redis) run it.
func testBrokerMultiNode(t *testing.T, newBroker func(t *testing.T) MessageBroker) {
	t.Run("two nodes both receive every publication once", func(t *testing.T) {
		ctx := testCtx(t)
		b1, b2 := newBroker(t), newBroker(t)
		var r1, r2 recorder
		require.NoError(t, b1.Subscribe(ctx, "shared", r1.handle))
		require.NoError(t, b2.Subscribe(ctx, "shared", r2.handle))
		require.NoError(t, b1.Publish(ctx, "shared", []byte("from 1")))
		require.NoError(t, b2.Publish(ctx, "shared", []byte("from 2")))
		// Each publisher's own order is kept; there is no order between them.
		require.ElementsMatch(t, []string{"from 1", "from 2"}, r1.waitFor(t, 2))
		require.ElementsMatch(t, []string{"from 1", "from 2"}, r2.waitFor(t, 2))
		require.NoError(t, b1.Publish(ctx, "shared", []byte("end")))
		require.Equal(t, "end", r1.waitFor(t, 3)[2])
		require.Equal(t, "end", r2.waitFor(t, 3)[2])
	})
	t.Run("unsubscribe on one node leaves the other subscribed", func(t *testing.T) {
		ctx := testCtx(t)
		b1, b2 := newBroker(t), newBroker(t)
		var r1, r2 recorder
		require.NoError(t, b1.Subscribe(ctx, "half", r1.handle))
		require.NoError(t, b2.Subscribe(ctx, "half", r2.handle))
		require.NoError(t, b1.Unsubscribe(ctx, "half"))
		require.NoError(t, b1.Publish(ctx, "half", []byte("x")))
		require.Equal(t, []string{"x"}, r2.waitFor(t, 1))
		require.Empty(t, r1.all())
	})
}

func conn(channel, connID, userID string) PresenceConn {
	return PresenceConn{Channel: channel, ConnID: connID, Member: PresenceMember{UserID: userID}}
}

// addConn, removeConn and membersOf call the storage and fail tb on error.
func addConn(tb testing.TB, s StorageClient, c PresenceConn) (PresenceEvent, bool) {
	tb.Helper()
	ev, changed, err := s.AddPresence(testCtx(tb), c)
	require.NoError(tb, err, "add %v", c)
	return ev, changed
}

func removeConn(tb testing.TB, s StorageClient, c PresenceConn) (PresenceEvent, bool) {
	tb.Helper()
	ev, changed, err := s.RemovePresence(testCtx(tb), c)
	require.NoError(tb, err, "remove %v", c)
	return ev, changed
}

func membersOf(tb testing.TB, s StorageClient, channel string) ([]PresenceMember, PresenceVersion) {
	tb.Helper()
	ms, v, err := s.PresenceMembers(testCtx(tb), channel)
	require.NoError(tb, err, "members of %q", channel)
	return ms, v
}

// testStorageContract runs the StorageClient contract. newStorage
// returns a new, empty storage that the test owns.
func testStorageContract(t *testing.T, newStorage func(t *testing.T) StorageClient) {
	tests := []struct {
		name string
		run  func(t *testing.T, s StorageClient)
	}{
		{"a user with three connections joins once and leaves once", func(t *testing.T, s StorageClient) {
			ch := "presence-room"
			var join PresenceEvent
			for i, want := range []bool{true, false, false} {
				ev, changed := addConn(t, s, conn(ch, "c"+strconv.Itoa(i), "alice"))
				require.Equal(t, want, changed, "add c%d: got changed=%v, want %v", i, changed, want)
				if changed {
					join = ev
				}
			}
			require.Equal(t, conn(ch, "c0", "alice"), join.Conn)
			require.False(t, join.Left)
			require.NotEmpty(t, join.Version.Epoch)
			require.Equal(t, uint64(1), join.Version.Seq, "got %v, want the channel's first version", join.Version)
			_, changed := addConn(t, s, conn(ch, "c0", "alice"))
			require.False(t, changed, "re-adding c0 must be a no-op")

			members, v := membersOf(t, s, ch)
			require.Equal(t, []PresenceMember{{UserID: "alice"}}, members)
			require.Equal(t, join.Version, v, "a no-op add must not change the version")

			var leave PresenceEvent
			for i, want := range []bool{false, false, true} {
				ev, changed := removeConn(t, s, conn(ch, "c"+strconv.Itoa((i+1)%3), "alice"))
				require.Equal(t, want, changed, "remove #%d: got changed=%v, want %v", i, changed, want)
				if changed {
					leave = ev
				}
			}
			require.Equal(t, PresenceEvent{Conn: conn(ch, "c0", "alice"), Left: true,
				Version: PresenceVersion{Epoch: join.Version.Epoch, Seq: 2}}, leave)
			_, changed = removeConn(t, s, conn(ch, "c0", "alice"))
			require.False(t, changed, "removing an absent connection must be a no-op")
			members, _ = membersOf(t, s, ch)
			require.Empty(t, members)
		}},
		{"concurrent adds and removes give one join and one leave per user", func(t *testing.T, s StorageClient) {
			testConcurrentPresence(t, testCtx(t), []StorageClient{s})
		}},
		{"versions number every join and leave in order under concurrency", func(t *testing.T, s StorageClient) {
			testPresenceVersions(t, testCtx(t), []StorageClient{s})
		}},
		{"members are sorted by user ID and keep their info", func(t *testing.T, s StorageClient) {
			ch := "presence-sorted"
			for i, uid := range []string{"carol", "alice", "bob", "dave"} {
				c := conn(ch, "c"+strconv.Itoa(i), uid)
				if uid != "dave" {
					c.Member.Info = json.RawMessage(`{"name":"` + uid + `"}`)
				}
				addConn(t, s, c)
			}
			members, v := membersOf(t, s, ch)
			require.Equal(t, []PresenceMember{
				{UserID: "alice", Info: json.RawMessage(`{"name":"alice"}`)},
				{UserID: "bob", Info: json.RawMessage(`{"name":"bob"}`)},
				{UserID: "carol", Info: json.RawMessage(`{"name":"carol"}`)},
				{UserID: "dave"},
			}, members)
			require.Equal(t, uint64(4), v.Seq, "got %v after four joins", v)
		}},
		{"a leave names the member with their info", func(t *testing.T, s StorageClient) {
			ch := "presence-info"
			c := conn(ch, "c1", "alice")
			c.Member.Info = json.RawMessage(`{"name":"Alice"}`)
			addConn(t, s, c)
			ev, changed := removeConn(t, s, conn(ch, "c1", "alice"))
			require.True(t, changed)
			require.Equal(t, c, ev.Conn)
		}},
		{"a channel that emptied starts a new epoch", func(t *testing.T, s StorageClient) {
			ch := "presence-again"
			first, _ := addConn(t, s, conn(ch, "c1", "alice"))
			leave, _ := removeConn(t, s, conn(ch, "c1", "alice"))
			require.Equal(t, PresenceVersion{Epoch: first.Version.Epoch, Seq: 2}, leave.Version)
			members, v := membersOf(t, s, ch)
			require.Empty(t, members)
			require.Zero(t, v.Seq, "got %v for a channel without members", v)
			again, changed := addConn(t, s, conn(ch, "c2", "bob"))
			require.True(t, changed)
			require.Equal(t, uint64(1), again.Version.Seq)
			require.NotEqual(t, first.Version.Epoch, again.Version.Epoch,
				"a channel that was forgotten must not reuse its epoch: seq 1 would look older than seq 2")
		}},
		{"channels are independent", func(t *testing.T, s StorageClient) {
			for _, ch := range []string{"presence-a", "presence-b"} {
				ev, changed := addConn(t, s, conn(ch, "c-"+ch, "alice"))
				require.True(t, changed, "join on %s", ch)
				require.Equal(t, uint64(1), ev.Version.Seq, "each channel has its own versions")
			}
			_, changed := removeConn(t, s, conn("presence-a", "c-presence-a", "alice"))
			require.True(t, changed)
			members, v := membersOf(t, s, "presence-b")
			require.Equal(t, []PresenceMember{{UserID: "alice"}}, members)
			require.Equal(t, uint64(1), v.Seq)
		}},
		{"odd channel names work", func(t *testing.T, s StorageClient) {
			for _, ch := range []string{"presence-{x}", "presence-}", "presence-a:b", "presence-ü"} {
				_, changed := addConn(t, s, conn(ch, "c", "u"))
				require.True(t, changed, "join on %q", ch)
				members, v := membersOf(t, s, ch)
				require.Equal(t, []PresenceMember{{UserID: "u"}}, members, "members of %q", ch)
				require.Equal(t, uint64(1), v.Seq, "version of %q", ch)
				_, changed = removeConn(t, s, conn(ch, "c", "u"))
				require.True(t, changed, "leave on %q", ch)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.run(t, newStorage(t))
		})
	}
}

// testStorageMultiNode runs the cases that need several nodes on one
// backend: newStorage called again with the same t returns another
// storage sharing it. Only storages that span processes (Redis) run it.
func testStorageMultiNode(t *testing.T, newStorage func(t *testing.T) StorageClient) {
	t.Run("two nodes share presence per user", func(t *testing.T) {
		s1, s2 := newStorage(t), newStorage(t)
		ch := "presence-shared"
		join, changed := addConn(t, s1, conn(ch, "n1-c1", "alice"))
		require.True(t, changed)
		_, changed = addConn(t, s2, conn(ch, "n2-c1", "alice"))
		require.False(t, changed, "alice is already present through node 1")
		members, v := membersOf(t, s2, ch)
		require.Equal(t, []PresenceMember{{UserID: "alice"}}, members)
		require.Equal(t, join.Version, v, "both nodes read the same version")
		_, changed = removeConn(t, s1, conn(ch, "n1-c1", "alice"))
		require.False(t, changed, "alice is still present through node 2")
		leave, changed := removeConn(t, s2, conn(ch, "n2-c1", "alice"))
		require.True(t, changed)
		require.Equal(t, PresenceVersion{Epoch: join.Version.Epoch, Seq: 2}, leave.Version)
	})
	t.Run("concurrent adds and removes on two nodes give one join and one leave", func(t *testing.T) {
		testConcurrentPresence(t, testCtx(t), []StorageClient{newStorage(t), newStorage(t)})
	})
	t.Run("versions number every join and leave in order across three nodes", func(t *testing.T) {
		testPresenceVersions(t, testCtx(t), []StorageClient{newStorage(t), newStorage(t), newStorage(t)})
	})
}

// testConcurrentPresence adds, then removes, 10 connections for each of
// 5 users from 50 goroutines spread over nodes, and checks that each user
// joined once and left once.
func testConcurrentPresence(t *testing.T, ctx context.Context, nodes []StorageClient) {
	const users, connsPerUser = 5, 10
	ch := "presence-race"
	var joins, leaves [users]atomic.Int64
	run := func(op func(s StorageClient, c PresenceConn, u int) error) {
		var wg sync.WaitGroup
		errs := make(chan error, users*connsPerUser)
		for u := range users {
			for i := range connsPerUser {
				wg.Add(1)
				go func() {
					defer wg.Done()
					s := nodes[(u+i)%len(nodes)]
					c := conn(ch, fmt.Sprintf("u%d-c%d", u, i), "user"+strconv.Itoa(u))
					if err := op(s, c, u); err != nil {
						errs <- err
					}
				}()
			}
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			require.NoError(t, err)
		}
	}
	run(func(s StorageClient, c PresenceConn, u int) error {
		_, joined, err := s.AddPresence(ctx, c)
		if joined {
			joins[u].Add(1)
		}
		return err
	})
	members, _ := membersOf(t, nodes[0], ch)
	require.Len(t, members, users)
	run(func(s StorageClient, c PresenceConn, u int) error {
		_, left, err := s.RemovePresence(ctx, c)
		if left {
			leaves[u].Add(1)
		}
		return err
	})
	for u := range users {
		require.Equal(t, int64(1), joins[u].Load(), "user%d: got %d joins, want 1", u, joins[u].Load())
		require.Equal(t, int64(1), leaves[u].Load(), "user%d: got %d leaves, want 1", u, leaves[u].Load())
	}
	members, _ = membersOf(t, nodes[0], ch)
	require.Empty(t, members)
}

// testPresenceVersions has 24 goroutines add and remove connections of 6
// shared users on one channel through random nodes, 30 operations each,
// and checks what ordered presence rests on: the events' versions are
// exactly 1..N in one epoch (no gap, no duplicate), replaying the events
// in version order alternates each user's joins and leaves, each event's
// Count is the number of members right after it, and it ends with
// the storage's member list, and that list's version is the last event's.
// An anchor member keeps the channel from emptying (which would start a
// new epoch).
func testPresenceVersions(t *testing.T, ctx context.Context, nodes []StorageClient) {
	const workers, ops, connsPerWorker, users = 24, 30, 3, 6
	ch := "presence-versions"
	anchor, changed := addConn(t, nodes[0], conn(ch, "anchor", "anchor"))
	require.True(t, changed)
	var (
		mu     sync.Mutex
		events = []PresenceEvent{anchor} // guarded by mu
		wg     sync.WaitGroup
		errs   = make(chan error, workers)
	)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), 7))
			added := make([]bool, connsPerWorker)
			for range ops {
				i := rng.IntN(connsPerWorker)
				c := conn(ch, fmt.Sprintf("w%d-c%d", w, i), fmt.Sprintf("user%d", (w+i)%users))
				s := nodes[rng.IntN(len(nodes))]
				op := s.AddPresence
				if added[i] {
					op = s.RemovePresence
				}
				ev, changed, err := op(ctx, c)
				if err != nil {
					errs <- err
					return
				}
				added[i] = !added[i]
				if changed {
					mu.Lock()
					events = append(events, ev)
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	slices.SortFunc(events, func(a, b PresenceEvent) int { return cmp.Compare(a.Version.Seq, b.Version.Seq) })
	seqs := make([]uint64, len(events))
	for i, ev := range events {
		seqs[i] = ev.Version.Seq
		require.Equal(t, anchor.Version.Epoch, ev.Version.Epoch, "event %v left the epoch", ev)
	}
	for i, seq := range seqs {
		require.Equal(t, uint64(i+1), seq, "got versions %v, want 1..%d with no gap or duplicate", seqs, len(seqs))
	}
	present := map[string]bool{}
	for _, ev := range events {
		uid := ev.Conn.Member.UserID
		if ev.Left {
			require.True(t, present[uid], "version %d: %s left without being present", ev.Version.Seq, uid)
			delete(present, uid)
		} else {
			require.False(t, present[uid], "version %d: %s joined while present", ev.Version.Seq, uid)
			present[uid] = true
		}
		require.Equal(t, len(present), ev.Count, "version %d: Count is the number of members right after the change", ev.Version.Seq)
	}
	members, v := membersOf(t, nodes[0], ch)
	ids := make([]string, 0, len(members))
	for _, m := range members {
		ids = append(ids, m.UserID)
	}
	require.Equal(t, slices.Sorted(maps.Keys(present)), ids, "replaying %d events in version order", len(events))
	require.Equal(t, events[len(events)-1].Version, v, "members' version is the last event's")
	t.Logf("%d nodes: %d joins and leaves numbered 1..%d", len(nodes), len(events), len(events))
}

func TestMemoryBrokerContract(t *testing.T) {
	noLeaks(t)
	testBrokerContract(t, func(t *testing.T) MessageBroker {
		b := NewMemoryBroker()
		t.Cleanup(func() { _ = b.Close() })
		return b
	})
}

func TestMemoryStorageContract(t *testing.T) {
	noLeaks(t)
	testStorageContract(t, func(t *testing.T) StorageClient {
		s := NewMemoryStorage()
		t.Cleanup(func() { _ = s.Close() })
		return s
	})
}

// TestRedisClusterContract runs both contracts against a 3-master Redis
// Cluster of the test's own, with the broker on sharded pub/sub.
func TestRedisClusterContract(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a Redis Cluster; skipped with -short")
	}
	noLeaks(t)
	started := time.Now()
	cluster := redistest.StartCluster(t)
	t.Logf("3-node cluster up in %v", time.Since(started).Round(time.Millisecond))
	opts := func(t *testing.T) RedisOptions {
		return RedisOptions{Addrs: cluster.Addrs, KeyPrefix: redistest.Prefix(t), ClusterShards: 4}
	}
	newBroker := func(t *testing.T) MessageBroker { return newTestRedisBroker(t, opts(t)) }
	newStorage := func(t *testing.T) StorageClient { return newTestRedisStorage(t, opts(t)) }
	testRedisContracts(t, opts, func(t *testing.T, b *RedisBroker) {
		require.True(t, b.sharded, "broker on Redis Cluster must use sharded pub/sub")
	})
	t.Run("subscriptions are shard channels", func(t *testing.T) {
		b := newBroker(t).(*RedisBroker)
		ctx := testCtx(t)
		require.NoError(t, b.Subscribe(ctx, "sharded", func([]byte) {}))
		want := b.redisChannel(b.shardOf("sharded"), "sharded")
		var found []string
		for _, addr := range cluster.Addrs {
			c := redis.NewClient(&redis.Options{Addr: addr})
			chans, err := c.PubSubShardChannels(ctx, want).Result()
			_ = c.Close()
			require.NoError(t, err)
			found = append(found, chans...)
		}
		require.Equal(t, []string{want}, found, "got shard channels %v, want %q on exactly one node", found, want)
	})
	t.Run("reaping a closed node", func(t *testing.T) {
		a, err := NewRedisStorageWithOptions(opts(t))
		require.NoError(t, err)
		b := newStorage(t).(*RedisStorage)
		for _, ch := range []string{"presence-1", "presence-2", "presence-3"} {
			addConn(t, a, conn(ch, "a-"+ch, "alice"))
		}
		require.NoError(t, a.Close())
		left, err := b.MaintainPresence(testCtx(t))
		require.NoError(t, err)
		require.ElementsMatch(t, []PresenceConn{
			conn("presence-1", "a-presence-1", "alice"),
			conn("presence-2", "a-presence-2", "alice"),
			conn("presence-3", "a-presence-3", "alice"),
		}, eventConns(left, true))
	})
	t.Run("presence comes back after FLUSHALL", func(t *testing.T) {
		a, b := newStorage(t).(*RedisStorage), newStorage(t).(*RedisStorage)
		testHealAfterLoss(t, a, b, func() {
			for _, s := range cluster.Servers {
				out, err := s.CLI(testCtx(t), "FLUSHALL")
				require.NoError(t, err, "FLUSHALL on %s: %s", s.Addr, out)
			}
		})
	})
	t.Logf("cluster test total %v", time.Since(started).Round(time.Millisecond))
}

// testRedisContracts runs the broker, storage, occupancy and history
// contracts on brokers and storages made from opts. check, when not nil,
// looks at each broker made.
func testRedisContracts(t *testing.T, opts func(t *testing.T) RedisOptions, check func(t *testing.T, b *RedisBroker)) {
	t.Helper()
	newBroker := func(t *testing.T) MessageBroker {
		b := newTestRedisBroker(t, opts(t))
		if check != nil {
			check(t, b)
		}
		return b
	}
	newStorage := func(t *testing.T) StorageClient { return newTestRedisStorage(t, opts(t)) }
	t.Run("broker", func(t *testing.T) {
		testBrokerContract(t, newBroker)
		testBrokerMultiNode(t, newBroker)
	})
	t.Run("storage", func(t *testing.T) {
		testStorageContract(t, newStorage)
		testStorageMultiNode(t, newStorage)
	})
	t.Run("occupancy", func(t *testing.T) {
		testOccupancyContract(t, redisOccupancyNodes(opts))
		testRedisOccupancyMaintenance(t, opts)
	})
	t.Run("history", func(t *testing.T) { // history_contract_test.go
		newHistory := func(t *testing.T) HistoryBroker {
			b := newBroker(t).(*RedisBroker)
			require.Eventually(t, b.Healthy, contractWait, time.Millisecond)
			return b
		}
		testHistoryContract(t, newHistory)
		testHistoryMultiNode(t, newHistory)
	})
}
