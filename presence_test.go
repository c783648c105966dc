package ws_test

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	ws "github.com/vortechron/go-ws"
)

// TestPresenceMembersJoinAndLeave walks one presence channel through
// joins and leaves, on one node and spread over three: each subscriber
// gets the member list (sorted, with GetUserInfo's info), the others see
// join and leave frames that name the user and carry the list, and
// hub.PresenceMembers agrees.
func TestPresenceMembersJoinAndLeave(t *testing.T) {
	for _, nodes := range []int{1, 3} {
		t.Run(fmt.Sprintf("%d nodes", nodes), func(t *testing.T) {
			var log errorLog
			cluster := newCluster(t, nodes, ws.Config{}, presenceOptions(&log))
			on := func(i int) *testNode { return cluster[i%len(cluster)] }
			const ch = "presence-room-1"

			bob := on(0).dial(t, "bob")
			m := bob.subscribePresence(ch, "bob")
			require.Equal(t, []any{map[string]any{"id": "bob", "info": map[string]any{"name": "BOB"}}}, m["users"],
				"each member carries the info GetUserInfo returned")

			alice := on(1).dial(t, "alice")
			alice.subscribePresence(ch, "alice", "bob")
			j := bob.expectPresence(ch, "join", "alice", []string{"alice", "bob"}, 2)
			require.Equal(t, map[string]any{"id": "alice", "info": map[string]any{"name": "ALICE"}}, j["user"])

			carol := on(2).dial(t, "carol")
			carol.subscribePresence(ch, "alice", "bob", "carol")
			for _, c := range []*testClient{bob, alice} {
				c.expectPresence(ch, "join", "carol", []string{"alice", "bob", "carol"}, 3)
			}
			for _, n := range cluster {
				require.Equal(t, []string{"alice", "bob", "carol"}, n.members(t, ch))
			}

			alice.send(map[string]any{"action": "unsubscribe", "channel": ch})
			alice.expect(map[string]any{"type": "unsubscribed", "channel": ch})
			for _, c := range []*testClient{bob, carol} {
				c.expectPresence(ch, "leave", "alice", []string{"bob", "carol"}, 2)
			}
			alice.expectQuiet() // the leaver does not hear its own leave

			carol.Conn.Close() // close without a close frame handshake from us
			bob.expectPresence(ch, "leave", "carol", []string{"bob"}, 1)
			require.Equal(t, []string{"bob"}, on(0).members(t, ch))
			require.Empty(t, log.all())
		})
	}
}

// TestPresenceIsPerUser opens three tabs for one user, on one node and on
// three, and checks the others see one join when the first tab subscribes
// and one leave only when the last tab is gone, whichever way the tabs
// go: a close frame, a dropped TCP connection, an unsubscribe.
func TestPresenceIsPerUser(t *testing.T) {
	for _, nodes := range []int{1, 3} {
		t.Run(fmt.Sprintf("%d nodes", nodes), func(t *testing.T) {
			var log errorLog
			cluster := newCluster(t, nodes, ws.Config{}, presenceOptions(&log))
			on := func(i int) *testNode { return cluster[i%len(cluster)] }
			const ch = "presence-doc-7"

			bob := on(0).dial(t, "bob")
			bob.subscribePresence(ch, "bob")

			tabs := make([]*testClient, 3)
			for i := range tabs {
				tabs[i] = on(i).dial(t, "alice")
				tabs[i].subscribePresence(ch, "alice", "bob")
				if i == 0 {
					bob.expectPresence(ch, "join", "alice", []string{"alice", "bob"}, 2)
				}
			}
			bob.expectQuiet() // one join for three tabs
			require.Equal(t, []string{"alice", "bob"}, on(0).members(t, ch))

			// Tab 0 closes cleanly, tab 1 drops its TCP connection.
			require.NoError(t, tabs[0].Conn.WriteMessage(8, []byte{0x03, 0xe8})) // close 1000
			tabs[1].drop()
			if nodes == 1 {
				on(0).waitConnections(t, 2) // bob and tab 2
			} else {
				on(0).waitConnections(t, 1) // bob
				on(1).waitConnections(t, 0)
			}
			bob.expectQuiet() // alice still has a tab open: no leave
			require.Equal(t, []string{"alice", "bob"}, on(0).members(t, ch))

			tabs[2].send(map[string]any{"action": "unsubscribe", "channel": ch})
			tabs[2].expect(map[string]any{"type": "unsubscribed", "channel": ch})
			bob.expectPresence(ch, "leave", "alice", []string{"bob"}, 1)
			bob.expectQuiet()
			require.Equal(t, []string{"bob"}, on(0).members(t, ch))

			// Subscribing again is a new join.
			tabs[2].subscribePresence(ch, "alice", "bob")
			bob.expectPresence(ch, "join", "alice", []string{"alice", "bob"}, 2)
			require.Empty(t, log.all())
		})
	}
}

