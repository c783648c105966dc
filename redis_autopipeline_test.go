package ws

import (
	"context"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/vortechron/go-ws/internal/redistest"
)

// TestStorageScriptsShareRoundTrips is a small reconnect storm on a
// storage with a pool of two connections: 2,000
// connections join (a script each) and then leave, all at once. Every
// call succeeds, the joins and leaves are exact, and the scripts took far
// fewer round trips than calls.
func TestStorageScriptsShareRoundTrips(t *testing.T) {
	addr := redistest.Addr(t)
	noLeaks(t)
	prefix := redistest.Prefix(t)
	redistest.CleanupKeys(t, addr, prefix)
	s := newTestRedisStorage(t, RedisOptions{Addrs: []string{addr}, KeyPrefix: prefix, PoolSize: 2})
	const conns, rooms = 2000, 100
	run := func(op func(context.Context, PresenceConn) (PresenceEvent, bool, error)) (changed int) {
		var mu sync.Mutex
		var wg sync.WaitGroup
		for i := range conns {
			wg.Add(1)
			go func() {
				defer wg.Done()
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				c := PresenceConn{Channel: "presence-r" + strconv.Itoa(i%rooms), ConnID: "c" + strconv.Itoa(i), Member: PresenceMember{UserID: "u" + strconv.Itoa(i)}}
				_, ch, err := op(ctx, c)
				require.NoError(t, err)
				mu.Lock()
				if ch {
					changed++
				}
				mu.Unlock()
			}()
		}
		wg.Wait()
		return changed
	}
	before := s.scripts.sent.Load()
	require.Equal(t, conns, run(s.AddPresence), "joins")
	members, v, err := s.PresenceMembers(context.Background(), "presence-r7")
	require.NoError(t, err)
	require.Len(t, members, conns/rooms)
	require.Equal(t, uint64(conns/rooms), v.Seq)
	require.Equal(t, conns, run(s.RemovePresence), "leaves")
	pipelines := s.scripts.sent.Load() - before
	t.Logf("%d scripts took %d pipelines", 2*conns, pipelines)
	require.Less(t, pipelines, int64(conns/2), "concurrent scripts share round trips")
}
