package ws

import (
	"encoding/json"
	"errors"
	"strconv"
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
// channel. WhisperMiddleware may change Event and Data; FromID and
// ChannelName are informative (changing them has no effect).
type WhisperEvent struct {
	FromID      string          // sender's user ID, set by the server
	ClientID    string          // sender's connection ID
	ChannelName string          // channel whispered on
	Event       string          // client-chosen event name, e.g. "typing"
	Data        json.RawMessage // client-chosen JSON value
}

// handleWhisper checks a whisper and publishes it to the other
// subscribers of its channel on every node.
func (c *Client) handleWhisper(in inbound) {
	refuse := func(code, msg string, err error) {
		c.hub.stats.errors[errKindWhisper].Add(1)
		c.sendJSON(encodeError(code, msg, ActionWhisper, in.Channel))
		c.reportError(&WhisperError{Message: msg, ClientID: c.ID, UserID: c.UserID, Channel: in.Channel, Event: in.Event, Err: err})
	}
	switch {
	case !c.opts.EnableWhispers:
		refuse(CodeWhisperDisabled, "whispers are disabled on this server", nil)
		return
	case c.UserID == "":
		refuse(CodeForbidden, "anonymous connections cannot whisper", nil)
		return
	}
	if err := ValidChannelName(in.Channel); err != nil {
		refuse(CodeInvalidChannel, err.Error(), err)
		return
	}
	if _, ok := c.joined[in.Channel]; !ok {
		refuse(CodeNotSubscribed, "subscribe to "+in.Channel+" before whispering on it", nil)
		return
	}
	if c.opts.WhisperPrivateOnly && KindOf(in.Channel) == PublicChannel {
		refuse(CodeForbidden, "whispers are allowed on private and presence channels only", nil)
		return
	}
	if !validWhisperEvent(in.Event) {
		refuse(CodeWhisperInvalid, "event must be 1 to "+strconv.Itoa(MaxWhisperEventLength)+" bytes of text without control characters", nil)
		return
	}
	maxData := c.opts.MaxWhisperSize
	if maxData <= 0 {
		maxData = DefaultMaxWhisperSize
	}
	if len(in.Data) > maxData {
		refuse(CodeWhisperInvalid, "data is "+strconv.Itoa(len(in.Data))+" bytes, the limit is "+strconv.Itoa(maxData), nil)
		return
	}
	if len(in.Data) == 0 {
		in.Data = json.RawMessage("null")
	}
	ev := &WhisperEvent{FromID: c.UserID, ClientID: c.ID, ChannelName: in.Channel, Event: in.Event, Data: in.Data}
	if mw := c.opts.WhisperMiddleware; mw != nil && !mw(ev) {
		refuse(CodeWhisperBlocked, "whisper blocked by the server", nil)
		return
	}
	if !validWhisperEvent(ev.Event) || len(ev.Data) > maxData || !json.Valid(ev.Data) {
		refuse(CodeWhisperInvalid, "WhisperMiddleware left an invalid event or data", errors.New("invalid whisper after middleware"))
		return
	}
	payload, err := json.Marshal(whisperFrame{Type: TypeWhisper, From: c.UserID, Event: ev.Event, Channel: in.Channel, Data: ev.Data})
	if err != nil {
		refuse(CodeWhisperInvalid, "whisper data cannot be encoded", err)
		return
	}
	ctx, cancel := c.hub.presenceCtx()
	defer cancel()
	c.hub.stats.whispersIn.Add(1)
	if err := c.hub.broker.Publish(ctx, in.Channel, encodeEnvelope(kindWhisper, c.ID, payload)); err != nil {
		c.hub.stats.brokerPublishFailures.Add(1)
		refuse(CodeUnavailable, "whisper could not be delivered: broker unavailable", err)
	}
}
