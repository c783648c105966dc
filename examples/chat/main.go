// Command chat is a small browser chat on ws: a public room whose
// messages are posted to the server and kept in the room's history,
// direct messages on private channels, an online list from a presence
// channel, and typing indicators sent as whispers. The page is plain HTML
// and JavaScript on ws's JavaScript client (clients/js), all embedded in
// the binary. A page that reloads shows the conversation, and one that
// loses its connection gets what it missed when it reconnects.
//
//	go run ./examples/chat             # then open http://127.0.0.1:8080
//
// With -redis ADDR several chat processes share rooms and presence.
package main

import (
	"context"
	"errors"
	"flag"
	"log"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	ws "github.com/vortechron/go-ws"
	"github.com/vortechron/go-ws/examples/chat/chatserver"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:8080", "listen address")
	redisAddr := flag.String("redis", "", "Redis address, to share the chat with other processes; empty: in memory")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	logger := log.Default()

	var broker ws.MessageBroker // nil: in memory, one process
	var storage ws.StorageClient
	if *redisAddr != "" {
		broker, storage = ws.NewRedisBroker(*redisAddr), ws.NewRedisStorage(*redisAddr)
	}
	hub := ws.NewHub(ctx, broker, storage, ws.Config{
		RateLimit: ws.RateLimit{Messages: 50, Interval: 10 * time.Second},
		History:   chatserver.History, // the room keeps its latest messages
	})
	go hub.Run()

	server := &http.Server{Addr: *addr, Handler: chatserver.NewHandler(hub, logger), ReadHeaderTimeout: 10 * time.Second}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = hub.Shutdown(sctx) // clients get 1001 and leave the presence list
		_ = server.Shutdown(sctx)
	}()
	logger.Printf("chat on http://%s", *addr)
	if err := server.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
		logger.Fatal(err)
	}
	<-hub.Done()
}