// TestPresenceLeaveOnEveryKindOfDisconnect checks that a member whose
// connection ends without an unsubscribe is seen to leave, for each way
// a connection can end, and that OnDisconnect says which way it was.
func TestPresenceLeaveOnEveryKindOfDisconnect(t *testing.T) {
	cases := []struct {
		name   string
		cfg    ws.Config
		dial   func(tb testing.TB, n *testNode) *testClient
		end    func(t *testing.T, n *testNode, gone, observer *testClient)
		reason func(t *testing.T, err error)
	}{
		{
			name: "close frame",
			end: func(t *testing.T, n *testNode, gone, _ *testClient) {
				require.NoError(t, gone.Conn.WriteMessage(8, []byte{0x03, 0xe8}))
			},
			reason: func(t *testing.T, err error) {
				var pe *ws.PeerCloseError
				require.ErrorAs(t, err, &pe)
				require.Equal(t, ws.CloseNormal, pe.Code)
			},
		},
		{
			name: "abrupt TCP close",
			end: func(t *testing.T, n *testNode, gone, _ *testClient) {
				gone.drop()
			},
			reason: func(t *testing.T, err error) {
				var pe *ws.PeerCloseError
				require.NotErrorAs(t, err, &pe, "got %v, want a read error, not a close frame", err)
				require.Error(t, err)
			},
		},
		{
			name: "ping timeout",
			// The observer reads all the time, so gorilla answers its
			// pings; the leaving client never reads again.
			cfg: ws.Config{PingInterval: 50 * time.Millisecond, PongTimeout: time.Second},
			end: func(t *testing.T, n *testNode, gone, _ *testClient) {},
			reason: func(t *testing.T, err error) {
				var cr *ws.CloseReason
				require.ErrorAs(t, err, &cr)
				require.Equal(t, ws.ClosePingTimeout, cr.Code)
			},
		},
		{
			name: "slow consumer",
			cfg:  ws.Config{SendQueueSize: 64, SendQueueBytes: 64 << 10, WriteTimeout: time.Second},
			dial: func(tb testing.TB, n *testNode) *testClient { return n.dialSlowReader(tb, "alice") },
			end: func(t *testing.T, n *testNode, gone, observer *testClient) {
				// Publish until alice, who stopped reading, overflows; the
				// observer reads each publication before the next.
				// Fan-out is asynchronous, so alice's leave may reach the
				// observer before the publication that follows her
				// overflow; it is kept for the checks after end.
				payload := strings.Repeat("x", 8<<10)
				for i := 0; n.hub.Stats().SlowConsumers == 0; i++ {
					require.Less(t, i, 20000, "alice was never disconnected as a slow consumer")
					require.NoError(t, n.hub.Publish(context.Background(), "presence-room-1", payload))
					for {
						m := observer.next()
						if m["type"] == "message" {
							break
						}
						observer.Unread = append(observer.Unread, m)
					}
				}
			},
			reason: func(t *testing.T, err error) {
				require.ErrorIs(t, err, ws.ErrSlowConsumer)
			},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var log errorLog
			var reason atomic.Pointer[error]
			opts := presenceOptions(&log)
			opts.OnDisconnect = func(c *ws.Client) {
				if c.UserID == "alice" {
					err := c.DisconnectReason()
					reason.Store(&err)
				}
			}
			n := newNode(t, nil, nil, tc.cfg, opts)
			const ch = "presence-room-1"
			bob := n.dial(t, "bob")
			bob.subscribePresence(ch, "bob")
			var alice *testClient
			if tc.dial != nil {
				alice = tc.dial(t, n)
			} else {
				alice = n.dial(t, "alice")
			}
			alice.subscribePresence(ch, "alice", "bob")
			bob.expectPresence(ch, "join", "alice", []string{"alice", "bob"}, 2)

			tc.end(t, n, alice, bob)
			m := bob.nextOfType("presence")
			require.Equal(t, "leave", m["event"], "got %v, want alice's leave", m)
			require.Equal(t, "alice", m["user"].(map[string]any)["id"])
			require.Equal(t, []string{"bob"}, memberIDs(t, m))
			require.Equal(t, []string{"bob"}, n.members(t, ch))
			n.waitConnections(t, 1)
			require.NotNil(t, reason.Load(), "OnDisconnect ran for alice")
			tc.reason(t, *reason.Load())
		})
	}
}

