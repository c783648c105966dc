package ws

import "net/http"

// Middleware wraps the HTTP handling of a WebSocket request before the
// upgrade: it can refuse the request (answer it without calling next),
// decorate it, or observe it. It composes like any net/http middleware.
type Middleware interface {
	// Handle returns a handler that runs before next. It is called once
	// per request by ServeWS.
	Handle(next http.Handler) http.Handler
}

// MiddlewareFunc adapts a plain function to Middleware.
type MiddlewareFunc func(next http.Handler) http.Handler

// Handle calls f(next).
func (f MiddlewareFunc) Handle(next http.Handler) http.Handler { return f(next) }

// chain wraps h in mws so that mws[0] runs first.
func chain(mws []Middleware, h http.Handler) http.Handler {
	for i := len(mws) - 1; i >= 0; i-- {
		if mws[i] != nil {
			h = mws[i].Handle(h)
		}
	}
	return h
}
