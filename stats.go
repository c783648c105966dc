package ws

import (
	"log/slog"
	"sync/atomic"
)

// error kinds counted in Stats.Errors.
const (
	errKindAuth = iota
	errKindRateLimit
	errKindConnection
	errKindWhisper
	errKindProtocol
	errKindStorage
	numErrKinds
)

var errKindNames = [numErrKinds]string{"auth", "rate_limit", "connection", "whisper", "protocol", "storage"}

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
	errors                [numErrKinds]atomic.Int64
}

// Stats is a snapshot of a hub's figures since it started.
type Stats struct {
	Connections           int64            // open now
	ConnectionsTotal      int64            // accepted since start
	ConnectionsRefused    int64            // refused before the upgrade
	Channels              int64            // channels with local subscribers
	Subscriptions         int64            // client-channel pairs
	MessagesIn            int64            // client frames read
	MessagesOut           int64            // frames queued to clients by fan-out
	BytesOut              int64            // bytes written to sockets
	Publishes             int64            // Hub.Publish calls
	WhispersIn            int64            // whispers accepted from clients
	WhispersOut           int64            // whisper deliveries to clients
	SlowConsumers         int64            // clients disconnected as slow
	RateLimited           int64            // frames dropped by the rate limit
	BrokerPublishFailures int64            // publications the broker refused
	BrokerHealthy         bool             // broker connected now
	Errors                map[string]int64 // errors by kind
}

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
		BrokerHealthy:         h.BrokerHealthy(),
		Errors:                make(map[string]int64, numErrKinds),
	}
	for i := range s.errors {
		st.Errors[errKindNames[i]] = s.errors[i].Load()
	}
	return st
}

// BrokerHealthy reports whether the broker is connected; brokers that
// cannot fail (MemoryBroker) are healthy until closed.
func (h *Hub) BrokerHealthy() bool {
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
	}
	for _, name := range errKindNames {
		attrs = append(attrs, slog.Int64("errors_"+name, s.Errors[name]))
	}
	return attrs
}
