package ws_test

import (
	"context"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	ws "github.com/vortechron/go-ws"
	"github.com/vortechron/go-ws/internal/redistest"
)

// Tests of promises made in docs/presence.md and docs/cluster.md that the
// other tests exercise only in passing: the versions presence frames
// carry, an announcement lost without a later one to reveal it, when a
// closed connection's leave is published, and what a user gets before
// DisconnectUser closes its connections.

// expectVersioned reads c's next presence frame of event on channel,
// passing over the fresh "members" lists the server may send at any time
// unless a list is what it waits for, and checks its user, its users and
// its version.
func expectVersioned(c *testClient, channel, event, user string, users []string, version int) {
	c.TB.Helper()
	m := expectNext(c, map[string]any{"type": "presence", "channel": channel, "event": event})
	if user != "" {
		require.Equal(c.TB, user, m["user"].(map[string]any)["id"], "got %v, want %s's %s", m, user, event)
	}
	require.Equal(c.TB, users, memberIDs(c.TB, m), "got %v, want users %v", m, users)
	require.Equal(c.TB, float64(len(users)), m["count"], "got %v, want count %d", m, len(users))
	require.Equal(c.TB, float64(version), m["version"], "got %v, want version %d", m, version)
}

// TestPresenceFramesCarryTheChannelVersion proves, on one memory node and
// on three nodes over Redis, docs/presence.md "Presence frames":
// "`version` numbers the channel's membership changes: every join and
// every leave, anywhere in the cluster, gets the channel's next version
// ... A `members` frame carries the version of its list; a `join` or
// `leave` the version right after it." The official client drops a join
// or leave whose version is not above the last frame it applied, so a
// wrong version here loses members in browsers.
func TestPresenceFramesCarryTheChannelVersion(t *testing.T) {
	for _, b := range nodeBackends {
		t.Run(b.name, func(t *testing.T) {
			var log errorLog
			nodes := b.start(t, 3, ws.Config{}, presenceOptions(&log))
			on := func(i int) *testNode { return nodes[i%len(nodes)] }
			const ch = "presence-versions"

			alice := on(0).dial(t, "alice")
			join(alice, ch)
			expectVersioned(alice, ch, "members", "", []string{"alice"}, 1)

			bob := on(1).dial(t, "bob")
			join(bob, ch)
			expectVersioned(bob, ch, "members", "", []string{"alice", "bob"}, 2)
			expectVersioned(alice, ch, "join", "bob", []string{"alice", "bob"}, 2)

			carol := on(2).dial(t, "carol")
			join(carol, ch)
			expectVersioned(carol, ch, "members", "", []string{"alice", "bob", "carol"}, 3)
			for _, c := range []*testClient{alice, bob} {
				expectVersioned(c, ch, "join", "carol", []string{"alice", "bob", "carol"}, 3)
			}

			// A second tab changes nothing: its list has the same version.
			bobTab := on(0).dial(t, "bob")
			join(bobTab, ch)
			expectVersioned(bobTab, ch, "members", "", []string{"alice", "bob", "carol"}, 3)

			leave(alice, ch)
			for _, c := range []*testClient{bob, carol, bobTab} {
				expectVersioned(c, ch, "leave", "alice", []string{"bob", "carol"}, 4)
			}
			bobTab.Conn.Close() // bob still has a tab: no change, no version
			leave(bob, ch)
			expectVersioned(carol, ch, "leave", "bob", []string{"carol"}, 5)
			quiet(carol)
			require.Empty(t, log.all())
		})
	}
}

// announcementDropper is a RedisBroker that, while armed, swallows the
// next presence announcement (an envelope of kind 'p') and reports
// success, as an announcement lost in the broker would look to the node
// that published it.
type announcementDropper struct {
	*ws.RedisBroker
	armed   atomic.Bool
	dropped atomic.Int64
}

func (b *announcementDropper) Publish(ctx context.Context, channel string, payload []byte) error {
	if len(payload) > 1 && payload[1] == 'p' && b.armed.CompareAndSwap(true, false) {
		b.dropped.Add(1)
		return nil
	}
	return b.RedisBroker.Publish(ctx, channel, payload)
}

