package ws

import (
	"context"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/vortechron/go-ws/internal/redistest"
)

// The ChannelOccupancy contract, run against every storage that
// implements it. newNodes(t, n) returns n nodes sharing one backend: n
// RedisStorages on one prefix, or one MemoryStorage n times (hubs that
// share a MemoryStorage count once each, as nodes do).

func occupy(tb testing.TB, s ChannelOccupancy, channels ...string) []string {
	tb.Helper()
	got, err := s.OccupyChannels(testCtx(tb), channels)
	require.NoError(tb, err, "occupy %v", channels)
	return got
}

func vacate(tb testing.TB, s ChannelOccupancy, channels ...string) []string {
	tb.Helper()
	got, err := s.VacateChannels(testCtx(tb), channels)
	require.NoError(tb, err, "vacate %v", channels)
	return got
}

func testOccupancyContract(t *testing.T, newNodes func(t *testing.T, n int) []ChannelOccupancy) {
	tests := []struct {
		name string
		run  func(t *testing.T)
	}{
		{"a node's first occupy and last vacate change the channel", func(t *testing.T) {
			s := newNodes(t, 1)[0]
			require.Equal(t, []string{"a", "b"}, occupy(t, s, "a", "b"))
			require.Equal(t, []string{"a"}, vacate(t, s, "a"))
			require.Empty(t, vacate(t, s, "a"), "vacating a channel the node does not occupy must change nothing")
			require.Equal(t, []string{"a"}, occupy(t, s, "a"))
			require.Equal(t, []string{"a", "b"}, vacate(t, s, "a", "b"))
			require.Empty(t, occupy(t, s), "an empty batch changes nothing")
		}},
		{"the first of two nodes occupies and the last vacates", func(t *testing.T) {
			nodes := newNodes(t, 2)
			require.Equal(t, []string{"x"}, occupy(t, nodes[0], "x"))
			require.Empty(t, occupy(t, nodes[1], "x"), "x is occupied already by node 0")
			require.Empty(t, vacate(t, nodes[0], "x"), "node 1 still has x")
			require.Equal(t, []string{"x"}, vacate(t, nodes[1], "x"))
		}},
		{"concurrent transitions on three nodes change each channel once per turn", func(t *testing.T) {
			nodes := newNodes(t, 3)
			const rounds = 40
			channels := []string{"c1", "c2"}
			var occupied, vacated [2]atomic.Int64
			var wg sync.WaitGroup
			errs := make(chan error, len(nodes))
			for _, s := range nodes {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for range rounds {
						for _, step := range []struct {
							call  func(context.Context, []string) ([]string, error)
							count *[2]atomic.Int64
						}{{s.OccupyChannels, &occupied}, {s.VacateChannels, &vacated}} {
							got, err := step.call(context.Background(), channels)
							if err != nil {
								errs <- err
								return
							}
							for _, ch := range got {
								step.count[slices.Index(channels, ch)].Add(1)
							}
						}
					}
				}()
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				require.NoError(t, err)
			}
			for i, ch := range channels {
				o, v := occupied[i].Load(), vacated[i].Load()
				require.Positive(t, o, "%s was never occupied", ch)
				require.Equal(t, o, v, "%s: got %d occupied and %d vacated, want as many of each", ch, o, v)
			}
			require.Equal(t, channels, occupy(t, nodes[0], channels...), "every channel ends vacant")
		}},
		{"odd channel names work", func(t *testing.T) {
			s := newNodes(t, 1)[0]
			odd := []string{"{x}", "}", "a:b", "presence-ü", ""}
			require.Equal(t, odd, occupy(t, s, odd...))
			require.Equal(t, odd, vacate(t, s, odd...))
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, tt.run)
	}
}

func TestMemoryStorageOccupancy(t *testing.T) {
	noLeaks(t)
	testOccupancyContract(t, func(t *testing.T, n int) []ChannelOccupancy {
		s := NewMemoryStorage()
		nodes := make([]ChannelOccupancy, n)
		for i := range nodes {
			nodes[i] = s
		}
		return nodes
	})
}

// redisOccupancyNodes returns a newNodes for the contract: n storages on
// opts(t), closed at the end of the test.
func redisOccupancyNodes(opts func(t *testing.T) RedisOptions) func(t *testing.T, n int) []ChannelOccupancy {
	return func(t *testing.T, n int) []ChannelOccupancy {
		nodes := make([]ChannelOccupancy, n)
		for i := range nodes {
			nodes[i] = newTestRedisStorage(t, opts(t))
		}
		return nodes
	}
}

