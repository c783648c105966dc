package ws

import (
	"context"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/vortechron/go-ws/internal/redistest"
)

// roundTrips is a go-redis hook, added after the storage's own, that
// counts what reaches the network: one round trip per command the
// autoPipeline let through and one per pipeline.
type roundTrips struct{ n atomic.Int64 }

func (r *roundTrips) DialHook(next redis.DialHook) redis.DialHook { return next }

func (r *roundTrips) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		r.n.Add(1)
		return next(ctx, cmd)
	}
}

func (r *roundTrips) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		r.n.Add(1)
		return next(ctx, cmds)
	}
}

// TestStorageScriptsShareRoundTrips is a small reconnect storm on a
// storage with a pool of two connections: 2,000 connections join (a
// script each) and then leave, all at once, 20 to a channel and then
// each alone on its channel (so every join is also the node's first
// entry on the channel, written to the node's index, and every leave
// its last). Every call succeeds, the joins and leaves are exact, and
// everything took far fewer round trips than calls.
func TestStorageScriptsShareRoundTrips(t *testing.T) {
	addr := redistest.Addr(t)
	noLeaks(t)
	for _, rooms := range []int{100, 2000} {
		t.Run(strconv.Itoa(rooms)+" channels", func(t *testing.T) {
			prefix := redistest.Prefix(t)
			redistest.CleanupKeys(t, addr, prefix)
			s := newTestRedisStorage(t, RedisOptions{Addrs: []string{addr}, KeyPrefix: prefix, PoolSize: 2})
			var trips roundTrips
			s.client.AddHook(&trips)
			const conns = 2000
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
			before := trips.n.Load()
			require.Equal(t, conns, run(s.AddPresence), "joins")
			members, v, err := s.PresenceMembers(context.Background(), "presence-r7")
			require.NoError(t, err)
			require.Len(t, members, conns/rooms)
			require.Equal(t, uint64(conns/rooms), v.Seq)
			require.Equal(t, conns, run(s.RemovePresence), "leaves")
			n := trips.n.Load() - before
			t.Logf("%d joins and %d leaves on %d channels took %d round trips", conns, conns, rooms, n)
			require.Less(t, n, int64(conns/2), "concurrent calls share round trips")
		})
	}
}
