package ws_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/url"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/require"

	ws "github.com/vortechron/go-ws"
	"github.com/vortechron/go-ws/internal/redistest"
)

// TestHistoryFailover: three nodes on Redis; a client on node A follows a
// history channel while node C publishes 100 messages a second; node A
// goes away (SIGKILL of its process, a graceful shutdown with 1001, or a
// 3 s network cut between the client and A); the client reconnects to
// node B with since and ends with every publication exactly once, in
// offset order.
func TestHistoryFailover(t *testing.T) {
	addr := redistest.Addr(t)
	for _, sc := range []struct {
		name string
		// nodeA starts node A and returns the URL to reach it and what
		// takes it away from the client.
		nodeA func(t *testing.T, o ws.RedisOptions, cfg ws.Config) (url string, fail func())
	}{
		{"SIGKILL", func(t *testing.T, o ws.RedisOptions, _ ws.Config) (string, func()) {
			child := exec.Command(os.Args[0], "-test.run=^$")
			child.Env = append(os.Environ(), "WS_TEST_CHILD=history-node", "WS_TEST_CHILD_PREFIX="+o.KeyPrefix, "WS_TEST_CHILD_REDIS="+o.Addrs[0])
			stdout, err := child.StdoutPipe()
			require.NoError(t, err)
			require.NoError(t, child.Start())
			t.Cleanup(func() { _ = child.Process.Kill(); _ = child.Wait() })
			lines := bufio.NewScanner(stdout)
			var u string
			for lines.Scan() {
				if v, ok := strings.CutPrefix(lines.Text(), "URL "); ok {
					u = v
					break
				}
			}
			require.NotEmpty(t, u, "the child node printed no URL")
			return u + "/ws", func() {
				require.NoError(t, child.Process.Signal(syscall.SIGKILL))
				_ = child.Wait()
			}
		}},
		{"shutdown", func(t *testing.T, o ws.RedisOptions, cfg ws.Config) (string, func()) {
			a := redisNodes(t, 1, o, cfg, nil)[0]
			return a.url, func() {
				go func() {
					ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
					defer cancel()
					_ = a.hub.Shutdown(ctx)
				}()
			}
		}},
		{"network cut", func(t *testing.T, o ws.RedisOptions, cfg ws.Config) (string, func()) {
			a := redisNodes(t, 1, o, cfg, nil)[0]
			u, err := url.Parse(a.url)
			require.NoError(t, err)
			proxy := redistest.StartProxy(t, u.Host)
			u.Host = proxy.Addr
			return u.String(), func() {
				proxy.Stall()
				time.AfterFunc(3*time.Second, proxy.Resume) // the cut lasts 3 s
			}
		}},
	} {
		t.Run(sc.name, func(t *testing.T) {
			o := ws.RedisOptions{Addrs: []string{addr}, KeyPrefix: redistest.Prefix(t)}
			redistest.CleanupKeys(t, addr, o.KeyPrefix)
			cfg := historyConfig(ws.Config{})
			urlA, fail := sc.nodeA(t, o, cfg)
			bc := redisNodes(t, 2, o, cfg, nil)
			b, c := bc[0], bc[1]
			const channel = "history-failover"

			r := &resumer{t: t, channel: channel}
			r.attach(urlA)
			pub := startPublisher(t, c.hub, channel, 10*time.Millisecond)
			r.readUntil(func() bool { return len(r.got) >= 20 })

			fail()
			r.readUntil(func() bool { return false }) // until A is gone
			seen := len(r.got)
			// Away long enough to miss 10 publications at least.
			require.Eventually(t, func() bool { return pub.count() >= uint64(seen)+10 }, 10*time.Second, time.Millisecond)
			r.attach(b.url)
			require.True(t, r.recovered, "the resubscribe on B recovers")
			missed := r.subscribedAt - r.pos.Offset
			require.GreaterOrEqual(t, missed, uint64(10), "publications made while the client was away")
			r.readUntil(func() bool { return len(r.got) >= seen+int(missed)+20 })
			total := pub.stop()
			r.readUntil(func() bool { return r.pos.Offset >= r.start+total })
			r.close()

			t.Logf("%d publications: %d before A went away, %d recovered on B, the rest live; the client's offsets %d..%d",
				total, seen, missed, r.start+1, r.pos.Offset)
			require.Len(t, r.got, int(total), "every publication once")
			for i, m := range r.got {
				require.Equal(t, r.start+1+uint64(i), m.offset, "message %d: a gap, a duplicate or out of order", i)
				require.Equal(t, i+1, m.n, "message at offset %d", m.offset)
			}
		})
	}
}

// publisher publishes {"n":1}, {"n":2}, ... on a channel every interval.
type publisher struct {
	stopc chan struct{}
	done  chan int // how many were published
	n     atomic.Uint64
}

// count returns how many were published so far.
func (p *publisher) count() uint64 { return p.n.Load() }

