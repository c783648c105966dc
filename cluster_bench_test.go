package ws_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"

	ws "github.com/vortechron/go-ws"
	"github.com/vortechron/go-ws/internal/redistest"
)

// Benchmarks of the cluster API's costs (docs/cluster.md quotes them).

// subscribeMany subscribes c to channels, writing every subscribe before
// reading the acknowledgements.
func subscribeMany(tb testing.TB, c *testClient, channels []string) {
	tb.Helper()
	for _, ch := range channels {
		c.send(map[string]any{"action": "subscribe", "channel": ch})
	}
	for range channels {
		expectNext(c, map[string]any{"type": "subscribed"})
	}
}

// BenchmarkClusterChannels measures Hub.Channels and Hub.Channel on one
// in-memory node and on three nodes over Redis, each node with 1000
// channels of its own (one subscriber each) and 100 it shares with the
// others (two subscribers each).
func BenchmarkClusterChannels(b *testing.B) {
	for _, backend := range []string{"memory", "redis"} {
		b.Run(backend, func(b *testing.B) {
			cfg := ws.Config{MaxChannelsPerClient: 2000}
			var nodes []*testNode
			if backend == "memory" {
				nodes = []*testNode{newNode(b, nil, nil, cfg, nil)}
			} else {
				nodes = redisNodes(b, 3, ws.RedisOptions{Addrs: []string{redistest.Addr(b)}}, cfg, nil)
			}
			for i, n := range nodes {
				var own, shared []string
				for j := range 1000 {
					own = append(own, fmt.Sprintf("n%d-c%d", i, j))
				}
				for j := range 100 {
					shared = append(shared, fmt.Sprintf("shared-%d", j))
				}
				subscribeMany(b, n.dial(b, ""), append(own, shared...))
				subscribeMany(b, n.dial(b, ""), shared)
			}
			ctx := context.Background()
			h := nodes[0].hub
			all, err := h.Channels(ctx, "")
			require.NoError(b, err)
			require.Len(b, all, 1000*len(nodes)+100)
			b.Run("Channels all", func(b *testing.B) {
				for b.Loop() {
					if _, err := h.Channels(ctx, ""); err != nil {
						b.Fatal(err)
					}
				}
			})
			b.Run("Channels prefix", func(b *testing.B) {
				for b.Loop() {
					if _, err := h.Channels(ctx, "shared-"); err != nil {
						b.Fatal(err)
					}
				}
			})
			b.Run("Channel", func(b *testing.B) {
				for b.Loop() {
					if _, err := h.Channel(ctx, "shared-7"); err != nil {
						b.Fatal(err)
					}
				}
			})
		})
	}
}

// BenchmarkSubscribeNewChannel measures a subscribe and unsubscribe that
// each make a node-channel transition (a channel nobody on the node was
// in), with and without an occupancy hook: the hook adds the recording
// of the node's occupancy in the storage.
func BenchmarkSubscribeNewChannel(b *testing.B) {
	for _, backend := range []string{"memory", "redis"} {
		for _, hooks := range []bool{false, true} {
			b.Run(fmt.Sprintf("%s hooks=%v", backend, hooks), func(b *testing.B) {
				var cfg ws.Config
				if hooks {
					cfg.OnChannelOccupied = func(string) {}
					cfg.OnChannelVacated = func(string) {}
				}
				var n *testNode
				if backend == "memory" {
					n = newNode(b, nil, nil, cfg, nil)
				} else {
					n = redisNodes(b, 1, ws.RedisOptions{Addrs: []string{redistest.Addr(b)}}, cfg, nil)[0]
				}
				c := n.dial(b, "")
				i := 0
				for b.Loop() {
					ch := fmt.Sprintf("new-%d", i)
					i++
					join(c, ch)
					leave(c, ch)
				}
			})
		}
	}
}

// BenchmarkRedisOccupancyStorm records the occupancy of 18,000 channels
// (a node coming back with every channel of a reconnect storm) and then
// vacates them, in the worker's batches of 512.
func BenchmarkRedisOccupancyStorm(b *testing.B) {
	addr := redistest.Addr(b)
	prefix := redistest.Prefix(b)
	redistest.CleanupKeys(b, addr, prefix)
	s, err := ws.NewRedisStorageWithOptions(ws.RedisOptions{Addrs: []string{addr}, KeyPrefix: prefix})
	require.NoError(b, err)
	b.Cleanup(func() { _ = s.Close() })
	channels := make([]string, 18000)
	for i := range channels {
		channels[i] = fmt.Sprintf("private-user-%d", i)
	}
	ctx := context.Background()
	for b.Loop() {
		for _, op := range []func(context.Context, []string) ([]string, error){s.OccupyChannels, s.VacateChannels} {
			for i := 0; i < len(channels); i += 512 {
				got, err := op(ctx, channels[i:min(i+512, len(channels))])
				if err != nil || len(got) != min(512, len(channels)-i) {
					b.Fatalf("got %d changes, err %v", len(got), err)
				}
			}
		}
	}
}

// BenchmarkUserCommands measures, on three nodes over Redis,
// Hub.PublishToUser until the user's tab on another node has the message,
// and Hub.UnsubscribeUser and Hub.DisconnectUser round trips (every node
// answers) for a user with no connections.
func BenchmarkUserCommands(b *testing.B) {
	nodes := redisNodes(b, 3, ws.RedisOptions{Addrs: []string{redistest.Addr(b)}}, ws.Config{}, userOptions())
	alice := nodes[1].dial(b, "alice")
	quiet(alice)
	ctx := context.Background()
	h := nodes[0].hub
	b.Run("PublishToUser", func(b *testing.B) {
		for b.Loop() {
			if err := h.PublishToUser(ctx, "alice", "hi", ws.PublishOptions{}); err != nil {
				b.Fatal(err)
			}
			alice.next()
		}
	})
	b.Run("UnsubscribeUser", func(b *testing.B) {
		for b.Loop() {
			if err := h.UnsubscribeUser(ctx, "nobody", "news"); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("DisconnectUser", func(b *testing.B) {
		for b.Loop() {
			if err := h.DisconnectUser(ctx, "nobody"); err != nil {
				b.Fatal(err)
			}
		}
	})
}
