package ws

import (
	"bufio"
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/vortechron/go-ws/internal/redistest"
	"github.com/vortechron/go-ws/internal/testenv"
)

// newTestRedisStorage returns a storage on opts that t closes when it ends.
func newTestRedisStorage(t *testing.T, opts RedisOptions) *RedisStorage {
	t.Helper()
	s, err := NewRedisStorageWithOptions(opts)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, s.Close()) })
	return s
}

// ownRedisStorage returns a storage on the test Redis under a key prefix
// of t's own, emptied first, and that prefix; t checks for leaked
// goroutines once the storage is closed.
func ownRedisStorage(t *testing.T) (*RedisStorage, string) {
	t.Helper()
	addr := redistest.Addr(t)
	noLeaks(t)
	prefix := redistest.Prefix(t)
	redistest.CleanupKeys(t, addr, prefix)
	return newTestRedisStorage(t, RedisOptions{Addrs: []string{addr}, KeyPrefix: prefix}), prefix
}

func TestRedisStorageContract(t *testing.T) {
	addr := redistest.Addr(t)
	noLeaks(t)
	newStorage := func(t *testing.T) StorageClient {
		redistest.CleanupKeys(t, addr, redistest.Prefix(t))
		return newTestRedisStorage(t, RedisOptions{Addrs: []string{addr}, KeyPrefix: redistest.Prefix(t)})
	}
	testStorageContract(t, newStorage)
	testStorageMultiNode(t, newStorage)
}

// givenClientRedisStorage returns a storage on a client of t's own, as
// an application that passes its client to NewRedisStorageFromClient
// has: no autoPipeline (RedisStorage.scripts is nil), so every command
// goes as it comes. t closes the storage, then the client.
func givenClientRedisStorage(t *testing.T, addr, prefix string) *RedisStorage {
	t.Helper()
	client := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1})
	t.Cleanup(func() { require.NoError(t, client.Close()) })
	s, err := NewRedisStorageFromClient(client, RedisOptions{KeyPrefix: prefix})
	require.NoError(t, err)
	require.Nil(t, s.scripts, "no autoPipeline on a client the storage was given")
	t.Cleanup(func() { require.NoError(t, s.Close()) })
	return s
}

// TestRedisStorageFromClientContract: a storage on the application's own
// client keeps the same contract.
func TestRedisStorageFromClientContract(t *testing.T) {
	addr := redistest.Addr(t)
	noLeaks(t)
	newStorage := func(t *testing.T) StorageClient {
		prefix := redistest.Prefix(t)
		redistest.CleanupKeys(t, addr, prefix)
		return givenClientRedisStorage(t, addr, prefix)
	}
	testStorageContract(t, newStorage)
	testStorageMultiNode(t, newStorage)
}

// TestRedisStorageIndexFollowsEntries checks the per-node channel index
// the reaper relies on: a channel is in it exactly while the node has
// entries there.
func TestRedisStorageIndexFollowsEntries(t *testing.T) {
	t.Run("own client", func(t *testing.T) {
		s, _ := ownRedisStorage(t)
		testIndexFollowsEntries(t, s)
	})
	t.Run("given client", func(t *testing.T) {
		addr := redistest.Addr(t)
		noLeaks(t)
		prefix := redistest.Prefix(t)
		redistest.CleanupKeys(t, addr, prefix)
		testIndexFollowsEntries(t, givenClientRedisStorage(t, addr, prefix))
	})
}

