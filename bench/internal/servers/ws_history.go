package servers

import (
	"time"

	ws "github.com/vortechron/go-ws"
)

// wsHistory is the one place that turns channel history on for the ws
// server (-history): every channel keeps its last size publications for
// a minute.
func wsHistory(cfg *ws.Config, size int) {
	cfg.History = func(string) ws.HistoryOptions {
		return ws.HistoryOptions{Size: size, TTL: time.Minute}
	}
}
