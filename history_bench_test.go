package ws_test

import (
	"context"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/require"

	ws "github.com/vortechron/go-ws"
	"github.com/vortechron/go-ws/internal/redistest"
)

// BenchmarkRedisPublish measures Hub.Publish on Redis from one goroutine
// and from 8 at once, on a channel without history (plain) and on one with
// history (a Lua script per batch of publications instead of one PUBLISH
// each). The channel has one subscriber on the publishing node, which
// reads and discards, so Redis delivers every publication and the node
// posts it.
//
//	go test -run '^$' -bench BenchmarkRedisPublish -benchtime 20000x -count 5 .
func BenchmarkRedisPublish(b *testing.B) {
	addr := redistest.Addr(b)
	for _, bc := range []struct {
		name    string
		channel string
	}{{"plain", "bench-plain"}, {"history", "history-bench"}} {
		b.Run(bc.name, func(b *testing.B) {
			n := redisNodes(b, 1, ws.RedisOptions{Addrs: []string{addr}}, historyConfig(ws.Config{}), nil)[0]
			conn, _, err := websocket.DefaultDialer.Dial(n.url, nil)
			require.NoError(b, err)
			require.NoError(b, conn.WriteJSON(map[string]string{"action": "subscribe", "channel": bc.channel}))
			_, _, err = conn.ReadMessage() // subscribed
			require.NoError(b, err)
			read := make(chan struct{})
			go func() {
				defer close(read)
				for {
					if _, _, err := conn.ReadMessage(); err != nil {
						return
					}
				}
			}()
			b.Cleanup(func() { conn.Close(); <-read })
			require.Eventually(b, func() bool { return n.hub.Health().BrokerHealthy }, 10*time.Second, time.Millisecond)
			msg := []byte(`{"seq":1,"body":"0123456789012345678901234567890123456789012345678901234567890123456789"}`)
			ctx := context.Background()
			b.Run("1-publisher", func(b *testing.B) {
				for range b.N {
					if err := n.hub.Publish(ctx, bc.channel, msg); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "pub/s")
			})
			b.Run("8-publishers", func(b *testing.B) {
				b.SetParallelism(4) // 8 publishers on 2 cores
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						if err := n.hub.Publish(ctx, bc.channel, msg); err != nil {
							b.Error(err)
							return
						}
					}
				})
				b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "pub/s")
			})
		})
	}
	// Many channels, each published rarely: 16 goroutines publish in turn
	// to 5,000 channels without subscribers (history ones keep their last
	// 10 publications, as in bench/'s many-channels scenario), so that
	// Redis does a history channel's whole check on almost every run and
	// concurrent publications of one channel never share one.
	for _, bc := range []struct{ name, prefix string }{{"plain", "bench-plain-"}, {"history", "history-small-bench-"}} {
		b.Run(bc.name+"/16-publishers-5000-channels", func(b *testing.B) {
			n := redisNodes(b, 1, ws.RedisOptions{Addrs: []string{addr}}, historyConfig(ws.Config{}), nil)[0]
			require.Eventually(b, func() bool { return n.hub.Health().BrokerHealthy }, 10*time.Second, time.Millisecond)
			names := make([]string, 5000)
			for i := range names {
				names[i] = bc.prefix + strconv.Itoa(i)
			}
			msg := []byte(`{"seq":1,"body":"0123456789012345678901234567890123456789012345678901234567890123456789"}`)
			var next atomic.Int64
			b.SetParallelism(8) // 16 publishers on 2 cores
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					ch := names[int(next.Add(1))%len(names)]
					if err := n.hub.Publish(context.Background(), ch, msg); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "pub/s")
		})
	}
}
