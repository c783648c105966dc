package pusher_test

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/require"

	ws "github.com/vortechron/go-ws"
	"github.com/vortechron/go-ws/pusher"
)

func TestConnectionEstablished(t *testing.T) {
	n := newNode(t, nil, nil, ws.Config{PingInterval: 20 * time.Second}, nil, nil)
	c := n.dialRaw(t, "/app/key-1?protocol=7&client=js&version=8.4.0", nil)
	raw := c.nextRaw()
	// data is a string holding JSON, as Pusher sends it.
	var f struct {
		Event string `json:"event"`
		Data  string `json:"data"`
	}
	require.NoError(t, json.Unmarshal([]byte(raw), &f), raw)
	require.Equal(t, "pusher:connection_established", f.Event)
	var d map[string]any
	require.NoError(t, json.Unmarshal([]byte(f.Data), &d))
	require.Regexp(t, `^\d+\.\d+$`, d["socket_id"])
	require.EqualValues(t, 20, d["activity_timeout"], "activity_timeout defaults to the hub's PingInterval")

	// A prefix before /app/{key} (pusher-js's wsPath) is fine.
	p := n.dialRaw(t, "/some/prefix/app/key-1?protocol=7", nil)
	require.Equal(t, "pusher:connection_established", p.next()["event"])
}

func TestConnectionRefusals(t *testing.T) {
	n := newNode(t, nil, nil, ws.Config{}, nil, nil)
	for _, tc := range []struct {
		name, path string
		code       int
	}{
		{"unknown key", "/app/nope?protocol=7", 4001},
		{"old protocol", "/app/key-1?protocol=6", 4007},
		{"newer protocol", "/app/key-1?protocol=8", 4007},
		{"no protocol", "/app/key-1", 4008},
		{"protocol not a number", "/app/key-1?protocol=seven", 4006},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := n.dialRaw(t, tc.path, nil)
			f := c.expectError(tc.code)
			require.NotEmpty(t, f["data"].(map[string]any)["message"])
			require.Equal(t, tc.code, c.expectClose(), "close code")
		})
	}
	t.Run("plain HTTP", func(t *testing.T) {
		resp, err := http.Get(n.base + "/app/key-1?protocol=7")
		require.NoError(t, err)
		resp.Body.Close()
		require.Equal(t, http.StatusBadRequest, resp.StatusCode)
	})
	require.Zero(t, n.hub.Stats().Connections, "refused connections never reach the hub")
}

func TestPingPong(t *testing.T) {
	n := newNode(t, nil, nil, ws.Config{}, nil, nil)
	c := n.dial(t, nil)
	c.sendRaw(`{"event":"pusher:ping","data":{}}`)
	require.JSONEq(t, `{"event":"pusher:pong","data":{}}`, c.nextRaw())
	// A pong from the client (to a server ping) is accepted silently.
	c.sendRaw(`{"event":"pusher:pong","data":{}}`)
	c.quiet()
}

