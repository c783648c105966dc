package ws

import "net/http"

// Options configure how ServeWS treats the connections of one endpoint.
// Every field is optional.
type Options struct {
	// AuthHandler decides whether userID may subscribe to a private- or
	// presence- channel. With neither AuthHandler nor AuthProvider set,
	// private and presence channels are refused. Anonymous connections
	// (empty user ID) are always refused.
	AuthHandler func(userID string, channelName string) bool
	// AuthProvider is the object form of AuthHandler, with the request
	// context and an error for the reason. When both are set AuthProvider
	// decides and AuthHandler is not called.
	AuthProvider AuthProvider

	// GetUserID identifies the user behind a request, once at connect
	// time. Nil, or an empty result, means an anonymous connection.
	GetUserID func(r *http.Request) string
	// GetUserInfo returns the info other members see for the user in
	// presence channels (any JSON-encodable value). Called once at
	// connect time for identified users. Nil, or a value that encodes as
	// JSON null (a nil map or pointer), means no info.
	GetUserInfo func(r *http.Request, userID string) any

	// ErrorHandler receives every error the endpoint meets: *AuthError,
	// *RateLimitError, *ConnectionError, *WhisperError, *ProtocolError.
	// It is called synchronously on the connection's goroutine.
	ErrorHandler func(err error)

	// Middleware wraps the upgrade in order: the first runs first.
	Middleware []Middleware

	// OnConnect is called once per connection after it is registered,
	// before its first frame is read.
	OnConnect func(client *Client)
	// OnDisconnect is called once per connection after it has left every
	// channel, whatever ended it; client.DisconnectReason says why.
	OnDisconnect func(client *Client)

	// OnSubscribe is called after a connection joined a channel (once
	// per channel it joins, not for a repeated subscribe), and
	// OnUnsubscribe after it left one: by unsubscribing, by
	// Hub.UnsubscribeUser, or by disconnecting (then possibly after
	// OnDisconnect). For one connection and channel they alternate. They
	// run on the node that has the connection, on the hub's hook
	// goroutine, one hook at a time in the order the changes happened
	// (see docs/cluster.md); neither may block for long.
	OnSubscribe   func(client *Client, channel string)
	OnUnsubscribe func(client *Client, channel string)

	// EnableWhispers lets subscribed, identified clients send whispers.
	EnableWhispers bool
	// WhisperPrivateOnly restricts whispers to private- and presence-
	// channels, as Pusher does, so only authorized users can whisper.
	// The default allows whispers on every channel the sender joined.
	WhisperPrivateOnly bool
	// WhisperMiddleware may change a whisper or block it by returning
	// false.
	WhisperMiddleware func(whisper *WhisperEvent) bool
	// MaxWhisperSize is the largest whisper data, in bytes of JSON. A
	// whisper is copied to every subscriber of its channel, so it is
	// bounded well below MaxMessageSize. Zero means 10 KiB (Pusher's
	// limit for client events).
	MaxWhisperSize int
}
