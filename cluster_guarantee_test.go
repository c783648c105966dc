package ws_test

import (
	"context"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	ws "github.com/vortechron/go-ws"
	"github.com/vortechron/go-ws/internal/redistest"
)

// Tests of promises made in docs/cluster.md and docs/presence.md about
// the hooks and a node that stops: what a graceful shutdown does for the
// other nodes, which hooks still run as the hub stops or after one
// panicked, when an occupation is recorded, and when a member's info is
// left out.

// redisGuaranteeOptions returns Redis options with a NodeTTL and a
// ReapInterval long enough that no node is reaped while the test runs:
// whatever the other nodes see of a node that stops comes from that node
// itself. (startRedisNodes gives the nodes a key prefix of the test's.)
func redisGuaranteeOptions(t *testing.T) ws.RedisOptions {
	return ws.RedisOptions{Addrs: []string{redistest.Addr(t)}, NodeTTL: time.Minute, ReapInterval: time.Minute}
}

// occupancyHooks returns cfg with both occupancy hooks recording in log.
func occupancyHooks(cfg ws.Config, log *hookLog) ws.Config {
	cfg.OnChannelOccupied = func(ch string) { log.add("occupied %s", ch) }
	cfg.OnChannelVacated = func(ch string) { log.add("vacated %s", ch) }
	return cfg
}

// TestGracefulShutdownVacatesAtOnce proves docs/cluster.md "Occupancy
// hooks", Crashes: "A graceful shutdown vacates the node's channels
// before the storage closes, so the hook fires at once." A node that
// alone held a channel stops; the channel is vacated right away, not a
// NodeTTL (here a minute) later, so a subscriber on the other node
// occupies it again.
func TestGracefulShutdownVacatesAtOnce(t *testing.T) {
	hooks := &hookLog{}
	nodes := redisNodes(t, 2, redisGuaranteeOptions(t), occupancyHooks(ws.Config{}, hooks), nil)
	c := nodes[1].dial(t, "")
	join(c, "room")
	hooks.wait(t, "occupied room", 1)

	nodes[1].cancel()
	require.Equal(t, ws.CloseGoingAway, c.expectClose())
	c.Conn.Close()
	<-nodes[1].hub.Done()
	hooks.wait(t, "vacated room", 1)
	c2 := nodes[0].dial(t, "")
	join(c2, "room")
	hooks.wait(t, "occupied room", 2)
	require.Equal(t, []string{"occupied room", "vacated room", "occupied room"}, hooks.all())
}

// heldClose is a RedisBroker whose Close, the last step of a hub's
// shutdown, waits for release: the node stays subscribed to whatever it
// did not unsubscribe itself until then.
type heldClose struct {
	*ws.RedisBroker
	once    sync.Once
	closing chan struct{}
	release chan struct{}
}

func (b *heldClose) Close() error {
	b.once.Do(func() {
		close(b.closing)
		<-b.release
	})
	return b.RedisBroker.Close()
}

// TestStoppingNodeDoesNotMakeOthersWait proves docs/cluster.md "How
// nodes ask each other": "A node that is stopping unsubscribes the
// control channels before it stops answering, so a graceful shutdown
// does not make others wait." The stopping node's broker is held open
// at the end of its shutdown, after the node has stopped answering; a
// request made on the other node meanwhile gets every answer it waits
// for, instead of waiting ClusterTimeout and returning
// ErrClusterIncomplete.
func TestStoppingNodeDoesNotMakeOthersWait(t *testing.T) {
	o := redisGuaranteeOptions(t)
	cfg := ws.Config{ClusterTimeout: 3 * time.Second}
	var held *heldClose
	nodes := startRedisNodesWith(t, 2, o, cfg, nil, func(i int, rb *ws.RedisBroker, _ *ws.RedisStorage) ws.MessageBroker {
		if i == 0 {
			return rb
		}
		held = &heldClose{RedisBroker: rb, closing: make(chan struct{}), release: make(chan struct{})}
		return held
	})
	var released sync.Once
	release := func() { released.Do(func() { close(held.release) }) }
	t.Cleanup(release) // before the nodes stop, should the test fail first
	awaitReady(t, nodes...)
	c := nodes[1].dial(t, "")
	join(c, "news")
	ctx := apiCtx(t)
	got, err := nodes[0].hub.Channels(ctx, "")
	require.NoError(t, err)
	require.Equal(t, []ws.ChannelInfo{{Name: "news", Subscriptions: 1}}, got, "both nodes answer before the stop")

	stopped := make(chan error, 1)
	go func() { stopped <- nodes[1].hub.Shutdown(ctx) }()
	require.Equal(t, ws.CloseGoingAway, c.expectClose())
	c.Conn.Close()
	<-held.closing
	start := time.Now()
	got, err = nodes[0].hub.Channels(ctx, "")
	took := time.Since(start)
	require.NoError(t, err, "Channels while the other node stops (took %v)", took)
	require.Empty(t, got)
	require.NoError(t, nodes[0].hub.DisconnectUser(ctx, "alice"), "DisconnectUser while the other node stops")
	release()
	require.NoError(t, <-stopped)
	require.NoError(t, nodes[0].hub.UnsubscribeUser(ctx, "alice", "news"), "UnsubscribeUser once the other node stopped")
}

