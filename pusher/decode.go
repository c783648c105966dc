package pusher

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"

	ws "github.com/vortechron/go-ws"
	"github.com/vortechron/go-ws/internal/wire"
)

// Event names of the frames clients send.
const (
	evPing        = "pusher:ping"
	evPongIn      = "pusher:pong"
	evSubscribe   = "pusher:subscribe"
	evUnsubscribe = "pusher:unsubscribe"
	evSignin      = "pusher:signin"
)

// EncryptedPrefix starts the names of end-to-end encrypted channels, which
// are private channels whose messages the server cannot read; client
// events are not allowed on them.
const EncryptedPrefix = "private-encrypted-"

// frameIn is one client frame.
type frameIn struct {
	Event   string          `json:"event"`
	Channel string          `json:"channel"`
	Data    json.RawMessage `json:"data"`
}

// subscribeIn is the data of pusher:subscribe.
type subscribeIn struct {
	Channel     string  `json:"channel"`
	Auth        string  `json:"auth"`
	ChannelData *string `json:"channel_data"`
}

// signinIn is the data of pusher:signin.
type signinIn struct {
	Auth     string `json:"auth"`
	UserData string `json:"user_data"`
}

// channelData is presence channel_data, and the fields of sign-in
// user_data that the server reads.
type channelData struct {
	UserID   json.RawMessage `json:"user_id"`
	ID       json.RawMessage `json:"id"`
	UserInfo json.RawMessage `json:"user_info"`
}

// maxUserIDLength bounds a user ID from channel_data or user_data.
const maxUserIDLength = 128

var errNotObject = errors.New("frame is not a JSON object")

// Decode turns one pusher-js frame into the hub's action. Refusals carry
// one of ws's error codes, which Encode turns into the Pusher answer.
func (p *protocol) Decode(socketID string, b []byte) wire.Action {
	var in frameIn
	if err := decodeObject(b, &in); err != nil {
		return invalid("", "", ws.CodeBadRequest, fmt.Errorf("malformed frame: %w; send one JSON object like {\"event\":\"pusher:subscribe\",\"data\":{\"channel\":\"news\"}}", err))
	}
	switch in.Event {
	case evPing:
		return wire.Action{Kind: wire.Ping, Name: in.Event}
	case evPongIn:
		return wire.Action{Kind: wire.Pong, Name: in.Event}
	case evSubscribe:
		return p.decodeSubscribe(socketID, in.Data)
	case evUnsubscribe:
		var d subscribeIn
		if err := decodeData(in.Data, &d); err != nil {
			return invalid(evUnsubscribe, "", ws.CodeBadRequest, err)
		}
		return wire.Action{Kind: wire.Unsubscribe, Name: evUnsubscribe, Channel: d.Channel}
	case evSignin:
		return p.decodeSignin(socketID, in.Data)
	case "":
		return invalid("", "", ws.CodeBadRequest, errors.New(`missing "event"`))
	}
	if strings.HasPrefix(in.Event, ClientEventPrefix) {
		return p.decodeClientEvent(socketID, in)
	}
	return invalid(cut(in.Event), "", ws.CodeUnknownAction, fmt.Errorf("unknown event %q; clients send pusher:subscribe, pusher:unsubscribe, pusher:ping, pusher:signin and client-* events", cut(in.Event)))
}

// decodeSubscribe checks the auth of a private or presence subscribe.
// Without auth the hub's own hooks decide, as on ws's native endpoint.
func (p *protocol) decodeSubscribe(socketID string, data json.RawMessage) wire.Action {
	var d subscribeIn
	if err := decodeData(data, &d); err != nil {
		return invalid(evSubscribe, "", ws.CodeBadRequest, err)
	}
	a := wire.Action{Kind: wire.Subscribe, Name: evSubscribe, Channel: d.Channel}
	private := strings.HasPrefix(d.Channel, ws.PrivatePrefix) || strings.HasPrefix(d.Channel, ws.PresencePrefix)
	if !private || d.Auth == "" {
		return a
	}
	var cd string
	if d.ChannelData != nil {
		cd = *d.ChannelData
	}
	if !validToken(d.Auth, p.app.channelToken(socketID, d.Channel, cd)) {
		reason := "the auth signature does not match this connection's socket_id, the channel and channel_data"
		if key, _, _ := strings.Cut(d.Auth, ":"); key != p.app.Key {
			reason = "the auth is not signed for this app key"
		}
		return invalid(evSubscribe, d.Channel, ws.CodeUnauthorized, errors.New(reason))
	}
	a.Grant = &wire.Grant{}
	if strings.HasPrefix(d.Channel, ws.PresencePrefix) && cd != "" {
		m, err := parseMember(cd, false)
		if err != nil {
			return invalid(evSubscribe, d.Channel, ws.CodeBadRequest, fmt.Errorf("channel_data: %w", err))
		}
		a.Grant.Member = m
	}
	return a
}

