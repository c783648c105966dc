package ws_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/require"

	ws "github.com/vortechron/go-ws"
)

// errorLog (presence_helpers_test.go) records what an endpoint's
// ErrorHandler receives; these helpers wait on it.

func (l *errorLog) len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.errs)
}

// since returns the errors recorded from index i on.
func (l *errorLog) since(i int) []error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]error(nil), l.errs[i:]...)
}

// waitFor waits until an error recorded from index i on matches as, a
// pointer to a pointer to an error type (errors.As style), and returns it.
func (l *errorLog) waitFor(tb testing.TB, i int, as func(error) bool) {
	tb.Helper()
	require.Eventually(tb, func() bool {
		for _, err := range l.since(i) {
			if as(err) {
				return true
			}
		}
		return false
	}, 5*time.Second, time.Millisecond, "ErrorHandler got %v", l.since(i))
}

func isA[T error](err error) bool {
	var target T
	return errors.As(err, &target)
}

// hostileCase is one bad input sent by an attacker connection.
type hostileCase struct {
	name string
	// subscribe lists channels the attacker joins first.
	subscribe []string
	// frame is sent as a text frame, or as a binary one when binary is set.
	frame  string
	binary bool
	// run replaces frame for cases that need more than one frame.
	run func(t *testing.T, a *testClient)
	// want are the fields of the error frame that answers the frame;
	// wantClose is the close code instead, when the connection must end.
	want      map[string]any
	wantClose int
	// reported says which error type ErrorHandler must get.
	reported func(error) bool
	// bystander lists frames the bystander gets because of this case,
	// before the probe publication.
	bystander []map[string]any
}

func errFrame(code, action, channel string) map[string]any {
	m := map[string]any{"type": "error", "code": code}
	if action != "" {
		m["action"] = action
	}
	if channel != "" {
		m["channel"] = channel
	}
	return m
}

