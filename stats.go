package ws

import (
	"log/slog"
	"sync/atomic"
	"time"
)

// error kinds counted in Stats.Errors.
const (
	errKindAuth = iota
	errKindRateLimit
	errKindConnection
	errKindWhisper
	errKindProtocol
	errKindStorage
	errKindBroker
	numErrKinds
)

var errKindNames = [numErrKinds]string{"auth", "rate_limit", "connection", "whisper", "protocol", "storage", "broker"}

// counters are the hub's live figures. Each is one atomic; the hot path
// adds once per publication (not once per delivery) where it can.
type counters struct {
	connections           atomic.Int64
	connectionsTotal      atomic.Int64
	refused               atomic.Int64
	channels              atomic.Int64
	subscriptions         atomic.Int64
	messagesIn            atomic.Int64
	messagesOut           atomic.Int64
	bytesOut              atomic.Int64
	publishes             atomic.Int64
	whispersIn            atomic.Int64
	whispersOut           atomic.Int64
	slowConsumers         atomic.Int64
	rateLimited           atomic.Int64
	brokerPublishFailures atomic.Int64
	recovered             atomic.Int64
	notRecovered          atomic.Int64
	historyResets         atomic.Int64
	errors                [numErrKinds]atomic.Int64
}

// Stats is a snapshot of a hub's figures since NewHub. It encodes to JSON
// with snake_case names, like Health.
//
// Every figure is exact: each is one atomic counter, bumped once per event
// where the event happens (fan-out adds once per publication, not once per
// subscriber), never sampled or estimated. Stats reads them one after the
// other without a lock, so a snapshot taken under traffic may catch one
// counter just before and the next just after the same event; once the
// traffic stops, the figures agree with each other exactly.
type Stats struct {
	// Connections is the number of registered connections open now.
	Connections int64 `json:"connections"`
	// ConnectionsTotal counts connections registered since start.
	ConnectionsTotal int64 `json:"connections_total"`
	// ConnectionsRefused counts requests refused by Accept (origin,
	// connection limits, shutting down) or refused right after the
	// upgrade because shutdown had begun.
	ConnectionsRefused int64 `json:"connections_refused"`
	// Channels is the number of channels with local subscribers (or a
	// broker subscription in flight).
	Channels int64 `json:"channels"`
	// Subscriptions is the number of client-channel pairs now.
	Subscriptions int64 `json:"subscriptions"`
	// MessagesIn counts data frames read from clients, rate-limited ones
	// included; control frames and frames over MaxMessageSize are not.
	MessagesIn int64 `json:"messages_in"`
	// MessagesOut counts frames queued to clients by fan-out:
	// publications, whispers and presence join/leave frames, once per
	// receiving client, and the publications a subscribe recovered from
	// history. Replies to one client (acks, errors, pongs, the members
	// list) are not counted.
	MessagesOut int64 `json:"messages_out"`
	// BytesOut counts bytes written to client sockets: every frame,
	// control and close frames included, but not the upgrade response.
	BytesOut int64 `json:"bytes_out"`
	// Publishes counts Hub.Publish calls with a valid channel and
	// message, failed ones included (see BrokerPublishFailures).
	Publishes int64 `json:"publishes"`
	// WhispersIn counts whispers that passed every check and were handed
	// to the broker, failed ones included.
	WhispersIn int64 `json:"whispers_in"`
	// WhispersOut counts whisper deliveries to clients (also counted in
	// MessagesOut).
	WhispersOut int64 `json:"whispers_out"`
	// SlowConsumers counts clients disconnected because their send queue
	// overflowed.
	SlowConsumers int64 `json:"slow_consumers"`
	// RateLimited counts client frames dropped by Config.RateLimit.
	RateLimited int64 `json:"rate_limited"`
	// BrokerPublishFailures counts publications (Hub.Publish, whispers,
	// presence announcements) the broker refused.
	BrokerPublishFailures int64 `json:"broker_publish_failures"`
	// BrokerHealthy reports whether the broker is connected now (see
	// BrokerHealth).
	BrokerHealthy bool `json:"broker_healthy"`
	// Recovered counts subscribes with "since" answered recovered:true
	// (docs/recovery.md).
	Recovered int64 `json:"recovered"`
	// NotRecovered counts subscribes with "since" answered
	// recovered:false (another epoch, or older than the history reaches
	// back), and recoveries broken off later with a fresh "subscribed".
	NotRecovered int64 `json:"not_recovered"`
	// HistoryResets counts the times this node found a history channel's
	// history broken (lost publications it could not read back, or a new
	// epoch) and sent its subscribers a fresh "subscribed" frame.
	HistoryResets int64 `json:"history_resets"`
	// Errors counts errors by kind, each error once under one kind:
	// "auth" (*AuthError), "rate_limit" (*RateLimitError, one per
	// dropped frame), "connection" (*ConnectionError: refused requests,
	// failed upgrades), "whisper" (*WhisperError), "protocol"
	// (*ProtocolError, and broker payloads that could not be decoded),
	// "storage" (presence storage failures: *UnavailableError on a join,
	// and failures on leave and presence maintenance) and "broker" (broker
	// failures: *UnavailableError on a subscribe or whisper). Every kind is
	// present, zero or not.
	Errors map[string]int64 `json:"errors"`
}

