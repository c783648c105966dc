package ws_test

import (
	"bytes"
	"fmt"
	"net/http"
	"runtime"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	ws "github.com/vortechron/go-ws"
	"github.com/vortechron/go-ws/internal/redistest"
)

// BenchmarkConnectionLifecycle measures what a reconnect storm repeats
// per connection: the upgrade, three public subscribes and one presence
// subscribe (a join, the member list), then the connection dropped
// without a close handshake and torn down (a leave). Eight connections at
// a time, over 100 presence rooms; an op ends when the client has its
// four subscribed frames, and the benchmark's time includes the teardown
// of the last ones. allocs/op and B/op count the client's side as well
// (a gorilla dial), which is the same for every build.
func BenchmarkConnectionLifecycle(b *testing.B) {
	backends := []struct {
		name  string
		nodes func(b *testing.B) *testNode
	}{
		{"memory", func(b *testing.B) *testNode { return newNode(b, nil, nil, ws.Config{}, userOptions()) }},
		{"redis", func(b *testing.B) *testNode {
			return redisNodes(b, 1, ws.RedisOptions{Addrs: []string{redistest.Addr(b)}}, ws.Config{}, userOptions())[0]
		}},
	}
	for _, be := range backends {
		b.Run(be.name, func(b *testing.B) {
			n := be.nodes(b)
			d := &websocket.Dialer{HandshakeTimeout: 10 * time.Second}
			var seq atomic.Int64
			b.ReportAllocs()
			b.SetParallelism(4) // 8 at a time on 2 cores
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					i := seq.Add(1)
					if err := connectSubscribeDrop(d, n.url, i); err != nil {
						b.Error(err)
						return
					}
				}
			})
			for n.hub.Stats().Connections > 0 {
				runtime.Gosched()
			}
			b.StopTimer()
		})
	}
}

// connectSubscribeDrop dials as user i, subscribes to three public
// channels and a presence room, waits for the four subscribed frames and
// drops the TCP connection.
func connectSubscribeDrop(d *websocket.Dialer, url string, i int64) error {
	h := http.Header{}
	h.Set("X-User", "u"+strconv.FormatInt(i, 10))
	c, _, err := d.Dial(url, h)
	if err != nil {
		return err
	}
	defer c.NetConn().Close()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	for _, ch := range []string{"news", "sport", "weather", fmt.Sprintf("presence-room-%d", i%100)} {
		if err := c.WriteMessage(websocket.TextMessage, []byte(`{"action":"subscribe","channel":"`+ch+`"}`)); err != nil {
			return err
		}
	}
	for want := 4; want > 0; {
		_, msg, err := c.ReadMessage()
		if err != nil {
			return err
		}
		if bytes.Contains(msg, []byte(`"type":"error"`)) {
			return fmt.Errorf("error frame: %s", msg)
		}
		if bytes.Contains(msg, []byte(`"type":"subscribed"`)) {
			want--
		}
	}
	return nil
}
