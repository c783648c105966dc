package ws

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/vortechron/go-ws/internal/wire"
)

// The native protocol is tested through the wire.Protocol interface, the
// seam every protocol plugs into; the end-to-end behaviour is in
// internal/protocoltest and the *_test.go files of package ws_test.
var native wire.Protocol = nativeProtocol{}

func TestNativeDecode(t *testing.T) {
	for _, tc := range []struct {
		frame string
		want  wire.Action
		err   string // substring of Err, for Invalid
	}{
		{`{"action":"subscribe","channel":"news"}`, wire.Action{Kind: wire.Subscribe, Name: "subscribe", Channel: "news"}, ""},
		{` {"action":"subscribe","channel":"news","since":{"offset":7,"epoch":"e1"}}`,
			wire.Action{Kind: wire.Subscribe, Name: "subscribe", Channel: "news", Since: &wire.Position{Offset: 7, Epoch: "e1"}}, ""},
		{`{"action":"unsubscribe","channel":"news"}`, wire.Action{Kind: wire.Unsubscribe, Name: "unsubscribe", Channel: "news"}, ""},
		{`{"action":"whisper","channel":"c","event":"typing","data":{"a":1}}`,
			wire.Action{Kind: wire.Whisper, Name: "whisper", Channel: "c", Event: "typing", Data: json.RawMessage(`{"a":1}`)}, ""},
		{`{"action":"ping"}`, wire.Action{Kind: wire.Ping, Name: "ping"}, ""},
		{`{"action":"publish","channel":"c"}`, wire.Action{Kind: wire.Publish, Name: "publish", Channel: "c"}, ""},
		{`{"action":"explode"}`, wire.Action{Kind: wire.Unknown, Name: "explode"}, ""},
		{`{"channel":"c"}`, wire.Action{Kind: wire.Invalid, Channel: "c", Code: CodeBadRequest}, `missing "action"`},
		{`[1,2]`, wire.Action{Kind: wire.Invalid, Code: CodeBadRequest}, "frame is not a JSON object"},
		{`{"action":"subscribe","channel":5}`, wire.Action{Kind: wire.Invalid, Code: CodeBadRequest}, `field "channel" must be a string, got a number`},
		{`{"action":"subscribe","since":{"offset":"x"}}`, wire.Action{Kind: wire.Invalid, Code: CodeBadRequest}, `field "offset" must be a whole number, got a string`},
		{`{"action":"subscribe"`, wire.Action{Kind: wire.Invalid, Code: CodeBadRequest}, "invalid JSON"},
		{`{"action":"whisper","channel":"c","event":"e","data":}`,
			wire.Action{Kind: wire.Invalid, Name: "whisper", Channel: "c", Event: "e", Code: CodeWhisperInvalid}, "malformed whisper"},
	} {
		got := native.Decode("1.1", []byte(tc.frame))
		err := got.Err
		got.Err = nil
		require.Equal(t, tc.want, got, "Decode(%s)", tc.frame)
		if tc.err == "" {
			require.NoError(t, err, "Decode(%s)", tc.frame)
			continue
		}
		require.ErrorContains(t, err, tc.err, "Decode(%s)", tc.frame)
		for _, leak := range []string{"Go struct", "inbound", "json:", "unmarshal"} {
			require.NotContains(t, err.Error(), leak, "Decode(%s): the client's error names Go internals", tc.frame)
		}
	}
}

func TestNativeEncode(t *testing.T) {
	alice := &wire.Member{ID: "alice", Info: json.RawMessage(`{"name":"Alice"}`)}
	for _, tc := range []struct {
		ev   wire.Event
		want string
	}{
		{wire.Event{Kind: wire.Message, Channel: "news", Data: json.RawMessage(`{"a":1}`)},
			`{"type":"message","channel":"news","message":{"a":1}}`},
		{wire.Event{Kind: wire.Message, Channel: "news", Name: "order.shipped", Data: json.RawMessage(`1`), History: true, Offset: 42},
			`{"type":"message","channel":"news","event":"order.shipped","message":1,"offset":42}`},
		{wire.Event{Kind: wire.WhisperEvent, Channel: "c", Name: "typing", From: "alice", Data: json.RawMessage(`true`)},
			`{"type":"whisper","from":"alice","event":"typing","channel":"c","data":true}`},
		{wire.Event{Kind: wire.Members, Channel: "presence-r", Members: []wire.Member{*alice, {ID: "bob"}}, HasMembers: true, Count: 2, Version: 9},
			`{"type":"presence","channel":"presence-r","event":"members","users":[{"id":"alice","info":{"name":"Alice"}},{"id":"bob"}],"count":2,"version":9}`},
		{wire.Event{Kind: wire.Members, Channel: "presence-r", HasMembers: true},
			`{"type":"presence","channel":"presence-r","event":"members","users":[],"count":0}`},
		{wire.Event{Kind: wire.Join, Channel: "presence-r", Member: alice, Count: 500},
			`{"type":"presence","channel":"presence-r","event":"join","user":{"id":"alice","info":{"name":"Alice"}},"count":500}`},
		{wire.Event{Kind: wire.Leave, Channel: "presence-r", Member: &wire.Member{ID: "bob"}, HasMembers: true, Members: []wire.Member{*alice}, Count: 1, Version: 3},
			`{"type":"presence","channel":"presence-r","event":"leave","user":{"id":"bob"},"users":[{"id":"alice","info":{"name":"Alice"}}],"count":1,"version":3}`},
		{wire.Event{Kind: wire.Subscribed, Channel: "news"}, `{"type":"subscribed","channel":"news"}`},
		{wire.Event{Kind: wire.Subscribed, Channel: "news", History: true, Offset: 0, Epoch: ""},
			`{"type":"subscribed","channel":"news","offset":0,"epoch":""}`},
		{wire.Event{Kind: wire.Subscribed, Channel: "news", History: true, Offset: 12, Epoch: "ab", Recover: true, Recovered: false},
			`{"type":"subscribed","channel":"news","offset":12,"epoch":"ab","recovered":false}`},
		{wire.Event{Kind: wire.Unsubscribed, Channel: "news"}, `{"type":"unsubscribed","channel":"news"}`},
		{wire.Event{Kind: wire.Error, Code: CodeNotSubscribed, Text: "not subscribed", Action: "whisper", Channel: "c"},
			`{"type":"error","error":"not subscribed","code":"not_subscribed","action":"whisper","channel":"c"}`},
		{wire.Event{Kind: wire.Error, Code: CodeBadRequest, Text: "x", Action: strings.Repeat("a", 300)},
			`{"type":"error","error":"x","code":"bad_request","action":"` + strings.Repeat("a", maxEcho) + `..."}`},
		{wire.Event{Kind: wire.PongEvent}, `{"type":"pong"}`},
		{wire.Event{Kind: wire.WhisperEvent, Channel: "c", Name: `<"q">`, From: "é", Data: json.RawMessage(`null`)},
			`{"type":"whisper","from":"é","event":"\u003c\"q\"\u003e","channel":"c","data":null}`},
	} {
		got := string(native.Encode(nil, &tc.ev))
		require.Equal(t, tc.want, got)
		require.True(t, json.Valid([]byte(got)), "frame %s is not valid JSON", got)
	}
}

