// Package metrics exposes a ws.Hub's statistics to Prometheus.
//
// It is a module of its own, so the ws module never depends on
// github.com/prometheus/client_golang:
//
//	go get github.com/vortechron/go-ws/metrics
//
// A Collector reads Hub.Stats once per scrape; nothing is added to the
// hub's hot path.
//
//	prometheus.MustRegister(metrics.NewCollector(hub))
//	http.Handle("/metrics", promhttp.Handler())
package metrics

import (
	"github.com/prometheus/client_golang/prometheus"

	ws "github.com/vortechron/go-ws"
)

// StatsSource is what a Collector reads; *ws.Hub implements it.
type StatsSource interface {
	Stats() ws.Stats
}

var _ StatsSource = (*ws.Hub)(nil)

// Options tune a Collector. The zero value is ready to use.
type Options struct {
	// Namespace starts every metric name. Empty means "ws".
	Namespace string
	// ConstLabels are added to every metric, for example to tell apart
	// two hubs in one process. Nil means none.
	ConstLabels prometheus.Labels
}

// Collector is a prometheus.Collector for one hub. Its metrics are
// computed at scrape time from one Stats snapshot:
//
//	ws_connections                       gauge    open connections
//	ws_connections_accepted_total        counter  connections registered
//	ws_connections_refused_total         counter  requests refused
//	ws_channels                          gauge    channels with local subscribers
//	ws_subscriptions                     gauge    client-channel pairs
//	ws_messages_received_total           counter  client frames read
//	ws_messages_sent_total               counter  fan-out frames queued to clients
//	ws_sent_bytes_total                  counter  bytes written to sockets
//	ws_publishes_total                   counter  Hub.Publish calls
//	ws_whispers_received_total           counter  whispers accepted from clients
//	ws_whispers_sent_total               counter  whisper deliveries
//	ws_slow_consumer_disconnects_total   counter  clients dropped as slow
//	ws_rate_limited_frames_total         counter  frames dropped by the rate limit
//	ws_broker_publish_failures_total     counter  publications the broker refused
//	ws_history_recovered_total           counter  subscribes recovered from history
//	ws_history_not_recovered_total       counter  subscribes history could not recover
//	ws_history_resets_total              counter  history channels reset under subscribers
//	ws_broker_healthy                    gauge    1 when the broker is connected
//	ws_errors_total{kind}                counter  errors by kind (see ws.Stats)
type Collector struct {
	src    StatsSource
	gauges []metric
	counts []metric
	healthy,
	errors *prometheus.Desc
}

// metric is one figure of ws.Stats with its description.
type metric struct {
	desc  *prometheus.Desc
	value func(ws.Stats) int64
}

var _ prometheus.Collector = (*Collector)(nil)

// NewCollector returns a Collector reading src, usually a *ws.Hub, with
// default Options.
func NewCollector(src StatsSource) *Collector {
	return NewCollectorWithOptions(src, Options{})
}

// NewCollectorWithOptions returns a Collector reading src.
func NewCollectorWithOptions(src StatsSource, opts Options) *Collector {
	ns := opts.Namespace
	if ns == "" {
		ns = "ws"
	}
	desc := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc(prometheus.BuildFQName(ns, "", name), help, labels, opts.ConstLabels)
	}
	m := func(name, help string, value func(ws.Stats) int64) metric {
		return metric{desc: desc(name, help), value: value}
	}
	return &Collector{
		src: src,
		gauges: []metric{
			m("connections", "WebSocket connections open now.",
				func(s ws.Stats) int64 { return s.Connections }),
			m("channels", "Channels with at least one local subscriber.",
				func(s ws.Stats) int64 { return s.Channels }),
			m("subscriptions", "Client-channel subscriptions now.",
				func(s ws.Stats) int64 { return s.Subscriptions }),
		},
		counts: []metric{
			m("connections_accepted_total", "WebSocket connections registered since start.",
				func(s ws.Stats) int64 { return s.ConnectionsTotal }),
			m("connections_refused_total", "Connection requests refused (origin, connection limits, shutting down).",
				func(s ws.Stats) int64 { return s.ConnectionsRefused }),
			m("messages_received_total", "Data frames read from clients, rate-limited ones included.",
				func(s ws.Stats) int64 { return s.MessagesIn }),
			m("messages_sent_total", "Frames queued to clients by fan-out (publications, whispers, presence events), once per receiving client.",
				func(s ws.Stats) int64 { return s.MessagesOut }),
			m("sent_bytes_total", "Bytes written to client sockets.",
				func(s ws.Stats) int64 { return s.BytesOut }),
			m("publishes_total", "Hub.Publish calls, failed ones included.",
				func(s ws.Stats) int64 { return s.Publishes }),
			m("whispers_received_total", "Whispers accepted from clients.",
				func(s ws.Stats) int64 { return s.WhispersIn }),
			m("whispers_sent_total", "Whisper deliveries to clients.",
				func(s ws.Stats) int64 { return s.WhispersOut }),
			m("slow_consumer_disconnects_total", "Clients disconnected because their send queue overflowed.",
				func(s ws.Stats) int64 { return s.SlowConsumers }),
			m("rate_limited_frames_total", "Client frames dropped by the rate limit.",
				func(s ws.Stats) int64 { return s.RateLimited }),
			m("broker_publish_failures_total", "Publications the message broker refused.",
				func(s ws.Stats) int64 { return s.BrokerPublishFailures }),
			m("history_recovered_total", "Subscribes with since answered recovered:true.",
				func(s ws.Stats) int64 { return s.Recovered }),
			m("history_not_recovered_total", "Subscribes with since answered recovered:false, and recoveries broken off.",
				func(s ws.Stats) int64 { return s.NotRecovered }),
			m("history_resets_total", "Times this node found a history channel's history broken and reset its subscribers.",
				func(s ws.Stats) int64 { return s.HistoryResets }),
		},
		healthy: desc("broker_healthy", "1 when the message broker is connected, 0 when it is not."),
		errors:  desc("errors_total", "Errors by kind: auth, rate_limit, connection, whisper, protocol, storage, broker.", "kind"),
	}
}

// Describe sends the descriptions of every metric.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, m := range c.gauges {
		ch <- m.desc
	}
	for _, m := range c.counts {
		ch <- m.desc
	}
	ch <- c.healthy
	ch <- c.errors
}

// Collect reads one Stats snapshot and sends every metric.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	s := c.src.Stats()
	for _, m := range c.gauges {
		ch <- prometheus.MustNewConstMetric(m.desc, prometheus.GaugeValue, float64(m.value(s)))
	}
	for _, m := range c.counts {
		ch <- prometheus.MustNewConstMetric(m.desc, prometheus.CounterValue, float64(m.value(s)))
	}
	healthy := 0.0
	if s.BrokerHealthy {
		healthy = 1
	}
	ch <- prometheus.MustNewConstMetric(c.healthy, prometheus.GaugeValue, healthy)
	for _, kind := range ws.ErrorKinds() {
		ch <- prometheus.MustNewConstMetric(c.errors, prometheus.CounterValue, float64(s.Errors[kind]), kind)
	}
}
