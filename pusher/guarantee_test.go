package pusher_test

import (
	"encoding/json"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	ws "github.com/vortechron/go-ws"
	"github.com/vortechron/go-ws/internal/redistest"
)

// Promises of docs/pusher.md that the tests beside this file leave open:
// what the HTTP API answers with info, that a batch is all or nothing,
// that user channels stay out of the channel list, and what a Pusher
// client and a server SDK hear while the broker is gone.

// TestAPITriggerAnswersInfo proves, in docs/pusher.md (HTTP API):
// "POST /apps/{id}/events ... | {}; with info=user_count,subscription_count,
// {"channels":{name:{...}}}" and "POST /apps/{id}/batch_events ... | {} or
// {"batch":[{...}]}": a server SDK that asks for info gets the counts of
// each channel it published on, after the publication.
func TestAPITriggerAnswersInfo(t *testing.T) {
	n := newNode(t, nil, nil, ws.Config{}, userOptions(), nil)
	ann, ben, ben2 := n.dial(t, nil), n.dial(t, nil), n.dial(t, nil)
	ann.subscribe("news")
	ann.subscribe("presence-room", "ann")
	ben.subscribe("presence-room", "ben")
	ann.expect("pusher_internal:member_added", "presence-room")
	ben2.subscribe("presence-room", "ben") // a second tab: one more subscription, not one more user

	counts := func(body string) map[string]any {
		t.Helper()
		var out map[string]any
		require.NoError(t, json.Unmarshal([]byte(body), &out), "body %s", body)
		return out
	}

	body := n.trigger(t, map[string]any{"name": "e", "channel": "presence-room", "data": "1", "info": "user_count,subscription_count"})
	out := counts(body)
	require.Equal(t, []string{"channels"}, slices.Sorted(maps.Keys(out)), "got %s, want only \"channels\"", body)
	room := out["channels"].(map[string]any)["presence-room"].(map[string]any)
	require.ElementsMatch(t, []string{"user_count", "subscription_count"}, slices.Collect(maps.Keys(room)), "got %s, want the two counts only", body)
	require.Equal(t, 2.0, room["user_count"], "got %s, want user_count 2 (ann and ben)", body)
	require.Equal(t, 3.0, room["subscription_count"], "got %s, want subscription_count 3", body)

	body = n.trigger(t, map[string]any{"name": "e", "channels": []string{"news", "presence-room"}, "data": "2", "info": "subscription_count"})
	chans := counts(body)["channels"].(map[string]any)
	require.ElementsMatch(t, []string{"news", "presence-room"}, slices.Collect(maps.Keys(chans)), "got %s, want both channels", body)
	require.Equal(t, 1.0, chans["news"].(map[string]any)["subscription_count"], "got %s", body)
	require.Equal(t, 3.0, chans["presence-room"].(map[string]any)["subscription_count"], "got %s", body)
	require.NotContains(t, chans["news"], "user_count", "got %s, want no user_count not asked for", body)

	status, body := n.api(t, "POST", "/apps/app-1/batch_events", nil, map[string]any{"batch": []map[string]any{
		{"channel": "news", "name": "one", "data": "1", "info": "subscription_count"},
		{"channel": "presence-room", "name": "two", "data": "2", "info": "user_count"},
	}}, time.Now(), testApp.Secret)
	require.Equal(t, http.StatusOK, status, body)
	batch, ok := counts(body)["batch"].([]any)
	require.True(t, ok, "got %s, want {\"batch\":[...]}", body)
	require.Len(t, batch, 2, "got %s, want one entry per event", body)
	require.Equal(t, 1.0, batch[0].(map[string]any)["subscription_count"], "got %s", body)
	require.Equal(t, 2.0, batch[1].(map[string]any)["user_count"], "got %s", body)
	require.NotContains(t, batch[0], "occupied", "got %s, want the counts asked for only", body)

	// The events were published too.
	ann.expect("e", "presence-room")
	ann.expect("e", "news")
	ann.expect("e", "presence-room")
	ann.expect("one", "news")
	ann.expect("two", "presence-room")
}

