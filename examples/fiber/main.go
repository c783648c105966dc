// Command fiber is the README's Fiber example, runnable: a Fiber app
// serving a ws hub at /ws through adaptor.FiberHandler, with the
// in-memory broker and storage (no Redis needed).
//
//	go run ./examples/fiber            # then open http://127.0.0.1:8080/?user=alice
//
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

	// Create WebSocket options
	options := &ws.Options{
		// Authorization handler: any identified user may join private
		// and presence channels.
		AuthHandler: func(userID string, channelName string) bool { return userID != "" },
		// Get user ID from request. Demo identity: ?user=NAME.
		GetUserID:      func(r *http.Request) string { return r.URL.Query().Get("user") },
		GetUserInfo:    func(r *http.Request, userID string) any { return map[string]string{"name": userID} },
		EnableWhispers: true,
		ErrorHandler:   func(err error) { log.Printf("ws: %v", err) },
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

	// Shut down on Ctrl-C: first the hub (clients get 1001 and presence
	// is cleaned up), then the app.
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = hub.Shutdown(sctx)
		_ = app.ShutdownWithContext(sctx)
	}()

	// Start server
	log.Printf("listening on http://%s (WebSocket at /ws)", *addr)
	if err := app.Listen(*addr); err != nil {
		log.Fatal(err)
	}
	<-hub.Done()
}
