// Command cluster runs two ws nodes in one process, on two ports, that
// share channels and presence through Redis: what is published on one
// node reaches the clients of the other, and one presence channel lists
// the users of both. On start it shows this with two clients and prints
// what they received; then it serves both nodes until Ctrl-C.
//
//	go run ./examples/cluster          # Redis at 127.0.0.1:6379
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"os"
	"os/signal"
	"syscall"
	"time"

	ws "github.com/vortechron/go-ws"
)

func main() {
	redisAddr := flag.String("redis", "127.0.0.1:6379", "Redis address shared by both nodes")
	addr1 := flag.String("node1", "127.0.0.1:8081", "listen address of node 1")
	addr2 := flag.String("node2", "127.0.0.1:8082", "listen address of node 2")
	check := flag.Bool("check", false, "exit after the demonstration")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	// Each node has its own broker and storage on the same Redis, as two
	// processes on two machines would.
	node1, err := startNode("node1", *addr1, ws.NewRedisBroker(*redisAddr), ws.NewRedisStorage(*redisAddr))
	if err != nil {
		log.Fatal(err)
	}
	node2, err := startNode("node2", *addr2, ws.NewRedisBroker(*redisAddr), ws.NewRedisStorage(*redisAddr))
	if err != nil {
		log.Fatal(err)
	}
	log.Printf("node 1: ws://%s/ws   node 2: ws://%s/ws   (Redis %s)", node1.addr, node2.addr, *redisAddr)

	dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	frames, err := demo(dctx, node1, node2)
	cancel()
	if err != nil {
		log.Printf("demonstration failed (is Redis running at %s?): %v", *redisAddr, err)
	}
	for _, f := range frames {
		fmt.Println(f)
	}
	if !*check && err == nil {
		log.Printf("serving both nodes; POST /publish?channel=C to either one. Ctrl-C stops.")
		<-ctx.Done()
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = node1.stop(sctx)
	_ = node2.stop(sctx)
	if err != nil {
		os.Exit(1)
	}
}
