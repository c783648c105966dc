// Package bridge lets the packages of this module that serve a ws.Hub from
// other HTTP stacks or wire protocols (adaptor, pusher) reach the hub's
// connection plumbing without ws exporting it. Package ws sets the
// functions below when it is initialised; hub and options are a *ws.Hub
// and a *ws.Options, passed as any because this package cannot import ws.
package bridge

import (
	"net"
	"net/http"

	"github.com/vortechron/go-ws/internal/wire"
)

// Conn is an upgraded WebSocket connection: *websocket.Conn from
// github.com/gorilla/websocket and from its fasthttp fork both satisfy it.
// The hub reads and writes frames on NetConn itself, so nothing else may
// use the connection once it is handed over.
type Conn interface {
	NetConn() net.Conn
}

// Handshake is a request that passed the hub's checks before the upgrade
// and holds a connection slot. Exactly one of Serve and Fail must be
// called.
type Handshake interface {
	// Serve runs the upgraded connection until it ends, on the calling
	// goroutine, for HTTP stacks that close the connection when the
	// handler returns.
	Serve(conn Conn) error
	// Fail ends a handshake whose upgrade failed: it releases the slot and
	// reports err to Options.ErrorHandler, and returns the error it
	// reported.
	Fail(err error) error
}

var (
	// Prepare runs options.Middleware and then the hub's checks before an
	// upgrade (running hub, origin, connection limits, GetUserID) for r.
	// A refusal, or an answer a middleware wrote itself, goes to w, and
	// Prepare returns nil. The connection will speak protocol, an index
	// returned by AddProtocol (0 is ws's own).
	Prepare func(hub any, w http.ResponseWriter, r *http.Request, options any, protocol int) Handshake

	// AddProtocol registers a wire protocol on hub, before hub.Run, and
	// returns its index.
	AddProtocol func(hub any, p wire.Protocol) (int, error)

	// SetUser makes userID the user of client (a *ws.Client) that had
	// none, for protocols whose clients sign in on an open connection
	// (pusher:signin); setting the user it has is a no-op, another one an
	// error. It must be called on the client's read goroutine while it
	// handles a frame, or in Options.OnConnect.
	SetUser func(client any, userID string) error

	// AddOccupancyHooks adds functions that hub (a *ws.Hub) calls as it
	// calls Config.OnChannelOccupied and OnChannelVacated: once per
	// cluster, on its hook goroutine. Either may be nil. Before hub.Run
	// only.
	AddOccupancyHooks func(hub any, occupied, vacated func(channel string)) error
)
