package adaptor

import (
	"context"
	"io"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/fasthttp/websocket"
	"github.com/gofiber/fiber/v2"
	"github.com/valyala/fasthttp"

	ws "github.com/vortechron/go-ws"
	"github.com/vortechron/go-ws/internal/bridge"
)

// FiberHandler returns a Fiber handler that serves WebSocket connections
// on hub with options, as ws.Handler does for net/http:
//
//	app.Use("/ws", adaptor.FiberHandler(hub, options))
//
// Each request is converted to an *http.Request (method, URL with query,
// headers, cookies, Host, and the TCP peer as RemoteAddr; the context is
// c.UserContext()) and runs through options.Middleware, the hub's origin
// and connection-limit checks and GetUserID exactly as under ws.ServeWS.
// An answer written by a middleware or a refusal (403, 429, 503) is sent
// through Fiber and the connection is not upgraded. Errors go to
// options.ErrorHandler; the handler itself always returns nil.
//
// One difference from net/http is unavoidable: fasthttp serves a hijacked
// connection only after the handler has returned, so a middleware's code
// after next.ServeHTTP runs before the connection is served, not after it
// has ended.
func FiberHandler(hub *ws.Hub, options *ws.Options) fiber.Handler {
	if options == nil {
		options = &ws.Options{}
	}
	// ws reads and writes frames itself after the handshake, so the
	// upgrader's own buffers serve the handshake only.
	up := &websocket.FastHTTPUpgrader{
		WriteBufferPool: writeBufferPool,
		CheckOrigin:     func(*fasthttp.RequestCtx) bool { return true }, // checked by Accept
		Error:           handshakeError,
	}
	writeTimeout := hub.Config().WriteTimeout
	return func(c *fiber.Ctx) error {
		serve(c, hub, up, options, 0, writeTimeout)
		return nil
	}
}

// handshakeError answers a request that is not a valid WebSocket
// handshake as gorilla's Upgrader does for ServeWS. (fasthttp/websocket's
// own answer drops the Sec-WebSocket-Version header: ctx.Error resets the
// headers it set just before.)
func handshakeError(ctx *fasthttp.RequestCtx, status int, _ error) {
	ctx.Error(fasthttp.StatusMessage(status), status)
	ctx.Response.Header.Set("Sec-Websocket-Version", "13")
}

// writeBufferPool keeps fasthttp/websocket from allocating a write buffer
// per connection; ws writes frames without it.
var writeBufferPool = &sync.Pool{}

// serve upgrades c's request to a connection on hub that speaks protocol
// (an index from bridge.AddProtocol; 0 is ws's own).
func serve(c *fiber.Ctx, hub *ws.Hub, up *websocket.FastHTTPUpgrader, options *ws.Options, protocol int, writeTimeout time.Duration) {
	fctx := c.Context()
	ctx, cancel := context.WithCancel(c.UserContext())
	r, err := newRequest(ctx, fctx)
	if err != nil {
		cancel()
		c.Status(http.StatusBadRequest)
		return
	}
	rec := newRecorder()
	hs := bridge.Prepare(hub, rec, r, options, protocol)
	if hs == nil {
		cancel()
		rec.writeTo(c)
		return
	}

	var resp []byte // the 101 response, written by the hijack handler
	err = up.Upgrade(fctx, func(conn *websocket.Conn) {
		defer cancel()
		nc := hijacked(conn.NetConn())
		_ = nc.SetWriteDeadline(time.Now().Add(writeTimeout))
		if _, err := nc.Write(resp); err != nil {
			_ = hs.Fail(err)
			return
		}
		// Serve blocks for the connection's lifetime, which is what this
		// goroutine is for: fasthttp closes the connection when it returns.
		if err := hs.Serve(netConn{nc}); err != nil && options.ErrorHandler != nil {
			options.ErrorHandler(err)
		}
	})
	if err != nil {
		// The upgrader answered the request (400, 405) already.
		cancel()
		_ = hs.Fail(err)
		return
	}
	// The hub negotiated the subprotocol and compression before the
	// upgrade (the upgrader's own negotiation is off); its answer goes
	// out with the 101.
	for k, v := range hs.ResponseHeader() {
		fctx.Response.Header.Set(k, v[0])
	}
	// fasthttp skips the hijack handler, leaking the handshake's slot, if
	// writing the response fails or the connection is to be closed
	// (Connection: close, DisableKeepalive, shutdown). Writing the 101
	// from the hijack handler instead means it always runs.
	resp = append([]byte(nil), fctx.Response.Header.Header()...)
	fctx.HijackSetNoResponse(true)
}

// hijacked returns the connection ws should serve for fasthttp's hijacked
// connection hc. hc's Close does nothing (fasthttp closes the connection
// after the hijack handler returns), but ws closes the socket to end a
// connection it gave up on (slow consumer, shutdown deadline, a peer that
// does not answer a close), so writes, deadlines and Close go to the TCP
// connection itself. Reads still go through hc: its reader may hold bytes
// the client sent right behind its handshake.
func hijacked(hc net.Conn) net.Conn {
	u, ok := hc.(interface{ UnsafeConn() net.Conn })
	if !ok {
		return hc
	}
	if tc, ok := u.UnsafeConn().(*net.TCPConn); ok {
		return &hijackedTCP{Conn: tc, tc: tc, r: hc}
	}
	return &hijackedConn{Conn: u.UnsafeConn(), r: hc}
}

// hijackedTCP writes straight to the TCP connection, so it tells the hub
// so (TCPConn): the hub's write shards then write to it with their
// non-blocking writev, as to a connection from ServeWS.
type hijackedTCP struct {
	net.Conn // the *net.TCPConn, as tc
	tc       *net.TCPConn
	r        io.Reader
}

func (c *hijackedTCP) Read(p []byte) (int, error) { return c.r.Read(p) }

// CloseWrite half-closes the TCP connection, for the close handshake.
func (c *hijackedTCP) CloseWrite() error { return c.tc.CloseWrite() }

// TCPConn returns the connection that writes go to unchanged.
func (c *hijackedTCP) TCPConn() *net.TCPConn { return c.tc }

type hijackedConn struct {
	net.Conn
	r io.Reader
}

func (c *hijackedConn) Read(p []byte) (int, error) { return c.r.Read(p) }

// netConn hands an upgraded connection to the handshake's Serve.
type netConn struct{ nc net.Conn }

var _ bridge.Conn = netConn{}

func (c netConn) NetConn() net.Conn { return c.nc }
