package ws

import (
	"errors"

	"github.com/vortechron/go-ws/internal/wire"
)

// dispatch acts on one client frame, decoded by the client's protocol.
// It runs on the read goroutine, which handles one frame at a time: a
// subscribe is answered before the next frame is read.
func (c *Client) dispatch(b []byte) {
	a := c.protocol().Decode(c.ID, b)
	switch a.Kind {
	case wire.Subscribe:
		c.handleSubscribe(a)
	case wire.Unsubscribe:
		c.handleUnsubscribe(a.Channel)
	case wire.Whisper:
		c.handleWhisper(a)
	case wire.Signin:
		c.handleSignin(a)
	case wire.Ping:
		if f := c.hub.pongs[c.proto]; f != nil {
			c.out.enqueue(f)
		}
	case wire.Pong:
	case wire.Publish:
		c.fail(a.Name, a.Channel, CodeForbidden, "clients cannot publish; the server publishes, and clients may whisper", nil)
	case wire.Unknown:
		c.fail(a.Name, a.Channel, CodeUnknownAction, "unknown action; use subscribe, unsubscribe, whisper or ping", nil)
	default: // wire.Invalid
		switch a.Code {
		case CodeWhisperInvalid:
			c.refuseWhisper(a, a.Code, a.Err.Error(), a.Err)
			return
		case CodeUnauthorized: // a protocol's own token did not check out
			c.refuseAuth(a.Name, &AuthError{ClientID: c.ID, UserID: c.UserID, Channel: a.Channel, Reason: a.Err.Error()})
			return
		}
		c.fail(a.Name, a.Channel, a.Code, a.Err.Error(), a.Err)
	}
}

func (c *Client) handleSubscribe(a wire.Action) {
	name := a.Channel
	kind, err := channelKindOf(name)
	if err != nil {
		c.fail(actionSubscribe, name, CodeInvalidChannel, err.Error(), err)
		return
	}
	already := c.inChannel(name)
	if !already && c.subCount() >= c.hub.cfg.MaxChannelsPerClient {
		// The cap is enforced here, on the connection's goroutine, before
		// authorization and without a trip through the hub, so a subscribe
		// flood costs the hub nothing. Only this goroutine subscribes the
		// client, and it waits for each, so the count cannot grow meanwhile.
		c.fail(actionSubscribe, name, CodeTooManyChannels, "subscribed to too many channels; unsubscribe from one first", errTooManyChannels)
		return
	}
	member := c.member()
	var granted *PresenceMember // who the protocol's grant says the client is
	switch {
	case kind == userChannel:
		if !c.ownsUserChannel(name) {
			c.refuseAuth(actionSubscribe, &AuthError{ClientID: c.ID, UserID: c.UserID, Channel: name,
				Reason: "a user channel is open only to the connections of its user (GetUserID, or a sign-in)"})
			return
		}
	case a.Grant != nil:
		granted = &PresenceMember{}
		if a.Grant.Member != nil {
			member = PresenceMember{UserID: a.Grant.Member.ID, Info: a.Grant.Member.Info}
			*granted = member
		}
	case kind != publicChannel:
		if aerr := c.authorize(name); aerr != nil {
			c.refuseAuth(actionSubscribe, aerr)
			return
		}
	}
	if kind == presenceChannel && member.UserID == "" {
		c.refuseAuth(actionSubscribe, &AuthError{ClientID: c.ID, Channel: name,
			Reason: "a presence channel needs a user: the connection has none and its token names none"})
		return
	}
	res := c.hub.call(&hubOp{kind: opSubscribe, client: c, channel: name})
	if res.err != nil {
		if errors.Is(res.err, ErrHubClosed) {
			c.fail(actionSubscribe, name, CodeServerShutdown, "server is shutting down", res.err)
			return
		}
		c.unavailable(actionSubscribe, name, errKindBroker, res.err)
		return
	}
	if granted != nil && !already {
		c.grant(name, *granted)
	}
	if !c.subscribeHistory(name, a.Since, already) {
		return
	}
	if kind == presenceChannel {
		c.joinPresence(name, member, already)
	}
}

