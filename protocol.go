package ws

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/vortechron/go-ws/internal/wire"
)

// nativeProtocol is ws's own wire protocol: one JSON object per text frame,
// clients send {"action":...}, the server sends {"type":...}. It is
// described in docs/protocol.md.
type nativeProtocol struct{}

var _ wire.Protocol = nativeProtocol{}

// Client actions, the "action" field of a client frame.
const (
	actionSubscribe   = "subscribe"
	actionUnsubscribe = "unsubscribe"
	actionWhisper     = "whisper"
	actionPing        = "ping"
	actionPublish     = "publish"
)

// inbound is one client frame.
type inbound struct {
	Action  string          `json:"action"`
	Channel string          `json:"channel"`
	Event   string          `json:"event"`
	Data    json.RawMessage `json:"data"`
	Since   *struct {
		Offset uint64 `json:"offset"`
		Epoch  string `json:"epoch"`
	} `json:"since"`
}

var errNotObject = errors.New("frame is not a JSON object")

// Decode parses one client frame. It accepts exactly one JSON object;
// anything else is an Invalid action that says what was wrong.
func (nativeProtocol) Decode(_ string, b []byte) wire.Action {
	in, err := decodeInbound(b)
	if err != nil {
		salvaged := salvageInbound(b)
		if salvaged.Action == actionWhisper {
			// A whisper whose data is not a JSON value, or whose event or
			// channel is not a string, is a refused whisper, not an
			// anonymous protocol error.
			return wire.Action{Kind: wire.Invalid, Name: actionWhisper, Channel: salvaged.Channel, Event: salvaged.Event,
				Code: CodeWhisperInvalid, Err: fmt.Errorf("malformed whisper: %w; send "+
					`{"action":"whisper","channel":"...","event":"...","data":<any JSON value>}`, err)}
		}
		return wire.Action{Kind: wire.Invalid, Code: CodeBadRequest, Err: fmt.Errorf("malformed frame: %w; "+
			`send one JSON object like {"action":"subscribe","channel":"news"}`, err)}
	}
	a := wire.Action{Name: in.Action, Channel: in.Channel, Event: in.Event, Data: in.Data}
	switch in.Action {
	case actionSubscribe:
		a.Kind = wire.Subscribe
		if in.Since != nil {
			a.Since = &wire.Position{Offset: in.Since.Offset, Epoch: in.Since.Epoch}
		}
	case actionUnsubscribe:
		a.Kind = wire.Unsubscribe
	case actionWhisper:
		a.Kind = wire.Whisper
	case actionPing:
		a.Kind = wire.Ping
	case actionPublish:
		a.Kind = wire.Publish
	case "":
		a.Kind, a.Code, a.Err = wire.Invalid, CodeBadRequest, errors.New(`missing "action"`)
	default:
		a.Kind = wire.Unknown
	}
	return a
}

// decodeInbound parses one client frame into inbound, with errors that
// say what was wrong in the client's terms.
func decodeInbound(b []byte) (inbound, error) {
	var in inbound
	i := 0
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\r' || b[i] == '\n') {
		i++
	}
	if i == len(b) || b[i] != '{' {
		return in, errNotObject
	}
	if err := json.Unmarshal(b, &in); err != nil {
		return in, jsonError(err)
	}
	return in, nil
}

// jsonError rewrites an encoding/json error for the client: the field and
// the types it had and needed, never a Go type name.
func jsonError(err error) error {
	var te *json.UnmarshalTypeError
	var se *json.SyntaxError
	switch {
	case errors.As(err, &te):
		field := te.Field
		if i := strings.LastIndexByte(field, '.'); i >= 0 {
			field = field[i+1:]
		}
		want := "a string"
		switch {
		case field == "offset":
			want = "a whole number"
		case field == "since":
			want = `an object like {"offset":1,"epoch":"..."}`
		case field == "data":
			want = "a JSON value"
		}
		return fmt.Errorf("field %q must be %s, got %s", field, want, jsonKind(te.Value))
	case errors.As(err, &se):
		return fmt.Errorf("invalid JSON at byte %d: %s", se.Offset, strings.TrimPrefix(se.Error(), "json: "))
	}
	return errors.New(strings.TrimPrefix(err.Error(), "json: "))
}

// jsonKind names a JSON value type as encoding/json reports it.
func jsonKind(v string) string {
	switch {
	case v == "string":
		return "a string"
	case v == "bool":
		return "true or false"
	case strings.HasPrefix(v, "number"):
		return "a number"
	case v == "object":
		return "an object"
	case v == "array":
		return "an array"
	}
	return v
}

// salvageInbound reads the string fields of a client frame that does not
// decode, up to the first syntax error, so an error can name the action
// and channel the client meant. Fields of the wrong type are left empty.
func salvageInbound(b []byte) inbound {
	var in inbound
	dec := json.NewDecoder(bytes.NewReader(b))
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return in
	}
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return in
		}
		key, _ := t.(string)
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return in
		}
		var s string
		if json.Unmarshal(v, &s) != nil {
			continue
		}
		// encoding/json matches keys case-insensitively; so does this.
		switch {
		case strings.EqualFold(key, "action"):
			in.Action = s
		case strings.EqualFold(key, "channel"):
			in.Channel = s
		case strings.EqualFold(key, "event"):
			in.Event = s
		}
	}
	return in
}

// Server frame types, the "type" field of a server frame.
const (
	typeMessage      = "message"
	typePresence     = "presence"
	typeWhisper      = "whisper"
	typeError        = "error"
	typeSubscribed   = "subscribed"
	typeUnsubscribed = "unsubscribed"
	typePong         = "pong"
)

