package ws

import (
	"encoding/json"
	"errors"
	"strconv"
	"unicode"
	"unicode/utf8"

	"github.com/vortechron/go-ws/internal/wire"
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
	FromID      string          // sender's user ID (on the channel; see handleWhisper), set by the server
	ClientID    string          // sender's connection ID
	ChannelName string          // channel whispered on
	Event       string          // client-chosen event name, e.g. "typing"
	Data        json.RawMessage // client-chosen JSON value
}

// refuseWhisper reports a refused whisper to Options.ErrorHandler as a
// *WhisperError and answers the client with an error frame. The handler
// runs first, so it has seen the error by the time the client does.
func (c *Client) refuseWhisper(a wire.Action, code, msg string, err error) {
	kind := errKindWhisper
	if code == CodeUnavailable {
		kind = errKindBroker
	}
	c.hub.stats.errors[kind].Add(1)
	c.reportError(&WhisperError{Message: msg, ClientID: c.ID, UserID: c.UserID, Channel: a.Channel, Event: a.Event, Err: err})
	c.sendError(code, msg, actionWhisper, a.Channel)
}

// handleWhisper checks a whisper and publishes it to the other
// subscribers of its channel on every node. Each check that fails answers
// the client with an error frame and ErrorHandler with a *WhisperError.
//
// The whisper comes from who the client is on the channel: the member its
// protocol granted it there (Pusher's channel_data), else its user. An
// anonymous client may whisper only on a channel its protocol authorized
// (a Pusher client on a private channel it holds a signature for).
func (c *Client) handleWhisper(a wire.Action) {
	if !c.opts.EnableWhispers {
		c.refuseWhisper(a, CodeWhisperDisabled, "whispers are disabled on this server", nil)
		return
	}
	if err := ValidChannelName(a.Channel); err != nil {
		c.refuseWhisper(a, CodeInvalidChannel, err.Error(), err)
		return
	}
	if !c.inChannel(a.Channel) {
		c.refuseWhisper(a, CodeNotSubscribed, "subscribe to "+a.Channel+" before whispering on it", nil)
		return
	}
	if c.opts.WhisperPrivateOnly && kindOf(a.Channel) == publicChannel {
		c.refuseWhisper(a, CodeForbidden, "whispers are allowed on private and presence channels only", nil)
		return
	}
	from, granted := c.identity(a.Channel)
	if from == "" && !granted {
		c.refuseWhisper(a, CodeForbidden, "anonymous connections cannot whisper", nil)
		return
	}
	if !validWhisperEvent(a.Event) {
		c.refuseWhisper(a, CodeWhisperInvalid, "event must be 1 to "+strconv.Itoa(MaxWhisperEventLength)+" bytes of text without control characters", nil)
		return
	}
	maxData := c.opts.MaxWhisperSize
	if maxData <= 0 {
		maxData = DefaultMaxWhisperSize
	}
	if len(a.Data) > maxData {
		c.refuseWhisper(a, CodeWhisperInvalid, "data is "+strconv.Itoa(len(a.Data))+" bytes, the limit is "+strconv.Itoa(maxData), nil)
		return
	}
	if len(a.Data) == 0 {
		a.Data = json.RawMessage("null")
	}
	ev := &WhisperEvent{FromID: from, ClientID: c.ID, ChannelName: a.Channel, Event: a.Event, Data: a.Data}
	if mw := c.opts.WhisperMiddleware; mw != nil && !mw(ev) {
		c.refuseWhisper(a, CodeWhisperBlocked, "whisper blocked by the server", nil)
		return
	}
	if ev.Data == nil {
		ev.Data = json.RawMessage("null")
	}
	if !validWhisperEvent(ev.Event) || len(ev.Data) > maxData || !json.Valid(ev.Data) {
		c.refuseWhisper(a, CodeWhisperInvalid, "WhisperMiddleware left an invalid event or data", errors.New("invalid whisper after middleware"))
		return
	}
	ctx, cancel := c.hub.presenceCtx()
	defer cancel()
	c.hub.stats.whispersIn.Add(1)
	w := wire.Event{Kind: wire.WhisperEvent, Channel: a.Channel, Name: ev.Event, From: from, Data: ev.Data}
	if err := c.hub.publish(ctx, &w, c.ID); err != nil {
		c.refuseWhisper(a, CodeUnavailable, "whisper could not be delivered: the service is unavailable; try again shortly", err)
	}
}
