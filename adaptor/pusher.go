package adaptor

import (
	"net/http"
	"strings"
	"time"

	"github.com/fasthttp/websocket"
	"github.com/gofiber/fiber/v2"
	fiberhttp "github.com/gofiber/fiber/v2/middleware/adaptor"
	"github.com/valyala/fasthttp"

	ws "github.com/vortechron/go-ws"
	"github.com/vortechron/go-ws/internal/bridge"
	"github.com/vortechron/go-ws/pusher"
)

// FiberPusher returns a Fiber handler that serves srv, a Pusher server, as
// srv.ServeHTTP does under net/http: Pusher clients' WebSocket connections
// at any path ending in /app/{key}, and the HTTP API under /apps/{id}/:
//
//	app.Use(adaptor.FiberPusher(srv))
//	app.Post("/broadcasting/auth", adaptor.FiberHTTP(srv.AuthHandler()))
//
// WebSocket requests are converted and checked as FiberHandler's are (the
// endpoint's Middleware, origin, connection limits, GetUserID); requests
// with an unknown key or protocol are refused as Pusher does, with a
// pusher:error and a close frame. Other requests go to srv through Fiber's
// net/http adaptor. The handler always returns nil.
func FiberPusher(srv *pusher.Server) fiber.Handler {
	up := &websocket.FastHTTPUpgrader{
		WriteBufferPool: writeBufferPool,
		CheckOrigin:     func(*fasthttp.RequestCtx) bool { return true }, // checked by Prepare
		Error:           handshakeError,
	}
	httpHandler := fiberhttp.HTTPHandler(srv)
	return func(c *fiber.Ctx) error {
		if !websocket.FastHTTPIsWebSocketUpgrade(c.Context()) || !strings.Contains(c.Path(), "/app/") {
			return httpHandler(c)
		}
		r, err := newRequest(c.UserContext(), c.Context())
		if err != nil {
			c.Status(http.StatusBadRequest)
			return nil
		}
		pc := bridge.PusherConnect(srv, r)
		switch {
		case pc.Err != nil:
			c.Status(http.StatusInternalServerError)
			return nil
		case pc.RefuseCode != 0:
			refusePusher(c, up, pc)
			return nil
		}
		hub := pc.Hub.(*ws.Hub)
		serve(c, hub, up, pc.Options.(*ws.Options), pc.Protocol, hub.Config().WriteTimeout)
		return nil
	}
}

// FiberHTTP serves a net/http handler (srv.AuthHandler(),
// srv.UserAuthHandler()) from Fiber.
func FiberHTTP(h http.Handler) fiber.Handler { return fiberhttp.HTTPHandler(h) }

// refusePusher upgrades only to send the refusal's pusher:error and close
// frame, as Pusher does for an unknown key or protocol.
func refusePusher(c *fiber.Ctx, up *websocket.FastHTTPUpgrader, pc bridge.PusherConn) {
	_ = up.Upgrade(c.Context(), func(conn *websocket.Conn) {
		defer conn.Close()
		deadline := time.Now().Add(time.Second)
		_ = conn.SetWriteDeadline(deadline)
		_ = conn.WriteMessage(websocket.TextMessage, pc.RefuseFrame)
		_ = conn.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(pc.RefuseCode, pc.RefuseText), deadline)
		_ = conn.SetReadDeadline(deadline)
		for {
			if _, _, err := conn.NextReader(); err != nil {
				return
			}
		}
	})
}