// TestQueuedHooksRunOnShutdown proves docs/cluster.md "Where hooks run":
// "On shutdown the hub calls the hooks already queued, the last
// vacancies included, until the shutdown deadline." The first
// OnSubscribe blocks until the hub is shutting down, so every later hook
// is still queued when the shutdown begins; once Run has returned they
// have all run.
func TestQueuedHooksRunOnShutdown(t *testing.T) {
	for _, b := range nodeBackends {
		t.Run(b.name, func(t *testing.T) {
			hooks := &hookLog{}
			blocked, release := make(chan struct{}), make(chan struct{})
			var releaseOnce sync.Once
			unblock := func() { releaseOnce.Do(func() { close(release) }) }
			opts := &ws.Options{
				OnSubscribe: func(c *ws.Client, ch string) {
					if ch == "a" {
						close(blocked)
						<-release
					}
					hooks.add("sub %s", ch)
				},
				OnUnsubscribe: func(c *ws.Client, ch string) { hooks.add("unsub %s", ch) },
			}
			n := b.start(t, 1, occupancyHooks(ws.Config{}, hooks), opts)[0]
			t.Cleanup(unblock) // before the node stops, should the test fail first
			c := n.dial(t, "")
			for _, ch := range []string{"a", "b", "c"} {
				join(c, ch)
			}
			<-blocked

			n.cancel()
			require.Equal(t, ws.CloseGoingAway, c.expectClose(), "the shutdown has begun")
			c.Conn.Close()
			unblock()
			<-n.hub.Done()
			var want []string
			for _, ch := range []string{"a", "b", "c"} {
				want = append(want, "occupied "+ch, "sub "+ch, "unsub "+ch, "vacated "+ch)
			}
			got := hooks.all()
			slices.Sort(got)
			slices.Sort(want)
			require.Equal(t, want, got, "got hooks %v, want every queued hook and the last vacancies", hooks.all())
		})
	}
}

// TestPanickingHookIsLoggedAndTheNextRuns proves docs/cluster.md "Where
// hooks run": "A hook that panics is logged at Error level with its stack
// and the next one runs." An occupancy hook and a subscription hook panic
// for one channel; the hooks of the next channel still run, each panic is
// logged with the stack of the hook, and the connection is unaffected.
func TestPanickingHookIsLoggedAndTheNextRuns(t *testing.T) {
	hooks := &hookLog{}
	logs := &recordHandler{}
	cfg := ws.Config{
		Logger: slog.New(logs),
		OnChannelOccupied: func(ch string) {
			if ch == "boom" {
				panic("occupied hook failed")
			}
			hooks.add("occupied %s", ch)
		},
	}
	opts := &ws.Options{OnSubscribe: func(c *ws.Client, ch string) {
		if ch == "boom" {
			panic("subscribe hook failed")
		}
		hooks.add("sub %s", ch)
	}}
	n := newNode(t, nil, nil, cfg, opts)
	c := n.dial(t, "")
	join(c, "boom")
	join(c, "after")
	hooks.wait(t, "sub after", 1)
	hooks.wait(t, "occupied after", 1)
	require.ElementsMatch(t, []string{"occupied after", "sub after"}, hooks.all())

	var errs []string
	for _, r := range logs.atLevel(slog.LevelError) {
		errs = append(errs, recordLine(r))
	}
	require.Len(t, errs, 2, "got Error records %q, want one per panic", errs)
	for _, want := range []string{"occupied hook failed", "subscribe hook failed"} {
		i := slices.IndexFunc(errs, func(s string) bool { return strings.Contains(s, "panic="+want) })
		require.GreaterOrEqual(t, i, 0, "got Error records %q, want one with panic=%s", errs, want)
		require.Contains(t, errs[i], "TestPanickingHookIsLoggedAndTheNextRuns", "got %q, want the stack of the hook", errs[i])
	}
	quiet(c)
}

