package ws

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"sync"
	"time"

	"github.com/gorilla/websocket"
	"github.com/vortechron/go-ws/internal/bridge"
	"github.com/vortechron/go-ws/internal/frame"
	"golang.org/x/time/rate"
)

// ServeWS upgrades the request to a WebSocket connection on hub. Before
// the upgrade it runs options.Middleware and checks the origin and
// connection limits, answering refused requests with an HTTP error. It
// returns once the connection is upgraded and registered (after
// OnConnect); the connection is then served on its own goroutine, so the
// handler's goroutine and net/http's buffers are released. It returns an
// error when the request was refused (*ConnectionError,
// ErrRequestRejected, ErrHubClosed) or the upgrade failed.
func ServeWS(hub *Hub, w http.ResponseWriter, r *http.Request, options *Options) error {
	if options == nil {
		options = &Options{}
	}
	var err error
	reached := false
	inner := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		reached = true
		err = hub.serveHTTP(w, r, options)
	})
	chain(options.Middleware, inner).ServeHTTP(w, r)
	if !reached {
		return ErrRequestRejected
	}
	return err
}

// Handler returns an http.Handler that serves WebSocket connections on
// hub with options, reporting errors to options.ErrorHandler.
func Handler(hub *Hub, options *Options) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		err := ServeWS(hub, w, r, options)
		if err != nil && options != nil && options.ErrorHandler != nil && !errors.Is(err, ErrRequestRejected) {
			var ce *ConnectionError
			if !errors.As(err, &ce) { // refusals were reported already
				options.ErrorHandler(err)
			}
		}
	})
}

// writeBufferPool keeps gorilla from holding a write buffer per
// connection; frames are written without it.
var writeBufferPool = &sync.Pool{}

func (h *Hub) serveHTTP(w http.ResponseWriter, r *http.Request, options *Options) error {
	hs, err := h.accept(w, r, options, 0)
	if err != nil {
		return err
	}
	// A zero read buffer size lets gorilla reuse net/http's reader for the
	// handshake; the hub reads and writes frames itself afterwards.
	// What it negotiated was decided by accept: gorilla's answer to an
	// acceptable permessage-deflate offer is deflateResponse, and the
	// selected subprotocol goes in as a response header.
	up := websocket.Upgrader{
		WriteBufferSize:   h.cfg.WriteBufferSize,
		WriteBufferPool:   writeBufferPool,
		CheckOrigin:       func(*http.Request) bool { return true }, // checked by accept
		EnableCompression: hs.deflate,
	}
	var header http.Header
	if hs.subprotocol != "" {
		header = http.Header{"Sec-Websocket-Protocol": {hs.subprotocol}}
	}
	hs.answered = true
	conn, err := up.Upgrade(w, r, header)
	if err != nil {
		return hs.Fail(err)
	}
	c, err := hs.start(conn)
	if err != nil {
		return err
	}
	go c.run()
	return nil
}

// handshake is a request that passed the hub's checks before the upgrade
// and holds a connection slot: accept, upgrade, then start (ServeWS) or
// Serve (adaptors), or Fail if the upgrade failed.
type handshake struct {
	hub      *Hub
	opts     *Options
	r        *http.Request
	ip       string
	key      string // what per-IP limits count under (see ipKey)
	userID   string
	proto    uint8 // index of the connection's wire protocol
	released bool
	negotiated
	// answered says the upgrade's answer carried what was negotiated
	// (ResponseHeader was asked for it); a connection whose upgrader did
	// not is served uncompressed, with no subprotocol.
	answered bool
}

var _ bridge.Handshake = (*handshake)(nil)

// runStartGrace is how long a request waits for a Hub whose Run has not
// started yet: `go hub.Run()` may not have been scheduled when the first
// request arrives, but a hub whose Run never starts refuses it.
const runStartGrace = time.Second

