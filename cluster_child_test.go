package ws

import (
	"context"
	"fmt"
	"net/http/httptest"
	"strings"
	"time"
)

// occupancyNodeChild serves a hub on Redis whose occupancy hooks print
// "OCCUPIED <channel>" and "VACATED <channel>", prints "NODE <storage
// node ID>" and "URL <url>", and waits to be killed.
func occupancyNodeChild(opts RedisOptions) error {
	broker, err := NewRedisBrokerWithOptions(opts)
	if err != nil {
		return err
	}
	storage, err := NewRedisStorageWithOptions(opts)
	if err != nil {
		return err
	}
	hub := NewHub(context.Background(), broker, storage, Config{
		OnChannelOccupied: func(ch string) { fmt.Println("OCCUPIED", ch) },
		OnChannelVacated:  func(ch string) { fmt.Println("VACATED", ch) },
	})
	go hub.Run()
	srv := httptest.NewServer(Handler(hub, nil))
	fmt.Println("NODE", storage.NodeID())
	fmt.Println("URL", "ws"+strings.TrimPrefix(srv.URL, "http"))
	time.Sleep(childLifetime) // killed long before
	return nil
}