// ErrorKinds lists the keys of Stats.Errors.
func ErrorKinds() []string { return append([]string(nil), errKindNames[:]...) }

// Stats returns a snapshot of the hub's figures.
func (h *Hub) Stats() Stats {
	s := &h.stats
	st := Stats{
		Connections:           s.connections.Load(),
		ConnectionsTotal:      s.connectionsTotal.Load(),
		ConnectionsRefused:    s.refused.Load(),
		Channels:              s.channels.Load(),
		Subscriptions:         s.subscriptions.Load(),
		MessagesIn:            s.messagesIn.Load(),
		MessagesOut:           s.messagesOut.Load(),
		BytesOut:              s.bytesOut.Load(),
		Publishes:             s.publishes.Load(),
		WhispersIn:            s.whispersIn.Load(),
		WhispersOut:           s.whispersOut.Load(),
		SlowConsumers:         s.slowConsumers.Load(),
		RateLimited:           s.rateLimited.Load(),
		BrokerPublishFailures: s.brokerPublishFailures.Load(),
		BrokerHealthy:         h.brokerHealthy(),
		Recovered:             s.recovered.Load(),
		NotRecovered:          s.notRecovered.Load(),
		HistoryResets:         s.historyResets.Load(),
		Errors:                make(map[string]int64, numErrKinds),
	}
	for i := range s.errors {
		st.Errors[errKindNames[i]] = s.errors[i].Load()
	}
	return st
}

// brokerHealthy reports whether the broker is connected; brokers that
// cannot fail (MemoryBroker) are healthy until closed.
func (h *Hub) brokerHealthy() bool {
	if bh, ok := h.broker.(BrokerHealth); ok {
		return bh.Healthy()
	}
	return !h.isDone()
}

func (s Stats) logAttrs() []any {
	attrs := []any{
		slog.Int64("connections", s.Connections),
		slog.Int64("connections_total", s.ConnectionsTotal),
		slog.Int64("connections_refused", s.ConnectionsRefused),
		slog.Int64("channels", s.Channels),
		slog.Int64("subscriptions", s.Subscriptions),
		slog.Int64("messages_in", s.MessagesIn),
		slog.Int64("messages_out", s.MessagesOut),
		slog.Int64("bytes_out", s.BytesOut),
		slog.Int64("publishes", s.Publishes),
		slog.Int64("whispers_in", s.WhispersIn),
		slog.Int64("whispers_out", s.WhispersOut),
		slog.Int64("slow_consumers", s.SlowConsumers),
		slog.Int64("rate_limited", s.RateLimited),
		slog.Int64("broker_publish_failures", s.BrokerPublishFailures),
		slog.Bool("broker_healthy", s.BrokerHealthy),
		slog.Int64("recovered", s.Recovered),
		slog.Int64("not_recovered", s.NotRecovered),
		slog.Int64("history_resets", s.HistoryResets),
	}
	for _, name := range errKindNames {
		attrs = append(attrs, slog.Int64("errors_"+name, s.Errors[name]))
	}
	return attrs
}

// logStatsEvery logs a statistics line every interval until stop closes.
func (h *Hub) logStatsEvery(interval time.Duration, stop <-chan struct{}) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			h.logStats()
		case <-stop:
			return
		}
	}
}

func (h *Hub) logStats() {
	h.log.Info("ws: stats", h.Stats().logAttrs()...)
}