func TestRedisStorageOccupancy(t *testing.T) {
	addr := redistest.Addr(t)
	noLeaks(t)
	opts := func(t *testing.T) RedisOptions {
		redistest.CleanupKeys(t, addr, redistest.Prefix(t))
		return RedisOptions{Addrs: []string{addr}, KeyPrefix: redistest.Prefix(t)}
	}
	testOccupancyContract(t, redisOccupancyNodes(opts))
	testRedisOccupancyMaintenance(t, opts)
}

// testRedisOccupancyMaintenance runs the cases of OccupancyMaintainer:
// reaping the occupancy of nodes that died, and restoring a node's own.
func testRedisOccupancyMaintenance(t *testing.T, opts func(t *testing.T) RedisOptions) {
	t.Run("a closed node's channels are vacated once by the next maintenance", func(t *testing.T) {
		o := opts(t)
		a, err := NewRedisStorageWithOptions(o)
		require.NoError(t, err)
		b, c := newTestRedisStorage(t, o), newTestRedisStorage(t, o)
		require.Equal(t, []string{"x", "y"}, occupy(t, a, "x", "y"))
		require.Empty(t, occupy(t, b, "y"))
		// Closing with occupancy held deletes the heartbeat and leaves the
		// entries for the others to reap, as a crash would after NodeTTL.
		require.NoError(t, a.Close())
		var (
			wg      sync.WaitGroup
			mu      sync.Mutex
			changes []OccupancyChange
		)
		for _, s := range []*RedisStorage{b, c} { // both reap at once
			wg.Add(1)
			go func() {
				defer wg.Done()
				got, err := s.MaintainOccupancy(context.Background())
				assertNoError(t, err)
				mu.Lock()
				changes = append(changes, got...)
				mu.Unlock()
			}()
		}
		wg.Wait()
		require.Equal(t, []OccupancyChange{{Channel: "x"}}, changes)
		got, err := b.MaintainOccupancy(testCtx(t))
		require.NoError(t, err)
		require.Empty(t, got, "a second maintenance found more to reap")
		require.Equal(t, []string{"y"}, vacate(t, b, "y"))
	})
	t.Run("a closed node that held nothing leaves no trace", func(t *testing.T) {
		o := opts(t)
		a, err := NewRedisStorageWithOptions(o)
		require.NoError(t, err)
		occupy(t, a, "x")
		vacate(t, a, "x")
		id := a.NodeID()
		require.NoError(t, a.Close())
		b := newTestRedisStorage(t, o)
		ids, err := b.client.SMembers(testCtx(t), b.keys.occupancyNodes()).Result()
		require.NoError(t, err)
		require.Empty(t, ids)
		n, err := b.client.Exists(testCtx(t), b.keys.nodeOccupied(id)).Result()
		require.NoError(t, err)
		require.Zero(t, n, "the closed node's index is still there")
	})
}

// assertNoError reports err from a goroutine other than the test's.
func assertNoError(t *testing.T, err error) {
	if err != nil {
		t.Errorf("unexpected error: %v", err)
	}
}

// TestRedisOccupancyComesBackAfterFlushAll: Redis loses every key; the
// node takes a new identity and its next maintenance writes its
// occupancy back, reporting the channels occupied again, once.
func TestRedisOccupancyComesBackAfterFlushAll(t *testing.T) {
	srv := redistest.StartServer(t)
	noLeaks(t)
	o := RedisOptions{Addrs: []string{srv.Addr}, KeyPrefix: redistest.Prefix(t), NodeTTL: time.Second}
	a, b := newTestRedisStorage(t, o), newTestRedisStorage(t, o)
	require.Equal(t, []string{"x"}, occupy(t, a, "x"))
	require.Empty(t, occupy(t, b, "x"))
	require.Equal(t, []string{"y"}, occupy(t, a, "y"))
	require.NoError(t, srv.FlushAll(testCtx(t)))

	var changes []OccupancyChange
	require.Eventually(t, func() bool {
		for _, s := range []*RedisStorage{a, b} {
			_, _ = s.MaintainPresence(context.Background()) // notices the loss and rotates
			got, err := s.MaintainOccupancy(context.Background())
			if err == nil {
				changes = append(changes, got...)
			}
		}
		return len(changes) >= 2
	}, 10*time.Second, 10*time.Millisecond, "got %v", changes)
	slices.SortFunc(changes, func(x, y OccupancyChange) int { return strings.Compare(x.Channel, y.Channel) })
	require.Equal(t, []OccupancyChange{{Channel: "x", Occupied: true}, {Channel: "y", Occupied: true}}, changes)
	// Both nodes are back in x: the last of them vacates it, once.
	require.Empty(t, vacate(t, a, "x"))
	require.Equal(t, []string{"x"}, vacate(t, b, "x"))
	require.Equal(t, []string{"y"}, vacate(t, a, "y"))
}