// accept runs the checks made before an upgrade: a well-formed handshake
// with a subprotocol the server speaks, if it asks for one (negotiate), a
// running hub, an allowed Origin, room under MaxConnections and
// MaxConnectionsPerIP; then it identifies the user. A refused request
// gets its HTTP error written to w (400, 403, 426, 429, 503) and a
// *ConnectionError back, which also goes to options.ErrorHandler.
// Middleware is not run here; ServeWS and bridge.Prepare run it around
// accept.
func (h *Hub) accept(w http.ResponseWriter, r *http.Request, options *Options, proto int) (*handshake, error) {
	refuse := func(status int, reason string, err error) (*handshake, error) {
		cerr := &ConnectionError{RemoteAddr: r.RemoteAddr, Op: "admit", StatusCode: status, Reason: reason, Err: err}
		h.stats.errors[errKindConnection].Add(1)
		h.stats.refused.Add(1)
		http.Error(w, http.StatusText(status)+": "+reason, status)
		if options.ErrorHandler != nil {
			options.ErrorHandler(cerr)
		}
		return nil, cerr
	}
	status, reason := checkHandshake(r)
	var neg negotiated
	if status == 0 {
		neg, status, reason = h.negotiate(r)
	}
	if status != 0 {
		cerr := &ConnectionError{RemoteAddr: r.RemoteAddr, Op: "upgrade", StatusCode: status, Reason: reason}
		h.stats.errors[errKindConnection].Add(1)
		if status == http.StatusUpgradeRequired {
			w.Header().Set("Sec-WebSocket-Version", "13")
		}
		http.Error(w, http.StatusText(status)+": "+reason, status)
		if options.ErrorHandler != nil {
			options.ErrorHandler(cerr)
		}
		return nil, cerr
	}
	if h.cfgErr != nil {
		return refuse(http.StatusInternalServerError, "invalid hub configuration", h.cfgErr)
	}
	if !h.started.Load() {
		select {
		case <-h.running:
		case <-h.done:
		case <-time.After(runStartGrace):
			return refuse(http.StatusServiceUnavailable, "the hub is not running (call go hub.Run())", ErrHubNotRunning)
		}
	}
	if h.closing.Load() || h.isDone() {
		return refuse(http.StatusServiceUnavailable, "server is shutting down", ErrHubClosed)
	}
	if !h.originAllowed(r) {
		return refuse(http.StatusForbidden, "origin "+r.Header.Get("Origin")+" is not allowed", nil)
	}
	ip := remoteIP(r)
	key := ipKey(ip)
	if status, reason := h.admit(key); status != 0 {
		return refuse(status, reason, nil)
	}
	hs := &handshake{hub: h, opts: options, r: r, ip: ip, key: key, proto: uint8(proto), negotiated: neg}
	if options.GetUserID != nil {
		identified := false
		defer func() {
			if !identified {
				hs.release() // GetUserID panicked: the slot must not leak
			}
		}()
		hs.userID = options.GetUserID(r)
		identified = true
	}
	return hs, nil
}

// release gives the connection slot back without serving; for an upgrade
// that failed. It is a no-op after start.
func (hs *handshake) release() {
	if !hs.released {
		hs.released = true
		hs.hub.release(hs.key)
	}
}

// Fail ends a handshake whose upgrade failed: it releases the connection
// slot, counts the failure in Stats.Errors["connection"] and hands err,
// wrapped in a *ConnectionError with Op "upgrade", to
// Options.ErrorHandler. It returns that error. The HTTP answer to the
// failed upgrade is the upgrading library's to write.
func (hs *handshake) Fail(err error) error {
	hs.release()
	cerr := &ConnectionError{RemoteAddr: hs.r.RemoteAddr, Op: "upgrade", Err: err}
	hs.hub.stats.errors[errKindConnection].Add(1)
	hs.report(cerr)
	return cerr
}

func (hs *handshake) report(err error) {
	if hs.opts.ErrorHandler != nil {
		hs.opts.ErrorHandler(err)
	}
}