func TestPublicChannelAndPublications(t *testing.T) {
	n := newNode(t, nil, nil, ws.Config{}, nil, nil)
	c := n.dial(t, nil)
	raw := func() string { return c.nextRaw() }
	c.send("pusher:subscribe", map[string]any{"channel": "news"}, "")
	require.JSONEq(t, `{"event":"pusher_internal:subscription_succeeded","channel":"news","data":"{}"}`, raw())

	ctx := context.Background()
	for _, tc := range []struct {
		name  string
		msg   any
		event string
		want  string
	}{
		{"object, no event name", map[string]any{"a": 1}, "", `{"event":"message","channel":"news","data":"{\"a\":1}"}`},
		{"named", json.RawMessage(`{"order":7}`), `App\Events\Shipped`, `{"event":"App\\Events\\Shipped","channel":"news","data":"{\"order\":7}"}`},
		{"string", "hello", "greet", `{"event":"greet","channel":"news","data":"hello"}`},
		{"number", 42, "n", `{"event":"n","channel":"news","data":"42"}`},
		{"null", nil, "z", `{"event":"z","channel":"news","data":"null"}`},
		{"escapes", map[string]any{"s": "a\"b\\c\n<é>"}, "e", `{"event":"e","channel":"news","data":"{\"s\":\"a\\\"b\\\\c\\n\\u003cé\\u003e\"}"}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			require.NoError(t, n.hub.PublishWith(ctx, "news", tc.msg, ws.PublishOptions{Event: tc.event}))
			require.JSONEq(t, tc.want, raw())
		})
	}

	// Unsubscribing is not answered (Pusher never answers it), and
	// nothing more arrives.
	c.send("pusher:unsubscribe", map[string]any{"channel": "news"}, "")
	c.quiet()
	require.NoError(t, n.hub.Publish(ctx, "news", "after"))
	c.quiet()
}

func TestPrivateChannelAuth(t *testing.T) {
	n := newNode(t, nil, nil, ws.Config{}, nil, nil) // no hooks: only tokens open private channels
	c := n.dial(t, nil)
	other := n.dial(t, nil)

	c.subscribe("private-orders")
	// The token of another connection does not open it.
	c.send("pusher:subscribe", subscribeData(other.socketID, "private-orders.2"), "")
	f := c.expect("pusher:subscription_error", "private-orders.2")
	require.Equal(t, map[string]any{"type": "AuthError", "status": 401.0,
		"error": "not authorized to subscribe to private-orders.2: the auth signature does not match this connection's socket_id, the channel and channel_data"}, f["data"])
	// Nor a token of another app.
	c.send("pusher:subscribe", map[string]any{"channel": "private-x", "auth": "other:" + strings.Repeat("0", 64)}, "")
	f = c.expect("pusher:subscription_error", "private-x")
	require.Contains(t, f["data"].(map[string]any)["error"], "not signed for this app key")
	// Without a token the hub's hooks decide: there are none here.
	c.send("pusher:subscribe", map[string]any{"channel": "private-y"}, "")
	f = c.expect("pusher:subscription_error", "private-y")
	require.EqualValues(t, 401, f["data"].(map[string]any)["status"])
	// Encrypted channels are private channels.
	c.subscribe("private-encrypted-z")
	c.quiet()
}

func TestSubscribeWithoutTokenUsesHooks(t *testing.T) {
	n := newNode(t, nil, nil, ws.Config{}, userOptions(), nil)
	c := n.dialUser(t, "ann")
	c.send("pusher:subscribe", map[string]any{"channel": "private-ok"}, "")
	c.expect("pusher_internal:subscription_succeeded", "private-ok")
	c.send("pusher:subscribe", map[string]any{"channel": "private-secret"}, "")
	c.expect("pusher:subscription_error", "private-secret")
	c.send("pusher:subscribe", map[string]any{"channel": "presence-room"}, "")
	f := c.expect("pusher_internal:subscription_succeeded", "presence-room")
	require.Equal(t, map[string]any{"presence": map[string]any{"ids": []any{"ann"}, "hash": map[string]any{"ann": map[string]any{"name": "ANN"}}, "count": 1.0}}, f["data"])
}

func TestPresence(t *testing.T) {
	n := newNode(t, nil, nil, ws.Config{}, userOptions(), nil)
	const ch = "presence-room"
	alice := n.dial(t, nil)
	f := alice.subscribe(ch, "alice")
	require.Equal(t, map[string]any{"presence": map[string]any{
		"ids": []any{"alice"}, "hash": map[string]any{"alice": map[string]any{"name": "ALICE"}}, "count": 1.0}}, f["data"])

	bob := n.dial(t, nil)
	f = bob.subscribe(ch, "bob")
	require.Equal(t, map[string]any{"presence": map[string]any{
		"ids":   []any{"alice", "bob"},
		"hash":  map[string]any{"alice": map[string]any{"name": "ALICE"}, "bob": map[string]any{"name": "BOB"}},
		"count": 2.0}}, f["data"])
	f = alice.expect("pusher_internal:member_added", ch)
	require.Equal(t, map[string]any{"user_id": "bob", "user_info": map[string]any{"name": "BOB"}}, f["data"])

	// bob's second tab is not a new member.
	bob2 := n.dial(t, nil)
	bob2.subscribe(ch, "bob")
	alice.quiet()

	// Client events carry the sender's user_id from channel_data, and
	// never come back to the sender.
	bob.send("client-typing", map[string]any{"on": true}, ch)
	for _, c := range []*pclient{alice, bob2} {
		f = c.expect("client-typing", ch)
		require.Equal(t, map[string]any{"on": true}, f["data"])
		require.Equal(t, "bob", f["user_id"])
	}
	bob.quiet()

	// A user leaves when their last connection does.
	bob.send("pusher:unsubscribe", map[string]any{"channel": ch}, "")
	alice.quiet()
	bob2.conn.Close()
	f = alice.expect("pusher_internal:member_removed", ch)
	require.Equal(t, map[string]any{"user_id": "bob"}, f["data"])
	members, err := n.hub.PresenceMembers(context.Background(), ch)
	require.NoError(t, err)
	require.Equal(t, []ws.PresenceMember{{UserID: "alice", Info: json.RawMessage(`{"name":"ALICE"}`)}}, members)
}

func TestPresenceChannelData(t *testing.T) {
	n := newNode(t, nil, nil, ws.Config{}, nil, nil)
	c := n.dial(t, nil)
	sub := func(cd string, auth string) {
		c.send("pusher:subscribe", map[string]any{"channel": "presence-x", "channel_data": cd, "auth": auth}, "")
	}
	// A number as user_id (Laravel's) is the user ID's text.
	cd := `{"user_id":42,"user_info":{"name":"N"}}`
	sub(cd, channelAuth(testApp, c.socketID, "presence-x", cd))
	f := c.expect("pusher_internal:subscription_succeeded", "presence-x")
	require.Equal(t, []any{"42"}, f["data"].(map[string]any)["presence"].(map[string]any)["ids"])

	for _, tc := range []struct{ name, cd, signed, status string }{
		{"forged channel_data", `{"user_id":"admin"}`, `{"user_id":"guest"}`, "401"},
		{"no user_id", `{"user_info":{}}`, `{"user_info":{}}`, "400"},
		{"not JSON", `nope`, `nope`, "400"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sub(tc.cd, channelAuth(testApp, c.socketID, "presence-y", tc.signed))
			c.send("pusher:subscribe", map[string]any{"channel": "presence-y", "channel_data": tc.cd, "auth": channelAuth(testApp, c.socketID, "presence-y", tc.signed)}, "")
			// the first went to presence-x; read both answers
			c.next()
			f := c.expect("pusher:subscription_error", "presence-y")
			require.Equal(t, tc.status, jsonNumber(f["data"].(map[string]any)["status"]))
		})
	}
	// A signed token without channel_data on a presence channel names no
	// user, and the connection has none.
	c.send("pusher:subscribe", map[string]any{"channel": "presence-z", "auth": channelAuth(testApp, c.socketID, "presence-z", "")}, "")
	f = c.expect("pusher:subscription_error", "presence-z")
	require.EqualValues(t, 401, f["data"].(map[string]any)["status"])
}

func jsonNumber(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

func TestClientEvents(t *testing.T) {
	opts := userOptions()
	opts.ClientEventsPerSecond = 4
	n := newNode(t, nil, nil, ws.Config{}, opts, nil)
	a, b := n.dial(t, nil), n.dial(t, nil)
	a.subscribe("private-chat")
	b.subscribe("private-chat")
	a.subscribe("news")

	a.send("client-typing", map[string]any{"x": 1}, "private-chat")
	f := b.expect("client-typing", "private-chat")
	require.Equal(t, map[string]any{"x": 1.0}, f["data"])
	require.NotContains(t, f, "user_id", "user_id is added on presence channels only")

	for _, tc := range []struct{ name, channel, text string }{
		{"public channel", "news", "whispers are allowed on private and presence channels only"},
		{"not subscribed", "private-other", "subscribe to private-other before whispering on it"},
		{"encrypted channel", "private-encrypted-x", "client events are not allowed on encrypted channels"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a.send("client-typing", map[string]any{}, tc.channel)
			f := a.expectError(4301)
			require.Equal(t, tc.text, f["data"].(map[string]any)["message"])
			require.Equal(t, tc.channel, f["channel"])
		})
	}
	// Too large.
	a.send("client-big", strings.Repeat("x", ws.DefaultMaxWhisperSize), "private-chat")
	require.Contains(t, a.expectError(4301)["data"].(map[string]any)["message"], "the limit is")
	// Over the rate (4 per second; 4 were counted, the encrypted one was
	// refused before): dropped with 4301.
	a.send("client-typing", 1, "private-chat")
	require.Contains(t, a.expectError(4301)["data"].(map[string]any)["message"], "rate limit of 4 per second")
	b.quiet() // b got none of the refused ones
}

func TestClientEventsDisabled(t *testing.T) {
	n := newNode(t, nil, nil, ws.Config{}, nil, nil)
	a := n.dial(t, nil)
	a.subscribe("private-chat")
	a.send("client-typing", 1, "private-chat")
	require.Equal(t, "whispers are disabled on this server", a.expectError(4301)["data"].(map[string]any)["message"])
}

func TestNativeWhisperReachesPusherAndBack(t *testing.T) {
	opts := userOptions()
	n := newNode(t, nil, nil, ws.Config{}, opts, nil)
	p := n.dial(t, nil)
	p.subscribe("presence-room", "pat")
	nat := n.dialNative(t, "nat")
	nat.send(map[string]any{"action": "subscribe", "channel": "presence-room"})
	nat.expect("subscribed")
	nat.expect("presence") // members
	f := p.expect("pusher_internal:member_added", "presence-room")
	require.Equal(t, "nat", f["data"].(map[string]any)["user_id"])

	nat.send(map[string]any{"action": "whisper", "channel": "presence-room", "event": "typing", "data": map[string]any{"on": true}})
	f = p.expect("client-typing", "presence-room")
	require.Equal(t, "nat", f["user_id"])
	require.Equal(t, map[string]any{"on": true}, f["data"])

	p.send("client-typing", map[string]any{"on": false}, "presence-room")
	w := nat.expect("whisper")
	require.Equal(t, map[string]any{"type": "whisper", "from": "pat", "event": "typing", "channel": "presence-room", "data": map[string]any{"on": false}}, w)

	// A publication with an event name: native clients see the event
	// field, Pusher clients the event.
	require.NoError(t, n.hub.PublishWith(context.Background(), "presence-room", map[string]int{"n": 1}, ws.PublishOptions{Event: "Tick"}))
	m := nat.expect("message")
	require.Equal(t, "Tick", m["event"])
	f = p.expect("Tick", "presence-room")
	require.Equal(t, map[string]any{"n": 1.0}, f["data"])
}

func TestSignin(t *testing.T) {
	n := newNode(t, nil, nil, ws.Config{}, nil, nil)
	c := n.dial(t, nil)
	userData := `{"id":"u1","user_info":{"name":"U"}}`
	// Before signing in, the user channel is closed.
	c.send("pusher:subscribe", map[string]any{"channel": "#server-to-user-u1"}, "")
	f := c.expect("pusher:subscription_error", "#server-to-user-u1")
	require.EqualValues(t, 401, f["data"].(map[string]any)["status"])

	c.signin(userData)
	f = c.expect("pusher:signin_success", "")
	require.Equal(t, map[string]any{"user_data": userData}, f["data"])
	c.subscribe("#server-to-user-u1")
	c.send("pusher:subscribe", map[string]any{"channel": "#server-to-user-u2"}, "")
	c.expect("pusher:subscription_error", "#server-to-user-u2")

	// The server reaches the user on the user channel.
	require.NoError(t, n.hub.PublishWith(context.Background(), ws.UserChannelPrefix+"u1", "hi", ws.PublishOptions{Event: "note"}))
	f = c.expect("note", "#server-to-user-u1")
	require.Equal(t, "hi", f["data"])

	// One connection is one user.
	c.signin(`{"id":"u2"}`)
	require.Contains(t, c.expectError(4009)["data"].(map[string]any)["message"], "belongs to another user")
	// A forged sign-in.
	d := n.dial(t, nil)
	d.send("pusher:signin", map[string]any{"user_data": userData, "auth": testApp.Key + ":" + hmacHex(testApp.Secret, c.socketID+"::user::"+userData)}, "")
	d.expectError(4009)
	// user_data without an id.
	d.signin(`{"name":"x"}`)
	require.Contains(t, d.expectError(4009)["data"].(map[string]any)["message"], `"id" is missing`)
}

func TestBadFrames(t *testing.T) {
	n := newNode(t, nil, nil, ws.Config{}, nil, nil)
	bystander := n.dial(t, nil)
	bystander.subscribe("news")
	c := n.dial(t, nil)
	for _, tc := range []struct{ name, frame, msg string }{
		{"not JSON", `{"event":`, "malformed frame"},
		{"not an object", `[1,2]`, "malformed frame"},
		{"no event", `{"data":{}}`, `missing "event"`},
		{"unknown event", `{"event":"hello"}`, `unknown event "hello"`},
		{"unknown pusher event", `{"event":"pusher:nope"}`, `unknown event "pusher:nope"`},
		{"subscribe data not an object", `{"event":"pusher:subscribe","data":5}`, `"data": frame is not a JSON object`},
		{"channel not a string", `{"event":"pusher:subscribe","data":{"channel":1}}`, `"data": field "channel" has the wrong type (number)`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c.sendRaw(tc.frame)
			require.Contains(t, c.expectError(4300)["data"].(map[string]any)["message"], tc.msg)
		})
	}
	c.send("pusher:subscribe", map[string]any{"channel": "bad name!"}, "")
	f := c.expect("pusher:subscription_error", "bad name!")
	require.Equal(t, "InvalidChannel", f["data"].(map[string]any)["type"])
	// A binary frame.
	require.NoError(t, c.conn.WriteMessage(websocket.BinaryMessage, []byte{1, 2}))
	c.expectError(4300)
	// The bystander saw none of it and still works.
	require.NoError(t, n.hub.Publish(context.Background(), "news", 1))
	bystander.expect("message", "news")
	c.quiet()
}

func TestSubscribeFlood(t *testing.T) {
	n := newNode(t, nil, nil, ws.Config{MaxChannelsPerClient: 5}, nil, nil)
	c := n.dial(t, nil)
	for i := range 5 {
		c.subscribe("c" + string(rune('a'+i)))
	}
	c.send("pusher:subscribe", map[string]any{"channel": "cf"}, "")
	f := c.expect("pusher:subscription_error", "cf")
	require.Equal(t, map[string]any{"type": "LimitReached", "status": 429.0, "error": "subscribed to too many channels; unsubscribe from one first"}, f["data"])
}

func TestCloseCodes(t *testing.T) {
	t.Run("frame too big: 4002", func(t *testing.T) {
		n := newNode(t, nil, nil, ws.Config{MaxMessageSize: 1024}, nil, nil)
		c := n.dial(t, nil)
		c.sendRaw(`{"event":"client-x","data":"` + strings.Repeat("x", 2000) + `"}`)
		require.Equal(t, pusher.CodeProtocolViolation, c.expectClose())
	})
	t.Run("shutdown: 4200", func(t *testing.T) {
		n := newNode(t, nil, nil, ws.Config{}, nil, nil)
		c := n.dial(t, nil)
		c.subscribe("news")
		go n.stop(t)
		require.Equal(t, pusher.CodeReconnect, c.expectClose())
	})
	t.Run("ping timeout: 4201", func(t *testing.T) {
		n := newNode(t, nil, nil, ws.Config{PingInterval: 100 * time.Millisecond, PongTimeout: 300 * time.Millisecond}, nil, nil)
		c := n.dial(t, nil)
		// A client that answers no ping: gorilla answers pings only
		// while reading, so read nothing until the close.
		c.conn.SetPingHandler(func(string) error { return nil })
		require.Equal(t, pusher.CodePongNotReceived, c.expectClose())
	})
	t.Run("slow consumer: 4100", func(t *testing.T) {
		n := newNode(t, nil, nil, ws.Config{SendQueueSize: 4}, nil, nil)
		c := n.dial(t, nil)
		c.subscribe("flood")
		big := strings.Repeat("y", 64<<10)
		for range 200 {
			if err := n.hub.Publish(context.Background(), "flood", big); err != nil {
				break
			}
		}
		require.Equal(t, pusher.CodeOverCapacity, c.expectClose())
	})
	t.Run("rate limit abuse: 4301", func(t *testing.T) {
		n := newNode(t, nil, nil, ws.Config{RateLimit: ws.RateLimit{Messages: 2, Interval: time.Minute}}, nil, nil)
		c := n.dial(t, nil)
		for range 10 {
			c.sendRaw(`{"event":"pusher:ping","data":{}}`)
		}
		require.Equal(t, pusher.CodeClientEvent, c.expectClose())
	})
}
