package ws

import (
	"strings"
	"time"
)

// historyNodeChild serves a hub on Redis that keeps history on history-*
// channels, prints its URL and waits to be killed (see child_test.go).
func historyNodeChild(opts RedisOptions) error {
	return serveNodeChild(opts, Config{History: func(channel string) HistoryOptions {
		if strings.HasPrefix(channel, "history-") {
			return HistoryOptions{Size: 10_000, TTL: time.Minute}
		}
		return HistoryOptions{}
	}}, nil)
}