func testIndexFollowsEntries(t *testing.T, s *RedisStorage) {
	ctx := testCtx(t)
	index := func() []string {
		ids, err := s.client.SMembers(ctx, s.keys.nodeChannels(s.NodeID())).Result()
		require.NoError(t, err)
		return ids
	}
	addConn(t, s, conn("presence-a", "c1", "u1"))
	addConn(t, s, conn("presence-a", "c2", "u2"))
	addConn(t, s, conn("presence-a", "c2", "u2")) // duplicate: no extra reference
	require.Equal(t, []string{"presence-a"}, index())
	nodes, err := s.client.SMembers(ctx, s.keys.nodes()).Result()
	require.NoError(t, err)
	require.Contains(t, nodes, s.NodeID())

	removeConn(t, s, conn("presence-a", "c1", "u1"))
	require.Equal(t, []string{"presence-a"}, index(), "one entry left")
	removeConn(t, s, conn("presence-a", "c2", "u2"))
	require.Empty(t, index(), "no entries left")
	version, err := s.client.Exists(ctx, s.keys.channel("presence-a")...).Result()
	require.NoError(t, err)
	require.Zero(t, version, "an empty channel leaves no key behind, its version included")
}

// TestRedisStorageKeyLayout checks docs/redis.md's presence keys on a
// real Redis: a channel's keys are prefix + "presence:{C}:" + conns,
// users, info, nodes and version (dead holds tombstones only), and a
// channel that is empty or has a brace is tagged by the hex FNV-64a of
// its name, then spelled out.
func TestRedisStorageKeyLayout(t *testing.T) {
	s, prefix := ownRedisStorage(t)
	ctx := testCtx(t)
	for ch, base := range map[string]string{
		"presence-room": "presence:{presence-room}:",
		"presence-a{b}": "presence:{79da79fd47c230ee}:presence-a{b}:",
		"":              "presence:{cbf29ce484222325}::",
	} {
		base = prefix + base
		require.Equal(t, []string{base + "conns", base + "users", base + "info", base + "nodes", base + "dead", base + "version"},
			s.keys.channel(ch), "channel %q: the keys in the scripts' order", ch)
		addConn(t, s, conn(ch, "c1", "u1"))
		got, err := s.client.Keys(ctx, prefix+"presence:*").Result()
		require.NoError(t, err)
		slices.Sort(got)
		require.Equal(t, []string{base + "conns", base + "info", base + "nodes", base + "users", base + "version"}, got, "channel %q", ch)
		removeConn(t, s, conn(ch, "c1", "u1"))
	}
}

// eventConns returns the Conn of each event that is a leave (left) or a
// join (!left), failing nothing: a wrong kind just does not match.
func eventConns(events []PresenceEvent, left bool) []PresenceConn {
	var out []PresenceConn
	for _, ev := range events {
		if ev.Left == left {
			out = append(out, ev.Conn)
		}
	}
	return out
}

// TestRedisStorageCloseLetsOthersReapAtOnce: a node that closes with
// presence still recorded deletes its heartbeat, so the next maintenance
// anywhere removes that presence without waiting for the TTL.
func TestRedisStorageCloseLetsOthersReapAtOnce(t *testing.T) {
	addr := redistest.Addr(t)
	noLeaks(t)
	prefix := redistest.Prefix(t)
	redistest.CleanupKeys(t, addr, prefix)
	opts := RedisOptions{Addrs: []string{addr}, KeyPrefix: prefix}
	ctx := testCtx(t)
	a, err := NewRedisStorageWithOptions(opts)
	require.NoError(t, err)
	b := newTestRedisStorage(t, opts)
	// b registers on its own goroutine; the node set checked below
	// holds it only once that is done.
	_, err = b.session(ctx)
	require.NoError(t, err)
	join, _ := addConn(t, a, conn("presence-x", "a1", "alice"))
	require.NoError(t, a.Close())

	left, err := b.MaintainPresence(ctx)
	require.NoError(t, err)
	require.Equal(t, []PresenceEvent{{Conn: conn("presence-x", "a1", "alice"), Left: true,
		Version: PresenceVersion{Epoch: join.Version.Epoch, Seq: 2}}}, left)
	left, err = b.MaintainPresence(ctx)
	require.NoError(t, err)
	require.Empty(t, left, "a departure is reaped once")
	nodes, err := b.client.SMembers(ctx, b.keys.nodes()).Result()
	require.NoError(t, err)
	require.Equal(t, []string{b.NodeID()}, nodes, "the reaped node is forgotten")
}