// TestPresenceLostAnnouncementIsMadeGoodByMaintenance proves
// docs/presence.md "Ordering": "Presence maintenance (every
// `MaintainInterval` on Redis) also compares each local channel's version
// with the storage's, and sends fresh `members` frames where the
// subscribers are still behind the version the previous round saw, so an
// announcement lost without a later one to reveal the gap is made good
// within two maintenance intervals." Bob's join is lost on its way from
// his node; nothing else happens on the channel, and alice, on the other
// node, still learns of him.
func TestPresenceLostAnnouncementIsMadeGoodByMaintenance(t *testing.T) {
	o := ws.RedisOptions{Addrs: []string{redistest.Addr(t)}, NodeTTL: time.Second, ReapInterval: 100 * time.Millisecond}
	var log errorLog
	brokers := make([]*announcementDropper, 2)
	var interval time.Duration
	nodes := startRedisNodesWith(t, 2, o, ws.Config{}, presenceOptions(&log), func(i int, rb *ws.RedisBroker, s *ws.RedisStorage) ws.MessageBroker {
		interval = s.MaintainInterval()
		brokers[i] = &announcementDropper{RedisBroker: rb}
		return brokers[i]
	})
	awaitReady(t, nodes...)
	const ch = "presence-lost"

	alice := nodes[0].dial(t, "alice")
	alice.subscribePresence(ch, "alice")
	brokers[1].armed.Store(true)
	bob := nodes[1].dial(t, "bob")
	bob.subscribePresence(ch, "alice", "bob")
	require.Equal(t, int64(1), brokers[1].dropped.Load(), "bob's join was not the announcement dropped")

	joined := time.Now()
	m := alice.expectPresence(ch, "members", "", []string{"alice", "bob"}, 2)
	took := time.Since(joined)
	t.Logf("alice got the list with bob %v after his join was lost (MaintainInterval %v)", took.Round(time.Millisecond), interval)
	require.Equal(t, float64(2), m["version"], "got %v, want the list of version 2", m)
	require.Less(t, took, 2*interval+time.Second, "the lost join was made good later than two maintenance intervals")

	// From that list on, announcements apply as usual.
	bob.Conn.Close()
	m = alice.expectPresence(ch, "leave", "bob", []string{"alice"}, 1)
	require.Equal(t, float64(3), m["version"])
	require.Empty(t, log.all())
}

// heldRemoval is a storage whose first RemovePresence of user closes
// removing and waits for release before it goes on.
type heldRemoval struct {
	ws.StorageClient
	user     string
	once     sync.Once
	removing chan struct{}
	release  chan struct{}
}

func (s *heldRemoval) RemovePresence(ctx context.Context, conn ws.PresenceConn) (ws.PresenceEvent, bool, error) {
	if conn.Member.UserID == s.user {
		s.once.Do(func() {
			close(s.removing)
			<-s.release
		})
	}
	return s.StorageClient.RemovePresence(ctx, conn)
}

// TestPresenceLeaveIsPublishedBeforeTheConnectionIsGone proves
// docs/presence.md "Presence: one member per user": "The hub removes a
// closed connection's presence before it counts the connection as gone.
// So once `hub.Stats().Connections` has dropped, or `OnDisconnect` has
// run, the leave has been published." Application code that asks who is
// online from OnDisconnect, or after the count dropped, must not still
// see the user who left. The storage holds alice's removal until the test
// has checked she still counts.
func TestPresenceLeaveIsPublishedBeforeTheConnectionIsGone(t *testing.T) {
	ends := []struct {
		name string
		end  func(t *testing.T, c *testClient)
	}{
		{"close frame", func(t *testing.T, c *testClient) {
			require.NoError(t, c.Conn.WriteMessage(8, []byte{0x03, 0xe8})) // close 1000
		}},
		{"dropped TCP connection", func(t *testing.T, c *testClient) { c.drop() }},
	}
	backends := map[string]func(testing.TB) backend{
		"memory": func(testing.TB) backend { return memoryBackend() },
		"redis":  redisBackend,
	}
	for name, makeBackend := range backends {
		for _, end := range ends {
			t.Run(name+"/"+end.name, func(t *testing.T) {
				be := makeBackend(t)
				broker := &leaveCounter{MessageBroker: be.newBroker(t)}
				storage := &heldRemoval{StorageClient: be.newStorage(t), user: "alice",
					removing: make(chan struct{}), release: make(chan struct{})}
				type seen struct {
					leaves  int64
					members []string
					err     error
				}
				atDisconnect := make(chan seen, 1)
				var hub atomic.Pointer[ws.Hub]
				var log errorLog
				opts := presenceOptions(&log)
				const ch = "presence-gone"
				opts.OnDisconnect = func(c *ws.Client) {
					if c.UserID != "alice" {
						return
					}
					ms, err := hub.Load().PresenceMembers(context.Background(), ch)
					s := seen{leaves: broker.leaves.Load(), err: err}
					for _, m := range ms {
						s.members = append(s.members, m.UserID)
					}
					atDisconnect <- s
				}
				n := newNode(t, broker, storage, ws.Config{}, opts)
				hub.Store(n.hub)
				var released sync.Once
				release := func() { released.Do(func() { close(storage.release) }) }
				t.Cleanup(release) // before the node stops, should the test fail first

				bob := n.dial(t, "bob")
				bob.subscribePresence(ch, "bob")
				alice := n.dial(t, "alice")
				alice.subscribePresence(ch, "alice", "bob")
				bob.expectPresence(ch, "join", "alice", []string{"alice", "bob"}, 2)

				end.end(t, alice)
				<-storage.removing
				// bob's subscribe goes through the hub after whatever
				// alice's end has done so far: her removal is under way,
				// and she still counts.
				join(bob, "news")
				require.Equal(t, int64(2), n.hub.Stats().Connections, "Stats().Connections while alice's presence is being removed")
				require.Zero(t, broker.leaves.Load())
				release()

				n.waitConnections(t, 1)
				// No waiting from here on: the count has dropped.
				require.Equal(t, int64(1), broker.leaves.Load(), "leaves published once Stats().Connections dropped")
				require.Equal(t, []string{"bob"}, n.members(t, ch), "members once Stats().Connections dropped")

				s := <-atDisconnect
				require.NoError(t, s.err)
				require.Equal(t, int64(1), s.leaves, "leaves published when OnDisconnect ran")
				require.Equal(t, []string{"bob"}, s.members, "members when OnDisconnect ran")
				bob.expectPresence(ch, "leave", "alice", []string{"bob"}, 1)
				require.Empty(t, log.all())
			})
		}
	}
}

