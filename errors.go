package ws

import (
	"errors"
	"fmt"
	"time"
)

// Sentinel errors returned by the Hub and its helpers. Match them with
// errors.Is.
var (
	// ErrHubClosed is returned when the hub is shutting down or has stopped.
	ErrHubClosed = errors.New("ws: hub closed")
	// ErrRequestRejected is returned by ServeWS when a Middleware answered
	// the request itself instead of passing it on to the upgrade.
	ErrRequestRejected = errors.New("ws: request rejected by middleware")
	// ErrInvalidChannel is returned for a channel name that breaks the
	// naming rules (see ValidChannelName).
	ErrInvalidChannel = errors.New("ws: invalid channel name")
	// ErrBrokerUnavailable wraps broker failures seen by the Hub.
	ErrBrokerUnavailable = errors.New("ws: broker unavailable")
	// ErrStorageUnavailable wraps presence storage failures: RedisStorage
	// wraps every Redis error in it (the cause stays reachable with
	// errors.Is, a context deadline for example).
	ErrStorageUnavailable = errors.New("ws: storage unavailable")
	// ErrSlowConsumer is the disconnect reason of a client whose send
	// queue overflowed.
	ErrSlowConsumer = errors.New("ws: slow consumer")
)

// Error codes carried in the "code" field of error frames. They are stable:
// clients may switch on them.
const (
	CodeBadRequest       = "bad_request"        // malformed JSON or missing fields
	CodeUnknownAction    = "unknown_action"     // action is not one the server knows
	CodeBinaryNotAllowed = "binary_not_allowed" // binary frames are refused
	CodeInvalidChannel   = "invalid_channel"    // channel name breaks the naming rules
	CodeUnauthorized     = "unauthorized"       // private/presence subscribe refused
	CodeForbidden        = "forbidden"          // action not allowed (e.g. client publish)
	CodeNotSubscribed    = "not_subscribed"     // action needs a subscription first
	CodeTooManyChannels  = "too_many_channels"  // per-connection channel cap reached
	CodeRateLimited      = "rate_limited"       // frame dropped by the rate limit
	CodeWhisperDisabled  = "whisper_disabled"   // Options.EnableWhispers is false
	CodeWhisperBlocked   = "whisper_blocked"    // WhisperMiddleware returned false
	CodeWhisperInvalid   = "whisper_invalid"    // missing event, bad data, too large
	CodeUnavailable      = "unavailable"        // broker or storage failed; try again
	CodeMessageTooLarge  = "message_too_large"  // frame larger than the read limit
	CodeServerShutdown   = "server_shutdown"    // the hub is shutting down
)

// AuthError reports a refused subscription to a private or presence
// channel.
type AuthError struct {
	ClientID string
	UserID   string
	Channel  string
	Reason   string
	Err      error // cause returned by an AuthProvider, if any
}

func (e *AuthError) Error() string {
	msg := fmt.Sprintf("ws: auth: user %q refused on channel %q: %s", e.UserID, e.Channel, e.Reason)
	if e.Err != nil {
		msg += ": " + e.Err.Error()
	}
	return msg
}

func (e *AuthError) Unwrap() error { return e.Err }

// RateLimitError reports a frame dropped, or a connection refused, because
// a rate limit was exceeded.
type RateLimitError struct {
	ClientID string
	UserID   string
	// RemoteIP is set for connection-attempt limits.
	RemoteIP string
	// Messages per Interval is the limit that was exceeded.
	Messages int
	Interval time.Duration
	// Disconnected is true when the abuse rule closed the connection.
	Disconnected bool
}

func (e *RateLimitError) Error() string {
	who := e.ClientID
	if who == "" {
		who = e.RemoteIP
	}
	msg := fmt.Sprintf("ws: rate limit: %s exceeded %d per %s", who, e.Messages, e.Interval)
	if e.Disconnected {
		msg += "; connection closed"
	}
	return msg
}

// ConnectionError reports a connection that was refused, failed to upgrade
// or ended with an error.
type ConnectionError struct {
	ClientID   string
	RemoteAddr string
	// Op is what was being done: "upgrade", "admit", "read", "write", "close".
	Op string
	// StatusCode is the HTTP status sent when the request was refused
	// before the upgrade; zero otherwise.
	StatusCode int
	Reason     string
	Err        error
}

func (e *ConnectionError) Error() string {
	msg := "ws: connection " + e.Op
	if e.RemoteAddr != "" {
		msg += " from " + e.RemoteAddr
	}
	if e.Reason != "" {
		msg += ": " + e.Reason
	}
	if e.Err != nil {
		msg += ": " + e.Err.Error()
	}
	return msg
}

func (e *ConnectionError) Unwrap() error { return e.Err }

// WhisperError reports a refused whisper. Message says why, in words fit
// for a log line.
type WhisperError struct {
	Message  string
	ClientID string
	UserID   string
	Channel  string
	Event    string
	Err      error
}

func (e *WhisperError) Error() string {
	return fmt.Sprintf("ws: whisper %q on %q from user %q: %s", e.Event, e.Channel, e.UserID, e.Message)
}

func (e *WhisperError) Unwrap() error { return e.Err }

// ProtocolError reports a client frame the server could not act on:
// malformed JSON, an unknown action, a binary frame, an invalid channel.
type ProtocolError struct {
	ClientID string
	UserID   string
	Action   string
	Channel  string
	Code     string
	Message  string
	Err      error
}

func (e *ProtocolError) Error() string {
	msg := fmt.Sprintf("ws: protocol: client %s: %s (%s)", e.ClientID, e.Message, e.Code)
	if e.Err != nil {
		msg += ": " + e.Err.Error()
	}
	return msg
}

func (e *ProtocolError) Unwrap() error { return e.Err }

// ConfigError reports an invalid Config.
type ConfigError struct {
	Field  string
	Reason string
}

func (e *ConfigError) Error() string {
	return fmt.Sprintf("ws: config: %s: %s", e.Field, e.Reason)
}