// TestRedisStorageCloseDeregisters: a node that closes with no presence
// left takes itself out of the node set at once.
func TestRedisStorageCloseDeregisters(t *testing.T) {
	addr := redistest.Addr(t)
	noLeaks(t)
	prefix := redistest.Prefix(t)
	redistest.CleanupKeys(t, addr, prefix)
	opts := RedisOptions{Addrs: []string{addr}, KeyPrefix: prefix}
	ctx := testCtx(t)
	a, err := NewRedisStorageWithOptions(opts)
	require.NoError(t, err)
	b := newTestRedisStorage(t, opts)
	_, err = b.session(ctx) // registered, as the node set checked below expects
	require.NoError(t, err)
	addConn(t, a, conn("presence-x", "a1", "alice"))
	removeConn(t, a, conn("presence-x", "a1", "alice"))
	id := a.NodeID()
	require.NoError(t, a.Close())

	nodes, err := b.client.SMembers(ctx, b.keys.nodes()).Result()
	require.NoError(t, err)
	require.Equal(t, []string{b.NodeID()}, nodes, "the closed node %s is still registered", id)
	n, err := b.client.Exists(ctx, b.keys.alive(id), b.keys.nodeChannels(id)).Result()
	require.NoError(t, err)
	require.Zero(t, n, "the closed node's heartbeat or index is left")
}

// TestRedisStorageStalledNodeRestoresItsPresence: a node whose heartbeat
// expired while it was stalled is reaped by the others, who announce its
// users' leaves. When it resumes, its next add in a reaped channel finds
// the tombstone and the node takes a new ID instead of writing an entry no
// reaper would find; its next maintenance writes its other connections
// back and returns the joins of the users who had gone.
func TestRedisStorageStalledNodeRestoresItsPresence(t *testing.T) {
	addr := redistest.Addr(t)
	noLeaks(t)
	prefix := redistest.Prefix(t)
	redistest.CleanupKeys(t, addr, prefix)
	opts := RedisOptions{Addrs: []string{addr}, KeyPrefix: prefix}
	ctx := testCtx(t)
	a := newTestRedisStorage(t, opts)
	b := newTestRedisStorage(t, opts)
	addConn(t, a, conn("presence-s", "a1", "alice"))
	addConn(t, a, conn("presence-s", "a2", "bob"))
	addConn(t, b, conn("presence-s", "b1", "carol")) // keeps the channel, and its epoch, alive
	oldID := a.NodeID()
	// The stall: a's heartbeat key disappears as if it had expired.
	require.NoError(t, a.client.Del(ctx, a.keys.alive(oldID)).Err())
	left, err := b.MaintainPresence(ctx)
	require.NoError(t, err)
	require.ElementsMatch(t, []PresenceConn{conn("presence-s", "a1", "alice"), conn("presence-s", "a2", "bob")}, eventConns(left, true))

	join, changed := addConn(t, a, conn("presence-s", "a3", "alice"))
	require.True(t, changed, "alice was reaped, so this is a join")
	require.Equal(t, uint64(6), join.Version.Seq, "three joins and two leaves came before")
	require.NotEqual(t, oldID, a.NodeID(), "node kept its reaped ID")

	restored, err := a.MaintainPresence(ctx)
	require.NoError(t, err)
	require.Equal(t, []PresenceEvent{{Conn: conn("presence-s", "a2", "bob"),
		Version: PresenceVersion{Epoch: join.Version.Epoch, Seq: 7}, Count: 3}}, restored,
		"bob is restored; alice is present again already")
	members, v := membersOf(t, b, "presence-s")
	require.Equal(t, []PresenceMember{{UserID: "alice"}, {UserID: "bob"}, {UserID: "carol"}}, members)
	require.Equal(t, uint64(7), v.Seq)
	// The new identity is alive and indexed, so nobody reaps it.
	for _, s := range []*RedisStorage{a, b} {
		evs, err := s.MaintainPresence(ctx)
		require.NoError(t, err)
		require.Empty(t, evs)
	}
	// Its connections are removed normally, a1 included.
	for _, c := range []string{"a1", "a3"} {
		removeConn(t, a, conn("presence-s", c, "alice"))
	}
	members, _ = membersOf(t, b, "presence-s")
	require.Equal(t, []PresenceMember{{UserID: "bob"}, {UserID: "carol"}}, members)
}

