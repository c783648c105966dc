package ws

// Control channels: how the hubs of a cluster ask each other things.
//
// When Run starts, every hub subscribes through its broker to ctlChannel,
// which carries requests to every node, and to its own reply channel,
// which carries the answers to its requests. Both names start with '#',
// which a channel name cannot hold, so they never meet a client's
// channel. A request is one JSON ctlRequest published on ctlChannel; a
// node that must answer publishes one ctlReply on the asker's reply
// channel. The asker knows how many answers to wait for from the
// broker's count of the request's receivers (PublishCounter), itself
// included.
//
// Requests are handled where they cause no waiting: a message to a
// user's connections and a disconnect are done right on the broker's
// delivery goroutine (queueing frames and close frames never blocks), in
// the order they were published; counting channels and publishing
// answers happen on the control goroutine; unsubscribing a user, which
// waits for the hub and the presence storage, on a goroutine per
// request.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

const (
	// ctlChannel is the broker channel of requests to every node.
	ctlChannel = "#cluster"
	// replyPrefix starts the broker channel of the answers to one node's
	// requests; the node's ID follows.
	replyPrefix = "#reply:"
)

// The requests.
const (
	reqChannels    = "channels"    // local subscriptions of the channels starting with Prefix
	reqChannel     = "channel"     // local subscriptions of Channel
	reqDisconnect  = "disconnect"  // close User's connections
	reqUnsubscribe = "unsubscribe" // take User's connections out of Channel
	reqSend        = "send"        // queue Data on User's connections; no answer
)

// ctlRequest is one request on ctlChannel.
type ctlRequest struct {
	Op      string          `json:"op"`
	ID      uint64          `json:"id,omitempty"`
	From    string          `json:"from,omitempty"` // the asking node: answers go to replyPrefix+From
	Prefix  string          `json:"prefix,omitempty"`
	Channel string          `json:"channel,omitempty"`
	User    string          `json:"user,omitempty"`
	Event   string          `json:"event,omitempty"`
	Except  string          `json:"except,omitempty"`
	Data    json.RawMessage `json:"data,omitempty"`
}

// ctlReply is one node's answer to a request.
type ctlReply struct {
	ID       uint64         `json:"id"`
	Node     string         `json:"node"`
	Channels map[string]int `json:"channels,omitempty"` // reqChannels: local subscriptions by channel
	Count    int            `json:"count"`              // reqChannel: subscriptions; others: connections acted on
}

// control is the hub's end of the control channels.
type control struct {
	h     *Hub
	ready chan struct{} // closed once both control channels are subscribed
	quit  chan struct{} // closed when the control goroutine stops
	next  atomic.Uint64 // request IDs
	wake  chan struct{}
	tasks sync.WaitGroup // requests handled on goroutines of their own

	mu      sync.Mutex
	calls   map[uint64]*call // guarded by mu; requests waiting for answers
	work    []func()         // guarded by mu; for the control goroutine
	stopped bool             // guarded by mu; no more work or tasks
}

// call is one request of this node waiting for its answers.
type call struct {
	replies []ctlReply      // guarded by control.mu
	nodes   map[string]bool // guarded by control.mu; who answered
	got     chan struct{}   // poked on each answer
}

func (c *control) init(h *Hub) {
	c.h = h
	c.ready = make(chan struct{})
	c.quit = make(chan struct{})
	c.wake = make(chan struct{}, 1)
	c.calls = make(map[uint64]*call)
}

// run is the control goroutine, started by Run: it subscribes the control
// channels (retrying, 100ms doubling to 2s, while the broker fails), then
// does the queued work until stop is closed. Then it unsubscribes them
// and waits for the requests still being handled, until deadline.
func (c *control) run(stop <-chan struct{}, deadline func() time.Time) {
	defer c.finish(deadline)
	defer c.unsubscribe(deadline)
	if !c.subscribe(stop) {
		return
	}
	close(c.ready)
	for {
		select {
		case <-c.wake:
		case <-stop:
			return
		}
		c.mu.Lock()
		work := c.work
		c.work = nil
		c.mu.Unlock()
		for _, f := range work {
			f()
		}
	}
}

