package ws

import (
	"context"
	"errors"
)

// AuthProvider authorizes subscriptions to private- and presence-
// channels. It is the object form of Options.AuthHandler and wins over it
// when both are set.
type AuthProvider interface {
	// Authorize returns nil to let userID subscribe to channel, or an
	// error that says why not. The error reaches ErrorHandler as the Err
	// of an *AuthError; the client's error frame (code "unauthorized")
	// names the channel but not the error's text, so internal details
	// such as a database error never reach a browser. ctx is the context
	// of the connection's HTTP request. It is called on the connection's
	// goroutine and may block (for example to ask a database); other
	// connections are not held up. It is never called for anonymous
	// connections, which are refused first.
	Authorize(ctx context.Context, userID string, channel string) error
}

// AuthFunc adapts a function to AuthProvider.
type AuthFunc func(ctx context.Context, userID, channel string) error

// Authorize calls f.
func (f AuthFunc) Authorize(ctx context.Context, userID, channel string) error {
	return f(ctx, userID, channel)
}

var errDenied = errors.New("denied")

// authorize decides a private or presence subscription: anonymous
// connections are refused, then AuthProvider decides if set, else
// AuthHandler, else the channel is refused.
func (c *Client) authorize(channel string) *AuthError {
	deny := func(reason string, err error) *AuthError {
		return &AuthError{ClientID: c.ID, UserID: c.UserID, Channel: channel, Reason: reason, Err: err}
	}
	if c.UserID == "" {
		return deny("anonymous connections cannot join private or presence channels", nil)
	}
	switch {
	case c.opts.AuthProvider != nil:
		if err := c.opts.AuthProvider.Authorize(c.Context(), c.UserID, channel); err != nil {
			return deny("refused by AuthProvider", err)
		}
		return nil
	case c.opts.AuthHandler != nil:
		if !c.opts.AuthHandler(c.UserID, channel) {
			return deny("refused by AuthHandler", errDenied)
		}
		return nil
	default:
		return deny("no AuthHandler or AuthProvider is configured, so private and presence channels are closed", nil)
	}
}