// TestRedisStorageRetriesFailedRemoval: a removal that fails leaves the
// connection in Redis; the next maintenance removes it and returns the
// leave.
func TestRedisStorageRetriesFailedRemoval(t *testing.T) {
	s, _ := ownRedisStorage(t)
	join, _ := addConn(t, s, conn("presence-r", "c1", "alice"))
	done, cancel := context.WithCancel(context.Background())
	cancel()
	_, _, err := s.RemovePresence(done, conn("presence-r", "c1", "alice"))
	require.ErrorIs(t, err, ErrStorageUnavailable)
	require.ErrorIs(t, err, context.Canceled)
	members, _ := membersOf(t, s, "presence-r")
	require.Len(t, members, 1, "the failed removal left alice in Redis")

	events, err := s.MaintainPresence(testCtx(t))
	require.NoError(t, err)
	require.Equal(t, []PresenceEvent{{Conn: conn("presence-r", "c1", "alice"), Left: true,
		Version: PresenceVersion{Epoch: join.Version.Epoch, Seq: 2}}}, events)
	events, err = s.MaintainPresence(testCtx(t))
	require.NoError(t, err)
	require.Empty(t, events)
}

// maintainRound calls MaintainPresence once on every node, as each
// node's Hub does every MaintainInterval, and returns the events.
func maintainRound(t *testing.T, nodes ...*RedisStorage) []PresenceEvent {
	t.Helper()
	var events []PresenceEvent
	for _, s := range nodes {
		evs, err := s.MaintainPresence(testCtx(t))
		require.NoError(t, err, "maintenance of node %s", s.NodeID())
		events = append(events, evs...)
	}
	return events
}

// testHealAfterLoss records presence on nodes a and b, has lose() make
// Redis lose it (and answer again), and checks that the first maintenance
// round restores every connection, with one join per user and channel in
// a new epoch, and nothing else.
func testHealAfterLoss(t *testing.T, a, b *RedisStorage, lose func()) {
	addConn(t, a, conn("presence-room", "a1", "alice"))
	addConn(t, a, conn("presence-room", "a2", "bob"))
	addConn(t, a, conn("presence-lobby", "a3", "alice"))
	addConn(t, b, conn("presence-room", "b1", "carol"))
	addConn(t, b, conn("presence-room", "b2", "alice"))
	_, before := membersOf(t, a, "presence-room")
	ids := []string{a.NodeID(), b.NodeID()}

	lose()
	events := maintainRound(t, a, b)
	var joins []string
	for _, ev := range events {
		require.False(t, ev.Left, "got leave %v", ev)
		require.NotEqual(t, before.Epoch, ev.Version.Epoch, "restored under the lost epoch: %v", ev)
		joins = append(joins, fmt.Sprintf("%s %s %d", ev.Conn.Channel, ev.Conn.Member.UserID, ev.Version.Seq))
	}
	slices.Sort(joins)
	require.Len(t, joins, 4, "got joins %v, want alice, bob and carol in the room and alice in the lobby", joins)
	require.Equal(t, "presence-lobby alice 1", joins[0])
	var room []string
	for _, j := range joins[1:] {
		f := strings.Fields(j)
		require.Equal(t, "presence-room", f[0])
		room = append(room, f[1])
	}
	require.ElementsMatch(t, []string{"alice", "bob", "carol"}, room)

	for _, s := range []*RedisStorage{a, b} {
		members, v := membersOf(t, s, "presence-room")
		require.Equal(t, []PresenceMember{{UserID: "alice"}, {UserID: "bob"}, {UserID: "carol"}}, members)
		require.Equal(t, uint64(3), v.Seq, "got %v after three restored joins", v)
	}
	require.NotContains(t, ids, a.NodeID(), "node a kept an ID whose state was lost")
	require.NotContains(t, ids, b.NodeID(), "node b kept an ID whose state was lost")
	require.Empty(t, maintainRound(t, a, b), "a second round has nothing to do")
	nodes, err := a.client.SMembers(testCtx(t), a.keys.nodes()).Result()
	require.NoError(t, err)
	require.ElementsMatch(t, []string{a.NodeID(), b.NodeID()}, nodes, "the lost IDs are forgotten")

	// The restored connections are removed like any other.
	leave, changed := removeConn(t, a, conn("presence-room", "a2", "bob"))
	require.True(t, changed)
	require.Equal(t, uint64(4), leave.Version.Seq)
	_, changed = removeConn(t, a, conn("presence-room", "a1", "alice"))
	require.False(t, changed, "alice is still there on b")
}

