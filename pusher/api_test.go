package pusher_test

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	ws "github.com/vortechron/go-ws"
)

func TestAPITriggerEvents(t *testing.T) {
	n := newNode(t, nil, nil, ws.Config{}, userOptions(), nil)
	a, b := n.dial(t, nil), n.dial(t, nil)
	for _, c := range []*pclient{a, b} {
		c.subscribe("news")
		c.subscribe("sport")
	}
	nat := n.dialNative(t, "nat")
	nat.send(map[string]any{"action": "subscribe", "channel": "news"})
	nat.expect("subscribed")

	// One channel; data that is JSON reaches native clients as the value.
	require.Equal(t, "{}", n.trigger(t, map[string]any{"name": `App\Events\Posted`, "channel": "news", "data": `{"id":1}`}))
	for _, c := range []*pclient{a, b} {
		require.JSONEq(t, `{"event":"App\\Events\\Posted","channel":"news","data":"{\"id\":1}"}`, c.nextRaw())
	}
	m := nat.expect("message")
	require.Equal(t, map[string]any{"type": "message", "channel": "news", "event": `App\Events\Posted`, "message": map[string]any{"id": 1.0}}, m)

	// Several channels, and the sender's socket excluded (toOthers()).
	n.trigger(t, map[string]any{"name": "tick", "channels": []string{"news", "sport"}, "data": "plain text", "socket_id": a.socketID})
	for _, ch := range []string{"news", "sport"} {
		f := b.next()
		require.Equal(t, map[string]any{"event": "tick", "channel": f["channel"], "data": "plain text"}, f)
		require.Contains(t, []string{"news", "sport"}, ch)
	}
	a.quiet()
	require.Equal(t, "plain text", nat.expect("message")["message"], "text that is not JSON is a JSON string")

	// A batch, in order, with the sender excluded from one event.
	status, body := n.api(t, "POST", "/apps/app-1/batch_events", nil, map[string]any{"batch": []map[string]any{
		{"channel": "news", "name": "one", "data": "1"},
		{"channel": "sport", "name": "two", "data": `"2"`, "socket_id": b.socketID},
	}}, time.Now(), testApp.Secret)
	require.Equal(t, http.StatusOK, status, body)
	require.Equal(t, "{}", body)
	f := a.expect("one", "news")
	require.Equal(t, 1.0, f["data"])
	require.Equal(t, "2", a.expect("two", "sport")["data"])
	b.expect("one", "news")
	b.quiet()
}

