package ws

import (
	"context"
	"fmt"
	"strconv"
	"strings"
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

// pipelines is a go-redis hook that records the commands of every
// pipeline sent, as their arguments joined by spaces.
type pipelines struct {
	mu   sync.Mutex
	sent [][]string // guarded by mu
}

func (p *pipelines) DialHook(next redis.DialHook) redis.DialHook          { return next }
func (p *pipelines) ProcessHook(next redis.ProcessHook) redis.ProcessHook { return next }

func (p *pipelines) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		var names []string
		for _, c := range cmds {
			var args []string
			for _, a := range c.Args() {
				args = append(args, fmt.Sprint(a))
			}
			names = append(names, strings.Join(args, " "))
		}
		p.mu.Lock()
		p.sent = append(p.sent, names)
		p.mu.Unlock()
		return next(ctx, cmds)
	}
}

// with returns the pipelines that hold a command starting with prefix.
func (p *pipelines) with(prefix string) [][]string {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out [][]string
	for _, cmds := range p.sent {
		for _, c := range cmds {
			if strings.HasPrefix(c, prefix) {
				out = append(out, cmds)
				break
			}
		}
	}
	return out
}

// TestStorageIndexesAChannelInOneRoundTrip: the node's first entry on a
// channel puts the node in the node set and the channel in the node's
// index with two SADDs that go to Redis in one pipeline, before the
// entry's script; every joiner of the channel on the node waits for
// them, so each round trip here is one more for all of them.
func TestStorageIndexesAChannelInOneRoundTrip(t *testing.T) {
	s, _ := ownRedisStorage(t)
	var p pipelines
	s.client.AddHook(&p)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, joined, err := s.AddPresence(ctx, PresenceConn{Channel: "presence-lobby", ConnID: "c1", Member: PresenceMember{UserID: "alice"}})
	require.NoError(t, err)
	require.True(t, joined)

	id := s.NodeID()
	index := "sadd " + s.keys.nodeChannels(id) + " presence-lobby"
	got := p.with(index)
	require.Len(t, got, 1, "one pipeline added the channel to the index: %v", p.sent)
	require.Contains(t, got[0], "sadd "+s.keys.nodes()+" "+id, "the node set's SADD went in the same pipeline: %v", got[0])

	// Its leave takes the channel out of the index again; the next join
	// indexes it anew, again in one round trip.
	_, left, err := s.RemovePresence(ctx, PresenceConn{Channel: "presence-lobby", ConnID: "c1", Member: PresenceMember{UserID: "alice"}})
	require.NoError(t, err)
	require.True(t, left)
	_, _, err = s.AddPresence(ctx, PresenceConn{Channel: "presence-lobby", ConnID: "c2", Member: PresenceMember{UserID: "alice"}})
	require.NoError(t, err)
	got = p.with(index)
	require.Len(t, got, 2, "%v", p.sent)
	require.Contains(t, got[1], "sadd "+s.keys.nodes()+" "+id)
	members, _, err := s.PresenceMembers(ctx, "presence-lobby")
	require.NoError(t, err)
	require.Equal(t, []PresenceMember{{UserID: "alice"}}, members)
	isMember, err := s.client.SIsMember(ctx, s.keys.nodeChannels(id), "presence-lobby").Result()
	require.NoError(t, err)
	require.True(t, isMember, "the channel is in the node's index")
}