func TestRedisStorageHealsAfterFlushAll(t *testing.T) {
	noLeaks(t)
	srv := redistest.StartServer(t)
	opts := RedisOptions{Addrs: []string{srv.Addr}}
	a, b := newTestRedisStorage(t, opts), newTestRedisStorage(t, opts)
	testHealAfterLoss(t, a, b, func() {
		out, err := srv.CLI(testCtx(t), "FLUSHALL")
		require.NoError(t, err, "FLUSHALL: %s", out)
	})
}

func TestRedisStorageHealsAfterRestartWithoutPersistence(t *testing.T) {
	noLeaks(t)
	srv := redistest.StartServer(t)
	opts := RedisOptions{Addrs: []string{srv.Addr}}
	a, b := newTestRedisStorage(t, opts), newTestRedisStorage(t, opts)
	testHealAfterLoss(t, a, b, func() {
		srv.Kill()
		require.NoError(t, srv.Restart())
	})
}

// TestRedisStorageHealsAfterRestartFromOldSnapshot restarts Redis from a
// snapshot older than its last writes, as a failover to a replica that
// lagged does: a connection added since is missing, one removed since is
// back, and the channel's stored version is behind what was announced.
// The first maintenance re-adds the first, reaps the second and numbers
// both in a new epoch, so no version is handed out twice.
func TestRedisStorageHealsAfterRestartFromOldSnapshot(t *testing.T) {
	noLeaks(t)
	srv := redistest.StartServer(t)
	a := newTestRedisStorage(t, RedisOptions{Addrs: []string{srv.Addr}})
	const ch = "presence-room"
	addConn(t, a, conn(ch, "a1", "alice"))
	addConn(t, a, conn(ch, "a2", "bob"))
	out, err := srv.CLI(testCtx(t), "SAVE")
	require.NoError(t, err, "SAVE: %s", out)
	leave, _ := removeConn(t, a, conn(ch, "a2", "bob"))
	join, _ := addConn(t, a, conn(ch, "a3", "carol"))
	require.Equal(t, uint64(4), join.Version.Seq)

	srv.Kill()
	require.NoError(t, srv.Restart())
	// Until the maintenance, the old state is what Redis has, under its
	// own (old) version.
	members, stale := membersOf(t, a, ch)
	require.Equal(t, []PresenceMember{{UserID: "alice"}, {UserID: "bob"}}, members)
	require.Equal(t, PresenceVersion{Epoch: leave.Version.Epoch, Seq: 2}, stale)
	events := maintainRound(t, a)
	require.Len(t, events, 2, "got %v, want carol's join and bob's leave", events)
	epoch := events[0].Version.Epoch
	require.NotEqual(t, leave.Version.Epoch, epoch, "versions 3 and 4 of the old epoch were handed out twice")
	require.Equal(t, PresenceEvent{Conn: conn(ch, "a3", "carol"), Version: PresenceVersion{Epoch: epoch, Seq: 1}, Count: 3}, events[0])
	require.Equal(t, PresenceEvent{Conn: conn(ch, "a2", "bob"), Left: true, Version: PresenceVersion{Epoch: epoch, Seq: 2}, Count: 2}, events[1])
	members, v := membersOf(t, a, ch)
	require.Equal(t, []PresenceMember{{UserID: "alice"}, {UserID: "carol"}}, members)
	require.Equal(t, events[1].Version, v)
}