func TestAPIRefusals(t *testing.T) {
	n := newNode(t, nil, nil, ws.Config{}, nil, nil)
	good := map[string]any{"name": "e", "channel": "news", "data": "{}"}
	events := "/apps/app-1/events"
	now := time.Now()
	for _, tc := range []struct {
		name   string
		method string
		path   string
		params url.Values
		body   any
		at     time.Time
		secret string
		status int
		text   string
	}{
		{"wrong secret", "POST", events, nil, good, now, "wrong", 401, "Invalid signature"},
		{"stale timestamp", "POST", events, nil, good, now.Add(-11 * time.Minute), testApp.Secret, 401, "Timestamp expired"},
		{"future timestamp", "POST", events, nil, good, now.Add(11 * time.Minute), testApp.Secret, 401, "Timestamp expired"},
		{"unknown app", "POST", "/apps/other/events", nil, good, now, testApp.Secret, 404, "unknown app id"},
		{"bad JSON", "POST", events, nil, `{"name":`, now, testApp.Secret, 400, "invalid JSON"},
		{"no name", "POST", events, nil, map[string]any{"channel": "news", "data": "x"}, now, testApp.Secret, 400, `missing "name"`},
		{"no data", "POST", events, nil, map[string]any{"name": "e", "channel": "news"}, now, testApp.Secret, 400, `missing "data"`},
		{"no channel", "POST", events, nil, map[string]any{"name": "e", "data": "x"}, now, testApp.Secret, 400, `missing "channels"`},
		{"bad channel", "POST", events, nil, map[string]any{"name": "e", "channel": "a b", "data": "x"}, now, testApp.Secret, 400, "not allowed"},
		{"protocol event name", "POST", events, nil, map[string]any{"name": "pusher:x", "channel": "news", "data": "x"}, now, testApp.Secret, 400, "protocol's"},
		{"too many channels", "POST", events, nil, map[string]any{"name": "e", "channels": make([]string, 101), "data": "x"}, now, testApp.Secret, 400, "at most 100"},
		{"data too large", "POST", events, nil, map[string]any{"name": "e", "channel": "news", "data": strings.Repeat("x", 10<<10+1)}, now, testApp.Secret, 413, "the limit is 10240"},
		{"bad socket_id", "POST", events, nil, map[string]any{"name": "e", "channel": "news", "data": "x", "socket_id": "x"}, now, testApp.Secret, 400, "socket_id"},
		{"batch too big", "POST", "/apps/app-1/batch_events", nil, map[string]any{"batch": make([]map[string]any, 11)}, now, testApp.Secret, 400, "1 to 10 events"},
		{"batch with a bad event", "POST", "/apps/app-1/batch_events", nil, map[string]any{"batch": []map[string]any{{"name": "e", "channel": "x", "data": "1"}, {"name": "e", "data": "1"}}}, now, testApp.Secret, 400, "batch[1]"},
		{"wrong method", "GET", events, nil, nil, now, testApp.Secret, 405, "use POST"},
		{"unknown endpoint", "GET", "/apps/app-1/nope", nil, nil, now, testApp.Secret, 404, "no such API endpoint"},
		{"users of a public channel", "GET", "/apps/app-1/channels/news/users", nil, nil, now, testApp.Secret, 400, "presence channels only"},
		{"user_count of a public channel", "GET", "/apps/app-1/channels/news", url.Values{"info": {"user_count"}}, nil, now, testApp.Secret, 400, "presence channels only"},
		{"unknown info", "GET", "/apps/app-1/channels/presence-x", url.Values{"info": {"nope"}}, nil, now, testApp.Secret, 400, "unknown attribute"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, body := n.api(t, tc.method, tc.path, tc.params, tc.body, tc.at, tc.secret)
			require.Equal(t, tc.status, status, "body %s", body)
			require.Contains(t, body, tc.text)
		})
	}
}

func TestAPISignatureTampering(t *testing.T) {
	n := newNode(t, nil, nil, ws.Config{}, nil, nil)
	do := func(req *http.Request) (int, string) {
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		b := make([]byte, 512)
		k, _ := resp.Body.Read(b)
		return resp.StatusCode, string(b[:k])
	}
	body := map[string]any{"name": "e", "channel": "news", "data": "x"}

	// A valid request, replayed, is accepted within the window (as by
	// Pusher), with its body changed it is not.
	req := signedRequest(t, n.base, "POST", "/apps/app-1/events", nil, body, time.Now(), testApp.Secret)
	replay := req.Clone(req.Context())
	status, text := do(req)
	require.Equal(t, 200, status, text)
	replay.Body = http.NoBody
	replay.ContentLength = 0
	status, text = do(replay)
	require.Equal(t, 401, status)
	require.Contains(t, text, "body_md5 does not match")

	tampered := signedRequest(t, n.base, "POST", "/apps/app-1/events", nil, body, time.Now(), testApp.Secret)
	tampered.Body = http.NoBody
	tampered.Body = readCloser(`{"name":"e","channel":"news","data":"y"}`)
	tampered.ContentLength = -1
	status, text = do(tampered)
	require.Equal(t, 401, status)
	require.Contains(t, text, "body_md5 does not match")

	// A query parameter added after signing breaks the signature.
	q := signedRequest(t, n.base, "GET", "/apps/app-1/channels/presence-x/users", nil, nil, time.Now(), testApp.Secret)
	q.URL.RawQuery += "&filter_by_prefix=x"
	status, text = do(q)
	require.Equal(t, 401, status)
	require.Contains(t, text, "Invalid signature")

	// A request signed an hour ago, replayed now.
	old := signedRequest(t, n.base, "GET", "/apps/app-1/channels/presence-x/users", nil, nil, time.Now().Add(-time.Hour), testApp.Secret)
	status, text = do(old)
	require.Equal(t, 401, status)
	require.Contains(t, text, "Timestamp expired")

	// Missing auth parameters.
	status, text = do(mustRequest(t, "GET", n.base+"/apps/app-1/channels"))
	require.Equal(t, 401, status)
	require.Contains(t, text, "missing auth_key")
}

