package pusher_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	ws "github.com/vortechron/go-ws"
	"github.com/vortechron/go-ws/pusher"
)

// hookSink receives webhooks, checks their signature as Pusher's server
// SDKs do, and hands their events over one at a time.
type hookSink struct {
	t      testing.TB
	url    string
	events chan map[string]any
	mu     sync.Mutex
	fail   int // answer 500 to this many requests first
	calls  int
	at     []time.Time // when each request came, failed ones included
	sizes  []int       // the events of each request taken
}

func newHookSink(t testing.TB) *hookSink {
	s := &hookSink{t: t, events: make(chan map[string]any, 1000)}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		s.mu.Lock()
		s.calls++
		s.at = append(s.at, time.Now())
		failing := s.calls <= s.fail
		s.mu.Unlock()
		if failing {
			http.Error(w, "try later", http.StatusInternalServerError)
			return
		}
		if r.Header.Get("X-Pusher-Key") != testApp.Key || r.Header.Get("X-Pusher-Signature") != hmacHex(testApp.Secret, string(body)) ||
			r.Header.Get("Content-Type") != "application/json" {
			t.Errorf("webhook with a bad key, signature or type: %v", r.Header)
			http.Error(w, "bad signature", http.StatusUnauthorized)
			return
		}
		var b struct {
			TimeMs int64            `json:"time_ms"`
			Events []map[string]any `json:"events"`
		}
		if err := json.Unmarshal(body, &b); err != nil || b.TimeMs == 0 {
			t.Errorf("webhook body %s: %v", body, err)
		}
		s.mu.Lock()
		s.sizes = append(s.sizes, len(b.Events))
		s.mu.Unlock()
		for _, e := range b.Events {
			s.events <- e
		}
	}))
	t.Cleanup(srv.Close)
	s.url = srv.URL
	return s
}

func (s *hookSink) next() map[string]any {
	s.t.Helper()
	select {
	case e := <-s.events:
		return e
	case <-time.After(5 * time.Second):
		s.t.Fatal("no webhook within 5s")
		return nil
	}
}

func (s *hookSink) none() {
	s.t.Helper()
	select {
	case e := <-s.events:
		s.t.Fatalf("unexpected webhook %v", e)
	default:
	}
}

func TestWebhooks(t *testing.T) {
	sink := newHookSink(t)
	wh := &pusher.Webhooks{URL: sink.url, BatchWait: 10 * time.Millisecond}
	opts := userOptions()
	opts.Webhooks = wh
	n := newNode(t, nil, nil, ws.Config{}, opts, nil)

	a := n.dial(t, nil)
	a.subscribe("presence-room", "ann")
	require.Equal(t, map[string]any{"name": "member_added", "channel": "presence-room", "user_id": "ann"}, sink.next())
	b := n.dial(t, nil)
	b.subscribe("presence-room", "ben")
	require.Equal(t, map[string]any{"name": "member_added", "channel": "presence-room", "user_id": "ben"}, sink.next())
	b2 := n.dial(t, nil)
	b2.subscribe("presence-room", "ben") // a second tab: no webhook

	a.expect("pusher_internal:member_added", "presence-room")
	b.send("client-typing", map[string]any{"on": true}, "presence-room")
	a.expect("client-typing", "presence-room")
	require.Equal(t, map[string]any{"name": "client_event", "channel": "presence-room", "event": "client-typing",
		"data": `{"on":true}`, "socket_id": b.socketID, "user_id": "ben"}, sink.next())

	b.conn.Close()
	b2.conn.Close()
	require.Equal(t, map[string]any{"name": "member_removed", "channel": "presence-room", "user_id": "ben"}, sink.next())

	// Occupancy comes from the hub's Config.OnChannelOccupied and
	// OnChannelVacated, which are these.
	wh.ChannelOccupied("news")
	wh.ChannelVacated("news")
	require.Equal(t, map[string]any{"name": "channel_occupied", "channel": "news"}, sink.next())
	require.Equal(t, map[string]any{"name": "channel_vacated", "channel": "news"}, sink.next())
	sink.none()

	// It stops with the hub, sending what the shutdown caused first.
	n.stop(t)
	require.Equal(t, map[string]any{"name": "member_removed", "channel": "presence-room", "user_id": "ann"}, sink.next())
	select {
	case <-wh.Exited():
	case <-time.After(5 * time.Second):
		t.Fatal("the webhook sender did not stop with the hub")
	}
}