// crashConns are the child's connections: alice twice in one channel and
// once in another; bob, who is also on the surviving node.
var crashConns = []PresenceConn{
	conn("presence-crash", "child-1", "alice"),
	conn("presence-crash", "child-2", "alice"),
	conn("presence-crash", "child-3", "bob"),
	conn("presence-other", "child-4", "alice"),
}

// TestRedisStorageCrashIsReaped SIGKILLs a process holding presence and
// has two surviving nodes reap concurrently: each departure is reported
// once, within NodeTTL + MaintainInterval.
func TestRedisStorageCrashIsReaped(t *testing.T) {
	addr := redistest.Addr(t)
	noLeaks(t)
	prefix := redistest.Prefix(t)
	redistest.CleanupKeys(t, addr, prefix)
	const ttl, reapEvery = time.Second, 200 * time.Millisecond
	opts := RedisOptions{Addrs: []string{addr}, KeyPrefix: prefix, NodeTTL: ttl, ReapInterval: reapEvery}
	b := newTestRedisStorage(t, opts)
	c := newTestRedisStorage(t, opts)
	ctx := testCtx(t)
	addConn(t, b, conn("presence-crash", "b-1", "bob"))

	child := exec.Command(os.Args[0], "-test.run=^$")
	child.Env = append(os.Environ(), childRoleEnv+"="+childStorageCrash, childPrefixEnv+"="+prefix, childRedisEnv+"="+addr)
	stdout, err := child.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, child.Start())
	ready := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if id, ok := strings.CutPrefix(sc.Text(), "READY "); ok {
				ready <- id
			}
		}
	}()
	var childID string
	select {
	case childID = <-ready:
	case <-time.After(contractWait):
		_ = child.Process.Kill()
		_ = child.Wait()
		t.Fatal("child node did not get ready")
	}
	require.NoError(t, child.Process.Kill())
	killed := time.Now()
	_ = child.Wait() // "signal: killed"

	// Two nodes maintain concurrently, as the Hub would, every
	// MaintainInterval.
	var (
		mu     sync.Mutex
		left   []PresenceEvent // guarded by mu
		rounds [2]atomic.Int64
		done   = make(chan struct{})
		wg     sync.WaitGroup
		errCh  = make(chan error, 2)
	)
	for i, s := range []*RedisStorage{b, c} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tick := time.NewTicker(s.MaintainInterval())
			defer tick.Stop()
			for {
				got, err := s.MaintainPresence(ctx)
				if err != nil {
					errCh <- err
					return
				}
				mu.Lock()
				left = append(left, got...)
				mu.Unlock()
				rounds[i].Add(1)
				select {
				case <-done:
					return
				case <-tick.C:
				}
			}
		}()
	}
	bound := ttl + b.MaintainInterval()
	var took time.Duration
	require.Eventually(t, func() bool {
		mu.Lock()
		defer mu.Unlock()
		took = time.Since(killed)
		return len(left) >= 2
	}, bound+2*time.Second, 5*time.Millisecond, "leaves of the crashed node were not reaped")
	// Both reapers go round twice more before the count is taken as final.
	r0, r1 := rounds[0].Load(), rounds[1].Load()
	require.Eventually(t, func() bool { return rounds[0].Load() >= r0+2 && rounds[1].Load() >= r1+2 },
		contractWait, reapEvery/4)
	close(done)
	wg.Wait()
	close(errCh)
	for err := range errCh {
		require.NoError(t, err)
	}
	require.ElementsMatch(t, []PresenceConn{
		{Channel: "presence-crash", ConnID: "child-1", Member: PresenceMember{UserID: "alice"}},
		{Channel: "presence-other", ConnID: "child-4", Member: PresenceMember{UserID: "alice"}},
	}, normaliseConnIDs(eventConns(left, true)), "got %v", left)
	members, _ := membersOf(t, b, "presence-crash")
	require.Equal(t, []PresenceMember{{UserID: "bob"}}, members)
	alive, err := b.client.Exists(ctx, b.keys.alive(childID)).Result()
	require.NoError(t, err)
	require.Zero(t, alive)
	t.Logf("crashed node's presence reaped %v after SIGKILL (bound NodeTTL+MaintainInterval = %v)", took.Round(time.Millisecond), bound)
}