// TestAPIBatchIsAllOrNothing proves, in docs/pusher.md (HTTP API):
// "POST /apps/{id}/batch_events ... every event is checked before any is
// published": a batch refused for its last event published none of the
// ones before it, so the SDK's caller can fix and resend the whole batch.
func TestAPIBatchIsAllOrNothing(t *testing.T) {
	n := newNode(t, nil, nil, ws.Config{}, nil, nil)
	good := map[string]any{"channel": "news", "name": "Posted", "data": `{"id":1}`}
	for _, tc := range []struct {
		name   string
		last   map[string]any
		status int
	}{
		{"bad channel", map[string]any{"channel": "a b", "name": "Posted", "data": "1"}, http.StatusBadRequest},
		{"no data", map[string]any{"channel": "news", "name": "Posted"}, http.StatusBadRequest},
		{"data too large", map[string]any{"channel": "news", "name": "Posted", "data": strings.Repeat("x", 10<<10+1)}, http.StatusRequestEntityTooLarge},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := n.dial(t, nil)
			c.subscribe("news")
			status, body := n.api(t, "POST", "/apps/app-1/batch_events", nil,
				map[string]any{"batch": []map[string]any{good, good, tc.last}}, time.Now(), testApp.Secret)
			require.Equal(t, tc.status, status, "body %s", body)
			require.Contains(t, body, "batch[2]")
			c.quiet() // got a frame before the pong: an event of the refused batch was published
		})
	}
	c := n.dial(t, nil)
	c.subscribe("news")
	status, body := n.api(t, "POST", "/apps/app-1/batch_events", nil, map[string]any{"batch": []map[string]any{good}}, time.Now(), testApp.Secret)
	require.Equal(t, http.StatusOK, status, body)
	c.expect("Posted", "news")
}

// TestAPIChannelListOmitsUserChannels proves, in docs/pusher.md (HTTP
// API): "Channel lists, occupancy and counts are the cluster's ...; user
// channels are not listed": a signed-in pusher-js client's
// #server-to-user-{id} subscription does not show in GET /channels.
func TestAPIChannelListOmitsUserChannels(t *testing.T) {
	n := newNode(t, nil, nil, ws.Config{}, nil, nil)
	c := n.dial(t, nil)
	userData := `{"id":"u1","user_info":{"name":"U"}}`
	c.signin(userData)
	c.expect("pusher:signin_success", "")
	c.subscribe("#server-to-user-u1")
	c.subscribe("news")
	for _, q := range []url.Values{nil, {"filter_by_prefix": {"#"}}} {
		status, body := n.api(t, "GET", "/apps/app-1/channels", q, nil, time.Now(), testApp.Secret)
		require.Equal(t, http.StatusOK, status, body)
		want := `{"channels":{"news":{}}}`
		if q != nil {
			want = `{"channels":{}}`
		}
		require.JSONEq(t, want, body, "query %v: got %s, want %s", q, body, want)
	}
}

// TestBrokerDownAnswersServiceUnavailable proves, in docs/pusher.md:
//
//   - Error and close codes: "pusher:subscription_error
//     {"type":"ServiceUnavailable","status":503} | the broker or storage
//     failed ...: subscribe again later", the connection staying open;
//   - HTTP API: "503 when the broker is unavailable (nothing was
//     published: retry)".
//
// The node's own Redis is killed under a subscribed Pusher client.
func TestBrokerDownAnswersServiceUnavailable(t *testing.T) {
	srv := redistest.StartServer(t)
	b, err := ws.NewRedisBrokerWithOptions(ws.RedisOptions{Addrs: []string{srv.Addr}, KeyPrefix: redistest.Prefix(t),
		HealthInterval: 100 * time.Millisecond, ResubscribeWait: 300 * time.Millisecond})
	require.NoError(t, err)
	n := newNode(t, b, nil, ws.Config{}, nil, nil)
	awaitReady(t, n)
	c := n.dial(t, nil)
	c.subscribe("news")

	srv.Kill()
	require.Eventually(t, func() bool { return !n.hub.Health().BrokerHealthy }, 10*time.Second, 5*time.Millisecond,
		"the broker still reports healthy with Redis killed")

	c.send("pusher:subscribe", map[string]any{"channel": "later"}, "")
	f := c.expect("pusher:subscription_error", "later")
	data := f["data"].(map[string]any)
	require.Equal(t, "ServiceUnavailable", data["type"], "got %v, want type ServiceUnavailable", data)
	require.EqualValues(t, 503, data["status"], "got %v, want status 503", data)

	status, body := n.api(t, "POST", "/apps/app-1/events", nil, map[string]any{"name": "Posted", "channel": "news", "data": "1"}, time.Now(), testApp.Secret)
	require.Equal(t, http.StatusServiceUnavailable, status, "got %d %s, want 503", status, body)
	c.quiet() // the connection is open, and the refused event never came

	// Redis back: the same subscribe and the same call succeed.
	require.NoError(t, srv.Restart())
	require.Eventually(t, func() bool { return n.hub.Health().Status == ws.HealthOK }, 20*time.Second, 5*time.Millisecond,
		"the node did not become healthy after Redis came back")
	c.subscribe("later")
	n.trigger(t, map[string]any{"name": "Posted", "channel": "news", "data": "2"})
	require.Equal(t, 2.0, c.expect("Posted", "news")["data"])
}

