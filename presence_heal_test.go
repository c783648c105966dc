package ws_test

import (
	"encoding/json"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	ws "github.com/vortechron/go-ws"
	"github.com/vortechron/go-ws/internal/redistest"
)

// TestRedisPresenceHealsAfterDataLoss is issue 11's acceptance test for
// presence that heals. Three nodes share a Redis of the test's own, with
// alice, bob and carol subscribed to a presence channel, one on each
// node. Redis then loses every key: FLUSHALL, and separately a kill and a
// restart without persistence. Within NodeTTL of Redis serving again,
// every node's PresenceMembers lists them again, and dave, who subscribes
// right after the loss (so his members frame may lack them), holds the
// full list by applying the corrective joins.
func TestRedisPresenceHealsAfterDataLoss(t *testing.T) {
	for _, tt := range []struct {
		name string
		lose func(t *testing.T, srv *redistest.Server)
	}{
		{"FLUSHALL", func(t *testing.T, srv *redistest.Server) {
			out, err := srv.CLI(t.Context(), "FLUSHALL")
			require.NoError(t, err, "FLUSHALL: %s", out)
		}},
		{"restart without persistence", func(t *testing.T, srv *redistest.Server) {
			srv.Kill()
			require.NoError(t, srv.Restart())
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			srv := redistest.StartServer(t)
			const nodeTTL = 3 * time.Second
			var log errorLog
			nodes := redisNodes(t, 3, ws.RedisOptions{Addrs: []string{srv.Addr}, NodeTTL: nodeTTL, HealthInterval: 100 * time.Millisecond},
				ws.Config{}, presenceOptions(&log))
			const ch = "presence-heal"
			alice := nodes[0].dial(t, "alice")
			alice.subscribePresence(ch, "alice")
			bob := nodes[1].dial(t, "bob")
			bob.subscribePresence(ch, "alice", "bob")
			alice.expectPresence(ch, "join", "bob", []string{"alice", "bob"}, 2)
			carol := nodes[2].dial(t, "carol")
			carol.subscribePresence(ch, "alice", "bob", "carol")
			for _, c := range []*testClient{alice, bob} {
				c.expectPresence(ch, "join", "carol", []string{"alice", "bob", "carol"}, 3)
			}

			tt.lose(t, srv)
			back := time.Now()
			require.Eventually(t, func() bool {
				for _, n := range nodes {
					if !n.hub.Health().BrokerHealthy {
						return false
					}
				}
				return true
			}, 10*time.Second, 5*time.Millisecond, "brokers did not reconnect")

			dave := nodes[2].dial(t, "dave")
			dave.subscribe(ch)
			want := []string{"alice", "bob", "carol", "dave"}
			list := dave.keepMembers(t, ch, nil, want, back.Add(nodeTTL))
			require.Equal(t, want, list, "dave's list by NodeTTL (%v) after Redis was back", nodeTTL)
			// The members who were there all along keep whole lists: the
			// loss announced no leave, and what the nodes put back reaches
			// them as joins (or a fresh list) that change nothing.
			for _, c := range []*testClient{alice, bob, carol} {
				had := []string{"alice", "bob", "carol"}
				require.Equal(t, want, c.keepMembers(t, ch, had, want, back.Add(nodeTTL)), "an observer's list")
			}
			for i, n := range nodes {
				require.Equal(t, want, n.members(t, ch), "node %d's PresenceMembers", i)
			}
			t.Logf("%s: every member was back for dave %v after Redis served again (bound NodeTTL = %v)",
				tt.name, time.Since(back).Round(time.Millisecond), nodeTTL)
		})
	}
}

// keepMembers reads c's frames until deadline, keeping channel's member
// list, which starts as had, as docs/presence.md tells clients to (reset
// on members, add on join, delete on leave), and returns the list as soon
// as it equals want, or as it stands at deadline.
func (c *testClient) keepMembers(t *testing.T, channel string, had, want []string, deadline time.Time) []string {
	t.Helper()
	members := map[string]bool{}
	for _, id := range had {
		members[id] = true
	}
	list := func() []string {
		var out []string
		for id := range members {
			out = append(out, id)
		}
		slices.Sort(out)
		return out
	}
	_ = c.Conn.SetReadDeadline(deadline)
	for !slices.Equal(list(), want) {
		_, b, err := c.Conn.ReadMessage()
		if err != nil {
			t.Logf("stopped reading: %v", err)
			return list()
		}
		var f struct {
			Type, Channel, Event string
			User                 *ws.PresenceMember
			Users                []ws.PresenceMember
		}
		require.NoError(t, json.Unmarshal(b, &f), "frame %s", b)
		if f.Type != "presence" || f.Channel != channel {
			continue
		}
		switch f.Event {
		case "members":
			clear(members)
			for _, m := range f.Users {
				members[m.UserID] = true
			}
		case "join":
			members[f.User.UserID] = true
		case "leave":
			delete(members, f.User.UserID)
		}
	}
	return list()
}