// ResponseHeader returns the headers the upgrade's answer carries besides
// those of the upgrade itself: the selected subprotocol and the accepted
// compression, as negotiate decided them. An upgrader that calls it
// promises to send them; one that does not gets a connection without
// either.
func (hs *handshake) ResponseHeader() http.Header {
	hs.answered = true
	hdr := http.Header{}
	if hs.subprotocol != "" {
		hdr.Set("Sec-WebSocket-Protocol", hs.subprotocol)
	}
	if hs.deflate {
		hdr.Set("Sec-WebSocket-Extensions", deflateResponse)
	}
	return hdr
}

// Serve runs an upgraded connection until it ends, on the calling
// goroutine, and releases the connection slot. Adaptors whose HTTP stack
// closes the connection when the handler returns use it; ServeWS instead
// starts the connection and returns.
func (hs *handshake) Serve(conn bridge.Conn) error {
	c, err := hs.start(conn)
	if err != nil {
		return err
	}
	c.run()
	return nil
}

// Start registers an upgraded connection and serves it on a goroutine of
// its own, like ServeWS; for the Pusher endpoint.
func (hs *handshake) Start(conn bridge.Conn) error {
	c, err := hs.start(conn)
	if err != nil {
		return err
	}
	go c.run()
	return nil
}

// start registers the connection with the hub, sends its protocol's
// greeting, if any, and calls OnConnect.
func (hs *handshake) start(conn bridge.Conn) (*Client, error) {
	h := hs.hub
	hs.released = true // the client releases the slot from now on
	key := hs.key      // not hs: the client must not keep the request alive
	c := &Client{
		ID:          h.newClientID(),
		UserID:      hs.userID,
		RemoteAddr:  hs.r.RemoteAddr,
		RemoteIP:    hs.ip,
		ConnectedAt: time.Now(),
		hub:         h,
		opts:        hs.opts,
		nc:          conn.NetConn(),
		ctx:         context.WithoutCancel(hs.r.Context()),
		slotKey:     key,
		proto:       hs.proto,
	}
	if hs.answered {
		c.negotiated = hs.negotiated
	}
	c.out.init(h, c.ID, c.nc, h.shards[h.nextShard.Add(1)%uint64(len(h.shards))])
	c.out.proto = hs.proto
	// If GetUserInfo or OnConnect panics (net/http recovers the panic on
	// this goroutine), the hijacked socket, the slot and the registration
	// must not leak.
	started, registered := false, false
	defer func() {
		if started {
			return
		}
		c.Close(CloseInternalError, "internal error")
		if registered {
			c.teardown()
		} else {
			<-c.out.done
			c.out.drainAndClose()
			c.releaseSlot()
		}
	}()
	if rl := h.cfg.RateLimit; rl.Messages > 0 {
		c.limiter = rate.NewLimiter(rate.Limit(float64(rl.Messages)/rl.Interval.Seconds()), rl.Messages)
	}
	if hs.opts.GetUserInfo != nil && c.UserID != "" {
		b, err := json.Marshal(hs.opts.GetUserInfo(hs.r, c.UserID))
		switch {
		case err != nil:
			h.stats.errors[errKindConnection].Add(1)
			hs.report(&ConnectionError{ClientID: c.ID, RemoteAddr: c.RemoteAddr, Op: "admit", Reason: "GetUserInfo returned a value that is not JSON-encodable", Err: err})
		case string(b) != "null": // nil, a nil map or a nil pointer is no info
			c.info = b
		}
	}
	if res := h.call(&hubOp{kind: opRegister, client: c}); res.err != nil {
		started = true // nothing left to undo below
		// Shutdown began during the upgrade: the connection was never
		// registered, so neither OnConnect nor OnDisconnect sees it.
		h.stats.refused.Add(1)
		h.stats.errors[errKindConnection].Add(1)
		c.Close(CloseGoingAway, "server shutting down")
		<-c.out.done
		c.out.drainAndClose()
		c.releaseSlot()
		return nil, res.err
	}
	registered = true
	c.out.shard.register(&c.out)
	if hello := c.protocol().Hello(c.ID); hello != nil {
		c.out.enqueueUnbounded(frame.Text(hello))
	}
	if hs.opts.OnConnect != nil {
		hs.opts.OnConnect(c)
	}
	started = true
	return c, nil
}