// subscribe subscribes the control channels; false if stop came first.
func (c *control) subscribe(stop <-chan struct{}) bool {
	h := c.h
	subs := []struct {
		channel string
		handler func([]byte)
		done    bool
	}{{channel: ctlChannel, handler: c.onRequest}, {channel: replyPrefix + h.nodeID, handler: c.onReply}}
	backoff := 100 * time.Millisecond
	for {
		failed := false
		for i := range subs {
			s := &subs[i]
			if s.done {
				continue
			}
			ctx, cancel := context.WithTimeout(h.ioCtx, brokerTimeout)
			err := h.broker.Subscribe(ctx, s.channel, s.handler)
			cancel()
			if err != nil {
				failed = true
				h.log.Warn("ws: subscribing a control channel failed; retrying", "channel", s.channel, "err", err)
				continue
			}
			s.done = true
		}
		if !failed {
			return true
		}
		t := time.NewTimer(backoff)
		select {
		case <-t.C:
		case <-stop:
			t.Stop()
			return false
		}
		backoff = min(2*backoff, 2*time.Second)
	}
}

// unsubscribe drops the control channels as the hub stops, so that the
// other nodes' requests no longer count this node among those to wait
// for. The hub's own I/O context is cancelled by then; this has until
// the shutdown deadline, and a second at most.
func (c *control) unsubscribe(deadline func() time.Time) {
	d := deadline()
	if limit := time.Now().Add(time.Second); limit.Before(d) {
		d = limit
	}
	ctx, cancel := context.WithDeadline(context.Background(), d)
	defer cancel()
	for _, ch := range []string{ctlChannel, replyPrefix + c.h.nodeID} {
		if err := c.h.broker.Unsubscribe(ctx, ch); err != nil {
			c.h.log.Warn("ws: unsubscribing a control channel failed", "channel", ch, "err", err)
		}
	}
}

// finish refuses new work and waits, until deadline, for the requests
// being handled on goroutines of their own.
func (c *control) finish(deadline func() time.Time) {
	c.mu.Lock()
	c.stopped = true
	c.work = nil
	c.mu.Unlock()
	close(c.quit)
	idle := make(chan struct{})
	go func() { c.tasks.Wait(); close(idle) }()
	t := time.NewTimer(time.Until(deadline()))
	defer t.Stop()
	select {
	case <-idle:
	case <-t.C:
	}
}

// queue hands f to the control goroutine.
func (c *control) queue(f func()) {
	c.mu.Lock()
	if c.stopped {
		c.mu.Unlock()
		return
	}
	c.work = append(c.work, f)
	c.mu.Unlock()
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// spawn runs f on a goroutine of its own, which stop waits for.
func (c *control) spawn(f func()) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.stopped {
		return
	}
	c.tasks.Add(1)
	go func() { defer c.tasks.Done(); f() }()
}

// call is Hub.call for the requests handled on goroutines of their own:
// it gives up when the control goroutine stops, since Run may no longer
// be taking operations then.
func (c *control) call(op *hubOp) opResult {
	op.reply = make(chan opResult, 1)
	select {
	case c.h.ops <- op:
	case <-c.h.done:
		return opResult{err: ErrHubClosed}
	case <-c.quit:
		return opResult{err: ErrHubClosed}
	}
	select {
	case r := <-op.reply:
		return r
	case <-c.h.done:
		return opResult{err: ErrHubClosed}
	case <-c.quit:
		return opResult{err: ErrHubClosed}
	}
}

// onRequest handles a request from any node, this one included. It runs
// on the broker's delivery goroutine and never blocks.
func (c *control) onRequest(payload []byte) {
	h := c.h
	var r ctlRequest
	if err := json.Unmarshal(payload, &r); err != nil {
		h.stats.errors[errKindProtocol].Add(1)
		h.log.Warn("ws: dropped a control message", "err", err)
		return
	}
	switch r.Op {
	case reqSend:
		h.sendToUser(&r)
	case reqDisconnect:
		n := h.disconnectUser(r.User)
		c.queue(func() { c.answer(&r, ctlReply{Count: n}) })
	case reqUnsubscribe:
		c.spawn(func() { c.answer(&r, ctlReply{Count: h.unsubscribeUser(r.User, r.Channel)}) })
	case reqChannels:
		c.queue(func() { c.answer(&r, ctlReply{Channels: h.localChannels(r.Prefix)}) })
	case reqChannel:
		c.queue(func() { c.answer(&r, ctlReply{Count: h.localSubscriptions(r.Channel)}) })
	}
}

