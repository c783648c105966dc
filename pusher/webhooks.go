package pusher

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	ws "github.com/vortechron/go-ws"
	"github.com/vortechron/go-ws/internal/bridge"
)

// Webhook event names.
const (
	WebhookChannelOccupied = "channel_occupied"
	WebhookChannelVacated  = "channel_vacated"
	WebhookMemberAdded     = "member_added"
	WebhookMemberRemoved   = "member_removed"
	WebhookClientEvent     = "client_event"
)

// Webhooks sends an app's webhooks as Pusher does: a POST of
// {"time_ms":...,"events":[...]} to URL, signed with the headers
// X-Pusher-Key (the app key) and X-Pusher-Signature (hex HMAC-SHA256 of
// the body under the app secret), which Pusher's server SDKs verify
// (pusher-http-node's webhook(), Laravel packages).
//
// Events are sent once per cluster: channel_occupied and channel_vacated
// come from the hub's Config.OnChannelOccupied and OnChannelVacated, which
// the cluster calls once per change (set them to ChannelOccupied and
// ChannelVacated when making the hub); member_added and member_removed
// from the node that decided the presence change; client_event from the
// node of the Pusher client that sent it. Events wait up to BatchWait to
// share a request with others (at most MaxBatch per request). A request
// that fails (an error or a status other than 2xx) is retried up to
// MaxAttempts times, backing off from half a second; events beyond
// QueueSize waiting are dropped, and OnError hears of both. Sending stops
// when the hub has stopped, after one last attempt at what is queued.
//
// A Webhooks is given to one Server (Options.Webhooks), which starts it.
type Webhooks struct {
	// URL receives the webhooks.
	URL string
	// Events lists the webhooks to send (the Webhook... constants). Nil
	// means all of them.
	Events []string
	// Client makes the requests. Nil means a client of its own with a
	// 5s timeout.
	Client *http.Client
	// BatchWait is how long an event waits for others to share its
	// request. Zero means 250ms.
	BatchWait time.Duration
	// MaxBatch bounds the events of one request. Zero means 100.
	MaxBatch int
	// QueueSize bounds the events waiting to be sent. Zero means 10000.
	QueueSize int
	// MaxAttempts bounds the tries of one request. Zero means 5.
	MaxAttempts int
	// OnError, if set, is told of every request given up on and every
	// event dropped because the queue was full. It runs on the sending
	// goroutine.
	OnError func(err error)

	mu      sync.Mutex
	queue   []webhookEvent // guarded by mu
	dropped int            // guarded by mu; events dropped since the last report
	started bool           // guarded by mu
	wake    chan struct{}
	key     string
	secret  string
	done    <-chan struct{} // the hub's Done
	exited  chan struct{}   // closed when the sender returns
}

// webhookEvent is one event of a webhook request.
type webhookEvent struct {
	Name     string `json:"name"`
	Channel  string `json:"channel"`
	UserID   string `json:"user_id,omitempty"`
	Event    string `json:"event,omitempty"`
	Data     string `json:"data,omitempty"`
	SocketID string `json:"socket_id,omitempty"`
}

// ChannelOccupied queues a channel_occupied webhook; set the hub's
// Config.OnChannelOccupied to it.
func (w *Webhooks) ChannelOccupied(channel string) {
	w.add(webhookEvent{Name: WebhookChannelOccupied, Channel: channel})
}

// ChannelVacated queues a channel_vacated webhook; set the hub's
// Config.OnChannelVacated to it.
func (w *Webhooks) ChannelVacated(channel string) {
	w.add(webhookEvent{Name: WebhookChannelVacated, Channel: channel})
}

// memberChanged queues member_added or member_removed.
func (w *Webhooks) memberChanged(channel, userID string, left bool) {
	name := WebhookMemberAdded
	if left {
		name = WebhookMemberRemoved
	}
	w.add(webhookEvent{Name: name, Channel: channel, UserID: userID})
}

// clientEvent queues client_event for a whisper from a Pusher client.
func (w *Webhooks) clientEvent(e *ws.WhisperEvent) {
	ev := webhookEvent{Name: WebhookClientEvent, Channel: e.ChannelName, Event: ClientEventPrefix + e.Event,
		Data: string(appendData(nil, e.Data)), SocketID: e.ClientID}
	if strings.HasPrefix(e.ChannelName, ws.PresencePrefix) {
		ev.UserID = e.FromID
	}
	// The data field holds the JSON string appendData made; the webhook
	// carries the string itself.
	_ = json.Unmarshal([]byte(ev.Data), &ev.Data)
	w.add(ev)
}

