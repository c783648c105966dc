package ws

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/vortechron/go-ws/internal/wire"

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
		a := nativeProtocol{}.Decode("1.1", b)
		if (err == nil) != (a.Kind != wire.Invalid || a.Code != CodeBadRequest && a.Code != CodeWhisperInvalid) && in.Action != "" {
			t.Fatalf("decodeInbound error %v but Decode gave %+v", err, a)
		}
		for _, field := range []string{in.Action, in.Channel, in.Event, a.Name, a.Channel} {
			e := nativeProtocol{}.Encode(nil, &wire.Event{Kind: wire.Error, Code: CodeBadRequest, Text: "msg", Action: field, Channel: field})
			var m map[string]any
			if jerr := json.Unmarshal(e, &m); jerr != nil || m["type"] != typeError {
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
	hub, url, bystander := fuzzServer(f, Config{MaxMessageSize: maxSize}, &Options{
		GetUserID:      func(r *http.Request) string { return r.Header.Get("X-User") },
		AuthHandler:    func(userID, channel string) bool { return !strings.Contains(channel, "secret") },
		EnableWhispers: true,
	})
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
		if m := readFuzzFrame(t, c); m["type"] != typeSubscribed {
			t.Fatalf("subscribe: got %v", m)
		}

		mt := websocket.TextMessage
		if binary {
			mt = websocket.BinaryMessage
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
		if err := c.WriteMessage(mt, b); err != nil {
			// The server refuses an oversize frame from its header and
			// may be gone before the client has finished writing it.
			if wantClose == CloseMessageTooBig {
				return
			}
			t.Fatal(err)
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
			if m["channel"] == sentinel && (m["type"] == typeUnsubscribed || m["code"] == CodeNotSubscribed) {
				break
			}
			answers++
		}
		if !tooBig && answers == 0 {
			in, err := decodeInbound(b)
			if binary || err != nil || in.Action != actionWhisper {
				t.Fatalf("frame %q (binary %v) got no answer", b, binary)
			}
		}

		probe++
		if err := hub.Publish(context.Background(), "probe", probe); err != nil {
			t.Fatal(err)
		}
		m := readFuzzFrame(t, bystander)
		if m["type"] != typeMessage || m["message"] != float64(probe) {
			t.Fatalf("bystander: got %v, want probe %d", m, probe)
		}
	})
}

// FuzzRawFrames writes arbitrary bytes straight to the socket of an
// upgraded connection, below the WebSocket framing, so the server's frame
// reader (internal/frame) meets headers, lengths, masks, opcodes,
// fragments and control frames of any shape. The client then half-closes.
// The server must not panic, must end the connection promptly (EOF is
// reason enough), may only send well-formed frames, each text frame one
// JSON object, and must keep serving a bystander on the same hub.
func FuzzRawFrames(f *testing.F) {
	for _, s := range fuzzSeeds[:12] {
		f.Add(maskedFrame(0x1, true, []byte(s)))
	}
	f.Add(append(maskedFrame(0x1, false, []byte(`{"action":`)), maskedFrame(0x0, true, []byte(`"ping"}`))...))
	f.Add(append(maskedFrame(0x9, true, []byte("hi")), maskedFrame(0x1, true, []byte(`{"action":"ping"}`))...))
	f.Add(maskedFrame(0x8, true, []byte{0x03, 0xe8, 'b', 'y', 'e'}))
	f.Add(maskedFrame(0x8, true, []byte{0x03, 0xee}))                                     // 1006 may not be sent
	f.Add(maskedFrame(0x2, true, []byte{1, 2, 3}))                                        // binary
	f.Add(maskedFrame(0x0, true, []byte("orphan")))                                       // continuation first
	f.Add(maskedFrame(0x9, false, []byte("x")))                                           // fragmented ping
	f.Add([]byte{0x81, 0x7f, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 1, 2, 3, 4}) // 2^63-1 bytes
	f.Add([]byte{0x81, 0x05, 'h', 'e', 'l', 'l', 'o'})                                    // unmasked
	f.Add([]byte{0xf1, 0x80, 0, 0, 0, 0})                                                 // reserved bits
	f.Add(maskedFrame(0x1, true, []byte(strings.Repeat("x", 200))))                       // 16-bit length

	hub, url, bystander := fuzzServer(f, Config{MaxMessageSize: 16 << 10}, &Options{EnableWhispers: true})
	probe := 0

	f.Fuzz(func(t *testing.T, raw []byte) {
		c, resp, err := websocket.DefaultDialer.Dial(url, nil)
		if err != nil {
			t.Fatalf("dial: %v", err)
		}
		resp.Body.Close()
		defer c.Close()
		nc := c.NetConn().(*net.TCPConn)
		_ = nc.SetWriteDeadline(time.Now().Add(10 * time.Second))
		if _, err := nc.Write(raw); err == nil {
			_ = nc.CloseWrite()
		}
		for {
			_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
			typ, frame, err := c.ReadMessage()
			if err != nil {
				var ne net.Error
				if errors.As(err, &ne) && ne.Timeout() {
					t.Fatalf("after %q the server neither answered nor closed within 10s", raw)
				}
				break // closed, with a close frame or without
			}
			if typ != websocket.TextMessage {
				t.Fatalf("server sent a frame of type %d", typ)
			}
			if !json.Valid(frame) || frame[0] != '{' {
				t.Fatalf("server frame %q is not exactly one JSON object", frame)
			}
		}

		probe++
		if err := hub.Publish(context.Background(), "probe", probe); err != nil {
			t.Fatal(err)
		}
		m := readFuzzFrame(t, bystander)
		if m["type"] != typeMessage || m["message"] != float64(probe) {
			t.Fatalf("bystander: got %v, want probe %d", m, probe)
		}
	})
}

// maskedFrame builds one client frame with a fixed mask.
func maskedFrame(op byte, fin bool, payload []byte) []byte {
	b := []byte{op}
	if fin {
		b[0] |= 0x80
	}
	switch n := len(payload); {
	case n <= 125:
		b = append(b, 0x80|byte(n))
	case n <= 0xffff:
		b = append(b, 0x80|126, byte(n>>8), byte(n))
	default:
		b = append(b, 0x80|127, 0, 0, 0, 0, byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
	}
	mask := [4]byte{0x12, 0x34, 0x56, 0x78}
	b = append(b, mask[:]...)
	for i, c := range payload {
		b = append(b, c^mask[i&3])
	}
	return b
}

// fuzzServer starts a hub with cfg behind ServeWS with opts, and a
// bystander client subscribed to "probe"; everything stops at cleanup.
func fuzzServer(f *testing.F, cfg Config, opts *Options) (hub *Hub, url string, bystander *websocket.Conn) {
	ctx, cancel := context.WithCancel(context.Background())
	hub = NewHub(ctx, nil, nil, cfg)
	go hub.Run()
	srv := httptest.NewServer(Handler(hub, opts))
	url = "ws" + strings.TrimPrefix(srv.URL, "http")
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
	if m := readFuzzFrame(f, bystander); m["type"] != typeSubscribed {
		f.Fatalf("bystander subscribe: got %v", m)
	}
	return hub, url, bystander
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