// TestAPIAnswersGatewayTimeout proves, in docs/pusher.md (HTTP API):
// "504 when the outcome is unknown (it may have been delivered), and also
// 504 when some node did not answer a cluster-wide query in time
// (Config.ClusterTimeout)". Both are made by a path to Redis that stops
// forwarding (a proxy in the test), the one under the publishing node in
// the first case, the one under the other node in the second; a 504 says
// so in its body, where a 503 would invite a blind retry.
func TestAPIAnswersGatewayTimeout(t *testing.T) {
	addr := redistest.Addr(t)
	prefix := redistest.Prefix(t)
	redistest.CleanupKeys(t, addr, prefix)
	// A health check every 10 s does not notice a stall within a test, so
	// the node stays ready and takes the request.
	o := ws.RedisOptions{KeyPrefix: prefix, HealthInterval: 10 * time.Second, ReadTimeout: 300 * time.Millisecond, DialTimeout: 300 * time.Millisecond}
	broker := func(addr string) *ws.RedisBroker {
		o := o
		o.Addrs = []string{addr}
		b, err := ws.NewRedisBrokerWithOptions(o)
		require.NoError(t, err)
		return b
	}
	event := map[string]any{"name": "Posted", "channel": "news", "data": "1"}

	t.Run("a publication whose outcome is unknown", func(t *testing.T) {
		proxy := redistest.StartProxy(t, addr)
		t.Cleanup(proxy.Resume)
		n := newNode(t, broker(proxy.Addr), nil, wsConfig(), nil, nil)
		awaitReady(t, n)
		status, body := n.api(t, "POST", "/apps/app-1/events", nil, event, time.Now(), testApp.Secret)
		require.Equal(t, http.StatusOK, status, "before the stall: %d %s", status, body)

		proxy.Stall()
		status, body = n.api(t, "POST", "/apps/app-1/events", nil, event, time.Now(), testApp.Secret)
		require.Equal(t, http.StatusGatewayTimeout, status, "got %d %s, want 504", status, body)
		require.Contains(t, body, "may have been delivered")
	})

	t.Run("a node that does not answer a cluster query", func(t *testing.T) {
		proxy := redistest.StartProxy(t, addr)
		t.Cleanup(proxy.Resume)
		cfg := wsConfig()
		cfg.ClusterTimeout = 300 * time.Millisecond
		a := newNode(t, broker(addr), nil, cfg, nil, nil)
		b := newNode(t, broker(proxy.Addr), nil, cfg, nil, nil)
		awaitReady(t, a, b)
		status, body := a.api(t, "GET", "/apps/app-1/channels", nil, nil, time.Now(), testApp.Secret)
		require.Equal(t, http.StatusOK, status, "before the stall: %d %s", status, body)

		proxy.Stall() // b stays subscribed, so a waits for its answer
		start := time.Now()
		status, body = a.api(t, "GET", "/apps/app-1/channels", nil, nil, time.Now(), testApp.Secret)
		require.Equal(t, http.StatusGatewayTimeout, status, "got %d %s, want 504", status, body)
		require.Contains(t, body, "not every node answered in time")
		require.GreaterOrEqual(t, time.Since(start), cfg.ClusterTimeout, "answered before ClusterTimeout")
	})
}