// TestHostileInputLeavesOthersUntouched sends every kind of bad input over
// real connections. Each gets the documented answer, and a bystander on
// the same hub keeps receiving its messages in between.
func TestHostileInputLeavesOthersUntouched(t *testing.T) {
	var errs errorLog
	opts := userOptions()
	opts.ErrorHandler = errs.handle
	cfg := ws.Config{MaxMessageSize: 1 << 20} // room for the deep-nesting case
	n := newNode(t, nil, nil, cfg, opts)

	bystander := n.dial(t, "bob")
	bystander.subscribe("news")
	bystander.subscribe("room")

	deep := `{"action":"whisper","channel":"room","event":"e","data":` +
		strings.Repeat("[", 100000) + strings.Repeat("]", 100000) + `}`
	deepOther := `{"action":"subscribe","channel":"news","x":` +
		strings.Repeat("[", 100000) + strings.Repeat("]", 100000) + `}`
	long := strings.Repeat("a", ws.MaxChannelNameLength+1)
	huge := strings.Repeat("b", 100000)
	protocol := isA[*ws.ProtocolError]
	whisper := isA[*ws.WhisperError]

	cases := []hostileCase{
		{name: "malformed JSON", frame: `{"action":"subscribe","channel":`,
			want: errFrame(ws.CodeBadRequest, "", ""), reported: protocol},
		{name: "not an object", frame: `["subscribe","news"]`,
			want: errFrame(ws.CodeBadRequest, "", ""), reported: protocol},
		{name: "trailing garbage", frame: `{"action":"ping"} x`,
			want: errFrame(ws.CodeBadRequest, "", ""), reported: protocol},
		{name: "100k nested arrays in whisper data", frame: deep,
			want: errFrame(ws.CodeWhisperInvalid, "whisper", "room"), reported: whisper},
		{name: "100k nested arrays in another field", frame: deepOther,
			want: errFrame(ws.CodeBadRequest, "", ""), reported: protocol},
		{name: "null action", frame: `{"action":null,"channel":"news"}`,
			want: errFrame(ws.CodeBadRequest, "", "news"), reported: protocol},
		{name: "binary frame", frame: `{"action":"subscribe","channel":"news"}`, binary: true,
			want: errFrame(ws.CodeBinaryNotAllowed, "", ""), reported: protocol},
		{name: "unknown action", frame: `{"action":"explode","channel":"news"}`,
			want: errFrame(ws.CodeUnknownAction, "explode", "news"), reported: protocol},
		{name: "control character in action", frame: `{"action":"subscribe\u0000","channel":"news"}`,
			want: errFrame(ws.CodeUnknownAction, "subscribe\x00", "news"), reported: protocol},
		{name: "empty channel", frame: `{"action":"subscribe","channel":""}`,
			want: errFrame(ws.CodeInvalidChannel, "subscribe", ""), reported: protocol},
		{name: "space in channel", frame: `{"action":"subscribe","channel":"a b"}`,
			want: errFrame(ws.CodeInvalidChannel, "subscribe", "a b"), reported: protocol},
		{name: "NUL in channel", frame: `{"action":"subscribe","channel":"news\u0000"}`,
			want: errFrame(ws.CodeInvalidChannel, "subscribe", "news\x00"), reported: protocol},
		{name: "escape sequence in channel", frame: `{"action":"subscribe","channel":"news\u001b[31m"}`,
			want: errFrame(ws.CodeInvalidChannel, "subscribe", "news\x1b[31m"), reported: protocol},
		{name: "non-ASCII channel", frame: `{"action":"subscribe","channel":"nëws"}`,
			want: errFrame(ws.CodeInvalidChannel, "subscribe", "nëws"), reported: protocol},
		{name: "invalid UTF-8 in a text frame", frame: "{\"action\":\"subscribe\",\"channel\":\"n\xffws\"}",
			wantClose: 1007, reported: protocol},
		{name: "overlong channel", frame: `{"action":"subscribe","channel":"` + long + `"}`,
			want: errFrame(ws.CodeInvalidChannel, "subscribe", long), reported: protocol},
		{name: "100 KB channel name is echoed cut", frame: `{"action":"unsubscribe","channel":"` + huge + `"}`,
			want: errFrame(ws.CodeInvalidChannel, "unsubscribe", huge[:200]+"..."), reported: protocol},
		{name: "prefix without name", frame: `{"action":"subscribe","channel":"private-"}`,
			want: errFrame(ws.CodeInvalidChannel, "subscribe", "private-"), reported: protocol},
		{name: "publish into a private channel", frame: `{"action":"publish","channel":"private-room","message":"hi"}`,
			want: errFrame(ws.CodeForbidden, "publish", "private-room"), reported: protocol},
		{name: "subscribe to a refused private channel", frame: `{"action":"subscribe","channel":"private-secret"}`,
			want: errFrame(ws.CodeUnauthorized, "subscribe", "private-secret"), reported: isA[*ws.AuthError]},
		{name: "whisper without subscribing", frame: `{"action":"whisper","channel":"room","event":"typing","data":1}`,
			want: errFrame(ws.CodeNotSubscribed, "whisper", "room"), reported: whisper},
		{name: "NUL in whisper event", subscribe: []string{"room"},
			frame: `{"action":"whisper","channel":"room","event":"typ\u0000ing","data":1}`,
			want:  errFrame(ws.CodeWhisperInvalid, "whisper", "room"), reported: whisper},
		{name: "newline in whisper event", subscribe: []string{"room"},
			frame: `{"action":"whisper","channel":"room","event":"typing\nfrom: admin","data":1}`,
			want:  errFrame(ws.CodeWhisperInvalid, "whisper", "room"), reported: whisper},
		{name: "overlong whisper event", subscribe: []string{"room"},
			frame: `{"action":"whisper","channel":"room","event":"` + strings.Repeat("e", ws.MaxWhisperEventLength+1) + `","data":1}`,
			want:  errFrame(ws.CodeWhisperInvalid, "whisper", "room"), reported: whisper},
		{name: "whisper data over the limit", subscribe: []string{"room"},
			frame: `{"action":"whisper","channel":"room","event":"e","data":"` + strings.Repeat("d", ws.DefaultMaxWhisperSize) + `"}`,
			want:  errFrame(ws.CodeWhisperInvalid, "whisper", "room"), reported: whisper},
		{name: "whisper spoofing from", subscribe: []string{"room"},
			frame:     `{"action":"whisper","channel":"room","event":"typing","from":"alice","FromID":"alice","data":{"from":"alice"}}`,
			bystander: []map[string]any{{"type": "whisper", "from": "mallory", "event": "typing", "channel": "room"}}},
		{name: "10 MB frame", run: func(t *testing.T, a *testClient) {
			done := make(chan struct{})
			go func() {
				defer close(done)
				_ = a.Conn.WriteMessage(websocket.TextMessage, make([]byte, 10<<20))
			}()
			require.Equal(t, ws.CloseMessageTooBig, a.expectClose())
			a.Conn.Close()
			<-done
		}, reported: protocol},
		{name: "subscribe flood to 5000 channels", run: func(t *testing.T, a *testClient) {
			// Sent in batches of 500, each read before the next, so the
			// answers never outgrow the send queue: a client that sends
			// faster than it reads is a slow consumer, which is another test.
			const total, batch = 5000, 500
			limit := n.hub.Config().MaxChannelsPerClient
			for start := 0; start < total; start += batch {
				done := make(chan error, 1)
				go func() {
					for i := start; i < start+batch; i++ {
						err := a.Conn.WriteJSON(map[string]any{"action": "subscribe", "channel": fmt.Sprintf("flood-%d", i)})
						if err != nil {
							done <- err
							return
						}
					}
					done <- nil
				}()
				for i := start; i < start+batch; i++ {
					if i < limit {
						a.expect(map[string]any{"type": "subscribed", "channel": fmt.Sprintf("flood-%d", i)})
					} else {
						a.expect(errFrame(ws.CodeTooManyChannels, "subscribe", fmt.Sprintf("flood-%d", i)))
					}
				}
				require.NoError(t, <-done)
			}
			require.Equal(t, int64(2+limit), n.hub.Stats().Channels, "got channels, want the bystander's 2 plus the cap")
			a.Conn.Close()
			require.Eventually(t, func() bool { return n.hub.Stats().Channels == 2 }, 5*time.Second, time.Millisecond,
				"flood channels were not released")
		}, reported: protocol},
	}

	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			a := n.dial(t, "mallory")
			for _, ch := range tc.subscribe {
				a.subscribe(ch)
			}
			mark := errs.len()
			switch {
			case tc.run != nil:
				tc.run(t, a)
			case tc.binary:
				require.NoError(t, a.Conn.WriteMessage(websocket.BinaryMessage, []byte(tc.frame)))
			default:
				a.sendRaw(tc.frame)
			}
			if tc.want != nil {
				m := a.expect(tc.want)
				require.NotEmpty(t, m["error"], "error frame %v says nothing", m)
			}
			if tc.wantClose != 0 {
				require.Equal(t, tc.wantClose, a.expectClose())
			}
			if tc.reported != nil {
				errs.waitFor(t, mark, tc.reported)
			}
			if tc.run == nil && tc.wantClose == 0 {
				// The attacker's connection still works.
				a.send(map[string]any{"action": "ping"})
				a.expect(map[string]any{"type": "pong"})
			}

			// The bystander got exactly what the case implies, then the probe.
			bystander.TB = t
			for _, want := range tc.bystander {
				bystander.expect(want)
			}
			require.NoError(t, n.hub.Publish(context.Background(), "news", i))
			bystander.expect(map[string]any{"type": "message", "channel": "news", "message": float64(i)})
		})
	}
	bystander.TB = t
	require.Equal(t, int64(0), n.hub.Stats().SlowConsumers)
}