// Encode appends the JSON of ev's frame to dst.
func (nativeProtocol) Encode(b []byte, ev *wire.Event) []byte {
	switch ev.Kind {
	case wire.Message:
		b = append(b, `{"type":"message","channel":`...)
		b = appendJSONString(b, ev.Channel)
		if ev.Name != "" {
			b = append(b, `,"event":`...)
			b = appendJSONString(b, ev.Name)
		}
		b = append(b, `,"message":`...)
		b = append(b, ev.Data...)
		if ev.History {
			b = append(b, `,"offset":`...)
			b = strconv.AppendUint(b, ev.Offset, 10)
		}
		return append(b, '}')
	case wire.WhisperEvent:
		b = append(b, `{"type":"whisper","from":`...)
		b = appendJSONString(b, ev.From)
		b = append(b, `,"event":`...)
		b = appendJSONString(b, ev.Name)
		b = append(b, `,"channel":`...)
		b = appendJSONString(b, ev.Channel)
		b = append(b, `,"data":`...)
		b = append(b, ev.Data...)
		return append(b, '}')
	case wire.Members, wire.Join, wire.Leave:
		return appendPresence(b, ev)
	case wire.Subscribed, wire.Unsubscribed:
		typ := typeSubscribed
		if ev.Kind == wire.Unsubscribed {
			typ = typeUnsubscribed
		}
		b = append(b, `{"type":"`...)
		b = append(b, typ...)
		b = append(b, `","channel":`...)
		b = appendJSONString(b, ev.Channel)
		if ev.History {
			b = append(b, `,"offset":`...)
			b = strconv.AppendUint(b, ev.Offset, 10)
			b = append(b, `,"epoch":`...)
			b = appendJSONString(b, ev.Epoch)
			if ev.Recover {
				b = append(b, `,"recovered":`...)
				b = strconv.AppendBool(b, ev.Recovered)
			}
		}
		return append(b, '}')
	case wire.Error:
		f, _ := json.Marshal(errorFrame{Type: typeError, Error: ev.Text, Code: ev.Code, Action: cutEcho(ev.Action), Channel: cutEcho(ev.Channel)})
		return append(b, f...)
	case wire.PongEvent:
		return append(b, `{"type":"pong"}`...)
	}
	return b
}

// Hello: the native protocol says nothing when a connection opens.
func (nativeProtocol) Hello(string) []byte { return nil }

// CloseCode: the native protocol uses ws's close codes as they are.
func (nativeProtocol) CloseCode(code int) int { return code }

// Presence frame events, the "event" field of a presence frame.
var presenceEvents = [...]string{wire.Members: "members", wire.Join: "join", wire.Leave: "leave"}

// appendPresence appends a presence frame: users carries the list when
// the event has one (an empty list as []), count the members, version
// the channel's presence version when the storage keeps one.
func appendPresence(b []byte, ev *wire.Event) []byte {
	b = append(b, `{"type":"presence","channel":`...)
	b = appendJSONString(b, ev.Channel)
	b = append(b, `,"event":"`...)
	b = append(b, presenceEvents[ev.Kind]...)
	b = append(b, '"')
	if ev.Member != nil {
		b = append(b, `,"user":`...)
		b = appendMember(b, *ev.Member)
	}
	switch {
	case ev.MembersJSON != nil:
		b = append(b, `,"users":`...)
		b = append(b, ev.MembersJSON...)
	case ev.HasMembers:
		b = append(b, `,"users":`...)
		b = appendMembers(b, ev.Members)
	}
	b = append(b, `,"count":`...)
	b = strconv.AppendInt(b, int64(ev.Count), 10)
	if ev.Version > 0 {
		b = append(b, `,"version":`...)
		b = strconv.AppendUint(b, ev.Version, 10)
	}
	return append(b, '}')
}

// appendMember appends {"id":...,"info":...}, without info when it has
// none: the JSON of PresenceMember.
func appendMember(b []byte, m wire.Member) []byte {
	b = append(b, `{"id":`...)
	b = appendJSONString(b, m.ID)
	if len(m.Info) > 0 {
		b = append(b, `,"info":`...)
		b = append(b, m.Info...)
	}
	return append(b, '}')
}

// appendJSONString appends s as a JSON string. Channel names and codes are
// plain ASCII, but user IDs and event names are arbitrary, so escaping goes
// through encoding/json.
func appendJSONString(dst []byte, s string) []byte {
	simple := true
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x20 || c == '"' || c == '\\' || c >= 0x80 || c == '<' || c == '>' || c == '&' {
			simple = false
			break
		}
	}
	if simple {
		dst = append(dst, '"')
		dst = append(dst, s...)
		return append(dst, '"')
	}
	b, _ := json.Marshal(s)
	return append(dst, b...)
}

// errorFrame is the JSON of an error frame.
type errorFrame struct {
	Type    string `json:"type"`
	Error   string `json:"error"`
	Code    string `json:"code"`
	Action  string `json:"action,omitempty"`
	Channel string `json:"channel,omitempty"`
}

// maxEcho bounds the client-chosen action and channel an error frame
// echoes, so a refused frame is never answered with more than about
// maxEcho*2 of its own bytes. Valid channel names are shorter.
const maxEcho = 200

// cutEcho cuts s to maxEcho bytes, marking the cut with "...".
func cutEcho(s string) string {
	if len(s) <= maxEcho {
		return s
	}
	return strings.ToValidUTF8(s[:maxEcho], "") + "..."
}
