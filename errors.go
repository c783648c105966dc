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
	// ErrHubNotRunning is returned by ServeWS when the hub's Run has not
	// started within a second of the request: call go hub.Run() first.
	ErrHubNotRunning = errors.New("ws: hub not running")
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
	// ErrPublishUncertain is wrapped by a publish that failed after the
	// publication may have reached the broker (a timeout or a lost
	// connection while waiting for the reply): it may have been delivered
	// to some or all subscribers, or to none. Retrying may deliver it
	// twice. It does not match ErrBrokerUnavailable.
	ErrPublishUncertain = errors.New("ws: publish outcome unknown")
	// ErrSlowConsumer is the disconnect reason of a client whose send
	// queue overflowed.
	ErrSlowConsumer = errors.New("ws: slow consumer")
	// ErrClusterIncomplete is wrapped by the errors of Hub.Channels,
	// Hub.Channel, Hub.DisconnectUser and Hub.UnsubscribeUser when some
	// node did not answer within Config.ClusterTimeout (or ctx): what
	// they return covers the nodes that did.
	ErrClusterIncomplete = errors.New("ws: not every node answered")
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

// Close codes the server sends. Clients should reconnect after 1001, 4008
// and 4009 (docs/protocol.md), and not after 1008 or 4010.
const (
	CloseNormal          = 1000
	CloseGoingAway       = 1001 // server shutting down: reconnect elsewhere
	ClosePolicyViolation = 1008 // sustained rate-limit abuse
	CloseMessageTooBig   = 1009 // client frame over MaxMessageSize
	CloseInternalError   = 1011 // a handler panicked
	CloseSlowConsumer    = 4008 // send queue overflowed
	ClosePingTimeout     = 4009 // no pong within PongTimeout
	CloseTerminated      = 4010 // Hub.DisconnectUser: do not reconnect
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

// UnavailableError reports a client action that failed because the
// broker or the presence storage did. Err matches ErrBrokerUnavailable or
// ErrStorageUnavailable (errors.Is) and carries the backend's own error;
// the client was told only that the service is unavailable (code
// "unavailable").
type UnavailableError struct {
	ClientID string
	UserID   string
	Action   string
	Channel  string
	Err      error
}

func (e *UnavailableError) Error() string {
	return fmt.Sprintf("ws: %s on %q for client %s: %v", e.Action, e.Channel, e.ClientID, e.Err)
}

func (e *UnavailableError) Unwrap() error { return e.Err }

// ConfigError reports an invalid Config.
type ConfigError struct {
	Field  string
	Reason string
}

func (e *ConfigError) Error() string {
	return fmt.Sprintf("ws: config: %s: %s", e.Field, e.Reason)
}

// CloseReason is the disconnect reason of a client closed by the server
// with a close frame (see Client.DisconnectReason).
type CloseReason struct {
	Code int
	Text string
}

func (r *CloseReason) Error() string {
	return "ws: closed by server: " + r.Text
}

// PeerCloseError is the disconnect reason of a client that sent a close
// frame.
type PeerCloseError struct {
	Code int
	Text string
}

func (e *PeerCloseError) Error() string {
	return "ws: closed by client"
}
