package pusher_test

import (
	"context"
	"strconv"
	"sync"
	"testing"

	"github.com/gorilla/websocket"

	ws "github.com/vortechron/go-ws"
)

// BenchmarkFanOut publishes one named event to n subscribers over real
// loopback WebSockets, once with ws's native protocol and once with the
// Pusher protocol, and waits until every subscriber has read it: the
// deliveries/s of the two can be compared from one run.
func BenchmarkFanOut(b *testing.B) {
	for _, n := range []int{1000} {
		for _, proto := range []string{"native", "pusher"} {
			b.Run(proto+"/"+strconv.Itoa(n), func(b *testing.B) {
				node := newNode(b, nil, nil, ws.Config{}, nil, &ws.Options{})
				conns := make([]*websocket.Conn, n)
				for i := range conns {
					if proto == "native" {
						c := node.dialNative(b, "")
						c.send(map[string]any{"action": "subscribe", "channel": "bench"})
						c.expect("subscribed")
						conns[i] = c.conn
					} else {
						c := node.dial(b, nil)
						c.subscribe("bench")
						conns[i] = c.conn
					}
				}
				var wg sync.WaitGroup
				rounds := make([]chan struct{}, n)
				for i, c := range conns {
					rounds[i] = make(chan struct{}, 1)
					go func() {
						for range rounds[i] {
							if _, _, err := c.ReadMessage(); err != nil {
								b.Error(err)
							}
							wg.Done()
						}
					}()
				}
				msg := map[string]any{"id": 12345, "text": "a message of a typical size for a chat or a notification"}
				b.ResetTimer()
				for b.Loop() {
					wg.Add(n)
					for _, r := range rounds {
						r <- struct{}{}
					}
					if err := node.hub.PublishWith(context.Background(), "bench", msg, ws.PublishOptions{Event: "Posted"}); err != nil {
						b.Fatal(err)
					}
					wg.Wait()
				}
				b.StopTimer()
				b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "deliveries/s")
				for _, r := range rounds {
					close(r)
				}
			})
		}
	}
}