// add queues ev, or drops it when the queue is full.
func (w *Webhooks) add(ev webhookEvent) {
	if w.Events != nil && !slices.Contains(w.Events, ev.Name) {
		return
	}
	w.mu.Lock()
	if len(w.queue) >= w.queueSize() {
		w.dropped++
		w.mu.Unlock()
		return
	}
	w.queue = append(w.queue, ev)
	started := w.started
	w.mu.Unlock()
	if started {
		select {
		case w.wake <- struct{}{}:
		default:
		}
	}
}

// start begins sending for s's app until s's hub stops.
func (w *Webhooks) start(s *Server) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.started {
		s.err = errors.New("pusher: a Webhooks is given to one Server only")
		return
	}
	w.started = true
	w.key, w.secret, w.done = s.app.Key, s.app.Secret, s.hub.Done()
	w.wake = make(chan struct{}, 1)
	w.exited = make(chan struct{})
	w.wake <- struct{}{} // what was queued before start
	bridge.WatchPresence(s.hub, w.memberChanged)
	go w.run()
}

// run sends queued events until the hub stops. It is the one goroutine
// of a started Webhooks.
func (w *Webhooks) run() {
	defer close(w.exited)
	client, owned := w.Client, false
	if client == nil {
		client, owned = &http.Client{Timeout: 5 * time.Second, Transport: http.DefaultTransport.(*http.Transport).Clone()}, true
	}
	defer func() {
		if owned {
			client.CloseIdleConnections()
		}
	}()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-w.done:
			cancel()
		case <-w.exited:
		}
	}()
	for {
		select {
		case <-w.wake:
		case <-w.done:
			w.flush(client)
			return
		}
		t := time.NewTimer(w.batchWait())
		select {
		case <-t.C:
		case <-w.done:
			t.Stop()
			w.flush(client)
			return
		}
		for {
			batch := w.take()
			if len(batch) == 0 {
				break
			}
			w.send(ctx, client, batch, w.maxAttempts())
		}
	}
}

// flush makes one attempt at what is queued when the hub has stopped.
func (w *Webhooks) flush(client *http.Client) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	for {
		batch := w.take()
		if len(batch) == 0 || ctx.Err() != nil {
			return
		}
		w.send(ctx, client, batch, 1)
	}
}

// take removes up to MaxBatch events from the queue, reporting drops.
func (w *Webhooks) take() []webhookEvent {
	w.mu.Lock()
	n := min(len(w.queue), w.maxBatch())
	batch := slices.Clone(w.queue[:n])
	w.queue = slices.Delete(w.queue, 0, n)
	dropped := w.dropped
	w.dropped = 0
	w.mu.Unlock()
	if dropped > 0 {
		w.report(fmt.Errorf("pusher: webhooks: queue full (%d events): %d events dropped", w.queueSize(), dropped))
	}
	return batch
}

// send posts one batch, retrying with backoff.
func (w *Webhooks) send(ctx context.Context, client *http.Client, batch []webhookEvent, attempts int) {
	body, err := json.Marshal(struct {
		TimeMs int64          `json:"time_ms"`
		Events []webhookEvent `json:"events"`
	}{time.Now().UnixMilli(), batch})
	if err != nil {
		w.report(fmt.Errorf("pusher: webhooks: %w", err))
		return
	}
	signature := sign(w.secret, string(body))
	backoff := 500 * time.Millisecond
	for attempt := 1; ; attempt++ {
		err = w.post(ctx, client, body, signature)
		if err == nil {
			return
		}
		if attempt >= attempts || ctx.Err() != nil {
			break
		}
		t := time.NewTimer(backoff)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
		}
		backoff = min(2*backoff, 30*time.Second)
	}
	w.report(fmt.Errorf("pusher: webhooks: %d events to %s given up after %d attempts: %w", len(batch), w.URL, attempts, err))
}

func (w *Webhooks) post(ctx context.Context, client *http.Client, body []byte, signature string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.URL, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Pusher-Key", w.key)
	req.Header.Set("X-Pusher-Signature", signature)
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("status %s", resp.Status)
	}
	return nil
}

func (w *Webhooks) report(err error) {
	if w.OnError != nil {
		w.OnError(err)
	}
}

func (w *Webhooks) batchWait() time.Duration {
	if w.BatchWait > 0 {
		return w.BatchWait
	}
	return 250 * time.Millisecond
}

func (w *Webhooks) maxBatch() int {
	if w.MaxBatch > 0 {
		return w.MaxBatch
	}
	return 100
}

func (w *Webhooks) queueSize() int {
	if w.QueueSize > 0 {
		return w.QueueSize
	}
	return 10000
}

func (w *Webhooks) maxAttempts() int {
	if w.MaxAttempts > 0 {
		return w.MaxAttempts
	}
	return 5
}
