package ws_test

import (
	"bytes"
	"context"
	"net"
	"os"
	"sync/atomic"
	"testing"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	ws "github.com/vortechron/go-ws"
	"github.com/vortechron/go-ws/internal/redistest"
)

// lossyDialer dials Redis for a go-redis client and, once armed with a
// text, loses the reply to the next request that carries it: the
// connection waits for Redis's answer, so the command has run, and then
// reports a read timeout instead of it, as a client sees a reply that
// comes after its ReadTimeout (a stalled Redis, a congested link).
type lossyDialer struct {
	armed atomic.Pointer[string]
	lost  atomic.Int64 // replies lost
}

func (d *lossyDialer) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	var nd net.Dialer
	c, err := nd.DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	return &lossyConn{Conn: c, d: d}, nil
}

// arm makes the next request that contains text lose its reply.
func (d *lossyDialer) arm(text string) { d.armed.Store(&text) }

type lossyConn struct {
	net.Conn
	d     *lossyDialer
	deaf  atomic.Bool // the reply to a request was lost: every read times out
	heard atomic.Bool // that reply came, and was dropped
}

func (c *lossyConn) Write(p []byte) (int, error) {
	if t := c.d.armed.Load(); t != nil && bytes.Contains(p, []byte(*t)) && c.d.armed.CompareAndSwap(t, nil) {
		c.deaf.Store(true)
	}
	return c.Conn.Write(p)
}

func (c *lossyConn) Read(p []byte) (int, error) {
	if !c.deaf.Load() {
		return c.Conn.Read(p)
	}
	if !c.heard.Swap(true) {
		if _, err := c.Conn.Read(p); err != nil {
			return 0, err
		}
		c.d.lost.Add(1)
	}
	return 0, &net.OpError{Op: "read", Net: "tcp", Addr: c.RemoteAddr(), Err: os.ErrDeadlineExceeded}
}

// lossyClient returns the address of the tests' Redis, a fresh key
// prefix there, and an application's client of that Redis with go-redis's
// default settings (MaxRetries 3) that dials through the returned
// lossyDialer. t closes the client after what it registered later (a
// hub) has stopped, and checks for leaked goroutines.
func lossyClient(t *testing.T) (addr, prefix string, d *lossyDialer, client *redis.Client) {
	t.Helper()
	leakCheck(t)
	addr = redistest.Addr(t)
	prefix = redistest.Prefix(t)
	redistest.CleanupKeys(t, addr, prefix)
	d = &lossyDialer{}
	client = redis.NewClient(&redis.Options{Addr: addr, Dialer: d.dial})
	t.Cleanup(func() { _ = client.Close() })
	return addr, prefix, d, client
}

// TestGivenClientPublishesOnce proves, in docs/redis.md (Connection
// settings): a broker on the application's own client sends a
// publication once even though the client retries commands (go-redis's
// default MaxRetries, 3), on a plain channel and on one with history. The
// reply to the publication is lost after Redis delivered it; Publish
// reports ErrPublishUncertain, the subscriber on another node gets the
// publication once and the history holds it once. Before, go-redis sent
// it again: Publish returned nil and the subscriber got it twice.
func TestGivenClientPublishesOnce(t *testing.T) {
	addr, prefix, d, client := lossyClient(t)
	broker, err := ws.NewRedisBrokerFromClient(client, ws.RedisOptions{KeyPrefix: prefix})
	require.NoError(t, err)
	cfg := historyConfig(ws.Config{})
	a := newNode(t, broker, nil, cfg, nil)
	b := redisNodes(t, 1, ws.RedisOptions{Addrs: []string{addr}, KeyPrefix: prefix}, cfg, nil)[0]
	awaitReady(t, a)

	ctx := context.Background()
	for _, ch := range []string{"news", "history-news"} {
		// Redis caches the history script on its first run; the reply
		// lost must be to a run, not to the NOSCRIPT that comes first.
		require.NoError(t, a.hub.Publish(ctx, ch, "warm-up"))
		c := b.dial(t, "")
		c.subscribe(ch)
		probe := "lost-reply-" + ch
		d.lost.Store(0)
		d.arm(probe)
		perr := a.hub.Publish(ctx, ch, probe)
		require.Equal(t, int64(1), d.lost.Load(), "%s: replies lost", ch)
		require.NoError(t, a.hub.Publish(ctx, ch, "after"))
		// A second copy would arrive before "after": Redis ran every
		// attempt before Publish returned.
		copies := 0
		for {
			m := c.expect(map[string]any{"type": "message", "channel": ch})
			if m["message"] == "after" {
				break
			}
			require.Equal(t, probe, m["message"])
			copies++
		}
		require.Equal(t, 1, copies, "%s: copies of the publication whose reply was lost", ch)
		require.ErrorIs(t, perr, ws.ErrPublishUncertain, "%s: a publication whose reply was lost", ch)
		if ch == "history-news" {
			page, err := b.hub.History(ctx, ch, ws.HistoryQuery{})
			require.NoError(t, err)
			require.Len(t, page.Publications, 3, "%s: history entries (warm-up, the probe, after)", ch)
		}
	}
}

// TestGivenClientJoinsOnce proves, in docs/redis.md (Connection
// settings): a presence store on the application's own client, which
// retries commands (go-redis's default MaxRetries, 3), runs a join once.
// The reply to the join's script is lost after Redis ran it; the joiner
// gets an error frame, subscribes again and is announced to the other
// member. Before, go-redis ran the script again, which answered "already
// a member": the joiner got its list and nobody heard of the join.
func TestGivenClientJoinsOnce(t *testing.T) {
	_, prefix, d, client := lossyClient(t)
	storage, err := ws.NewRedisStorageFromClient(client, ws.RedisOptions{KeyPrefix: prefix})
	require.NoError(t, err)
	var log errorLog
	n := newNode(t, nil, storage, ws.Config{}, presenceOptions(&log))
	const room, user = "presence-room", "lost-reply-user"
	bob := n.dial(t, "bob")
	bob.subscribePresence(room, "bob")

	alice := n.dial(t, user)
	d.arm(user)
	alice.subscribe(room)
	alice.expect(map[string]any{"type": "error", "code": ws.CodeUnavailable, "action": "subscribe", "channel": room})
	alice.expect(map[string]any{"type": "unsubscribed", "channel": room})
	require.Equal(t, int64(1), d.lost.Load(), "replies lost")
	alice.subscribePresence(room, "bob", user)
	// Bob hears of the join, or (when the entry the lost reply left came
	// and went first, so his version skipped) gets the whole list.
	m := bob.expect(map[string]any{"type": "presence", "channel": room, "count": float64(2)})
	require.Contains(t, []any{"join", "members"}, m["event"], "bob's frame %v", m)
	require.Equal(t, []string{"bob", user}, memberIDs(t, m), "bob's list")
	bob.expectQuiet()
}
