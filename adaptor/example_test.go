package adaptor_test

import (
	"context"
	"net/http"
	"time"

	"github.com/gofiber/fiber/v2"

	ws "github.com/vortechron/go-ws"
	"github.com/vortechron/go-ws/adaptor"
)

// ExampleFiberHandler mounts a hub on a Fiber app, as the README shows.
func ExampleFiberHandler() {
	ctx := context.Background()
	hub := ws.NewHub(ctx, nil, nil, ws.Config{PingInterval: 30 * time.Second})
	go hub.Run()

	options := &ws.Options{
		AuthHandler: func(userID, channelName string) bool { return true },
		GetUserID:   func(r *http.Request) string { return r.URL.Query().Get("user") },
	}

	app := fiber.New()
	app.Use("/ws", adaptor.FiberHandler(hub, options))
	// app.Listen(":8080")
}