// slowOccupancy is a storage whose OccupyChannels takes hold longer
// (a storage slower than the path that acknowledges a subscribe, and
// faster than the one-second bound on the wait) and records when it has
// returned.
type slowOccupancy struct {
	ws.StorageClient
	hold     time.Duration
	recorded atomic.Bool
}

func (s *slowOccupancy) OccupyChannels(ctx context.Context, channels []string) ([]string, error) {
	time.Sleep(s.hold)
	occupied, err := s.StorageClient.(ws.ChannelOccupancy).OccupyChannels(ctx, channels)
	if err == nil {
		s.recorded.Store(true)
	}
	return occupied, err
}

func (s *slowOccupancy) VacateChannels(ctx context.Context, channels []string) ([]string, error) {
	return s.StorageClient.(ws.ChannelOccupancy).VacateChannels(ctx, channels)
}

// TestOccupationIsRecordedBeforeSubscribed proves docs/cluster.md
// "Occupancy hooks", When: "An occupation is recorded **before** the
// channel's first subscriber on the node gets `subscribed`: the broker
// worker that subscribed the broker waits for it. So a client that has
// seen `subscribed` counts in the storage". The storage takes 300 ms to
// record it; the client's `subscribed` comes after. On Redis another
// node's storage then finds the channel occupied already.
func TestOccupationIsRecordedBeforeSubscribed(t *testing.T) {
	backends := map[string]func(testing.TB) backend{
		"memory": func(testing.TB) backend { return memoryBackend() },
		"redis":  redisBackend,
	}
	for name, makeBackend := range backends {
		t.Run(name, func(t *testing.T) {
			be := makeBackend(t)
			storage := &slowOccupancy{StorageClient: be.newStorage(t), hold: 300 * time.Millisecond}
			hooks := &hookLog{}
			n := newNode(t, be.newBroker(t), storage, occupancyHooks(ws.Config{}, hooks), nil)
			awaitReady(t, n)
			c := n.dial(t, "")
			join(c, "room")
			require.True(t, storage.recorded.Load(), "got subscribed before the occupation was recorded")
			if name == "redis" {
				other := be.newStorage(t)
				t.Cleanup(func() { _ = other.Close() })
				ctx := apiCtx(t)
				occupied, err := other.(ws.ChannelOccupancy).OccupyChannels(ctx, []string{"room"})
				require.NoError(t, err)
				require.Empty(t, occupied, "another node occupying room once the client has seen subscribed")
				_, err = other.(ws.ChannelOccupancy).VacateChannels(ctx, []string{"room"})
				require.NoError(t, err)
			}
			hooks.wait(t, "occupied room", 1)
		})
	}
}