// normaliseConnIDs maps the ConnID of alice's departure from
// presence-crash (either of her two connections may be the last one
// removed) to child-1, so results can be compared.
func normaliseConnIDs(in []PresenceConn) []PresenceConn {
	out := append([]PresenceConn(nil), in...)
	for i := range out {
		if out[i].Channel == "presence-crash" && out[i].ConnID == "child-2" {
			out[i].ConnID = "child-1"
		}
	}
	return out
}

// TestRedisStorageUnreachable needs no Redis: operations fail within
// their context with errors that match ErrStorageUnavailable, and Close
// still returns.
func TestRedisStorageUnreachable(t *testing.T) {
	noLeaks(t)
	s := NewRedisStorage("127.0.0.1:1")
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	_, _, err := s.AddPresence(ctx, conn("presence-x", "c", "u"))
	require.ErrorIs(t, err, context.DeadlineExceeded)
	require.ErrorIs(t, err, ErrStorageUnavailable)
	_, _, err = s.RemovePresence(ctx, conn("presence-x", "c", "u"))
	require.ErrorIs(t, err, ErrStorageUnavailable)
	_, _, err = s.PresenceMembers(ctx, "presence-x")
	require.ErrorIs(t, err, ErrStorageUnavailable)
	require.ErrorContains(t, err, "presence-x")
	_, err = s.MaintainPresence(ctx)
	require.ErrorIs(t, err, ErrStorageUnavailable)
	require.Error(t, s.Close(), "Close reports that the heartbeat key could not be deleted")
}

// TestRedisStorageMaintainInterval: maintenance runs every ReapInterval,
// or every NodeTTL/2 when that is shorter, so lost presence is back
// within NodeTTL whatever the settings.
func TestRedisStorageMaintainInterval(t *testing.T) {
	noLeaks(t)
	for _, tt := range []struct {
		ttl, reap, want time.Duration
	}{
		{0, 0, 10 * time.Second},
		{20 * time.Second, time.Minute, 10 * time.Second},
		{time.Minute, 5 * time.Second, 5 * time.Second},
		{time.Second, 0, 500 * time.Millisecond},
	} {
		s, err := NewRedisStorageWithOptions(RedisOptions{Addrs: []string{"127.0.0.1:1"}, NodeTTL: tt.ttl, ReapInterval: tt.reap})
		require.NoError(t, err)
		require.Equal(t, tt.want, s.MaintainInterval(), "NodeTTL %v, ReapInterval %v", tt.ttl, tt.reap)
		_ = s.Close() // nothing listens there
	}
}

// BenchmarkRedisStorageJoinLeave measures one user's visit to a presence
// channel as the Hub makes it: add (a join), the member list, remove (a
// leave), against the shared Redis.
func BenchmarkRedisStorageJoinLeave(b *testing.B) {
	addr := redistest.Addr(b)
	prefix := redistest.Prefix(b)
	redistest.CleanupKeys(b, addr, prefix)
	s, err := NewRedisStorageWithOptions(RedisOptions{Addrs: []string{addr}, KeyPrefix: prefix})
	require.NoError(b, err)
	b.Cleanup(func() { _ = s.Close() })
	ctx := context.Background()
	addConn(b, s, conn("presence-bench", "anchor", "anchor"))
	i := 0
	for b.Loop() {
		c := conn("presence-bench", "c"+strconv.Itoa(i), "u"+strconv.Itoa(i))
		i++
		if _, _, err := s.AddPresence(ctx, c); err != nil {
			b.Fatal(err)
		}
		if _, _, err := s.PresenceMembers(ctx, c.Channel); err != nil {
			b.Fatal(err)
		}
		if _, _, err := s.RemovePresence(ctx, c); err != nil {
			b.Fatal(err)
		}
	}
}

