package ws_test

import (
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	ws "github.com/vortechron/go-ws"
)

// subscribeAny subscribes c to channel and, on a presence channel, reads
// the member list and makes every client in earlier read the join.
func subscribeAny(c *testClient, channel string, earlier ...*testClient) {
	c.TB.Helper()
	c.subscribe(channel)
	if !strings.HasPrefix(channel, ws.PresencePrefix) {
		return
	}
	c.nextOfType("presence")
	for _, e := range earlier {
		m := e.nextOfType("presence")
		require.Equal(e.TB, "join", m["event"], "got %v, want a join", m)
	}
}

// TestWhisperReachesEveryOtherSubscriber whispers on a public, a private
// and a presence channel, on one node and across three, and checks every
// other connection subscribed to the channel (the sender's second tab
// included) gets exactly one whisper frame with the server-set from, while
// the sending connection and non-subscribers get nothing. The whisper is
// one broker publication.
func TestWhisperReachesEveryOtherSubscriber(t *testing.T) {
	for _, channel := range []string{"chat-room-1", "private-chat-1", "presence-chat-1"} {
		for _, nodes := range []int{1, 3} {
			t.Run(fmt.Sprintf("%s/%d nodes", channel, nodes), func(t *testing.T) {
				var log errorLog
				cluster := newCluster(t, nodes, ws.Config{}, presenceOptions(&log))
				on := func(i int) *testNode { return cluster[i%len(cluster)] }
				alice := on(0).dial(t, "alice")
				aliceTab := on(1).dial(t, "alice")
				bob := on(2).dial(t, "bob")
				carol := on(0).dial(t, "carol")
				outsider := on(1).dial(t, "dave")
				subscribeAny(bob, channel)
				subscribeAny(carol, channel, bob)
				subscribeAny(alice, channel, bob, carol)
				aliceTab.subscribe(channel)
				if strings.HasPrefix(channel, ws.PresencePrefix) {
					aliceTab.nextOfType("presence") // a second tab is no join
				}
				outsider.subscribe("elsewhere")

				// The client's from is ignored: the server sets it.
				alice.send(map[string]any{"action": "whisper", "channel": channel, "event": "typing",
					"data": map[string]any{"isTyping": true}, "from": "mallory", "type": "message"})
				want := map[string]any{"type": "whisper", "from": "alice", "event": "typing", "channel": channel,
					"data": map[string]any{"isTyping": true}}
				for _, c := range []*testClient{bob, carol, aliceTab} {
					m := c.expect(want)
					require.Len(t, m, len(want), "got %v, want exactly the fields %v", m, want)
				}
				for _, c := range []*testClient{alice, bob, carol, aliceTab, outsider} {
					c.expectQuiet() // exactly once; never to the sender or outsiders
				}
				require.Equal(t, int64(1), sumWhispersIn(cluster))
				require.Equal(t, int64(3), sumWhispersOut(cluster))
				require.Empty(t, log.all())
			})
		}
	}
}

func sumWhispersIn(nodes []*testNode) (n int64) {
	for _, node := range nodes {
		n += node.hub.Stats().WhispersIn
	}
	return n
}

func sumWhispersOut(nodes []*testNode) (n int64) {
	for _, node := range nodes {
		n += node.hub.Stats().WhispersOut
	}
	return n
}

// TestWhisperIsOneBrokerPublication checks a whisper travels through the
// MessageBroker, as one publication however many subscribers there are,
// so other nodes get it exactly once too.
func TestWhisperIsOneBrokerPublication(t *testing.T) {
	var log errorLog
	b := newBus()
	brokers := []*busBroker{b.broker(), b.broker()}
	storage := ws.NewMemoryStorage()
	nodes := []*testNode{
		newNode(t, brokers[0], storage, ws.Config{}, presenceOptions(&log)),
		newNode(t, brokers[1], storage, ws.Config{}, presenceOptions(&log)),
	}
	const ch = "private-chat"
	alice := nodes[0].dial(t, "alice")
	alice.subscribe(ch)
	var others []*testClient
	for i := range 6 {
		c := nodes[i%2].dial(t, fmt.Sprintf("user%d", i))
		c.subscribe(ch)
		others = append(others, c)
	}
	before := brokers[0].publications(ch)
	alice.send(map[string]any{"action": "whisper", "channel": ch, "event": "read", "data": 42})
	for _, c := range others {
		c.expect(map[string]any{"type": "whisper", "from": "alice", "data": float64(42)})
		c.expectQuiet()
	}
	require.Equal(t, before+1, brokers[0].publications(ch), "one whisper, one broker publication")
	require.Equal(t, 0, brokers[1].publications(ch))
}

