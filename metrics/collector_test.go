package metrics_test

import (
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	ws "github.com/vortechron/go-ws"
	"github.com/vortechron/go-ws/metrics"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// fixedStats is a StatsSource that returns one snapshot.
type fixedStats ws.Stats

func (f fixedStats) Stats() ws.Stats { return ws.Stats(f) }

func TestCollectorExposesEveryFigure(t *testing.T) {
	src := fixedStats{
		Connections: 3, ConnectionsTotal: 10, ConnectionsRefused: 2, Channels: 4, Subscriptions: 7,
		MessagesIn: 11, MessagesOut: 12, BytesOut: 13, Publishes: 14, WhispersIn: 15, WhispersOut: 16,
		SlowConsumers: 17, RateLimited: 18, BrokerPublishFailures: 19, BrokerHealthy: true,
		Recovered: 20, NotRecovered: 21, HistoryResets: 22,
		Errors: map[string]int64{"auth": 1, "rate_limit": 2, "connection": 3, "whisper": 4, "protocol": 5, "storage": 6, "broker": 7},
	}
	want := `
# HELP ws_broker_healthy 1 when the message broker is connected, 0 when it is not.
# TYPE ws_broker_healthy gauge
ws_broker_healthy 1
# HELP ws_broker_publish_failures_total Publications the message broker refused.
# TYPE ws_broker_publish_failures_total counter
ws_broker_publish_failures_total 19
# HELP ws_channels Channels with at least one local subscriber.
# TYPE ws_channels gauge
ws_channels 4
# HELP ws_connections WebSocket connections open now.
# TYPE ws_connections gauge
ws_connections 3
# HELP ws_connections_accepted_total WebSocket connections registered since start.
# TYPE ws_connections_accepted_total counter
ws_connections_accepted_total 10
# HELP ws_connections_refused_total Connection requests refused (origin, connection limits, shutting down).
# TYPE ws_connections_refused_total counter
ws_connections_refused_total 2
# HELP ws_errors_total Errors by kind: auth, rate_limit, connection, whisper, protocol, storage, broker.
# TYPE ws_errors_total counter
ws_errors_total{kind="auth"} 1
ws_errors_total{kind="broker"} 7
ws_errors_total{kind="connection"} 3
ws_errors_total{kind="protocol"} 5
ws_errors_total{kind="rate_limit"} 2
ws_errors_total{kind="storage"} 6
ws_errors_total{kind="whisper"} 4
# HELP ws_history_not_recovered_total Subscribes with since answered recovered:false, and recoveries broken off.
# TYPE ws_history_not_recovered_total counter
ws_history_not_recovered_total 21
# HELP ws_history_recovered_total Subscribes with since answered recovered:true.
# TYPE ws_history_recovered_total counter
ws_history_recovered_total 20
# HELP ws_history_resets_total Times this node found a history channel's history broken and reset its subscribers.
# TYPE ws_history_resets_total counter
ws_history_resets_total 22
# HELP ws_messages_received_total Data frames read from clients, rate-limited ones included.
# TYPE ws_messages_received_total counter
ws_messages_received_total 11
# HELP ws_messages_sent_total Frames queued to clients by fan-out (publications, whispers, presence events), once per receiving client.
# TYPE ws_messages_sent_total counter
ws_messages_sent_total 12
# HELP ws_publishes_total Hub.Publish calls, failed ones included.
# TYPE ws_publishes_total counter
ws_publishes_total 14
# HELP ws_rate_limited_frames_total Client frames dropped by the rate limit.
# TYPE ws_rate_limited_frames_total counter
ws_rate_limited_frames_total 18
# HELP ws_sent_bytes_total Bytes written to client sockets.
# TYPE ws_sent_bytes_total counter
ws_sent_bytes_total 13
# HELP ws_slow_consumer_disconnects_total Clients disconnected because their send queue overflowed.
# TYPE ws_slow_consumer_disconnects_total counter
ws_slow_consumer_disconnects_total 17
# HELP ws_subscriptions Client-channel subscriptions now.
# TYPE ws_subscriptions gauge
ws_subscriptions 7
# HELP ws_whispers_received_total Whispers accepted from clients.
# TYPE ws_whispers_received_total counter
ws_whispers_received_total 15
# HELP ws_whispers_sent_total Whisper deliveries to clients.
# TYPE ws_whispers_sent_total counter
ws_whispers_sent_total 16
`
	c := metrics.NewCollector(src)
	require.NoError(t, testutil.CollectAndCompare(c, strings.NewReader(want)))
	problems, err := testutil.CollectAndLint(c)
	require.NoError(t, err)
	require.Empty(t, problems)
}

func TestCollectorOptions(t *testing.T) {
	c := metrics.NewCollectorWithOptions(fixedStats{Connections: 5}, metrics.Options{
		Namespace:   "chat",
		ConstLabels: prometheus.Labels{"hub": "eu"},
	})
	want := `
# HELP chat_connections WebSocket connections open now.
# TYPE chat_connections gauge
chat_connections{hub="eu"} 5
`
	require.NoError(t, testutil.CollectAndCompare(c, strings.NewReader(want), "chat_connections"))
	reg := prometheus.NewPedanticRegistry()
	require.NoError(t, reg.Register(c))
	_, err := reg.Gather()
	require.NoError(t, err)
}