func startPublisher(t *testing.T, hub *ws.Hub, channel string, every time.Duration) *publisher {
	p := &publisher{stopc: make(chan struct{}), done: make(chan int, 1)}
	errs := make(chan error, 1)
	go func() {
		tick := time.NewTicker(every)
		defer tick.Stop()
		n := 0
		for {
			select {
			case <-p.stopc:
				p.done <- n
				return
			case <-tick.C:
			}
			if err := hub.Publish(context.Background(), channel, map[string]int{"n": n + 1}); err != nil {
				errs <- err
				p.done <- n
				return
			}
			n++
			p.n.Store(uint64(n))
		}
	}()
	t.Cleanup(func() {
		select {
		case err := <-errs:
			t.Errorf("publish: %v", err)
		default:
		}
	})
	return p
}

// stop stops the publisher and returns how many it published.
func (p *publisher) stop() uint64 {
	close(p.stopc)
	return uint64(<-p.done)
}

// resumer follows a history channel across connections as a client
// library does: it keeps the offset of the last message, resubscribes
// with since after a reconnect, and pings to notice a dead connection.
type resumer struct {
	t         *testing.T
	channel   string
	conn      *websocket.Conn
	stopPing  chan struct{}
	pinging   sync.WaitGroup
	pos       position // of the last message (or the first subscribed)
	start     uint64   // the offset of the first subscribed
	attached  bool
	recovered bool
	// subscribedAt is the offset of the last subscribed frame: the
	// channel's latest when it was sent.
	subscribedAt uint64
	got          []resumed
}

type resumed struct {
	offset uint64
	n      int
}

// keepalive: a ping every pingEvery; a connection silent for silentFor is
// dead.
const (
	pingEvery = 200 * time.Millisecond
	silentFor = time.Second
)

// attach connects to u and subscribes, with since after the first time.
func (r *resumer) attach(u string) {
	t := r.t
	t.Helper()
	conn, resp, err := websocket.DefaultDialer.Dial(u, nil)
	if resp != nil {
		resp.Body.Close()
	}
	require.NoError(t, err)
	r.conn = conn
	sub := map[string]any{"action": "subscribe", "channel": r.channel}
	if r.attached {
		sub["since"] = r.pos
	}
	require.NoError(t, conn.WriteJSON(sub))
	f := r.next()
	require.Equal(t, "subscribed", f.Type, "got %+v", f)
	require.NotNil(t, f.Offset, "got %+v", f)
	r.recovered = f.Recovered != nil && *f.Recovered
	r.subscribedAt = *f.Offset
	if !r.attached {
		r.attached, r.start = true, *f.Offset
		r.pos = position{Offset: *f.Offset, Epoch: f.Epoch}
	}
	r.stopPing = make(chan struct{})
	r.pinging.Add(1)
	go func(stop chan struct{}) {
		defer r.pinging.Done()
		tick := time.NewTicker(pingEvery)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
				_ = conn.SetWriteDeadline(time.Now().Add(silentFor))
				if conn.WriteJSON(map[string]string{"action": "ping"}) != nil {
					return
				}
			}
		}
	}(r.stopPing)
}

// next reads one frame, failing the test on anything but a dead
// connection, which it reports as a frame of type "".
func (r *resumer) next() historyFrame {
	r.t.Helper()
	_ = r.conn.SetReadDeadline(time.Now().Add(silentFor))
	var f historyFrame
	err := r.conn.ReadJSON(&f)
	var ne net.Error
	var ce *websocket.CloseError
	switch {
	case err == nil:
	case errors.As(err, &ce):
		require.Contains(r.t, []int{websocket.CloseGoingAway, websocket.CloseAbnormalClosure}, ce.Code, "closed with %v", ce)
		return historyFrame{}
	case errors.As(err, &ne) && ne.Timeout(), errors.Is(err, syscall.ECONNRESET), errors.Is(err, net.ErrClosed),
		strings.Contains(err.Error(), "EOF"), strings.Contains(err.Error(), "connection reset"):
		return historyFrame{}
	default:
		require.NoError(r.t, err, "reading a frame")
	}
	return f
}

// readUntil reads messages until done reports true, or until the
// connection is dead (then it is closed and done must have been false).
func (r *resumer) readUntil(done func() bool) {
	r.t.Helper()
	for !done() {
		f := r.next()
		switch f.Type {
		case "":
			r.close()
			return
		case "pong":
		case "message":
			require.NotNil(r.t, f.Offset, "a message on a history channel carries its offset: %+v", f)
			var m struct{ N int }
			require.NoError(r.t, json.Unmarshal(f.Message, &m))
			r.got = append(r.got, resumed{offset: *f.Offset, n: m.N})
			r.pos.Offset = *f.Offset
		default:
			r.t.Fatalf("unexpected frame %+v", f)
		}
	}
}

func (r *resumer) close() {
	close(r.stopPing)
	r.conn.Close()
	r.pinging.Wait()
}