// TestRedisHeartbeatMovesOffAReplica proves, in docs/redis.md (Failover
// behind one address): after the primary behind the storage's address
// failed over, the heartbeat refreshes the node's key on the new primary
// at its first try, though the pool still holds a connection to the old
// one (now a replica, which refuses the write with READONLY): it sends the
// write again on another connection. The client is the application's,
// with retries off. Without the retry, that heartbeat failed and logged
// so, and the node's key went a NodeTTL/3 without a refresh.
func TestRedisHeartbeatMovesOffAReplica(t *testing.T) {
	if testing.Short() {
		t.Skip("starts two redis-servers; skipped with -short")
	}
	noLeaks(t)
	rr := redistest.StartReplicated(t)
	client := redis.NewClient(&redis.Options{Addr: rr.Addr, MaxRetries: -1})
	t.Cleanup(func() { _ = client.Close() })
	var logs testenv.Buffer
	// A NodeTTL of a minute: the test's own beat is the only one after
	// the registration.
	s, err := NewRedisStorageFromClient(client, RedisOptions{KeyPrefix: redistest.Prefix(t), NodeTTL: time.Minute,
		Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, s.Close()) }) // before the client's
	addConn(t, s, conn("presence-room", "c1", "alice")) // registered; the pool holds a connection
	require.Positive(t, client.PoolStats().IdleConns, "idle connections before the failover")

	rr.Failover(t)
	n := s.current()
	s.beat(n)
	require.NotContains(t, logs.String(), "heartbeat failed")
	primary := redis.NewClient(&redis.Options{Addr: rr.Primary.Addr})
	defer primary.Close()
	ttl, err := primary.PTTL(testCtx(t), s.keys.alive(n.id)).Result()
	require.NoError(t, err)
	require.Greater(t, ttl, 59*time.Second, "the node's key on the new primary, refreshed by the beat")
}

// TestPresenceCountsRefuseAReplica proves, in docs/redis.md (Failover
// behind one address): the member counts of many presence channels at
// once, the cluster API's, are not read from a replica's older data.
// The replica's link is cut after the failover, and the primary gets
// one more member; before, the counts came from the replica (2, where
// the primary held 3) with no error. Now they fail, naming READONLY,
// until the address names the primary, and then read 3.
func TestPresenceCountsRefuseAReplica(t *testing.T) {
	if testing.Short() {
		t.Skip("starts two redis-servers; skipped with -short")
	}
	noLeaks(t)
	rr := redistest.StartReplicated(t)
	ctx := testCtx(t)
	prefix := redistest.Prefix(t)
	s, err := NewRedisStorageWithOptions(RedisOptions{Addrs: []string{rr.Addr}, KeyPrefix: prefix})
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, s.Close()) })
	addConn(t, s, conn("presence-room", "c1", "alice"))
	addConn(t, s, conn("presence-room", "c2", "bob"))
	counts, err := s.presenceCounts(ctx, []string{"presence-room", "presence-empty"})
	require.NoError(t, err)
	require.Equal(t, []int{2, 0}, counts, "before the failover") // a pooled connection to the old primary

	rr.Promote(t) // the address still names the old primary
	rr.CutReplicaLink(t)
	direct, err := NewRedisStorageWithOptions(RedisOptions{Addrs: []string{rr.Primary.Addr}, KeyPrefix: prefix})
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, direct.Close()) })
	addConn(t, direct, conn("presence-room", "c3", "carol"))

	counts, err = s.presenceCounts(ctx, []string{"presence-room", "presence-empty"})
	require.ErrorIs(t, err, ErrStorageUnavailable, "counts while the address names a replica: got %v", counts)
	require.ErrorContains(t, err, "READONLY")

	rr.MoveAddress()
	counts, err = s.presenceCounts(ctx, []string{"presence-room", "presence-empty"})
	require.NoError(t, err, "once the address moved")
	require.Equal(t, []int{3, 0}, counts, "once the address moved")
}