// decodeSignin checks a sign-in: the auth signs the socket ID and the
// user_data, whose "id" is the user.
func (p *protocol) decodeSignin(socketID string, data json.RawMessage) wire.Action {
	var d signinIn
	if err := decodeData(data, &d); err != nil {
		return invalid(evSignin, "", ws.CodeBadRequest, err)
	}
	if !validToken(d.Auth, p.app.userToken(socketID, d.UserData)) {
		return invalid(evSignin, "", ws.CodeUnauthorized, errors.New("the sign-in auth does not match this connection's socket_id and the user_data"))
	}
	m, err := parseMember(d.UserData, true)
	if err != nil {
		return invalid(evSignin, "", ws.CodeBadRequest, fmt.Errorf("user_data: %w", err))
	}
	return wire.Action{Kind: wire.Signin, Name: evSignin, Grant: &wire.Grant{Member: m}, Data: json.RawMessage(d.UserData)}
}

// decodeClientEvent turns a client event into the hub's whisper: the
// event "client-typing" is the whisper "typing".
func (p *protocol) decodeClientEvent(socketID string, in frameIn) wire.Action {
	a := wire.Action{Kind: wire.Whisper, Name: cut(in.Event), Channel: in.Channel, Event: strings.TrimPrefix(in.Event, ClientEventPrefix), Data: in.Data}
	switch {
	case strings.HasPrefix(in.Channel, EncryptedPrefix):
		return invalid(a.Name, in.Channel, ws.CodeWhisperInvalid, errors.New("client events are not allowed on encrypted channels"))
	case strings.HasPrefix(in.Channel, ws.UserChannelPrefix):
		return invalid(a.Name, in.Channel, ws.CodeWhisperInvalid, errors.New("client events are not allowed on user channels"))
	case !p.allowClientEvent(socketID):
		return invalid(a.Name, in.Channel, ws.CodeRateLimited,
			errors.New("client event rate limit of "+strconv.Itoa(p.clientEvents.perSecond)+" per second exceeded; event dropped"))
	}
	return a
}

// parseMember reads presence channel_data ({"user_id":...,"user_info":...})
// or, for a sign-in, user_data ({"id":...,"user_info":...}). The user ID
// may be a string or a number.
func parseMember(s string, signin bool) (*wire.Member, error) {
	var cd channelData
	if err := decodeObject([]byte(s), &cd); err != nil {
		return nil, err
	}
	field, raw := "user_id", cd.UserID
	if signin {
		field, raw = "id", cd.ID
	}
	id, err := userID(raw)
	if err != nil {
		return nil, fmt.Errorf("%q %w", field, err)
	}
	m := &wire.Member{ID: id}
	if len(cd.UserInfo) > 0 && string(cd.UserInfo) != "null" {
		m.Info = cd.UserInfo
	}
	return m, nil
}

// userID reads a user ID: a non-empty string or a number, at most
// maxUserIDLength bytes.
func userID(raw json.RawMessage) (string, error) {
	var id string
	switch {
	case len(raw) == 0 || string(raw) == "null":
		return "", errors.New("is missing")
	case raw[0] == '"':
		if err := json.Unmarshal(raw, &id); err != nil {
			return "", errors.New("is not a valid string")
		}
	default:
		var n json.Number
		if err := json.Unmarshal(raw, &n); err != nil {
			return "", errors.New("must be a string or a number")
		}
		id = n.String()
	}
	if id == "" || len(id) > maxUserIDLength {
		return "", fmt.Errorf("must be 1 to %d bytes", maxUserIDLength)
	}
	return id, nil
}

// decodeData reads the data of a pusher: event into v. pusher-js sends an
// object; some clients send a string holding one, which is accepted too.
func decodeData(data json.RawMessage, v any) error {
	if len(data) > 0 && data[0] == '"' {
		var s string
		if err := json.Unmarshal(data, &s); err != nil {
			return fmt.Errorf(`"data": %w`, err)
		}
		data = json.RawMessage(s)
	}
	if err := decodeObject(data, v); err != nil {
		return fmt.Errorf(`"data": %w`, err)
	}
	return nil
}

// decodeObject parses b, which must be one JSON object, into v, with
// errors in the client's terms.
func decodeObject(b []byte, v any) error {
	i := 0
	for i < len(b) && isSpace(b[i]) {
		i++
	}
	if i == len(b) || b[i] != '{' {
		return errNotObject
	}
	if err := json.Unmarshal(b, v); err != nil {
		var te *json.UnmarshalTypeError
		var se *json.SyntaxError
		switch {
		case errors.As(err, &te):
			return fmt.Errorf("field %q has the wrong type (%s)", te.Field, te.Value)
		case errors.As(err, &se):
			return fmt.Errorf("invalid JSON at byte %d", se.Offset)
		}
		return errors.New(strings.TrimPrefix(err.Error(), "json: "))
	}
	return nil
}

func invalid(name, channel, code string, err error) wire.Action {
	return wire.Action{Kind: wire.Invalid, Name: name, Channel: channel, Code: code, Err: err}
}
