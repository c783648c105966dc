// Package servers holds the WebSocket pub/sub servers the harness compares
// and the control API they all share, so the load generator can treat every
// one of them the same way.
package servers

import (
	"context"
	"fmt"
	"net/http"
	"sort"
)

// Server is one pub/sub implementation under test.
type Server interface {
	// ServeHTTP upgrades a request on /ws to a WebSocket connection.
	http.Handler
	// Publish sends payload (a JSON object) to every subscriber of
	// channel. /publish calls it from one goroutine; /publish-many from
	// several at once, each channel from one goroutine only, so a
	// channel's publications are ordered.
	Publish(ctx context.Context, channel string, payload []byte) error
	// Close stops the server's goroutines.
	Close()
}

// Options configures a server.
type Options struct {
	// Redis is the address of a Redis server for the servers that can
	// scale across nodes (ws); empty means in-memory.
	Redis string
	// RedisPrefix namespaces the Redis keys of one cluster run.
	RedisPrefix string
	// Compress offers permessage-deflate (RFC 7692) to clients that ask,
	// on the servers that support it, at CompressLevel (1..9).
	Compress      bool
	CompressLevel int
	// Pusher also serves the Pusher protocol (github.com/vortechron/go-ws/pusher)
	// on /ws?protocol=7, on the servers that speak it (ws), and publishes
	// every payload as a named event so both protocols frame it.
	Pusher bool
	// History keeps the last History publications of every channel
	// (Config.History, TTL one minute) on the servers that have channel
	// history (ws); 0 keeps none.
	History int
}

// PresenceChecker is implemented by the servers that keep presence: it
// compares what the server itself holds with what the harness expects.
type PresenceChecker interface {
	// CheckPresence reads the member count of each channel in channels
	// and returns how many differ from want[i], with a description of
	// the first difference.
	CheckPresence(ctx context.Context, channels []string, want []int) (mismatched int, first string, err error)
}

// Factory builds a server.
type Factory func(ctx context.Context, opts Options) (Server, error)

var registry = map[string]Factory{}

// register adds a server under name; called from init functions.
func register(name string, f Factory) { registry[name] = f }

// New builds the server called name.
func New(ctx context.Context, name string, opts Options) (Server, error) {
	f, ok := registry[name]
	if !ok {
		return nil, fmt.Errorf("unknown server %q (have %v)", name, Names())
	}
	return f(ctx, opts)
}

// Names lists the registered servers.
func Names() []string {
	names := make([]string, 0, len(registry))
	for n := range registry {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}