// TestPresenceMemberWithoutInfo proves docs/presence.md "Presence
// frames": "Each member is `{"id", "info"}`, where `info` is the JSON
// value `Options.GetUserInfo` returned for the user. It is left out when
// there is no `GetUserInfo` or it returned nil" (a nil map or pointer
// included). A client library that
// reads `info` of every member must find it absent, not null.
func TestPresenceMemberWithoutInfo(t *testing.T) {
	withNil := userOptions()
	withNil.GetUserInfo = func(r *http.Request, userID string) any {
		if userID == "alice" {
			return map[string]string{"name": "Alice"}
		}
		return nil
	}
	// A nil map or pointer in the interface is not == nil, but is no info
	// all the same (it would encode as null).
	withTypedNil := userOptions()
	withTypedNil.GetUserInfo = func(r *http.Request, userID string) any {
		if userID == "alice" {
			return map[string]string{"name": "Alice"}
		}
		var none map[string]string
		return none
	}
	cases := []struct {
		name      string
		opts      *ws.Options
		aliceInfo any // nil: left out
	}{
		{"GetUserInfo returns nil", withNil, map[string]any{"name": "Alice"}},
		{"GetUserInfo returns a nil map", withTypedNil, map[string]any{"name": "Alice"}},
		{"no GetUserInfo", userOptions(), nil},
	}
	for _, b := range nodeBackends {
		for _, tc := range cases {
			t.Run(b.name+"/"+tc.name, func(t *testing.T) {
				nodes := b.start(t, 2, ws.Config{}, tc.opts)
				on := func(i int) *testNode { return nodes[i%len(nodes)] }
				const ch = "presence-info"
				checkMember := func(m map[string]any, id string) {
					t.Helper()
					info, has := m["info"]
					if id == "alice" && tc.aliceInfo != nil {
						require.Equal(t, tc.aliceInfo, info, "got member %v, want alice's info", m)
						return
					}
					require.False(t, has, "got member %v, want no info", m)
				}
				checkList := func(m map[string]any) {
					t.Helper()
					for _, u := range m["users"].([]any) {
						u := u.(map[string]any)
						checkMember(u, u["id"].(string))
					}
				}

				alice := on(0).dial(t, "alice")
				join(alice, ch)
				checkList(expectNext(alice, map[string]any{"type": "presence", "event": "members", "count": float64(1)}))
				bob := on(1).dial(t, "bob")
				join(bob, ch)
				checkList(expectNext(bob, map[string]any{"type": "presence", "event": "members", "count": float64(2)}))
				m := expectNext(alice, map[string]any{"type": "presence", "event": "join", "count": float64(2)})
				checkMember(m["user"].(map[string]any), "bob")
				checkList(m)
				leave(bob, ch)
				m = expectNext(alice, map[string]any{"type": "presence", "event": "leave", "count": float64(1)})
				checkMember(m["user"].(map[string]any), "bob")
				checkList(m)
			})
		}
	}
}

// TestUnsubscribeUserFromOwnHookIsIncomplete proves docs/cluster.md
// (UnsubscribeUser): "a call made from a hook that runs on the goroutine
// of one of the user's own connections (an AuthProvider,
// WhisperMiddleware) waits ClusterTimeout for that node's answer and
// returns ErrClusterIncomplete, and that connection leaves the channel
// once the hook has returned" — and the connection is never taken out in
// the middle of its own frame: the whisper that ran the hook still goes
// out.
func TestUnsubscribeUserFromOwnHookIsIncomplete(t *testing.T) {
	const room, timeout = "private-room", 300 * time.Millisecond
	for _, b := range nodeBackends {
		t.Run(b.name, func(t *testing.T) {
			var hub atomic.Pointer[ws.Hub]
			type result struct {
				err  error
				took time.Duration
			}
			results := make(chan result, 1)
			opts := userOptions()
			opts.WhisperMiddleware = func(w *ws.WhisperEvent) bool {
				if w.Event == "leave-me" {
					start := time.Now()
					err := hub.Load().UnsubscribeUser(context.Background(), w.FromID, w.ChannelName)
					results <- result{err, time.Since(start)}
				}
				return true
			}
			nodes := b.start(t, 2, ws.Config{ClusterTimeout: timeout}, opts)
			hub.Store(nodes[0].hub)
			awaitReady(t, nodes...)
			alice := nodes[0].dial(t, "alice")
			alice.subscribe(room)
			bob := nodes[len(nodes)-1].dial(t, "bob")
			bob.subscribe(room)

			alice.send(map[string]any{"action": "whisper", "channel": room, "event": "leave-me", "data": 1})
			r := <-results
			require.ErrorIs(t, r.err, ws.ErrClusterIncomplete, "UnsubscribeUser from alice's own hook: got %v", r.err)
			require.GreaterOrEqual(t, r.took, timeout, "got an answer after %v, want it after ClusterTimeout (%v)", r.took, timeout)
			expectNext(bob, map[string]any{"type": "whisper", "channel": room, "event": "leave-me"})
			expectNext(alice, map[string]any{"type": "unsubscribed", "channel": room})
			quiet(alice) // still connected, and out of the channel only
			require.NoError(t, nodes[0].hub.Publish(context.Background(), room, "after"))
			expectNext(bob, map[string]any{"type": "message", "channel": room, "message": "after"})
			quiet(alice)
		})
	}
}