func TestAPIUsers(t *testing.T) {
	n := newNode(t, nil, nil, ws.Config{}, nil, nil)
	a, b := n.dial(t, nil), n.dial(t, nil)
	a.subscribe("presence-room", "ann")
	b.subscribe("presence-room", "ben")
	status, body := n.api(t, "GET", "/apps/app-1/channels/presence-room/users", nil, nil, time.Now(), testApp.Secret)
	require.Equal(t, 200, status, body)
	require.JSONEq(t, `{"users":[{"id":"ann"},{"id":"ben"}]}`, body)
}

func TestAuthHandler(t *testing.T) {
	opts := userOptions()
	var refused []error
	opts.ErrorHandler = func(err error) { refused = append(refused, err) }
	n := newNode(t, nil, nil, ws.Config{}, opts, nil)
	post := func(path, user, contentType, body string) (int, map[string]any, string) {
		req, err := http.NewRequest("POST", n.base+path, strings.NewReader(body))
		require.NoError(t, err)
		req.Header.Set("Content-Type", contentType)
		if user != "" {
			req.Header.Set("X-User", user)
		}
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		var out map[string]any
		raw := make([]byte, 2048)
		k, _ := resp.Body.Read(raw)
		_ = jsonUnmarshal(raw[:k], &out)
		return resp.StatusCode, out, string(raw[:k])
	}
	form := "application/x-www-form-urlencoded"

	// A private channel, as pusher-js asks (a form).
	c := n.dial(t, nil)
	status, out, raw := post("/pusher/auth", "ann", form, "socket_id="+c.socketID+"&channel_name=private-doc")
	require.Equal(t, 200, status, raw)
	require.Equal(t, channelAuth(testApp, c.socketID, "private-doc", ""), out["auth"])
	c.send("pusher:subscribe", map[string]any{"channel": "private-doc", "auth": out["auth"]}, "")
	c.expect("pusher_internal:subscription_succeeded", "private-doc")

	// A presence channel: channel_data with GetUserInfo's info; JSON
	// bodies work too.
	status, out, raw = post("/pusher/auth", "ann", "application/json", `{"socket_id":"`+c.socketID+`","channel_name":"presence-room"}`)
	require.Equal(t, 200, status, raw)
	require.JSONEq(t, `{"user_id":"ann","user_info":{"name":"ANN"}}`, out["channel_data"].(string))
	c.send("pusher:subscribe", map[string]any{"channel": "presence-room", "auth": out["auth"], "channel_data": out["channel_data"]}, "")
	f := c.expect("pusher_internal:subscription_succeeded", "presence-room")
	require.Equal(t, []any{"ann"}, f["data"].(map[string]any)["presence"].(map[string]any)["ids"])

	for _, tc := range []struct {
		name, user, body string
		status           int
	}{
		{"anonymous", "", "socket_id=1.2&channel_name=private-doc", 403},
		{"refused by AuthHandler", "ann", "socket_id=1.2&channel_name=private-secret", 403},
		{"public channel", "ann", "socket_id=1.2&channel_name=news", 400},
		{"bad socket_id", "ann", "socket_id=abc&channel_name=private-doc", 400},
		{"bad channel", "ann", "socket_id=1.2&channel_name=private-a b", 400},
		{"encrypted without a master key", "ann", "socket_id=1.2&channel_name=private-encrypted-x", 400},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, _, raw := post("/pusher/auth", tc.user, form, tc.body)
			require.Equal(t, tc.status, status, raw)
		})
	}
	require.Len(t, refused, 2, "ErrorHandler hears of the refusals: %v", refused)

	// The user authentication endpoint, and a sign-in with its answer.
	status, out, raw = post("/pusher/user-auth", "ann", form, "socket_id="+c.socketID)
	require.Equal(t, 200, status, raw)
	require.JSONEq(t, `{"id":"ann","user_info":{"name":"ANN"}}`, out["user_data"].(string))
	c.send("pusher:signin", map[string]any{"auth": out["auth"], "user_data": out["user_data"]}, "")
	c.expect("pusher:signin_success", "")
	status, _, _ = post("/pusher/user-auth", "", form, "socket_id="+c.socketID)
	require.Equal(t, 403, status)

	resp, err := http.Get(n.base + "/pusher/auth")
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, 405, resp.StatusCode)
}
