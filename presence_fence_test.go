package ws_test

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	ws "github.com/vortechron/go-ws"
	"github.com/vortechron/go-ws/internal/redistest"
)

// TestPresenceAddThatRunsLateIsFenced proves, in docs/redis.md (Presence:
// fenced adds), that a join whose script reaches Redis only after the
// node gave it up leaves no member behind. The storage's one connection
// to Redis goes silent (a NAT that forgot it) as bob subscribes: his add
// times out, he gets unavailable and is unsubscribed, and the node removes
// him on a new connection, where there is nothing to remove yet. Then the
// silent connection delivers what it held, and Redis runs the add. Before,
// it wrote bob's entry, and bob stayed a member for as long as the node
// lived (nothing removes a live node's entries); the chaos soak saw such
// a user in every list after a node's connections went silent. Now the
// removal fenced the add, which does nothing.
func TestPresenceAddThatRunsLateIsFenced(t *testing.T) {
	srv := redistest.StartServer(t)
	px := redistest.StartProxy(t, srv.Addr)
	prefix := redistest.Prefix(t)
	broker, err := ws.NewRedisBrokerWithOptions(ws.RedisOptions{Addrs: []string{srv.Addr}, KeyPrefix: prefix})
	require.NoError(t, err)
	storage, err := ws.NewRedisStorageWithOptions(ws.RedisOptions{Addrs: []string{px.Addr}, KeyPrefix: prefix, PoolSize: 1})
	require.NoError(t, err)
	var log errorLog
	n := newNode(t, broker, storage, ws.Config{}, presenceOptions(&log))
	awaitReady(t, n)
	const ch = "presence-fence"
	alice := n.dial(t, "alice")
	alice.subscribePresence(ch, "alice") // the storage's connection is open

	px.Freeze()
	scripts := scriptCalls(t, srv)
	bob := n.dial(t, "bob")
	bob.subscribe(ch)
	bob.expect(map[string]any{"type": "error", "code": ws.CodeUnavailable, "action": "subscribe", "channel": ch})
	bob.expect(map[string]any{"type": "unsubscribed", "channel": ch})
	require.Eventually(t, func() bool { return scriptCalls(t, srv) == scripts+1 }, 10*time.Second, 5*time.Millisecond,
		"Redis never ran bob's removal") // the held add cannot run yet
	px.Resume()
	require.Eventually(t, func() bool { return scriptCalls(t, srv) == scripts+2 }, 10*time.Second, 5*time.Millisecond,
		"Redis never ran bob's held add")

	require.Equal(t, []string{"alice"}, n.members(t, ch), "members once bob's add ran late")
	conns, err := srv.CLI(t.Context(), "HLEN", prefix+"presence:{"+ch+"}:conns")
	require.NoError(t, err)
	require.Equal(t, "1", strings.TrimSpace(conns), "connections Redis holds in the channel: alice's")
	alice.expectQuiet()
}

// scriptCalls returns how many EVALSHA and EVAL commands srv has run,
// less those it refused (NOSCRIPT, before go-redis sends the script's
// body with EVAL).
func scriptCalls(t *testing.T, srv *redistest.Server) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	info, err := srv.CLI(ctx, "INFO", "commandstats")
	require.NoError(t, err)
	n := 0
	for _, l := range strings.Fields(info) {
		for _, cmd := range []string{"cmdstat_evalsha:", "cmdstat_eval:"} {
			stats, ok := strings.CutPrefix(l, cmd)
			if !ok {
				continue
			}
			for _, kv := range strings.Split(stats, ",") {
				k, v, _ := strings.Cut(kv, "=")
				if k != "calls" && k != "failed_calls" {
					continue
				}
				c, err := strconv.Atoi(v)
				require.NoError(t, err, "%s in %q", k, l)
				if k == "calls" {
					n += c
				} else {
					n -= c
				}
			}
		}
	}
	return n
}
