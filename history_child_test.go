package ws

import (
	"context"
	"fmt"
	"net/http/httptest"
	"strings"
	"time"
)

// historyNodeChild serves a hub on Redis that keeps history on history-*
// channels, prints its URL and waits to be killed (see child_test.go).
func historyNodeChild(opts RedisOptions) error {
	broker, err := NewRedisBrokerWithOptions(opts)
	if err != nil {
		return err
	}
	storage, err := NewRedisStorageWithOptions(opts)
	if err != nil {
		return err
	}
	hub := NewHub(context.Background(), broker, storage, Config{History: func(channel string) HistoryOptions {
		if strings.HasPrefix(channel, "history-") {
			return HistoryOptions{Size: 10_000, TTL: time.Minute}
		}
		return HistoryOptions{}
	}})
	go hub.Run()
	srv := httptest.NewServer(Handler(hub, nil))
	fmt.Println("URL", "ws"+strings.TrimPrefix(srv.URL, "http"))
	time.Sleep(childLifetime) // killed long before
	return nil
}