// TestEnvelopeRoundTrip: what a node publishes is what every node decodes.
func TestEnvelopeRoundTrip(t *testing.T) {
	for _, ev := range []wire.Event{
		{Kind: wire.Message, Channel: "news", Name: "evt", Data: json.RawMessage(`{"x":[1,2]}`)},
		{Kind: wire.WhisperEvent, Channel: "c", Name: "typing", From: "alice", Data: json.RawMessage(`null`)},
		{Kind: wire.Join, Channel: "presence-r", Member: &wire.Member{ID: "a", Info: json.RawMessage(`{"n":1}`)}, Count: 2, Version: 7, Epoch: "ep",
			HasMembers: true, Members: []wire.Member{{ID: "a", Info: json.RawMessage(`{"n":1}`)}, {ID: "b"}}},
		{Kind: wire.Leave, Channel: "presence-r", Member: &wire.Member{ID: "b"}, Count: 300, Version: 8},
	} {
		got, except, err := decodeEnvelope(ev.Channel, encodeEnvelope(&ev, "1.2"))
		require.NoError(t, err)
		require.Equal(t, "1.2", except)
		require.Equal(t, string(native.Encode(nil, &ev)), string(native.Encode(nil, &got)), "the frame after a trip through the broker")
	}
	for _, bad := range []string{"", "\x01m", "\x02", "\x02m\xff", "\x02x\x00\x00\x00\x00\x00\x00\x00\x00\x00"} {
		_, _, err := decodeEnvelope("c", []byte(bad))
		require.Error(t, err, "decodeEnvelope(%q)", bad)
	}
	// A presence list is passed on as it came, so one that is not a JSON
	// array is refused rather than written into clients' frames.
	for _, users := range []string{`[{"id":"a"}`, `{"id":"a"}`, `[{"id":"a"}]x`, `"x"`, `[`} {
		ev := wire.Event{Kind: wire.Join, Channel: "presence-r", Member: &wire.Member{ID: "a"}, Count: 1, HasMembers: true, MembersJSON: json.RawMessage(users)}
		_, _, err := decodeEnvelope(ev.Channel, encodeEnvelope(&ev, ""))
		require.Error(t, err, "users %s", users)
	}
	// A history publication travels behind the position its broker gave it.
	ev := wire.Event{Kind: wire.Message, Channel: "news", Data: json.RawMessage(`"s"`), History: true, Offset: 1 << 40, Epoch: "e-1"}
	plain := ev
	plain.History, plain.Offset, plain.Epoch = false, 0, ""
	payload := appendPositioned(nil, HistoryPosition{Offset: ev.Offset, Epoch: ev.Epoch}, encodeEnvelope(&plain, ""))
	got, _, err := decodePayload("news", payload)
	require.NoError(t, err)
	require.Equal(t, string(native.Encode(nil, &ev)), string(native.Encode(nil, &got)))
	require.Equal(t, "e-1", got.Epoch)
	for _, bad := range []string{"h", "h1", "h:e:\x02m", "h1:e", "h1::\x02m", "hx:e:\x02m", "h99999999999999999999999:e:\x02m"} {
		_, _, err := decodePayload("c", []byte(bad))
		require.Error(t, err, "decodePayload(%q)", bad)
	}
}

func TestChannelNameErrorsNameTheCharacter(t *testing.T) {
	err := ValidChannelName("café")
	require.ErrorContains(t, err, `character 'é' at byte 3`)
	err = ValidChannelName("a\xffb")
	require.ErrorContains(t, err, `byte 0xff at byte 1`)
}
