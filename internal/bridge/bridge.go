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
	// ResponseHeader returns what the upgrade's answer must carry besides
	// the upgrade itself: Sec-WebSocket-Protocol and
	// Sec-WebSocket-Extensions when the hub negotiated them. An adaptor
	// that calls it must send them; the connection is then served
	// compressed and with the subprotocol as negotiated. Without the
	// call it is served with neither, whatever the client offered.
	ResponseHeader() http.Header
	// Start registers the upgraded connection and returns once it is
	// (after OnConnect), serving it on a goroutine of its own, as
	// ws.ServeWS does: for net/http, where that releases the handler's
	// goroutine and buffers.
	Start(conn Conn) error
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

// The plumbing of package pusher.
var (
	// WatchPresence registers fn to be called for every presence join
	// and leave that hub decides (once per change across the cluster:
	// the node whose add, remove or maintenance made it calls it). fn
	// runs on the goroutine announcing the change and must not block.
	WatchPresence func(hub any, fn func(channel, userID string, left bool))

	// PusherConnect, set by package pusher, checks a Pusher client's
	// connection request to srv (a *pusher.Server), for the Fiber
	// adaptor; see PusherConn.
	PusherConnect func(srv any, r *http.Request) PusherConn
)

// PusherConn is how a Pusher connection request is to be served: on Hub
// with Options and Protocol (for Prepare), or, when RefuseCode is set,
// refused after the upgrade with the text frame RefuseFrame and a close
// frame of RefuseCode and RefuseText. Err is set when the server cannot
// serve at all (answer 500).
type PusherConn struct {
	Hub         any
	Options     any
	Protocol    int
	RefuseCode  int
	RefuseText  string
	RefuseFrame []byte
	Err         error
}