// TestRateLimitDropsThenCloses checks the per-connection limit over a real
// connection: Messages frames pass, the next Messages are dropped with a
// rate_limited error each, and one more closes the connection with 1008.
// The interval is long, so no token comes back during the test.
func TestRateLimitDropsThenCloses(t *testing.T) {
	var errs errorLog
	opts := &ws.Options{ErrorHandler: errs.handle}
	const limit = 5
	n := newNode(t, nil, nil, ws.Config{RateLimit: ws.RateLimit{Messages: limit, Interval: time.Hour}}, opts)
	bystander := n.dial(t, "")
	bystander.subscribe("news")
	a := n.dial(t, "")

	for range limit {
		a.send(map[string]any{"action": "ping"})
		a.expect(map[string]any{"type": "pong"})
	}
	for i := range limit {
		mark := errs.len()
		if i == 0 { // binary frames count too
			require.NoError(t, a.Conn.WriteMessage(websocket.BinaryMessage, []byte("x")))
		} else {
			a.send(map[string]any{"action": "ping"})
		}
		a.expect(map[string]any{"type": "error", "code": ws.CodeRateLimited})
		errs.waitFor(t, mark, func(err error) bool {
			var rl *ws.RateLimitError
			return errors.As(err, &rl) && rl.ClientID != "" && rl.Messages == limit &&
				rl.Interval == time.Hour && !rl.Disconnected
		})
	}
	mark := errs.len()
	a.send(map[string]any{"action": "ping"})
	require.Equal(t, ws.ClosePolicyViolation, a.expectClose())
	errs.waitFor(t, mark, func(err error) bool {
		var rl *ws.RateLimitError
		return errors.As(err, &rl) && rl.Disconnected
	})
	require.Equal(t, int64(limit+1), n.hub.Stats().RateLimited)

	// The bystander has its own budget and was never touched.
	require.NoError(t, n.hub.Publish(context.Background(), "news", "still here"))
	bystander.expect(map[string]any{"type": "message", "message": "still here"})
}

