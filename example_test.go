package ws_test

import (
	"context"
	"errors"
	"log"
	"net/http"
	"os"
	"os/signal"
	"time"

	ws "github.com/vortechron/go-ws"
)

// The Example functions below are the README's Go snippets as the README
// writes them, so `go vet` proves they compile against the package. They
// have no Output comment: they are compiled, not run, since they listen
// on ports and wait for signals.

// jwt stands in for the application's JWT library that the README's
// GetUserID calls.
var jwt jwtLib

type jwtLib struct{}

type jwtToken struct{ Claims struct{ UserID string } }

func (jwtLib) ParseFromRequest(r *http.Request) jwtToken {
	var t jwtToken
	t.Claims.UserID = r.Header.Get("X-User")
	return t
}

// Example_readme is the README's Usage section, steps 1 to 4.
func Example_readme() {
	config := ws.Config{
		PingInterval:    30 * time.Second,
		WriteBufferSize: 1024,
		ReadBufferSize:  1024,
		RateLimit: ws.RateLimit{
			Messages: 100,
			Interval: time.Minute,
		},
		ShouldLogStats: true,
	}

	ctx := context.Background()
	redisAddr := "localhost:6379"
	hub := ws.NewHub(
		ctx,
		ws.NewRedisBroker(redisAddr),
		ws.NewRedisStorage(redisAddr),
		config,
	)

	go hub.Run()

	options := &ws.Options{
		// Authorization handler
		AuthHandler: func(userID string, channelName string) bool {
			// Implement your authorization logic here
			return true
		},

		// User identification
		GetUserID: func(r *http.Request) string {
			// Extract user ID from JWT token
			token := jwt.ParseFromRequest(r)
			return token.Claims.UserID
		},

		// Error handling
		ErrorHandler: func(err error) {
			log.Printf("WebSocket error: %v", err)
		},

		// Middleware chain
		Middleware: []ws.Middleware{
			// ws.RateLimitMiddleware(), example
		},

		// Connection events
		OnConnect: func(client *ws.Client) {
			log.Printf("Client connected: %s", client.ID)
		},
		OnDisconnect: func(client *ws.Client) {
			log.Printf("Client disconnected: %s", client.ID)
		},

		// Enable whisper functionality
		EnableWhispers: true,

		// Optional whisper middleware for filtering or transforming whispers
		WhisperMiddleware: func(whisper *ws.WhisperEvent) bool {
			// Process the whisper event here
			// Return false to block the whisper
			return true
		},
	}

	// Create server with context
	server := &http.Server{
		Addr: ":8080",
	}

	// Handle WebSocket connections
	http.HandleFunc("/ws", func(w http.ResponseWriter, r *http.Request) {
		if err := ws.ServeWS(hub, w, r, options); err != nil {
			log.Printf("Failed to serve WebSocket: %v", err)
		}
	})

	// Start server
	go func() {
		if err := server.ListenAndServeTLS("cert.pem", "key.pem"); err != nil {
			log.Printf("Server error: %v", err)
		}
	}()

	// Graceful shutdown
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, os.Interrupt)
	<-stop

	shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()

	if err := server.Shutdown(shutdownCtx); err != nil {
		log.Printf("Error during shutdown: %v", err)
	}
}

// Example_whisperMiddleware is the README's "Server-side configuration".
func Example_whisperMiddleware() {
	options := &ws.Options{}

	// Enable whisper functionality in options
	options.EnableWhispers = true

	// Optional: Add whisper middleware for filtering or transforming whispers
	options.WhisperMiddleware = func(whisper *ws.WhisperEvent) bool {
		// You can modify the whisper event here
		// Return false to block the whisper

		// Example: Log all whispers
		log.Printf("Whisper from %s on channel %s: %s",
			whisper.FromID, whisper.ChannelName, whisper.Event)

		// Example: Block whispers with certain events
		if whisper.Event == "blocked-event" {
			return false
		}

		return true
	}
}

// Example_errorHandling is the README's "Error Handling" section.
func Example_errorHandling() {
	options := &ws.Options{}

	// Custom error handling
	options.ErrorHandler = func(err error) {
		switch e := err.(type) {
		case *ws.AuthError:
			// Handle authentication errors
		case *ws.RateLimitError:
			// Handle rate limiting errors
		case *ws.ConnectionError:
			// Handle connection errors
		case *ws.WhisperError:
			// Handle whisper-related errors
			log.Printf("Whisper error: %s", e.Message)
		default:
			// Handle other errors
		}
	}
}

// Example_scaling is the README's "Scaling Considerations" snippet.
func Example_scaling() {
	config := ws.Config{}

	// Configure connection limits
	config.MaxConnections = 10000
	config.MaxConnectionsPerIP = 100

	_ = config
}

// Example_newWebSocketServer is the Redis-backed constructor from the
// README's Fiber section.
func Example_newWebSocketServer() {
	ctx := context.Background()
	redisAddr := "localhost:6379"
	config := ws.Config{
		PingInterval:    30 * time.Second,
		WriteBufferSize: 1024,
		ReadBufferSize:  1024,
	}

	hub, _ := ws.NewWebSocketServer(ctx, redisAddr, config)
	go hub.Run()
}

// ExampleHub_PublishWith publishes a named event that skips the
// connection whose request caused it, as the README shows.
func ExampleHub_PublishWith() {
	ctx := context.Background()
	hub := ws.NewHub(ctx, nil, nil, ws.Config{})
	go hub.Run()
	defer hub.Shutdown(ctx)

	clientID := "482910384756102.17" // the Client.ID of the connection that asked
	order := map[string]any{"id": 42, "status": "shipped"}
	if err := hub.PublishWith(ctx, "orders", order, ws.PublishOptions{Event: "order.shipped", Except: clientID}); err != nil {
		if errors.Is(err, ws.ErrPublishUncertain) {
			return // it may have been delivered: retrying could duplicate it
		}
	}
}