// answer publishes reply to request r on the asker's reply channel.
func (c *control) answer(r *ctlRequest, reply ctlReply) {
	h := c.h
	reply.ID, reply.Node = r.ID, h.nodeID
	b, err := json.Marshal(reply)
	if err != nil {
		return // unreachable: the fields are strings and numbers
	}
	ctx, cancel := context.WithTimeout(h.ioCtx, brokerTimeout)
	defer cancel()
	if err := h.broker.Publish(ctx, replyPrefix+r.From, b); err != nil {
		h.stats.errors[errKindBroker].Add(1)
		h.log.Warn("ws: answering a control request failed", "op", r.Op, "err", err)
	}
}

// onReply takes an answer to one of this node's requests. It runs on the
// broker's delivery goroutine and never blocks.
func (c *control) onReply(payload []byte) {
	var reply ctlReply
	if err := json.Unmarshal(payload, &reply); err != nil {
		c.h.stats.errors[errKindProtocol].Add(1)
		c.h.log.Warn("ws: dropped a control answer", "err", err)
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	k := c.calls[reply.ID]
	if k == nil || k.nodes[reply.Node] {
		return // late, or twice
	}
	k.nodes[reply.Node] = true
	k.replies = append(k.replies, reply)
	select {
	case k.got <- struct{}{}:
	default:
	}
}

// ask publishes r to every node and waits for their answers: until as
// many came as the broker handed r to, Config.ClusterTimeout passed, or
// ctx is done. Missing answers make an error wrapping
// ErrClusterIncomplete, returned with the answers that came. With a
// broker that cannot count its receivers, ask waits ClusterTimeout and
// returns what came without an error.
func (h *Hub) ask(ctx context.Context, r ctlRequest) ([]ctlReply, error) {
	c := &h.ctl
	timeout := time.NewTimer(h.cfg.ClusterTimeout)
	defer timeout.Stop()
	if err := c.await(ctx, timeout.C); err != nil {
		return nil, fmt.Errorf("ws: %s: %w", r.Op, err)
	}
	r.ID, r.From = c.next.Add(1), h.nodeID
	k := &call{nodes: make(map[string]bool), got: make(chan struct{}, 1)}
	c.mu.Lock()
	c.calls[r.ID] = k
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		delete(c.calls, r.ID)
		c.mu.Unlock()
	}()
	b, err := json.Marshal(r)
	if err != nil {
		return nil, fmt.Errorf("ws: %s: %w", r.Op, err)
	}
	want := -1
	if pc, ok := h.broker.(PublishCounter); ok {
		want, err = pc.PublishCounted(ctx, ctlChannel, b)
	} else {
		err = h.broker.Publish(ctx, ctlChannel, b)
	}
	if err != nil {
		return nil, brokerError(r.Op, err)
	}
	replies := func() []ctlReply {
		c.mu.Lock()
		defer c.mu.Unlock()
		return append([]ctlReply(nil), k.replies...)
	}
	for {
		got := replies()
		if want >= 0 && len(got) >= want {
			return got, nil
		}
		var why error
		select {
		case <-k.got:
			continue
		case <-timeout.C:
			if want < 0 {
				return got, nil
			}
			why = fmt.Errorf("no answer within %v", h.cfg.ClusterTimeout)
		case <-ctx.Done():
			why = ctx.Err()
		case <-h.done:
			why = ErrHubClosed
		}
		got = replies()
		if want >= 0 && len(got) >= want {
			return got, nil
		}
		return got, fmt.Errorf("ws: %s: %w: %d of %d nodes answered: %w", r.Op, ErrClusterIncomplete, len(got), max(want, len(got)), why)
	}
}

// isReady reports whether both control channels are subscribed.
func (c *control) isReady() bool {
	select {
	case <-c.ready:
		return true
	default:
		return false
	}
}

// await waits until the control channels are subscribed.
func (c *control) await(ctx context.Context, timeout <-chan time.Time) error {
	if c.isReady() {
		return nil
	}
	if c.h.isDone() {
		return ErrHubClosed
	}
	if !c.h.started.Load() {
		return ErrHubNotRunning
	}
	select {
	case <-c.ready:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-c.h.done:
		return ErrHubClosed
	case <-timeout:
		return fmt.Errorf("%w: the control channels are not subscribed yet", ErrBrokerUnavailable)
	}
}

// brokerError makes err, from a broker publish, match
// ErrBrokerUnavailable unless it already says more.
func brokerError(op string, err error) error {
	if errors.Is(err, ErrBrokerUnavailable) || errors.Is(err, ErrPublishUncertain) || errors.Is(err, ErrHubClosed) {
		return fmt.Errorf("ws: %s: %w", op, err)
	}
	return fmt.Errorf("%w: %s: %w", ErrBrokerUnavailable, op, err)
}
