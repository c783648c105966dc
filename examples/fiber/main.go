// Command fiber is the README's Fiber example, runnable: a Fiber app
// serving a ws hub at /ws through adaptor.FiberHandler, with the
// in-memory broker and storage (no Redis needed), and the graceful
// shutdown the README describes.
//
//	go run ./examples/fiber            # then open http://127.0.0.1:8080/?user=alice
//
// ?user=NAME on the page (and the WebSocket URL) is the demo identity.
// POST /publish?channel=news with a JSON body publishes it to the channel.
package main

import (
	"context"
	_ "embed"
	"encoding/json"
	"flag"
	"log"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/gofiber/fiber/v2"

	ws "github.com/vortechron/go-ws"
	"github.com/vortechron/go-ws/adaptor"
)

//go:embed index.html
var indexHTML []byte

func main() {
	addr := flag.String("addr", "127.0.0.1:8080", "listen address")
	flag.Parse()

	// Create WebSocket hub; nil broker and storage mean in memory.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	config := ws.Config{
		PingInterval:    30 * time.Second,
		WriteBufferSize: 1024,
		ReadBufferSize:  1024,
	}
	hub := ws.NewHub(ctx, nil, nil, config)
	go hub.Run()

	app := newApp(hub)
	go shutdownWhenDone(ctx, hub, app, 5*time.Second)

	// Start server
	log.Printf("listening on http://%s (WebSocket at /ws?user=NAME; POST /publish?channel=C publishes)", *addr)
	if err := app.Listen(*addr); err != nil {
		log.Fatal(err)
	}
	<-hub.Done() // Run has returned: every client is closed and presence cleaned up
}

// newApp is the Fiber app: the page at /, POST /publish and the hub at /ws.
func newApp(hub *ws.Hub) *fiber.App {
	// Create WebSocket options
	options := &ws.Options{
		// Authorization handler: any identified user may join private
		// and presence channels.
		AuthHandler: func(userID string, channelName string) bool { return userID != "" },
		// Get user ID from request. Demo identity: ?user=NAME.
		GetUserID:      func(r *http.Request) string { return r.URL.Query().Get("user") },
		GetUserInfo:    func(r *http.Request, userID string) any { return map[string]string{"name": userID} },
		EnableWhispers: true,
		// The errors say "ws: ..." themselves.
		ErrorHandler: func(err error) { log.Print(err) },
	}

	// Create Fiber app
	app := fiber.New(fiber.Config{DisableStartupMessage: true})
	app.Get("/", func(c *fiber.Ctx) error {
		c.Type("html", "utf-8")
		return c.Send(indexHTML)
	})
	app.Post("/publish", func(c *fiber.Ctx) error {
		body := c.Body()
		if !json.Valid(body) {
			return fiber.NewError(fiber.StatusBadRequest, "body must be JSON")
		}
		if err := hub.Publish(c.UserContext(), c.Query("channel"), json.RawMessage(body)); err != nil {
			return fiber.NewError(fiber.StatusBadRequest, err.Error())
		}
		return c.SendStatus(fiber.StatusNoContent)
	})

	// Create WebSocket route
	app.Use("/ws", adaptor.FiberHandler(hub, options))
	return app
}

// shutdownWhenDone shuts hub and then app down, within timeout, once ctx
// ends. Fiber's Shutdown, like net/http's, neither waits for nor closes
// WebSocket connections (fasthttp lets go of a connection once it is
// hijacked), so the hub goes first: its clients get close code 1001 and
// reconnect elsewhere, and its presence members leave. Then the app stops
// accepting and finishes its plain HTTP requests, and app.Listen returns.
func shutdownWhenDone(ctx context.Context, hub *ws.Hub, app *fiber.App, timeout time.Duration) {
	<-ctx.Done()
	sctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if err := hub.Shutdown(sctx); err != nil {
		log.Printf("hub shutdown: %v", err)
	}
	if err := app.ShutdownWithContext(sctx); err != nil {
		log.Printf("fiber shutdown: %v", err)
	}
}
