// Command pusher serves a page that uses Laravel Echo and pusher-js, from
// npm, against ws's Pusher protocol: a presence lobby (who is here, typing
// whispers, messages sent to others), a public news channel and private
// inboxes. It installs the two npm packages on first run (npm ci).
//
//	go run ./examples/pusher            # then open http://127.0.0.1:8080/?name=alice
//
// With -redis ADDR several processes share channels and presence.
package main

import (
	"context"
	"errors"
	"flag"
	"log"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	ws "github.com/vortechron/go-ws"
	"github.com/vortechron/go-ws/examples/pusher/echoapp"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:8080", "listen address")
	redisAddr := flag.String("redis", "", "Redis address, to share channels and presence with other processes; empty: in memory")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	logger := log.Default()

	dir := exampleDir()
	if err := echoapp.InstallPackages(ctx, dir, logger); err != nil {
		logger.Fatal(err)
	}
	var broker ws.MessageBroker // nil: in memory, one process
	var storage ws.StorageClient
	if *redisAddr != "" {
		broker, storage = ws.NewRedisBroker(*redisAddr), ws.NewRedisStorage(*redisAddr)
	}
	hub := ws.NewHub(ctx, broker, storage, ws.Config{})
	go hub.Run()

	server := &http.Server{Addr: *addr, Handler: echoapp.NewHandler(hub, dir, logger), ReadHeaderTimeout: 10 * time.Second}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = hub.Shutdown(sctx) // Pusher clients get 4200 and reconnect
		_ = server.Shutdown(sctx)
	}()
	logger.Printf("open http://%s/?name=alice and http://%s/?name=bob", *addr, *addr)
	if err := server.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
		logger.Fatal(err)
	}
	<-hub.Done()
}

// exampleDir is this example's directory, where package.json is: the
// working directory when run from there, else examples/pusher of the
// repository root.
func exampleDir() string {
	if _, err := os.Stat(filepath.Join("examples", "pusher", "package.json")); err == nil {
		return filepath.Join("examples", "pusher")
	}
	return "."
}