// TestPresenceLargeChannelOmitsUsers sets PresenceUsersLimit to 3 and
// checks join and leave frames carry users only while the channel has at
// most 3 members, while every new subscriber still gets the full list.
func TestPresenceLargeChannelOmitsUsers(t *testing.T) {
	var log errorLog
	n := newNode(t, nil, nil, ws.Config{PresenceUsersLimit: 3}, presenceOptions(&log))
	const ch = "presence-big"
	users := []string{"u1", "u2", "u3", "u4", "u5"}
	clients := make([]*testClient, len(users))
	for i, u := range users {
		clients[i] = n.dial(t, u)
		clients[i].subscribePresence(ch, users[:i+1]...) // full list, even above the limit
		for _, prev := range clients[:i] {
			if i+1 <= 3 {
				prev.expectPresence(ch, "join", u, users[:i+1], i+1)
			} else {
				prev.expectPresence(ch, "join", u, nil, i+1)
			}
		}
	}
	// 5 -> 4 members: still above the limit. 4 -> 3: the list is back.
	clients[4].Conn.Close()
	for _, c := range clients[:4] {
		c.expectPresence(ch, "leave", "u5", nil, 4)
	}
	clients[3].Conn.Close()
	for _, c := range clients[:3] {
		c.expectPresence(ch, "leave", "u4", []string{"u1", "u2", "u3"}, 3)
	}
}

// TestPresenceLeaveAboveLimitDoesNotListMembers checks the cost side of
// PresenceUsersLimit: the storage gives each leave its member count, so a
// leave from a channel above the limit asks the storage for nothing more,
// never for the list, and emptying a channel of n members is O(n)
// storage work, not O(n^2).
func TestPresenceLeaveAboveLimitDoesNotListMembers(t *testing.T) {
	storage := &countingStorage{MemoryStorage: ws.NewMemoryStorage()}
	var log errorLog
	n := newNode(t, nil, storage, ws.Config{PresenceUsersLimit: 2}, presenceOptions(&log))
	const ch = "presence-big"
	const total = 12
	observer := n.dial(t, "observer")
	observer.subscribePresence(ch, "observer")
	clients := make([]*testClient, total)
	for i := range clients {
		clients[i] = n.dial(t, fmt.Sprintf("u%02d", i))
		clients[i].subscribe(ch)
		clients[i].nextOfType("presence")
		observer.nextOfType("presence")
	}
	listsBefore := storage.listCalls.Load()
	// total+1 members; leave until 3 remain: every one of these leaves
	// leaves the channel above the limit.
	for i := range total - 2 {
		clients[i].Conn.Close()
		observer.expectPresence(ch, "leave", fmt.Sprintf("u%02d", i), nil, total-i)
	}
	require.Equal(t, listsBefore, storage.listCalls.Load(), "leaves above the limit listed the members")
	require.Zero(t, storage.countCalls.Load(), "the count comes with the leave from the storage, not from another call")
	// At the limit the list is back.
	clients[total-2].Conn.Close()
	observer.expectPresence(ch, "leave", fmt.Sprintf("u%02d", total-2), []string{"observer", fmt.Sprintf("u%02d", total-1)}, 2)
}

