package ws

import (
	"encoding/json"
	"errors"
	"strconv"
	"strings"
)

// Client actions, the "action" field of a client frame.
const (
	ActionSubscribe   = "subscribe"
	ActionUnsubscribe = "unsubscribe"
	ActionWhisper     = "whisper"
	ActionPing        = "ping"
	ActionPublish     = "publish"
)

// Server frame types, the "type" field of a server frame.
const (
	TypeMessage      = "message"
	TypePresence     = "presence"
	TypeWhisper      = "whisper"
	TypeError        = "error"
	TypeSubscribed   = "subscribed"
	TypeUnsubscribed = "unsubscribed"
	TypePong         = "pong"
)

// Presence frame events, the "event" field of a presence frame.
const (
	PresenceMembersEvent = "members" // the full list, sent to a new subscriber
	PresenceJoinEvent    = "join"
	PresenceLeaveEvent   = "leave"
)

// inbound is one client frame.
type inbound struct {
	Action  string          `json:"action"`
	Channel string          `json:"channel"`
	Event   string          `json:"event"`
	Data    json.RawMessage `json:"data"`
}

var errNotObject = errors.New("frame is not a JSON object")

// decodeInbound parses one client frame. It accepts exactly one JSON
// object; anything else is an error that says what was wrong.
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
		return in, err
	}
	return in, nil
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

// appendMessage appends {"type":"message","channel":C,"message":M}.
func appendMessage(b []byte, channel string, message json.RawMessage) []byte {
	b = append(b, `{"type":"message","channel":`...)
	b = appendJSONString(b, channel)
	b = append(b, `,"message":`...)
	b = append(b, message...)
	return append(b, '}')
}

// encodeMessageEnvelope builds the broker envelope of a publication, the
// header and the client frame's JSON written once into one buffer.
func encodeMessageEnvelope(channel string, message json.RawMessage) []byte {
	b := appendEnvelopeHeader(make([]byte, 0, 43+len(channel)+len(message)), kindMessage, "")
	return appendMessage(b, channel, message)
}

// encodeAck builds {"type":"subscribed"|"unsubscribed","channel":C}.
func encodeAck(typ, channel string) []byte {
	b := make([]byte, 0, 32+len(channel))
	b = append(b, `{"type":`...)
	b = appendJSONString(b, typ)
	b = append(b, `,"channel":`...)
	b = appendJSONString(b, channel)
	return append(b, '}')
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

func encodeError(code, msg, action, channel string) []byte {
	b, _ := json.Marshal(errorFrame{Type: TypeError, Error: msg, Code: code, Action: cutEcho(action), Channel: cutEcho(channel)})
	return b
}

// cutEcho cuts s to maxEcho bytes, marking the cut with "...".
func cutEcho(s string) string {
	if len(s) <= maxEcho {
		return s
	}
	return strings.ToValidUTF8(s[:maxEcho], "") + "..."
}

// whisperFrame is the JSON of a whisper frame.
type whisperFrame struct {
	Type    string          `json:"type"`
	From    string          `json:"from"`
	Event   string          `json:"event"`
	Channel string          `json:"channel"`
	Data    json.RawMessage `json:"data"`
}

// presenceFrame is the JSON of a presence frame.
type presenceFrame struct {
	Type    string           `json:"type"`
	Channel string           `json:"channel"`
	Event   string           `json:"event"`
	User    *PresenceMember  `json:"user,omitempty"`
	Users   []PresenceMember `json:"users,omitzero"` // nil: left out; empty: []
	Count   int              `json:"count"`
}

// Broker envelopes. Every payload the Hub hands to a MessageBroker is one
// envelope: a version byte, a kind byte, the length-prefixed ID of a
// connection to skip (the whisper's sender), then the client frame's JSON,
// ready to be framed once and shared by every local subscriber.
const envelopeVersion = 1

const (
	kindMessage byte = 'm'
	kindWhisper byte = 'w'
	kindPresent byte = 'p'
)

func encodeEnvelope(kind byte, except string, payload []byte) []byte {
	b := appendEnvelopeHeader(make([]byte, 0, 3+len(except)+len(payload)), kind, except)
	return append(b, payload...)
}

// appendEnvelopeHeader appends the version, the kind and the
// length-prefixed connection ID to skip (cut to 255 bytes).
func appendEnvelopeHeader(b []byte, kind byte, except string) []byte {
	if len(except) > 255 {
		except = except[:255]
	}
	b = append(b, envelopeVersion, kind, byte(len(except)))
	return append(b, except...)
}

func decodeEnvelope(b []byte) (kind byte, except string, payload []byte, err error) {
	if len(b) < 3 || b[0] != envelopeVersion {
		return 0, "", nil, errors.New("ws: broker payload is not a ws envelope")
	}
	n := int(b[2])
	if len(b) < 3+n {
		return 0, "", nil, errors.New("ws: broker payload is truncated (" + strconv.Itoa(len(b)) + " bytes)")
	}
	return b[1], string(b[3 : 3+n]), b[3+n:], nil
}
