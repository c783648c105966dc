package pusher

import (
	"strconv"
	"strings"

	ws "github.com/vortechron/go-ws"
	"github.com/vortechron/go-ws/internal/wire"
)

// Codes of pusher:error frames and close frames (docs/pusher.md). Pusher
// clients act on a close code's range: 4000-4099 they do not reconnect,
// 4100-4199 they reconnect after a second, 4200-4299 at once, 4300 and up
// they do not reconnect.
const (
	// Refusals of the connection itself: a pusher:error, then a close.
	CodeAppNotFound         = 4001 // no app has the key in the URL
	CodeInvalidVersion      = 4006 // the protocol query is not a number
	CodeUnsupportedProtocol = 4007 // the protocol is not 7
	CodeNoProtocol          = 4008 // no protocol query

	// Closes of an open connection.
	CodeProtocolViolation = 4002 // a malformed WebSocket frame, or one over Config.MaxMessageSize (ws: 1002, 1003, 1007, 1009); the close text says which
	CodeOverCapacity      = 4100 // slow consumer: its send queue overflowed (ws: 4008); reconnect after a second
	CodeReconnect         = 4200 // the server is shutting down (ws: 1001); reconnect at once, to another node
	CodePongNotReceived   = 4201 // no pong in time (ws: 4009); reconnect at once

	// pusher:error frames that leave the connection open.
	CodeUnauthorized = 4009 // a pusher:signin refused; also the close of a connection the server terminated (ws: 4010, Hub.DisconnectUser)
	CodeBadRequest   = 4300 // a frame that is not a Pusher event, an unknown event
	CodeClientEvent  = 4301 // a client event refused (rate limit, channel, size); also the close of a client over Config.RateLimit (ws: 1008)
)

// closeTerminated is ws's close code for a connection the server
// terminated (Hub.DisconnectUser): do not reconnect.
const closeTerminated = 4010

// CloseCode maps ws's close codes to the ones pusher-js acts on.
func (p *protocol) CloseCode(code int) int {
	switch code {
	case ws.CloseGoingAway:
		return CodeReconnect
	case ws.CloseSlowConsumer:
		return CodeOverCapacity
	case ws.ClosePingTimeout:
		return CodePongNotReceived
	case ws.ClosePolicyViolation:
		return CodeClientEvent
	case 1002, 1003, 1007, ws.CloseMessageTooBig:
		return CodeProtocolViolation
	case closeTerminated:
		return CodeUnauthorized
	}
	return code // 1000, 1011: pusher-js reconnects after a second
}

// subscriptionErrors says what a refused subscribe's
// pusher:subscription_error carries for each of ws's error codes: its type
// and an HTTP-like status.
var subscriptionErrors = map[string]struct {
	typ    string
	status int
}{
	ws.CodeUnauthorized:    {"AuthError", 401},
	ws.CodeForbidden:       {"AuthError", 403},
	ws.CodeInvalidChannel:  {"InvalidChannel", 400},
	ws.CodeBadRequest:      {"InvalidRequest", 400},
	ws.CodeTooManyChannels: {"LimitReached", 429},
	ws.CodeRateLimited:     {"LimitReached", 429},
	ws.CodeUnavailable:     {"ServiceUnavailable", 503},
	ws.CodeServerShutdown:  {"ServiceUnavailable", 503},
}

// appendError appends the Pusher answer to a refused action: a
// pusher:subscription_error for a subscribe, a pusher:error otherwise,
// and nothing for an unsubscribe of a channel the client was not in.
func appendError(b []byte, ev *wire.Event) []byte {
	channel := cut(ev.Channel)
	switch {
	case (ev.Action == "subscribe" || ev.Action == evSubscribe) && ev.Channel != "":
		se, ok := subscriptionErrors[ev.Code]
		if !ok {
			se.typ, se.status = "InvalidRequest", 400
		}
		b = append(b, `{"event":"pusher:subscription_error","channel":`...)
		b = appendString(b, channel)
		b = append(b, `,"data":{"type":"`...)
		b = append(b, se.typ...)
		b = append(b, `","error":`...)
		b = appendString(b, ev.Text)
		b = append(b, `,"status":`...)
		b = strconv.AppendInt(b, int64(se.status), 10)
		return append(b, `}}`...)
	case ev.Action == "unsubscribe" || ev.Action == evUnsubscribe:
		if ev.Code == ws.CodeNotSubscribed || ev.Code == ws.CodeServerShutdown {
			return b // pusher-js unsubscribes from channels it was refused
		}
		return appendPusherError(b, CodeBadRequest, ev.Text, "")
	case ev.Action == "whisper" || strings.HasPrefix(ev.Action, ClientEventPrefix) || ev.Code == ws.CodeRateLimited:
		return appendPusherError(b, CodeClientEvent, ev.Text, channel)
	case ev.Action == evSignin:
		return appendPusherError(b, CodeUnauthorized, ev.Text, "")
	}
	return appendPusherError(b, CodeBadRequest, ev.Text, "")
}

// appendPusherError appends {"event":"pusher:error","data":{"code":...,
// "message":...}}, with the channel when the error concerns one.
func appendPusherError(b []byte, code int, msg, channel string) []byte {
	b = append(b, `{"event":"pusher:error",`...)
	if channel != "" {
		b = append(b, `"channel":`...)
		b = appendString(b, channel)
		b = append(b, ',')
	}
	b = append(b, `"data":{"code":`...)
	b = strconv.AppendInt(b, int64(code), 10)
	b = append(b, `,"message":`...)
	b = appendString(b, msg)
	return append(b, `}}`...)
}

// maxEcho bounds what of a client-chosen name an error frame echoes.
const maxEcho = 200

func cut(s string) string {
	if len(s) <= maxEcho {
		return s
	}
	return strings.ToValidUTF8(s[:maxEcho], "") + "..."
}
