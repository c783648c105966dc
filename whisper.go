package ws

import (
	"bytes"
	"encoding/json"
	"errors"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Whisper limits: an event name is 1 to MaxWhisperEventLength bytes of
// UTF-8 text without control characters; the data is any JSON value of
// at most Options.MaxWhisperSize bytes (DefaultMaxWhisperSize when zero).
const (
	MaxWhisperEventLength = 64
	DefaultMaxWhisperSize = 10 << 10
)

// validWhisperEvent reports whether ev is 1 to MaxWhisperEventLength
// bytes of valid UTF-8 without control characters, so it is safe to show
// and to log.
func validWhisperEvent(ev string) bool {
	if ev == "" || len(ev) > MaxWhisperEventLength || !utf8.ValidString(ev) {
		return false
	}
	for _, r := range ev {
		if unicode.IsControl(r) {
			return false
		}
	}
	return true
}

// WhisperEvent is a client event on its way to the other subscribers of a
// channel. WhisperMiddleware may change Event and Data (a nil Data is sent
// as null); FromID, ClientID and ChannelName are informative: changing
// them has no effect, so a whisper always names its real sender and goes
// to the channel it was sent on.
type WhisperEvent struct {
	FromID      string          // sender's user ID, set by the server
	ClientID    string          // sender's connection ID
	ChannelName string          // channel whispered on
	Event       string          // client-chosen event name, e.g. "typing"
	Data        json.RawMessage // client-chosen JSON value
}

// refuseWhisper reports a refused whisper to Options.ErrorHandler as a
// *WhisperError and answers the client with an error frame. The handler
// runs first, so it has seen the error by the time the client does.
func (c *Client) refuseWhisper(in inbound, code, msg string, err error) {
	c.hub.stats.errors[errKindWhisper].Add(1)
	c.reportError(&WhisperError{Message: msg, ClientID: c.ID, UserID: c.UserID, Channel: in.Channel, Event: in.Event, Err: err})
	c.sendJSON(encodeError(code, msg, ActionWhisper, in.Channel))
}

// handleWhisper checks a whisper and publishes it to the other
// subscribers of its channel on every node. Each check that fails answers
// the client with an error frame and ErrorHandler with a *WhisperError.
func (c *Client) handleWhisper(in inbound) {
	switch {
	case !c.opts.EnableWhispers:
		c.refuseWhisper(in, CodeWhisperDisabled, "whispers are disabled on this server", nil)
		return
	case c.UserID == "":
		c.refuseWhisper(in, CodeForbidden, "anonymous connections cannot whisper", nil)
		return
	}
	if err := ValidChannelName(in.Channel); err != nil {
		c.refuseWhisper(in, CodeInvalidChannel, err.Error(), err)
		return
	}
	if !c.inChannel(in.Channel) {
		c.refuseWhisper(in, CodeNotSubscribed, "subscribe to "+in.Channel+" before whispering on it", nil)
		return
	}
	if c.opts.WhisperPrivateOnly && KindOf(in.Channel) == PublicChannel {
		c.refuseWhisper(in, CodeForbidden, "whispers are allowed on private and presence channels only", nil)
		return
	}
	if !validWhisperEvent(in.Event) {
		c.refuseWhisper(in, CodeWhisperInvalid, "event must be 1 to "+strconv.Itoa(MaxWhisperEventLength)+" bytes of text without control characters", nil)
		return
	}
	maxData := c.opts.MaxWhisperSize
	if maxData <= 0 {
		maxData = DefaultMaxWhisperSize
	}
	if len(in.Data) > maxData {
		c.refuseWhisper(in, CodeWhisperInvalid, "data is "+strconv.Itoa(len(in.Data))+" bytes, the limit is "+strconv.Itoa(maxData), nil)
		return
	}
	if len(in.Data) == 0 {
		in.Data = json.RawMessage("null")
	}
	ev := &WhisperEvent{FromID: c.UserID, ClientID: c.ID, ChannelName: in.Channel, Event: in.Event, Data: in.Data}
	if mw := c.opts.WhisperMiddleware; mw != nil && !mw(ev) {
		c.refuseWhisper(in, CodeWhisperBlocked, "whisper blocked by the server", nil)
		return
	}
	if ev.Data == nil {
		ev.Data = json.RawMessage("null")
	}
	if !validWhisperEvent(ev.Event) || len(ev.Data) > maxData || !json.Valid(ev.Data) {
		c.refuseWhisper(in, CodeWhisperInvalid, "WhisperMiddleware left an invalid event or data", errors.New("invalid whisper after middleware"))
		return
	}
	payload, err := json.Marshal(whisperFrame{Type: TypeWhisper, From: c.UserID, Event: ev.Event, Channel: in.Channel, Data: ev.Data})
	if err != nil {
		c.refuseWhisper(in, CodeWhisperInvalid, "whisper data cannot be encoded", err)
		return
	}
	ctx, cancel := c.hub.presenceCtx()
	defer cancel()
	c.hub.stats.whispersIn.Add(1)
	if err := c.hub.broker.Publish(ctx, in.Channel, encodeEnvelope(kindWhisper, c.ID, payload)); err != nil {
		c.hub.stats.brokerPublishFailures.Add(1)
		c.refuseWhisper(in, CodeUnavailable, "whisper could not be delivered: broker unavailable", err)
	}
}

// malformedWhisper reports whether b, a client frame that failed to
// decode, is a whisper, and if so refuses it as one: a whisper whose data
// is not a JSON value, or whose event or channel is not a string, is a
// refused whisper (a *WhisperError), not an anonymous protocol error.
func (c *Client) malformedWhisper(b []byte, err error) bool {
	in := salvageInbound(b)
	if in.Action != ActionWhisper {
		return false
	}
	c.refuseWhisper(in, CodeWhisperInvalid, "malformed whisper: "+err.Error()+
		`; send {"action":"whisper","channel":"...","event":"...","data":<any JSON value>}`, err)
	return true
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
