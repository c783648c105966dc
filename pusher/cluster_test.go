package pusher_test

import (
	"context"
	"net/url"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	ws "github.com/vortechron/go-ws"
	"github.com/vortechron/go-ws/internal/redistest"
	"github.com/vortechron/go-ws/pusher"
)

// redisNodes starts n nodes on the Redis at redistest.Addr, sharing one
// key prefix, each with the options opts(i) returns.
func redisNodes(t *testing.T, n int, opts func(i int) *pusher.Options) []*node {
	return redisNodesWith(t, n, func(i int) (ws.Config, *pusher.Options) { return wsConfig(), opts(i) })
}

// redisNodesWith is redisNodes with a hub configuration per node too.
func redisNodesWith(t *testing.T, n int, setup func(i int) (ws.Config, *pusher.Options)) []*node {
	t.Helper()
	addr := redistest.Addr(t)
	o := ws.RedisOptions{Addrs: []string{addr}, KeyPrefix: redistest.Prefix(t)}
	redistest.CleanupKeys(t, addr, o.KeyPrefix)
	nodes := make([]*node, n)
	for i := range nodes {
		b, err := ws.NewRedisBrokerWithOptions(o)
		require.NoError(t, err)
		s, err := ws.NewRedisStorageWithOptions(o)
		require.NoError(t, err)
		cfg, opts := setup(i)
		nodes[i] = newNode(t, b, s, cfg, opts, nil)
	}
	awaitReady(t, nodes...) // each hears the others' cluster requests
	return nodes
}

// TestLaravelEchoOnTwoNodes runs the Echo scenario with alice on node A
// and bob on node B of a Redis cluster, and the server SDK talking to A:
// presence, whispers and every publication cross the nodes, and arrive
// once (the scenario checks no event is left over).
func TestLaravelEchoOnTwoNodes(t *testing.T) {
	nodeBin(t)
	nodes := redisNodes(t, 2, func(int) *pusher.Options { return userOptions() })
	runScenario(t, "echo.mjs", nodes...).finish()
}

// TestTwoNodes checks with Go clients that an HTTP API event on node A
// reaches a client on node B once, that presence and client events cross
// nodes, and that member webhooks are sent once per cluster, by the node
// that decided the change, though both nodes send webhooks.
func TestTwoNodes(t *testing.T) {
	sink := newHookSink(t)
	var hooks []*pusher.Webhooks
	nodes := redisNodesWith(t, 2, func(int) (ws.Config, *pusher.Options) {
		o := userOptions()
		wh := &pusher.Webhooks{URL: sink.url, BatchWait: 10 * time.Millisecond, Events: []string{pusher.WebhookChannelOccupied,
			pusher.WebhookChannelVacated, pusher.WebhookMemberAdded, pusher.WebhookMemberRemoved}}
		o.Webhooks = wh
		hooks = append(hooks, wh)
		cfg := wsConfig()
		cfg.OnChannelOccupied, cfg.OnChannelVacated = wh.ChannelOccupied, wh.ChannelVacated
		return cfg, o
	})
	a, b := nodes[0], nodes[1]

	onB := b.dial(t, nil)
	onB.subscribe("news")
	require.Equal(t, map[string]any{"name": "channel_occupied", "channel": "news"}, sink.next())
	onB.subscribe("presence-room", "bea")
	require.ElementsMatch(t, []map[string]any{
		{"name": "channel_occupied", "channel": "presence-room"},
		{"name": "member_added", "channel": "presence-room", "user_id": "bea"},
	}, []map[string]any{sink.next(), sink.next()})

	// A second node's subscribers of an occupied channel: no webhook.
	onA := a.dial(t, nil)
	onA.subscribe("news")
	onA.subscribe("presence-room", "abe")
	f := onB.expect("pusher_internal:member_added", "presence-room")
	require.Equal(t, "abe", f["data"].(map[string]any)["user_id"])
	require.Equal(t, map[string]any{"name": "member_added", "channel": "presence-room", "user_id": "abe"}, sink.next())

	a.trigger(t, map[string]any{"name": "Posted", "channel": "news", "data": `{"n":1}`})
	f = onB.expect("Posted", "news")
	require.Equal(t, map[string]any{"n": 1.0}, f["data"])

	onA.send("client-typing", map[string]any{"who": "abe"}, "presence-room")
	f = onB.expect("client-typing", "presence-room")
	require.Equal(t, "abe", f["user_id"])
	onB.quiet() // the event came once

	// The users list is the cluster's, asked on either node.
	for _, n := range nodes {
		status, body := n.api(t, "GET", "/apps/app-1/channels/presence-room/users", nil, nil, time.Now(), testApp.Secret)
		require.Equal(t, 200, status, body)
		require.JSONEq(t, `{"users":[{"id":"abe"},{"id":"bea"}]}`, body)
	}

	// Occupancy is the cluster's, asked on either node.
	for _, n := range nodes {
		status, body := n.api(t, "GET", "/apps/app-1/channels", nil, nil, time.Now(), testApp.Secret)
		require.Equal(t, 200, status, body)
		require.JSONEq(t, `{"channels":{"news":{},"presence-room":{}}}`, body)
		status, body = n.api(t, "GET", "/apps/app-1/channels/presence-room", url.Values{"info": {"user_count,subscription_count"}}, nil, time.Now(), testApp.Secret)
		require.Equal(t, 200, status, body)
		require.JSONEq(t, `{"occupied":true,"user_count":2,"subscription_count":2}`, body)
	}

	onA.conn.Close()
	onB.expect("pusher_internal:member_removed", "presence-room")
	require.Equal(t, map[string]any{"name": "member_removed", "channel": "presence-room", "user_id": "abe"}, sink.next())
	sink.none() // news is still occupied on B

	// The last subscriber anywhere leaves: vacated, once.
	onB.send("pusher:unsubscribe", map[string]any{"channel": "news"}, "")
	require.Equal(t, map[string]any{"name": "channel_vacated", "channel": "news"}, sink.next())
	onB.quiet()
	sink.none()

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	members, err := a.hub.PresenceMembers(ctx, "presence-room")
	require.NoError(t, err)
	require.Len(t, members, 1)
	for _, n := range nodes {
		n.stop(t)
	}
	for _, h := range hooks {
		<-h.Exited()
	}
}
