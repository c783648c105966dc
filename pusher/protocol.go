package pusher

import (
	"strconv"
	"strings"
	"sync"

	ws "github.com/vortechron/go-ws"
	"github.com/vortechron/go-ws/internal/wire"
)

// protocol is Pusher Channels protocol 7 as a wire.Protocol: it decodes
// pusher-js frames into the hub's actions (decode.go) and encodes the
// hub's events as Pusher frames. One protocol serves one App.
type protocol struct {
	app             App
	activityTimeout int // seconds, told to clients in connection_established
	clientEvents    clientEventLimit

	conns sync.Map // socket ID -> *connState, for connections that sent client events
}

var _ wire.Protocol = (*protocol)(nil)

// Event names of the frames the server sends.
const (
	evConnectionEstablished = "pusher:connection_established"
	evError                 = "pusher:error"
	evPong                  = "pusher:pong"
	evSubscriptionSucceeded = "pusher_internal:subscription_succeeded"
	evSubscriptionError     = "pusher:subscription_error"
	evMemberAdded           = "pusher_internal:member_added"
	evMemberRemoved         = "pusher_internal:member_removed"
	evSigninSuccess         = "pusher:signin_success"
)

// userPseudoChannel is where the hub puts a message for one user
// (Hub.PublishToUser); Pusher clients see it on #server-to-user-{id}.
const userPseudoChannel = "#user"

// DefaultEvent is the event name Pusher clients see for a publication
// without one (Hub.Publish, or PublishWith with an empty Event).
const DefaultEvent = "message"

// ClientEventPrefix starts the name of every client event. A Pusher
// client event "client-typing" is the hub's whisper "typing", and the
// other way round.
const ClientEventPrefix = "client-"

// Hello is pusher:connection_established. Its data is a string holding
// JSON, as Pusher sends it.
func (p *protocol) Hello(socketID string) []byte {
	b := make([]byte, 0, 128)
	b = append(b, `{"event":"pusher:connection_established","data":"{\"socket_id\":\"`...)
	b = append(b, socketID...) // digits and a dot
	b = append(b, `\",\"activity_timeout\":`...)
	b = strconv.AppendInt(b, int64(p.activityTimeout), 10)
	return append(b, `}"}`...)
}

// Encode appends ev's Pusher frame to b, or nothing for events Pusher has
// no frame for.
func (p *protocol) Encode(b []byte, ev *wire.Event) []byte {
	switch ev.Kind {
	case wire.Message:
		name := ev.Name
		if name == "" {
			name = DefaultEvent
		}
		b = append(b, `{"event":`...)
		b = appendString(b, name)
		b = append(b, `,"channel":`...)
		if ev.Channel == userPseudoChannel {
			b = appendString(b, ws.UserChannelPrefix+ev.User)
		} else {
			b = appendString(b, ev.Channel)
		}
		b = append(b, `,"data":`...)
		b = appendData(b, ev.Data)
		return append(b, '}')
	case wire.WhisperEvent:
		b = append(b, `{"event":`...)
		b = appendString(b, ClientEventPrefix+ev.Name)
		b = append(b, `,"channel":`...)
		b = appendString(b, ev.Channel)
		b = append(b, `,"data":`...)
		b = appendData(b, ev.Data)
		if ev.From != "" && strings.HasPrefix(ev.Channel, ws.PresencePrefix) {
			b = append(b, `,"user_id":`...)
			b = appendString(b, ev.From)
		}
		return append(b, '}')
	case wire.Subscribed:
		if strings.HasPrefix(ev.Channel, ws.PresencePrefix) {
			return b // the member list that follows is the success
		}
		b = append(b, `{"event":"pusher_internal:subscription_succeeded","channel":`...)
		b = appendString(b, ev.Channel)
		return append(b, `,"data":"{}"}`...)
	case wire.Members:
		return p.appendMembers(b, ev)
	case wire.Join, wire.Leave:
		return appendMemberChange(b, ev)
	case wire.PongEvent:
		return append(b, `{"event":"pusher:pong","data":{}}`...)
	case wire.SignedIn:
		b = append(b, `{"event":"pusher:signin_success","data":{"user_data":`...)
		b = appendQuoted(b, ev.Data)
		return append(b, `}}`...)
	case wire.Error:
		return appendError(b, ev)
	}
	return b // Unsubscribed: Pusher does not answer an unsubscribe
}

// appendMembers appends the subscription_succeeded of a presence channel:
// data is a string holding {"presence":{"ids":[...],"hash":{...},"count":N}}.
// The hub sends it after a subscribe and again whenever it resyncs the
// channel's members; pusher-js resets its member list on each.
func (p *protocol) appendMembers(b []byte, ev *wire.Event) []byte {
	inner := make([]byte, 0, 64+48*len(ev.Members))
	inner = append(inner, `{"presence":{"ids":[`...)
	for i, m := range ev.Members {
		if i > 0 {
			inner = append(inner, ',')
		}
		inner = appendString(inner, m.ID)
	}
	inner = append(inner, `],"hash":{`...)
	for i, m := range ev.Members {
		if i > 0 {
			inner = append(inner, ',')
		}
		inner = appendString(inner, m.ID)
		inner = append(inner, ':')
		inner = appendInfo(inner, m.Info)
	}
	inner = append(inner, `},"count":`...)
	inner = strconv.AppendInt(inner, int64(len(ev.Members)), 10)
	inner = append(inner, `}}`...)
	b = append(b, `{"event":"pusher_internal:subscription_succeeded","channel":`...)
	b = appendString(b, ev.Channel)
	b = append(b, `,"data":`...)
	b = appendQuoted(b, inner)
	return append(b, '}')
}

// appendMemberChange appends member_added or member_removed; data is a
// string holding {"user_id":...,"user_info":...} ({"user_id":...} for a
// removal).
func appendMemberChange(b []byte, ev *wire.Event) []byte {
	if ev.Member == nil {
		return b
	}
	inner := make([]byte, 0, 32+len(ev.Member.ID)+len(ev.Member.Info))
	inner = append(inner, `{"user_id":`...)
	inner = appendString(inner, ev.Member.ID)
	name := evMemberRemoved
	if ev.Kind == wire.Join {
		name = evMemberAdded
		inner = append(inner, `,"user_info":`...)
		inner = appendInfo(inner, ev.Member.Info)
	}
	inner = append(inner, '}')
	b = append(b, `{"event":"`...)
	b = append(b, name...)
	b = append(b, `","channel":`...)
	b = appendString(b, ev.Channel)
	b = append(b, `,"data":`...)
	b = appendQuoted(b, inner)
	return append(b, '}')
}

// appendInfo appends a member's info, null when it has none.
func appendInfo(b, info []byte) []byte {
	if len(info) == 0 {
		return append(b, "null"...)
	}
	return append(b, info...)
}