// TestWhisperRefusals sends every kind of whisper the server must refuse
// and checks each one answers the sender with an error frame naming the
// action and channel, gives ErrorHandler a *WhisperError whose Message
// says why (the same text as the frame), and reaches nobody.
func TestWhisperRefusals(t *testing.T) {
	const ch = "chat-room-1"
	cases := []struct {
		name    string
		opts    func(o *ws.Options)
		user    string // default "alice"
		channel string // channel to subscribe to first; default ch
		frame   string
		code    string
		message string // substring of the error text
		event   string // WhisperError.Event
	}{
		{
			name:    "whispers disabled",
			opts:    func(o *ws.Options) { o.EnableWhispers = false },
			frame:   `{"action":"whisper","channel":"chat-room-1","event":"typing","data":{}}`,
			code:    ws.CodeWhisperDisabled,
			message: "disabled",
			event:   "typing",
		},
		{
			name:    "anonymous sender",
			user:    "-",
			frame:   `{"action":"whisper","channel":"chat-room-1","event":"typing","data":{}}`,
			code:    ws.CodeForbidden,
			message: "anonymous",
			event:   "typing",
		},
		{
			name:    "not subscribed",
			channel: "other-room",
			frame:   `{"action":"whisper","channel":"chat-room-1","event":"typing","data":{}}`,
			code:    ws.CodeNotSubscribed,
			message: "subscribe to chat-room-1",
			event:   "typing",
		},
		{
			name:    "public channel with WhisperPrivateOnly",
			opts:    func(o *ws.Options) { o.WhisperPrivateOnly = true },
			frame:   `{"action":"whisper","channel":"chat-room-1","event":"typing","data":{}}`,
			code:    ws.CodeForbidden,
			message: "private and presence channels only",
			event:   "typing",
		},
		{
			name: "blocked by WhisperMiddleware",
			opts: func(o *ws.Options) {
				o.WhisperMiddleware = func(w *ws.WhisperEvent) bool { return w.Event != "blocked-event" }
			},
			frame:   `{"action":"whisper","channel":"chat-room-1","event":"blocked-event","data":{}}`,
			code:    ws.CodeWhisperBlocked,
			message: "blocked",
			event:   "blocked-event",
		},
		{
			name:    "missing event",
			frame:   `{"action":"whisper","channel":"chat-room-1","data":{}}`,
			code:    ws.CodeWhisperInvalid,
			message: "event must be 1 to 64 bytes",
		},
		{
			name:    "event too long",
			frame:   `{"action":"whisper","channel":"chat-room-1","event":"` + strings.Repeat("e", 65) + `","data":{}}`,
			code:    ws.CodeWhisperInvalid,
			message: "event must be 1 to 64 bytes",
			event:   strings.Repeat("e", 65),
		},
		{
			name:    "event not a string",
			frame:   `{"action":"whisper","channel":"chat-room-1","event":5,"data":{}}`,
			code:    ws.CodeWhisperInvalid,
			message: "malformed whisper",
		},
		{
			name:    "data not a JSON value",
			frame:   `{"action":"whisper","channel":"chat-room-1","event":"typing","data":undefined}`,
			code:    ws.CodeWhisperInvalid,
			message: "malformed whisper",
			event:   "typing",
		},
		{
			name:    "truncated frame",
			frame:   `{"action":"whisper","channel":"chat-room-1","event":"typing","data":{"isTyping":tr`,
			code:    ws.CodeWhisperInvalid,
			message: "malformed whisper",
			event:   "typing",
		},
		{
			name:    "invalid channel name",
			frame:   `{"action":"whisper","channel":"chat room","event":"typing","data":{}}`,
			code:    ws.CodeInvalidChannel,
			message: "invalid channel name",
			event:   "typing",
		},
		{
			name: "WhisperMiddleware leaves invalid data",
			opts: func(o *ws.Options) {
				o.WhisperMiddleware = func(w *ws.WhisperEvent) bool { w.Data = json.RawMessage("{oops"); return true }
			},
			frame:   `{"action":"whisper","channel":"chat-room-1","event":"typing","data":{}}`,
			code:    ws.CodeWhisperInvalid,
			message: "WhisperMiddleware left an invalid event or data",
			event:   "typing",
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var log errorLog
			opts := presenceOptions(&log)
			if tc.opts != nil {
				tc.opts(opts)
			}
			n := newNode(t, nil, nil, ws.Config{}, opts)
			user := tc.user
			switch user {
			case "":
				user = "alice"
			case "-":
				user = ""
			}
			sub := tc.channel
			if sub == "" {
				sub = ch
			}
			bob := n.dial(t, "bob")
			bob.subscribe(ch)
			sender := n.dial(t, user)
			sender.subscribe(sub)

			sender.sendRaw(tc.frame)
			wantChannel := ch
			if tc.name == "invalid channel name" {
				wantChannel = "chat room"
			}
			m := sender.expect(map[string]any{"type": "error", "code": tc.code, "action": "whisper", "channel": wantChannel})
			require.Contains(t, m["error"], tc.message)
			we := lastError[*ws.WhisperError](t, &log)
			require.Equal(t, m["error"], we.Message, "WhisperError.Message is the text the client got")
			require.Equal(t, wantChannel, we.Channel)
			require.Equal(t, user, we.UserID)
			require.Equal(t, tc.event, we.Event)
			require.NotEmpty(t, we.ClientID)
			require.Len(t, log.all(), 1, "one refusal, one error: %v", log.all())
			bob.expectQuiet()
			sender.expectQuiet()
			require.Zero(t, n.hub.Stats().WhispersOut)
		})
	}
}