func TestWebhooksRetryAndLimits(t *testing.T) {
	sink := newHookSink(t)
	sink.fail = 2
	var errs []error
	var mu sync.Mutex
	wh := &pusher.Webhooks{URL: sink.url, BatchWait: time.Millisecond, MaxAttempts: 3, QueueSize: 3,
		Events:  []string{pusher.WebhookChannelOccupied},
		OnError: func(err error) { mu.Lock(); errs = append(errs, err); mu.Unlock() }}
	// Queued before the server starts it: kept, up to QueueSize.
	for _, ch := range []string{"a", "b", "c", "d"} {
		wh.ChannelOccupied(ch)
	}
	wh.ChannelVacated("a") // not in Events
	n := newNode(t, nil, nil, ws.Config{}, &pusher.Options{Webhooks: wh}, nil)
	// Two failures, then the batch goes through on the third attempt.
	for _, ch := range []string{"a", "b", "c"} {
		require.Equal(t, map[string]any{"name": "channel_occupied", "channel": ch}, sink.next())
	}
	sink.none()
	mu.Lock()
	require.Len(t, errs, 1)
	require.ErrorContains(t, errs[0], "queue full (3 events): 1 events dropped")
	mu.Unlock()

	// A receiver that keeps failing: given up after MaxAttempts.
	sink.mu.Lock()
	sink.fail = sink.calls + 100
	sink.mu.Unlock()
	wh.ChannelOccupied("e")
	require.Eventually(t, func() bool { mu.Lock(); defer mu.Unlock(); return len(errs) == 2 }, 10*time.Second, 10*time.Millisecond)
	mu.Lock()
	require.ErrorContains(t, errs[1], "given up after 3 attempts: status 500")
	mu.Unlock()
	n.stop(t)
	<-wh.Exited()
}

// TestWebhooksBatchesAndBacksOff proves, in docs/pusher.md (Webhooks): "at
// most MaxBatch (100) per request; a failed request (an error or a non-2xx
// status) is retried MaxAttempts (5) times with a backoff from half a
// second": 250 events queued at once go as requests of 100, 100 and 50, in
// order; the first request, refused twice, is tried again after at least
// 0.5 s and then after at least 1 s more.
func TestWebhooksBatchesAndBacksOff(t *testing.T) {
	sink := newHookSink(t)
	sink.fail = 2
	wh := &pusher.Webhooks{URL: sink.url, BatchWait: time.Millisecond, Events: []string{pusher.WebhookChannelOccupied}}
	const events = 250
	for i := range events { // queued before the server starts it
		wh.ChannelOccupied(fmt.Sprintf("c%d", i))
	}
	n := newNode(t, nil, nil, ws.Config{}, &pusher.Options{Webhooks: wh}, nil)
	for i := range events {
		require.Equal(t, map[string]any{"name": "channel_occupied", "channel": fmt.Sprintf("c%d", i)}, sink.next())
	}
	sink.none()
	sink.mu.Lock()
	sizes, at := slices.Clone(sink.sizes), slices.Clone(sink.at)
	sink.mu.Unlock()
	require.Equal(t, []int{100, 100, 50}, sizes, "events per accepted request")
	require.Len(t, at, 5, "requests: two refused, three accepted")
	first, second := at[1].Sub(at[0]), at[2].Sub(at[1])
	t.Logf("retries after %v and %v", first.Round(time.Millisecond), second.Round(time.Millisecond))
	require.GreaterOrEqual(t, first, 500*time.Millisecond, "the first retry came too soon")
	require.GreaterOrEqual(t, second, time.Second, "the second retry came too soon: the backoff did not double")
	n.stop(t)
	<-wh.Exited()
}
