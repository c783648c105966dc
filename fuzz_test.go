package ws

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/gorilla/websocket"
)

// The fuzz targets run their seed corpus (testdata/fuzz/<name>) in every
// `go test`; docs/security.md has the command for a long run.

// FuzzDecodeInbound feeds arbitrary bytes to the frame decoder and checks
// that what it accepts is one JSON object, that every field it returns
// can be echoed in a valid error frame, and that the name checks hold.
func FuzzDecodeInbound(f *testing.F) {
	for _, s := range fuzzSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		in, err := decodeInbound(b)
		if err == nil {
			trimmed := bytes.TrimLeft(b, " \t\r\n")
			if !json.Valid(b) || len(trimmed) == 0 || trimmed[0] != '{' {
				t.Fatalf("decodeInbound accepted %q, which is not one JSON object", b)
			}
		}
		for _, field := range []string{in.Action, in.Channel, in.Event} {
			e := encodeError(CodeBadRequest, "msg", field, field)
			var m map[string]any
			if jerr := json.Unmarshal(e, &m); jerr != nil || m["type"] != TypeError {
				t.Fatalf("error frame for %q is not a JSON error object: %s", field, e)
			}
			if len(e) > 2*maxEcho+200 {
				t.Fatalf("error frame echoing %d bytes is %d bytes long", len(field), len(e))
			}
		}
		if ValidChannelName(in.Channel) == nil {
			if len(in.Channel) > MaxChannelNameLength {
				t.Fatalf("accepted channel of %d bytes", len(in.Channel))
			}
			for i := 0; i < len(in.Channel); i++ {
				if !validNameByte[in.Channel[i]] {
					t.Fatalf("accepted channel %q with byte %q", in.Channel, in.Channel[i])
				}
			}
		}
		if validWhisperEvent(in.Event) && (len(in.Event) > MaxWhisperEventLength || strings.ContainsAny(in.Event, "\x00\n\r\x1b")) {
			t.Fatalf("accepted whisper event %q", in.Event)
		}
	})
}

// FuzzDispatch sends one arbitrary frame, text or binary, over a real
// connection and checks the server's side of the protocol:
//   - it never panics (a panic in the read loop fails the run);
//   - every server frame is a text frame holding exactly one JSON object
//     with a "type";
//   - every frame but a whisper gets at least one answer before the
//     answer to a sentinel sent right after it, and the connection stays
//     open unless the frame was over MaxMessageSize (closed with 1009) or
//     a text frame that is not UTF-8 (closed with 1007);
//   - a bystander on the same hub receives a publication after every
//     input, and nothing else.
func FuzzDispatch(f *testing.F) {
	for _, s := range fuzzSeeds {
		f.Add(false, []byte(s))
	}
	f.Add(true, []byte(`{"action":"ping"}`))
	f.Add(true, []byte{0xff, 0x00})

	const maxSize = 16 << 10
	ctx, cancel := context.WithCancel(context.Background())
	hub := NewHub(ctx, nil, nil, Config{MaxMessageSize: maxSize})
	go hub.Run()
	opts := &Options{
		GetUserID:      func(r *http.Request) string { return r.Header.Get("X-User") },
		AuthHandler:    func(userID, channel string) bool { return !strings.Contains(channel, "secret") },
		EnableWhispers: true,
	}
	srv := httptest.NewServer(Handler(hub, opts))
	url := "ws" + strings.TrimPrefix(srv.URL, "http")
	f.Cleanup(func() {
		cancel()
		<-hub.Done()
		srv.Close()
	})
	bystander, _, err := websocket.DefaultDialer.Dial(url, nil)
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { bystander.Close() })
	if err := bystander.WriteJSON(map[string]string{"action": "subscribe", "channel": "probe"}); err != nil {
		f.Fatal(err)
	}
	if m := readFuzzFrame(f, bystander); m["type"] != TypeSubscribed {
		f.Fatalf("bystander subscribe: got %v", m)
	}
	sentinel := "sentinel-" + newID()[:16]
	probe := 0

	f.Fuzz(func(t *testing.T, binary bool, b []byte) {
		h := http.Header{"X-User": {"fuzzer"}}
		c, resp, err := websocket.DefaultDialer.Dial(url, h)
		if err != nil {
			t.Fatalf("dial: %v", err)
		}
		resp.Body.Close()
		defer c.Close()
		if err := c.WriteJSON(map[string]string{"action": "subscribe", "channel": "fuzz"}); err != nil {
			t.Fatal(err)
		}
		if m := readFuzzFrame(t, c); m["type"] != TypeSubscribed {
			t.Fatalf("subscribe: got %v", m)
		}

		mt := websocket.TextMessage
		if binary {
			mt = websocket.BinaryMessage
		}
		if err := c.WriteMessage(mt, b); err != nil {
			t.Fatal(err)
		}
		// Frames that end the connection: too big (1009), or a text frame
		// that is not UTF-8 (1007, RFC 6455 section 8.1).
		wantClose := 0
		switch {
		case len(b) > maxSize:
			wantClose = CloseMessageTooBig
		case !binary && !utf8.Valid(b):
			wantClose = 1007
		}
		tooBig := wantClose != 0
		if !tooBig {
			if err := c.WriteJSON(map[string]string{"action": "unsubscribe", "channel": sentinel}); err != nil {
				t.Fatal(err)
			}
		}
		answers := 0
		for {
			_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
			typ, frame, err := c.ReadMessage()
			if err != nil {
				if ce, ok := err.(*websocket.CloseError); ok && ce.Code == wantClose {
					break
				}
				t.Fatalf("after %q (binary %v): connection ended: %v", b, binary, err)
			}
			if typ != websocket.TextMessage {
				t.Fatalf("server sent a frame of type %d", typ)
			}
			var m map[string]any
			if !json.Valid(frame) || frame[0] != '{' || json.Unmarshal(frame, &m) != nil {
				t.Fatalf("server frame %q is not exactly one JSON object", frame)
			}
			if _, ok := m["type"].(string); !ok {
				t.Fatalf("server frame %q has no type", frame)
			}
			if m["channel"] == sentinel && (m["type"] == TypeUnsubscribed || m["code"] == CodeNotSubscribed) {
				break
			}
			answers++
		}
		if !tooBig && answers == 0 {
			in, err := decodeInbound(b)
			if binary || err != nil || in.Action != ActionWhisper {
				t.Fatalf("frame %q (binary %v) got no answer", b, binary)
			}
		}

		probe++
		if err := hub.Publish(context.Background(), "probe", probe); err != nil {
			t.Fatal(err)
		}
		m := readFuzzFrame(t, bystander)
		if m["type"] != TypeMessage || m["message"] != float64(probe) {
			t.Fatalf("bystander: got %v, want probe %d", m, probe)
		}
	})
}

