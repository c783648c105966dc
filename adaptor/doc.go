// Package adaptor serves a ws.Hub from HTTP stacks other than net/http.
//
// FiberHandler mounts a hub on a Fiber (fasthttp) app with the behaviour
// of ws.ServeWS: the same protocol, options, limits, origin checks and
// statistics, because it runs the same code. Only the HTTP plumbing
// differs: the request is converted to an *http.Request, the upgrade is
// done by github.com/fasthttp/websocket, and the connection is served on
// the goroutine fasthttp hands hijacked connections to.
package adaptor