// TestPingBurstIsNotASlowConsumer: a client may send pings faster than it
// reads pongs. The server owes it only the pong for the latest ping (RFC
// 6455 5.5.3), kept aside from the send queue, so a burst of 5,000 pings
// against a 64-frame queue neither grows anything nor costs the client
// its connection; the pong it finally reads answers the last ping.
func TestPingBurstIsNotASlowConsumer(t *testing.T) {
	n := newNode(t, nil, nil, ws.Config{SendQueueSize: 64, SendQueueBytes: 64 << 10}, nil)
	a := n.dial(t, "")
	var last string
	a.Conn.SetPongHandler(func(s string) error { last = s; return nil })
	const pings = 5000
	for i := range pings {
		require.NoError(t, a.Conn.WriteControl(websocket.PingMessage, []byte(strconv.Itoa(i)), time.Now().Add(time.Second)))
	}
	// The server reads the pings before the subscribe, and writes the pong
	// it owes before the acknowledgement.
	a.subscribe("after-the-burst")
	require.Equal(t, strconv.Itoa(pings-1), last, "last pong seen: got %q, want the answer to the last ping", last)
	require.NoError(t, n.hub.Publish(context.Background(), "after-the-burst", "still here"))
	a.expect(map[string]any{"type": "message", "message": "still here"})
	require.Equal(t, int64(0), n.hub.Stats().SlowConsumers, "Stats.SlowConsumers")
}

// TestHandlerPanicReleasesTheSlot: a panic in a user callback ends that
// connection alone (closed with 1011 once upgraded), frees its slot and
// its place in the hub's count, and never takes the process down.
func TestHandlerPanicReleasesTheSlot(t *testing.T) {
	boom := func() { panic("boom") }
	for _, tc := range []struct {
		name    string
		opts    *ws.Options
		trigger string // frame that makes the callback run, if any
	}{
		{"GetUserID", &ws.Options{GetUserID: func(*http.Request) string { boom(); return "" }}, ""},
		{"OnConnect", &ws.Options{OnConnect: func(*ws.Client) { boom() }}, ""},
		{"AuthHandler", &ws.Options{
			GetUserID:   func(*http.Request) string { return "u" },
			AuthHandler: func(string, string) bool { boom(); return false },
		}, `{"action":"subscribe","channel":"private-x"}`},
		{"ErrorHandler", &ws.Options{ErrorHandler: func(error) { boom() }}, `{"action":"explode"}`},
		{"OnDisconnect", &ws.Options{OnDisconnect: func(*ws.Client) { boom() }}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			hub := ws.NewHub(ctx, nil, nil, ws.Config{MaxConnections: 1})
			go hub.Run()
			srv := httptest.NewUnstartedServer(ws.Handler(hub, tc.opts))
			srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the panics are expected
			srv.Start()
			t.Cleanup(func() {
				cancel()
				<-hub.Done()
				srv.Close()
			})
			url := "ws" + strings.TrimPrefix(srv.URL, "http")
			for i := range 3 {
				conn, resp, err := websocket.DefaultDialer.Dial(url, nil)
				if err == nil {
					if tc.name == "OnDisconnect" {
						// The 101 reaches us before the hub registers the
						// connection; wait for that, or Connections is 0
						// below before this connection was ever counted.
						require.Eventually(t, func() bool { return hub.Stats().ConnectionsTotal == int64(i+1) }, 5*time.Second, time.Millisecond)
					}
					if tc.trigger != "" {
						require.NoError(t, conn.WriteMessage(websocket.TextMessage, []byte(tc.trigger)))
						_, _, err = conn.ReadMessage()
						var ce *websocket.CloseError
						require.ErrorAs(t, err, &ce)
						require.Equal(t, ws.CloseInternalError, ce.Code)
					} else if tc.name == "OnConnect" {
						_, _, err = conn.ReadMessage()
						require.Error(t, err)
					}
					conn.Close()
				} else if resp != nil {
					require.NotEqual(t, http.StatusServiceUnavailable, resp.StatusCode, "slot leaked")
					resp.Body.Close()
				}
				require.Eventually(t, func() bool { return hub.Stats().Connections == 0 }, 5*time.Second, time.Millisecond)
			}
		})
	}
}