// TestPresenceRequiresAnIdentifiedUser checks an anonymous connection can
// neither join a presence channel nor appear in one, even when the
// authorization hook would let anyone in.
func TestPresenceRequiresAnIdentifiedUser(t *testing.T) {
	var log errorLog
	opts := presenceOptions(&log)
	opts.AuthHandler = func(string, string) bool { return true }
	n := newNode(t, nil, nil, ws.Config{}, opts)
	const ch = "presence-room-1"
	bob := n.dial(t, "bob")
	bob.subscribePresence(ch, "bob")
	anon := n.dial(t, "")
	anon.send(map[string]any{"action": "subscribe", "channel": ch})
	anon.expect(map[string]any{"type": "error", "code": ws.CodeUnauthorized, "channel": ch})
	require.Equal(t, "", lastError[*ws.AuthError](t, &log).UserID)
	bob.expectQuiet()
	require.Equal(t, []string{"bob"}, n.members(t, ch))
}

// TestPresenceMembersAPI checks hub.PresenceMembers: sorted by user ID,
// one entry per user with its info, empty for an unknown channel, and an
// ErrInvalidChannel for a bad name.
func TestPresenceMembersAPI(t *testing.T) {
	var log errorLog
	n := newNode(t, nil, nil, ws.Config{}, presenceOptions(&log))
	const ch = "presence-room-1"
	for _, u := range []string{"carol", "alice", "bob", "alice"} {
		c := n.dial(t, u)
		c.subscribe(ch)
		c.nextOfType("presence")
	}
	ms, err := n.hub.PresenceMembers(context.Background(), ch)
	require.NoError(t, err)
	require.Len(t, ms, 3)
	for i, want := range []string{"alice", "bob", "carol"} {
		require.Equal(t, want, ms[i].UserID)
		require.JSONEq(t, fmt.Sprintf(`{"name":%q}`, strings.ToUpper(want)), string(ms[i].Info))
	}
	empty, err := n.hub.PresenceMembers(context.Background(), "presence-nobody")
	require.NoError(t, err)
	require.Empty(t, empty)
	_, err = n.hub.PresenceMembers(context.Background(), "bad name")
	require.ErrorIs(t, err, ws.ErrInvalidChannel)
}