func (c *Client) handleUnsubscribe(name string) {
	if err := ValidChannelName(name); err != nil {
		c.fail(actionUnsubscribe, name, CodeInvalidChannel, err.Error(), err)
		return
	}
	res := c.hub.call(&hubOp{kind: opUnsubscribe, client: c, channel: name})
	if res.err != nil {
		code := CodeNotSubscribed
		if errors.Is(res.err, ErrHubClosed) {
			code = CodeServerShutdown
		}
		c.fail(actionUnsubscribe, name, code, res.err.Error(), nil)
		return
	}
	if kindOf(name) == presenceChannel {
		c.leavePresence(name)
	} else {
		c.ungrant(name)
	}
}

// handleSignin makes the user a protocol authenticated on the connection
// (Pusher's pusher:signin) the connection's user (Client.setUser): its
// user channel (UserChannelPrefix + ID) opens to it, PublishToUser,
// DisconnectUser and UnsubscribeUser reach it, and the info the sign-in
// carried is its presence info. It answers with a SignedIn event. A
// connection belongs to one user: signing in as another is refused.
func (c *Client) handleSignin(a wire.Action) {
	m := a.Grant.Member
	if err := ValidChannelName(UserChannelPrefix + m.ID); err != nil {
		c.fail(a.Name, "", CodeBadRequest, "the user ID cannot name a user channel: "+err.Error(), err)
		return
	}
	had := c.UserID != ""
	if err := c.setUser(m.ID); err != nil {
		c.fail(a.Name, "", CodeForbidden, "the connection belongs to another user; open a new connection to sign in as "+cutEcho(m.ID), err)
		return
	}
	if !had {
		c.info = m.Info // read on this goroutine, or under the acting lock held now
	}
	c.send(&wire.Event{Kind: wire.SignedIn, Member: m, Data: a.Data})
}

// refuseAuth reports a refused authorization to ErrorHandler and answers
// the client's action with an "unauthorized" error frame.
func (c *Client) refuseAuth(action string, aerr *AuthError) {
	c.hub.stats.errors[errKindAuth].Add(1)
	c.reportError(aerr)
	text := "not authorized: " + aerr.Reason
	if aerr.Channel != "" {
		text = "not authorized to subscribe to " + aerr.Channel + ": " + aerr.Reason
	}
	c.sendError(CodeUnauthorized, text, action, aerr.Channel)
}

// fail reports a *ProtocolError built from the arguments to
// Options.ErrorHandler and answers the client with an error frame, in
// that order, so the handler has run by the time the client sees it.
func (c *Client) fail(action, channel, code, msg string, err error) {
	c.hub.stats.errors[errKindProtocol].Add(1)
	c.reportError(&ProtocolError{ClientID: c.ID, UserID: c.UserID, Action: action, Channel: channel, Code: code, Message: msg, Err: err})
	c.sendError(code, msg, action, channel)
}

// unavailable answers an action that failed because the broker or the
// storage did: ErrorHandler gets an *UnavailableError whose Err matches
// ErrBrokerUnavailable or ErrStorageUnavailable, Stats count it under
// kind ("broker" or "storage"), and the client's error frame says only
// that the service is unavailable, never the backend's own words.
func (c *Client) unavailable(action, channel string, kind int, err error) {
	c.hub.stats.errors[kind].Add(1)
	c.reportError(&UnavailableError{ClientID: c.ID, UserID: c.UserID, Action: action, Channel: channel, Err: err})
	c.sendError(CodeUnavailable, action+" failed: the service is unavailable; try again shortly", action, channel)
}

// reportError hands err to Options.ErrorHandler, if there is one.
func (c *Client) reportError(err error) {
	if c.opts.ErrorHandler != nil {
		c.opts.ErrorHandler(err)
	}
}

// protocol returns the wire protocol the client speaks.
func (c *Client) protocol() wire.Protocol { return c.hub.protocols[c.proto] }

// send queues ev, encoded in the client's protocol, within the queue's
// bounds; false means the client is closing or was just closed as a slow
// consumer.
func (c *Client) send(ev *wire.Event) bool {
	f := encodeFrame(c.protocol(), ev)
	if f == nil {
		return true
	}
	return c.out.enqueue(f)
}

// sendAnswer queues ev outside the queue's bounds: for the frames a
// subscribe queues with its acknowledgement (the member list), which the
// client asked for and must not cost it the connection.
func (c *Client) sendAnswer(ev *wire.Event) {
	if f := encodeFrame(c.protocol(), ev); f != nil {
		c.out.enqueueUnbounded(f)
	}
}

// sendError queues an error frame.
func (c *Client) sendError(code, text, action, channel string) {
	c.send(&wire.Event{Kind: wire.Error, Code: code, Text: text, Action: action, Channel: channel})
}