// TestPublishToUserThenDisconnectUser proves docs/cluster.md
// "DisconnectUser": "closes each connection of the user, on every node,
// with close code 4010 ..., after the frames already queued to it. ...
// Messages sent with `PublishToUser` before the call, from the same
// goroutine, reach the user's connections before the close." The user's
// tabs are on both nodes of a Redis cluster. The one on the other node
// reads slowly and not at all until DisconnectUser has returned, so when
// the close begins its node holds frames it has not written yet: the
// first burst fills the socket and the second waits in the queue behind
// it (a witness on that node, sent to after the first burst, shows the
// node has queued it).
func TestPublishToUserThenDisconnectUser(t *testing.T) {
	addr := redistest.Addr(t)
	nodes := redisNodes(t, 2, ws.RedisOptions{Addrs: []string{addr}}, ws.Config{}, userOptions())
	near := nodes[0].dial(t, "alice")
	far := nodes[1].dialSlowReader(t, "alice")
	witness := nodes[1].dial(t, "witness")
	for _, c := range []*testClient{near, far, witness} {
		quiet(c) // registered, so in the node's user index
	}
	ctx := apiCtx(t)
	const first, second = 40, 10
	pad := strings.Repeat("x", 1<<10)
	send := func(from, to int) {
		for i := from; i < to; i++ {
			require.NoError(t, nodes[0].hub.PublishToUser(ctx, "alice", map[string]any{"i": i, "pad": pad}, ws.PublishOptions{Event: "note"}))
		}
	}
	send(0, first)
	require.NoError(t, nodes[0].hub.PublishToUser(ctx, "witness", "sync", ws.PublishOptions{}))
	expectNext(witness, map[string]any{"type": "message", "message": "sync"})
	send(first, first+second)
	require.NoError(t, nodes[0].hub.DisconnectUser(ctx, "alice"))

	for name, c := range map[string]*testClient{"tab on the calling node": near, "tab on the other node": far} {
		_ = c.Conn.SetReadDeadline(time.Now().Add(30 * time.Second))
		for i := range first + second {
			var m map[string]any
			err := c.Conn.ReadJSON(&m)
			require.NoError(t, err, "%s: got %v after %d of %d messages, want every message before the close", name, err, i, first+second)
			require.Equal(t, "message", m["type"], "%s: got %v, want message %d", name, m, i)
			got := m["message"].(map[string]any)["i"]
			require.Equal(t, float64(i), got, "%s: got message %v, want %d", name, got, i)
		}
		require.Equal(t, ws.CloseTerminated, c.expectClose(), "%s: close code", name)
	}
	nodes[0].waitConnections(t, 0)
	nodes[1].waitConnections(t, 1) // the witness
}