// TestWhisperMiddlewareMayRewrite checks WhisperMiddleware sees the
// sender's real user ID and may change the event and data, while changes
// to FromID and ChannelName have no effect.
func TestWhisperMiddlewareMayRewrite(t *testing.T) {
	var log errorLog
	var mu sync.Mutex
	var seen []ws.WhisperEvent // guarded by mu
	opts := presenceOptions(&log)
	opts.WhisperMiddleware = func(w *ws.WhisperEvent) bool {
		mu.Lock()
		seen = append(seen, *w)
		mu.Unlock()
		w.Event = "typing-v2"
		w.Data = json.RawMessage(`{"censored":true}`)
		w.FromID = "admin"
		w.ChannelName = "private-elsewhere"
		return true
	}
	n := newNode(t, nil, nil, ws.Config{}, opts)
	const ch = "presence-room-1"
	bob := n.dial(t, "bob")
	bob.subscribePresence(ch, "bob")
	alice := n.dial(t, "alice")
	alice.subscribePresence(ch, "alice", "bob")
	bob.nextOfType("presence")

	alice.send(map[string]any{"action": "whisper", "channel": ch, "event": "typing", "data": "secret text", "from": "bob"})
	bob.expect(map[string]any{"type": "whisper", "from": "alice", "event": "typing-v2", "channel": ch,
		"data": map[string]any{"censored": true}})
	alice.expectQuiet()
	mu.Lock()
	defer mu.Unlock()
	require.Len(t, seen, 1)
	require.Equal(t, "alice", seen[0].FromID)
	require.Equal(t, ch, seen[0].ChannelName)
	require.Equal(t, "typing", seen[0].Event)
	require.JSONEq(t, `"secret text"`, string(seen[0].Data))
	require.NotEmpty(t, seen[0].ClientID)
}

// TestWhisperDataIsAnyJSONValue checks whispers carry any JSON value as
// data unchanged, and that a whisper without data carries null.
func TestWhisperDataIsAnyJSONValue(t *testing.T) {
	var log errorLog
	n := newNode(t, nil, nil, ws.Config{}, presenceOptions(&log))
	const ch = "private-chat"
	bob, alice := n.dial(t, "bob"), n.dial(t, "alice")
	bob.subscribe(ch)
	alice.subscribe(ch)
	for _, data := range []string{`null`, `true`, `0.5`, `"text"`, `[1,"two",{"three":3}]`, `{"nested":{"a":[]}}`} {
		alice.sendRaw(`{"action":"whisper","channel":"private-chat","event":"e","data":` + data + `}`)
		m := bob.expect(map[string]any{"type": "whisper", "from": "alice"})
		got, err := json.Marshal(m["data"])
		require.NoError(t, err)
		require.JSONEq(t, data, string(got))
	}
	alice.sendRaw(`{"action":"whisper","channel":"private-chat","event":"e"}`)
	m := bob.expect(map[string]any{"type": "whisper", "from": "alice"})
	require.Contains(t, m, "data")
	require.Nil(t, m["data"])
	require.Empty(t, log.all())
}