// TestPresenceStorageFailures checks what clients see when the presence
// storage fails: a failed add refuses the subscription (error, then
// unsubscribed) and nobody hears of a join; a failed list still announces
// the join, without a users list that would claim the channel is empty,
// and tells the joiner its list is unavailable (she is subscribed, and
// subscribing again brings the list). The error frames say only
// that the service is unavailable; ErrorHandler gets an
// *UnavailableError that matches ErrStorageUnavailable and carries the
// storage's own error, and Stats count it under "storage".
func TestPresenceStorageFailures(t *testing.T) {
	storage := &failingStorage{MemoryStorage: ws.NewMemoryStorage()}
	var log errorLog
	n := newNode(t, nil, storage, ws.Config{}, presenceOptions(&log))
	const ch = "presence-room-1"
	bob := n.dial(t, "bob")
	bob.subscribePresence(ch, "bob")

	storage.failAdd.Store(true)
	alice := n.dial(t, "alice")
	alice.subscribe(ch)
	m := alice.expect(map[string]any{"type": "error", "code": ws.CodeUnavailable, "action": "subscribe", "channel": ch})
	require.NotContains(t, m["error"], "storage down", "the error frame must not carry the backend's text")
	alice.expect(map[string]any{"type": "unsubscribed", "channel": ch})
	ue := lastError[*ws.UnavailableError](t, &log)
	require.ErrorIs(t, ue, ws.ErrStorageUnavailable)
	require.ErrorIs(t, ue, errStorageDown)
	require.Equal(t, ch, ue.Channel)
	require.Equal(t, int64(1), n.hub.Stats().Errors["storage"], `Stats.Errors["storage"]`)
	require.Equal(t, int64(0), n.hub.Stats().Errors["protocol"], `Stats.Errors["protocol"]`)
	bob.expectQuiet()
	require.Equal(t, []string{"bob"}, n.members(t, ch))
	storage.failAdd.Store(false)

	storage.failList.Store(true)
	alice.subscribe(ch)
	alice.expect(map[string]any{"type": "error", "code": ws.CodeUnavailable, "action": "subscribe", "channel": ch})
	bob.expectPresence(ch, "join", "alice", nil, 2) // the count comes with the join, the list could not be read
	storage.failList.Store(false)
	require.Equal(t, []string{"alice", "bob"}, n.members(t, ch))
	// alice is subscribed and a member already; subscribing again, as the
	// error frame asks, brings her the list and tells nobody anything.
	alice.subscribePresence(ch, "alice", "bob")
	bob.expectQuiet()

	alice.Conn.Close()
	bob.expectPresence(ch, "leave", "alice", []string{"bob"}, 1)
}

// flakyPresenceBroker refuses the first failures presence announcements
// (envelopes of kind 'p'), as Redis timing out under load would, and
// passes everything else.
type flakyPresenceBroker struct {
	ws.MessageBroker
	failures atomic.Int64
}

func (b *flakyPresenceBroker) Publish(ctx context.Context, channel string, payload []byte) error {
	if len(payload) > 1 && payload[1] == 'p' && b.failures.Add(-1) >= 0 {
		return ws.ErrBrokerUnavailable
	}
	return b.MessageBroker.Publish(ctx, channel, payload)
}

// TestPresenceAnnouncementIsRetried: a join or leave whose publish fails
// is published again, so the other members hear of it even when nothing
// else happens on the channel afterwards.
func TestPresenceAnnouncementIsRetried(t *testing.T) {
	broker := &flakyPresenceBroker{MessageBroker: ws.NewMemoryBroker()}
	var log errorLog
	n := newNode(t, broker, nil, ws.Config{}, presenceOptions(&log))
	const ch = "presence-retry"
	alice := n.dial(t, "alice")
	alice.subscribePresence(ch, "alice")
	broker.failures.Store(2) // bob's join fails twice, then goes through
	bob := n.dial(t, "bob")
	bob.subscribePresence(ch, "alice", "bob")
	alice.expectPresence(ch, "join", "bob", []string{"alice", "bob"}, 2)
	broker.failures.Store(1) // and bob's leave once
	bob.Conn.Close()
	alice.expectPresence(ch, "leave", "bob", []string{"alice"}, 1)
	require.Equal(t, int64(3), n.hub.Stats().Errors["broker"], `Stats.Errors["broker"]: the failed attempts`)
}

