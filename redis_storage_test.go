package ws

import (
	"bufio"
	"context"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/vortechron/go-ws/internal/redistest"
)

// newTestRedisStorage returns a storage on opts that t closes when it ends.
func newTestRedisStorage(t *testing.T, opts RedisOptions) *RedisStorage {
	t.Helper()
	s, err := NewRedisStorageWithOptions(opts)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, s.Close()) })
	return s
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

// TestRedisStorageIndexFollowsEntries checks the per-node channel index
// the reaper relies on: a channel is in it exactly while the node has
// entries there.
func TestRedisStorageIndexFollowsEntries(t *testing.T) {
	addr := redistest.Addr(t)
	noLeaks(t)
	prefix := redistest.Prefix(t)
	redistest.CleanupKeys(t, addr, prefix)
	s := newTestRedisStorage(t, RedisOptions{Addrs: []string{addr}, KeyPrefix: prefix})
	ctx := testCtx(t)
	index := func() []string {
		ids, err := s.client.SMembers(ctx, s.keys.nodeChannels(s.NodeID())).Result()
		require.NoError(t, err)
		return ids
	}
	_, err := s.AddPresence(ctx, conn("presence-a", "c1", "u1"))
	require.NoError(t, err)
	_, err = s.AddPresence(ctx, conn("presence-a", "c2", "u2"))
	require.NoError(t, err)
	_, err = s.AddPresence(ctx, conn("presence-a", "c2", "u2")) // duplicate: no extra reference
	require.NoError(t, err)
	require.Equal(t, []string{"presence-a"}, index())
	nodes, err := s.client.SMembers(ctx, s.keys.nodes()).Result()
	require.NoError(t, err)
	require.Contains(t, nodes, s.NodeID())

	_, err = s.RemovePresence(ctx, conn("presence-a", "c1", "u1"))
	require.NoError(t, err)
	require.Equal(t, []string{"presence-a"}, index(), "one entry left")
	_, err = s.RemovePresence(ctx, conn("presence-a", "c2", "u2"))
	require.NoError(t, err)
	require.Empty(t, index(), "no entries left")
}

// TestRedisStorageCloseLetsOthersReapAtOnce: a node that closes with
// presence still recorded deletes its heartbeat, so the next reap
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
	_, err = a.AddPresence(ctx, conn("presence-x", "a1", "alice"))
	require.NoError(t, err)
	require.NoError(t, a.Close())

	left, err := b.ReapPresence(ctx)
	require.NoError(t, err)
	require.Equal(t, []PresenceConn{conn("presence-x", "a1", "alice")}, left)
	left, err = b.ReapPresence(ctx)
	require.NoError(t, err)
	require.Empty(t, left, "a departure is reaped once")
	nodes, err := b.client.SMembers(ctx, b.keys.nodes()).Result()
	require.NoError(t, err)
	require.Equal(t, []string{b.NodeID()}, nodes, "the reaped node is forgotten")
}

// TestRedisStorageRejoinsAfterBeingReaped: a node whose heartbeat expired
// (it stalled) was reaped; its next add finds the tombstone, and the node
// takes a new ID instead of writing an entry no reaper would find.
func TestRedisStorageRejoinsAfterBeingReaped(t *testing.T) {
	addr := redistest.Addr(t)
	noLeaks(t)
	prefix := redistest.Prefix(t)
	redistest.CleanupKeys(t, addr, prefix)
	opts := RedisOptions{Addrs: []string{addr}, KeyPrefix: prefix}
	ctx := testCtx(t)
	a := newTestRedisStorage(t, opts)
	b := newTestRedisStorage(t, opts)
	_, err := a.AddPresence(ctx, conn("presence-s", "a1", "alice"))
	require.NoError(t, err)
	oldID := a.NodeID()
	// The stall: a's heartbeat key disappears as if it had expired.
	require.NoError(t, a.client.Del(ctx, a.keys.alive(oldID)).Err())
	left, err := b.ReapPresence(ctx)
	require.NoError(t, err)
	require.Equal(t, []PresenceConn{conn("presence-s", "a1", "alice")}, left)

	joined, err := a.AddPresence(ctx, conn("presence-s", "a2", "alice"))
	require.NoError(t, err)
	require.True(t, joined, "alice was reaped, so this is a join")
	require.NotEqual(t, oldID, a.NodeID(), "node kept its reaped ID")
	// The new identity is alive and indexed, so it is not reaped.
	left, err = b.ReapPresence(ctx)
	require.NoError(t, err)
	require.Empty(t, left)
	members, err := b.PresenceMembers(ctx, "presence-s")
	require.NoError(t, err)
	require.Equal(t, []PresenceMember{{UserID: "alice"}}, members)
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
// once, within NodeTTL + ReapInterval.
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
	_, err := b.AddPresence(ctx, conn("presence-crash", "b-1", "bob"))
	require.NoError(t, err)

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

	// Two nodes reap concurrently, as the Hub would, every ReapInterval.
	var (
		mu     sync.Mutex
		left   []PresenceConn // guarded by mu
		rounds [2]atomic.Int64
		done   = make(chan struct{})
		wg     sync.WaitGroup
		errCh  = make(chan error, 2)
	)
	for i, s := range []*RedisStorage{b, c} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tick := time.NewTicker(s.ReapInterval())
			defer tick.Stop()
			for {
				got, err := s.ReapPresence(ctx)
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
	bound := ttl + reapEvery
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
	}, normaliseConnIDs(left), "got %v", left)
	members, err := b.PresenceMembers(ctx, "presence-crash")
	require.NoError(t, err)
	require.Equal(t, []PresenceMember{{UserID: "bob"}}, members)
	alive, err := b.client.Exists(ctx, b.keys.alive(childID)).Result()
	require.NoError(t, err)
	require.Zero(t, alive)
	t.Logf("crashed node's presence reaped %v after SIGKILL (bound NodeTTL+ReapInterval = %v)", took.Round(time.Millisecond), bound)
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
// their context and Close still returns.
func TestRedisStorageUnreachable(t *testing.T) {
	noLeaks(t)
	s := NewRedisStorage("127.0.0.1:1")
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	_, err := s.AddPresence(ctx, conn("presence-x", "c", "u"))
	require.ErrorIs(t, err, context.DeadlineExceeded)
	_, err = s.RemovePresence(ctx, conn("presence-x", "c", "u"))
	require.Error(t, err)
	_, err = s.PresenceMembers(ctx, "presence-x")
	require.ErrorContains(t, err, "presence-x")
	_, err = s.ReapPresence(ctx)
	require.Error(t, err)
	require.Error(t, s.Close(), "Close reports that the heartbeat key could not be deleted")
}