func readFuzzFrame(tb testing.TB, c *websocket.Conn) map[string]any {
	tb.Helper()
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, b, err := c.ReadMessage()
	if err != nil {
		tb.Fatalf("read: %v", err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		tb.Fatalf("frame %q: %v", b, err)
	}
	return m
}

// fuzzSeeds are the inputs of the hostile-input test and the protocol's
// good frames, the starting points of both fuzz targets.
var fuzzSeeds = []string{
	`{"action":"subscribe","channel":"news"}`,
	`{"action":"unsubscribe","channel":"fuzz"}`,
	`{"action":"subscribe","channel":"presence-room"}`,
	`{"action":"subscribe","channel":"private-room"}`,
	`{"action":"subscribe","channel":"private-secret"}`,
	`{"action":"whisper","channel":"fuzz","event":"typing","data":{"isTyping":true}}`,
	`{"action":"whisper","channel":"fuzz","event":"typing","from":"alice","data":1}`,
	`{"action":"whisper","channel":"fuzz","event":"typ\u0000ing","data":1}`,
	`{"action":"whisper","channel":"news","event":"x"}`,
	`{"action":"ping"}`,
	`{"action":"publish","channel":"private-room","message":"hi"}`,
	`{"action":"explode","channel":"news"}`,
	`{"action":null}`,
	`{"action":"subscribe","channel":5}`,
	`{"action":"subscribe","channel":"a b"}`,
	`{"action":"subscribe","channel":"news\u001b[31m"}`,
	"{\"action\":\"subscribe\",\"channel\":\"n\xffws\"}",
	`{"action":"subscribe","channel":"` + strings.Repeat("a", MaxChannelNameLength+1) + `"}`,
	`{"action":"subscribe","channel":"private-"}`,
	`{"action":"ping"}{"action":"ping"}`,
	`{"action":"subscribe","channel":`,
	`[1,2]`,
	` {"action":"ping"} `,
	`"string"`,
	``,
	`null`,
	`{"action":"whisper","channel":"fuzz","event":"e","data":` + strings.Repeat("[", 10001) + strings.Repeat("]", 10001) + `}`,
	fmt.Sprintf(`{"action":"whisper","channel":"fuzz","event":"e","data":"%s"}`, strings.Repeat("d", DefaultMaxWhisperSize)),
}
