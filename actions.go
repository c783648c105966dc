package ws

import (
	"errors"

	"github.com/vortechron/go-ws/internal/frame"
)

// dispatch acts on one client frame. It runs on the read goroutine, which
// handles one frame at a time: a subscribe is answered before the next
// frame is read.
func (c *Client) dispatch(b []byte) {
	in, err := decodeInbound(b)
	if err != nil {
		if c.malformedWhisper(b, err) {
			return
		}
		c.fail("", "", CodeBadRequest, "malformed frame: "+err.Error()+`; send one JSON object like {"action":"subscribe","channel":"news"}`, err)
		return
	}
	switch in.Action {
	case ActionSubscribe:
		c.handleSubscribe(in.Channel)
	case ActionUnsubscribe:
		c.handleUnsubscribe(in.Channel)
	case ActionWhisper:
		c.handleWhisper(in)
	case ActionPing:
		c.out.enqueue(pongJSONFrame)
	case ActionPublish:
		c.fail(in.Action, in.Channel, CodeForbidden, "clients cannot publish; the server publishes, and clients may whisper", nil)
	case "":
		c.fail("", in.Channel, CodeBadRequest, `missing "action"`, nil)
	default:
		c.fail(in.Action, in.Channel, CodeUnknownAction, "unknown action; use subscribe, unsubscribe, whisper or ping", nil)
	}
}

// pongJSONFrame answers the "ping" action; the same bytes serve every
// client.
var pongJSONFrame = frame.Text([]byte(`{"type":"pong"}`))

func (c *Client) handleSubscribe(name string) {
	if err := ValidChannelName(name); err != nil {
		c.fail(ActionSubscribe, name, CodeInvalidChannel, err.Error(), err)
		return
	}
	already := c.inChannel(name)
	if !already && c.subCount() >= c.hub.cfg.MaxChannelsPerClient {
		// The cap is enforced here, on the connection's goroutine, before
		// authorization and without a trip through the hub, so a subscribe
		// flood costs the hub nothing. Only this goroutine subscribes the
		// client, and it waits for each, so the count cannot grow meanwhile.
		c.fail(ActionSubscribe, name, CodeTooManyChannels, "subscribed to too many channels; unsubscribe from one first", errTooManyChannels)
		return
	}
	kind := KindOf(name)
	if kind != PublicChannel {
		if aerr := c.authorize(name); aerr != nil {
			c.hub.stats.errors[errKindAuth].Add(1)
			c.reportError(aerr)
			c.sendJSON(encodeError(CodeUnauthorized, "not authorized to subscribe to "+name+": "+aerr.Reason, ActionSubscribe, name))
			return
		}
	}
	res := c.hub.call(&hubOp{kind: opSubscribe, client: c, channel: name})
	if res.err != nil {
		code, msg := CodeUnavailable, "subscribe failed: "+res.err.Error()
		if errors.Is(res.err, ErrHubClosed) {
			code, msg = CodeServerShutdown, "server is shutting down"
		}
		c.fail(ActionSubscribe, name, code, msg, res.err)
		return
	}
	if !already && kind == PresenceChannel {
		c.joinPresence(name)
	}
}

func (c *Client) handleUnsubscribe(name string) {
	if err := ValidChannelName(name); err != nil {
		c.fail(ActionUnsubscribe, name, CodeInvalidChannel, err.Error(), err)
		return
	}
	res := c.hub.call(&hubOp{kind: opUnsubscribe, client: c, channel: name})
	if res.err != nil {
		code := CodeNotSubscribed
		if errors.Is(res.err, ErrHubClosed) {
			code = CodeServerShutdown
		}
		c.fail(ActionUnsubscribe, name, code, res.err.Error(), nil)
		return
	}
	if KindOf(name) == PresenceChannel {
		c.leavePresence(name)
	}
}

// fail reports a *ProtocolError built from the arguments to
// Options.ErrorHandler and answers the client with an error frame, in
// that order, so the handler has run by the time the client sees it.
func (c *Client) fail(action, channel, code, msg string, err error) {
	c.hub.stats.errors[errKindProtocol].Add(1)
	c.reportError(&ProtocolError{ClientID: c.ID, UserID: c.UserID, Action: action, Channel: channel, Code: code, Message: msg, Err: err})
	c.sendJSON(encodeError(code, msg, action, channel))
}

// reportError hands err to Options.ErrorHandler, if there is one.
func (c *Client) reportError(err error) {
	if c.opts.ErrorHandler != nil {
		c.opts.ErrorHandler(err)
	}
}

// sendJSON queues a server frame built from json bytes.
func (c *Client) sendJSON(b []byte) { c.out.enqueue(frame.Text(b)) }
