package pusher

import (
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gorilla/websocket"

	ws "github.com/vortechron/go-ws"
)

// ProtocolVersion is the Pusher protocol the server speaks.
const ProtocolVersion = 7

// writeBufferPool keeps gorilla from holding a write buffer per
// connection; the hub writes frames without it.
var writeBufferPool = &sync.Pool{}

// refusalGrace bounds how long a refused connection is kept for the
// client's close frame.
const refusalGrace = time.Second

// serveWS upgrades a Pusher client's request. An unknown key or an
// unsupported protocol is refused as Pusher does: after the upgrade, with
// a pusher:error and a close frame carrying the code, so pusher-js does
// not retry. Otherwise the hub's own checks run (Options.Middleware,
// origin, connection limits, GetUserID; a refusal is an HTTP error) and
// the connection joins the hub speaking the Pusher protocol.
func (s *Server) serveWS(w http.ResponseWriter, r *http.Request, key string) {
	if !websocket.IsWebSocketUpgrade(r) {
		http.Error(w, "Bad Request: connect with a WebSocket client (pusher-js) to /app/{key}", http.StatusBadRequest)
		return
	}
	if code, msg := s.checkConnect(key, r.URL.Query()); code != 0 {
		if s.opts.ErrorHandler != nil {
			s.opts.ErrorHandler(&ws.ConnectionError{RemoteAddr: r.RemoteAddr, Op: "admit", Reason: "pusher " + strconv.Itoa(code) + ": " + msg})
		}
		refuse(w, r, code, msg)
		return
	}
	hs := prepare(s.hub, w, r, &s.opts, s.index)
	if hs == nil {
		return // refused, answered and reported
	}
	// The hub negotiated compression and the subprotocol from the request
	// (Config.EnableCompression, Config.Subprotocols); gorilla writes the
	// compression answer itself, the subprotocol goes in as a header.
	answer := hs.ResponseHeader()
	up := websocket.Upgrader{
		WriteBufferSize:   s.hub.Config().WriteBufferSize,
		WriteBufferPool:   writeBufferPool,
		CheckOrigin:       func(*http.Request) bool { return true }, // checked by prepare
		EnableCompression: answer.Get("Sec-WebSocket-Extensions") != "",
	}
	answer.Del("Sec-WebSocket-Extensions")
	conn, err := up.Upgrade(w, r, answer)
	if err != nil {
		_ = hs.Fail(err)
		return
	}
	if err := hs.Start(conn); err != nil && s.opts.ErrorHandler != nil {
		s.opts.ErrorHandler(err)
	}
}

// checkConnect checks the key and protocol of a connection request, and
// returns the Pusher code and message of a refusal, or 0.
func (s *Server) checkConnect(key string, q map[string][]string) (int, string) {
	if key != s.app.Key {
		return CodeAppNotFound, "App key " + cut(key) + " not in this cluster"
	}
	v := ""
	if vs := q["protocol"]; len(vs) > 0 {
		v = vs[0]
	}
	if v == "" {
		return CodeNoProtocol, "No protocol version supplied; connect with ?protocol=7"
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		return CodeInvalidVersion, "Invalid version string format: " + strconv.Quote(cut(v))
	}
	if n != ProtocolVersion {
		return CodeUnsupportedProtocol, "Unsupported protocol version " + strconv.Itoa(n) + "; this server speaks protocol 7"
	}
	return 0, ""
}

// refuse upgrades r only to send a pusher:error and a close frame with
// code, then closes the connection. The hub never sees it.
func refuse(w http.ResponseWriter, r *http.Request, code int, msg string) {
	up := websocket.Upgrader{WriteBufferPool: writeBufferPool, CheckOrigin: func(*http.Request) bool { return true }}
	conn, err := up.Upgrade(w, r, nil)
	if err != nil {
		return // gorilla answered the request
	}
	defer conn.Close()
	deadline := time.Now().Add(refusalGrace)
	_ = conn.SetWriteDeadline(deadline)
	_ = conn.WriteMessage(websocket.TextMessage, appendPusherError(nil, code, msg, ""))
	_ = conn.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(code, closeText(msg)), deadline)
	// Wait briefly for the client's close frame, so the client reads
	// ours before the socket goes.
	_ = conn.SetReadDeadline(deadline)
	for {
		if _, _, err := conn.NextReader(); err != nil {
			return
		}
	}
}

// closeText cuts msg to what fits in a close frame (123 bytes).
func closeText(msg string) string {
	if len(msg) <= 120 {
		return msg
	}
	return strings.ToValidUTF8(msg[:120], "")
}