// TestPresenceJoinOutlastsOverlappedReads: a joining client's member list
// is read after its join, and read again while it comes back older than
// what the node's subscribers already have (announcements of later changes
// overtook the read). Under churn that happens several times in a row;
// the client still gets its members frame, and the announcements after
// it. (Before, after three such reads the client was left waiting for a
// list that never came: the reload soak saw it.)
func TestPresenceJoinOutlastsOverlappedReads(t *testing.T) {
	const ch = "presence-overlap"
	storage := newStaleStorage(ch)
	var log errorLog
	n := newNode(t, nil, storage, ws.Config{}, presenceOptions(&log))
	alice := n.dial(t, "alice")
	alice.subscribePresence(ch, "alice")
	bob := n.dial(t, "bob")
	bob.subscribePresence(ch, "alice", "bob")
	alice.expectPresence(ch, "join", "bob", []string{"alice", "bob"}, 2)

	// carol joins and reads the list; bob leaves while her read is on its
	// way, and the node delivers his leave before her list comes back.
	storage.stale.Store(6)
	carol := n.dial(t, "carol")
	carol.subscribe(ch)
	<-storage.held
	bob.Conn.Close()
	for {
		m := alice.nextOfType("presence")
		if u, _ := m["user"].(map[string]any); m["event"] == "leave" && u["id"] == "bob" {
			break
		}
	}
	close(storage.gate)
	carol.expectPresence(ch, "members", "", []string{"alice", "carol"}, 2)
	// Once the gate opened, only carol's join reads the list (the node's
	// resync for bob's leave read it before): she got more stale lists
	// than the three reads the join used to give up after.
	require.Greater(t, storage.late.Load(), int64(3), "carol's list came back older than the node's more than three times")

	dave := n.dial(t, "dave")
	dave.subscribePresence(ch, "alice", "carol", "dave")
	carol.expectPresence(ch, "join", "dave", []string{"alice", "carol", "dave"}, 3)
	require.Empty(t, log.all())
}

// TestPresenceListHasItsOwnDeadline: a join that the storage records
// only just before the call's deadline (as under a reconnect storm,
// where joins took up to 4 s) still gets its member list, read within a
// deadline of its own, instead of an unavailable error that makes the
// client subscribe again.
func TestPresenceListHasItsOwnDeadline(t *testing.T) {
	storage := &slowPresenceStorage{MemoryStorage: ws.NewMemoryStorage(), joinLeft: 300 * time.Millisecond, listTook: time.Second}
	var log errorLog
	n := newNode(t, nil, storage, ws.Config{}, presenceOptions(&log))
	const ch = "presence-room-1"
	alice := n.dial(t, "alice")
	alice.subscribe(ch)
	// The join's deadline is 5 s away and the list comes a second after it.
	m := alice.nextSlow()
	require.Equal(t, "presence", m["type"], "the list, not %v", m)
	require.Equal(t, "members", m["event"], "%v", m)
	require.Equal(t, float64(1), m["count"], "%v", m)
	require.Equal(t, int64(0), n.hub.Stats().Errors["storage"], `Stats.Errors["storage"]`)
}

// TestPresenceLeaveListHasItsOwnDeadline: a leave that the storage
// records only just before the call's deadline is still announced with
// the member list, read within a deadline of its own (before, the list
// read ran out of what was left, and the leave went out without it and
// counted a storage error).
func TestPresenceLeaveListHasItsOwnDeadline(t *testing.T) {
	storage := &slowPresenceStorage{MemoryStorage: ws.NewMemoryStorage(), leaveLeft: 300 * time.Millisecond, listTook: time.Second}
	var log errorLog
	n := newNode(t, nil, storage, ws.Config{}, presenceOptions(&log))
	const ch = "presence-room-1"
	alice := n.dial(t, "alice")
	alice.subscribePresence(ch, "alice")
	bob := n.dial(t, "bob")
	bob.subscribePresence(ch, "alice", "bob")
	alice.expectPresence(ch, "join", "bob", []string{"alice", "bob"}, 2)
	require.NoError(t, bob.Conn.Close())
	// The leave's deadline is 5 s away and its list comes a second after it.
	m := alice.nextSlow()
	require.Equal(t, "presence", m["type"], "the leave, not %v", m)
	require.Equal(t, "leave", m["event"], "%v", m)
	require.Equal(t, float64(1), m["count"], "%v", m)
	require.Equal(t, []string{"alice"}, memberIDs(t, m), "users of %v", m)
	require.Equal(t, int64(0), n.hub.Stats().Errors["storage"], `Stats.Errors["storage"]`)
	require.Empty(t, log.all(), "errors reported")
}
