package ws

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vortechron/go-ws/internal/frame"
)

// brokerTimeout bounds each broker and storage call the Hub makes on its
// own behalf (subscribe, unsubscribe, presence updates).
const brokerTimeout = 5 * time.Second

// Hub is the centre of one node: it owns channel membership, talks to the
// MessageBroker and StorageClient, and fans publications out to its
// clients.
//
// One goroutine, Run, owns every membership map; clients and broker calls
// reach it through a queue of operations, and it never does network I/O
// itself. Fan-out does not go through Run: a broker delivery reads an
// immutable snapshot of the channel's subscribers and enqueues the frame,
// encoded once, on each of them without blocking.
type Hub struct {
	ctx     context.Context // cancelled when shutdown begins
	cancel  context.CancelFunc
	ioCtx   context.Context // bounds the hub's own broker and storage calls
	ioStop  context.CancelFunc
	cfg     Config
	cfgErr  error
	broker  MessageBroker
	storage StorageClient
	log     *slog.Logger
	nodeID  string

	ops           chan *hubOp // operations for the Run goroutine
	shards        []*writeShard
	nextShard     atomic.Uint64
	shardsRunning atomic.Bool
	done          chan struct{} // closed when Run returns
	started       atomic.Bool
	closing       atomic.Bool  // set once shutdown begins; no new clients
	forced        atomic.Int64 // connections still there when shutdown closed sockets hard
	unended       atomic.Int64 // connections still tearing down when drain gave up
	stats         counters

	finishOnce sync.Once

	shutdownMu       sync.Mutex
	shutdownDeadline time.Time     // guarded by shutdownMu
	deadlineMoved    chan struct{} // poked when shutdownDeadline changes

	admitMu sync.Mutex
	conns   int            // guarded by admitMu
	perIP   map[string]int // guarded by admitMu

	// owned by the Hub.Run goroutine
	clients  map[*Client]struct{}
	channels map[string]*channel
	inflight int // broker calls started and not yet reported back
}

// NewHub returns a Hub that uses broker to reach other nodes and storage
// to keep presence. A nil broker means NewMemoryBroker and a nil storage
// means NewMemoryStorage, so one process needs no Redis at all. The Hub
// owns both from now on and closes them when Run returns.
//
// Cancelling ctx shuts the hub down gracefully: see Shutdown. If config is
// invalid, NewHub still returns a Hub, whose Run and ServeWS return the
// *ConfigError (see Err); call config.Validate first to fail early.
func NewHub(ctx context.Context, broker MessageBroker, storage StorageClient, config Config) *Hub {
	if broker == nil {
		broker = NewMemoryBroker()
	}
	if storage == nil {
		storage = NewMemoryStorage()
	}
	cfgErr := config.Validate()
	cfg := config.withDefaults()
	ioCtx, ioStop := context.WithCancel(context.WithoutCancel(ctx))
	ctx, cancel := context.WithCancel(ctx)
	h := &Hub{
		ctx:           ctx,
		cancel:        cancel,
		ioCtx:         ioCtx,
		ioStop:        ioStop,
		cfg:           cfg,
		cfgErr:        cfgErr,
		broker:        broker,
		storage:       storage,
		log:           cfg.Logger,
		nodeID:        newID(),
		ops:           make(chan *hubOp, 256),
		deadlineMoved: make(chan struct{}, 1),
		done:          make(chan struct{}),
		perIP:         make(map[string]int),
		clients:       make(map[*Client]struct{}),
		channels:      make(map[string]*channel),
	}
	for range runtime.GOMAXPROCS(0) {
		h.shards = append(h.shards, newWriteShard(h))
	}
	return h
}

// NewWebSocketServer returns a Hub backed by Redis at redisAddr for both
// the broker and presence storage: the quickest way to run several nodes
// behind a load balancer. It fails when config is invalid.
func NewWebSocketServer(ctx context.Context, redisAddr string, config Config) (*Hub, error) {
	if err := config.Validate(); err != nil {
		return nil, err
	}
	return NewHub(ctx, NewRedisBroker(redisAddr), NewRedisStorage(redisAddr), config), nil
}

// Err returns the configuration error the Hub was created with, or nil.
func (h *Hub) Err() error { return h.cfgErr }

// NodeID returns this hub's random node identifier.
func (h *Hub) NodeID() string { return h.nodeID }

// Done is closed when Run has returned.
func (h *Hub) Done() <-chan struct{} { return h.done }

// Config returns the configuration in use, with defaults filled in.
func (h *Hub) Config() Config { return h.cfg }

// Publish sends message to every subscriber of channel on every node.
// message is encoded to JSON once (a json.RawMessage or []byte that holds
// JSON is used as is; a string becomes a JSON string) and the same bytes
// reach every subscriber as {"type":"message","channel":...,"message":...}.
// Publications from one goroutine on one channel arrive in order.
func (h *Hub) Publish(ctx context.Context, channel string, message any) error {
	if err := ValidChannelName(channel); err != nil {
		return err
	}
	if h.isDone() {
		return ErrHubClosed
	}
	raw, err := marshalMessage(message)
	if err != nil {
		return err
	}
	env := encodeEnvelope(kindMessage, "", encodeMessage(channel, raw))
	h.stats.publishes.Add(1)
	if err := h.broker.Publish(ctx, channel, env); err != nil {
		h.stats.brokerPublishFailures.Add(1)
		return fmt.Errorf("%w: publish on %q: %w", ErrBrokerUnavailable, channel, err)
	}
	return nil
}

func marshalMessage(message any) (json.RawMessage, error) {
	switch m := message.(type) {
	case json.RawMessage:
		if !json.Valid(m) {
			return nil, errors.New("ws: publish: message is a json.RawMessage that is not valid JSON")
		}
		return m, nil
	case []byte:
		if !json.Valid(m) {
			return nil, errors.New("ws: publish: message is a []byte that is not valid JSON; pass a string to send text")
		}
		return m, nil
	}
	b, err := json.Marshal(message)
	if err != nil {
		return nil, fmt.Errorf("ws: publish: encode message: %w", err)
	}
	return b, nil
}

func (h *Hub) isDone() bool {
	select {
	case <-h.done:
		return true
	default:
		return false
	}
}

// opKind names the operations the Run goroutine performs.
type opKind int

const (
	opRegister opKind = iota
	opUnregister
	opSubscribe
	opUnsubscribe
	opBrokerSubscribed
	opBrokerUnsubscribed
	opRemove
)

// hubOp is one request to the Run goroutine. reply, when set, has room for
// one answer so Run never blocks on it.
type hubOp struct {
	kind    opKind
	client  *Client
	channel string
	ch      *channel
	err     error
	reply   chan opResult
}

type opResult struct {
	err      error
	channels []string // for opUnregister: presence channels the client was in
}

// send hands op to Run. It fails once Run has returned.
func (h *Hub) send(op *hubOp) error {
	select {
	case h.ops <- op:
		return nil
	case <-h.done:
		return ErrHubClosed
	}
}

// call sends op and waits for its answer.
func (h *Hub) call(op *hubOp) opResult {
	op.reply = make(chan opResult, 1)
	if err := h.send(op); err != nil {
		return opResult{err: err}
	}
	select {
	case r := <-op.reply:
		return r
	case <-h.done:
		return opResult{err: ErrHubClosed}
	}
}

// Run runs the hub until its context is cancelled or Shutdown is called,
// then shuts down gracefully and returns. Call it once, usually as
// `go hub.Run()`. It returns the configuration error if the Hub was made
// with an invalid Config.
func (h *Hub) Run() error {
	if h.cfgErr != nil {
		h.closing.Store(true)
		h.finish()
		return h.cfgErr
	}
	if !h.started.CompareAndSwap(false, true) {
		return errors.New("ws: Hub.Run called twice")
	}
	if h.isDone() { // Shutdown came first
		return nil
	}
	ping := time.NewTicker(h.cfg.PingInterval)
	defer ping.Stop()
	// Stats are logged from their own goroutine so that a slow log sink
	// never holds up the hub's loop.
	stopStats := make(chan struct{})
	var statsWG sync.WaitGroup
	if h.cfg.ShouldLogStats {
		statsWG.Add(1)
		go func() {
			defer statsWG.Done()
			h.logStatsEvery(h.cfg.StatsInterval, stopStats)
		}()
	}
	var reapC <-chan time.Time
	reaper, _ := h.storage.(PresenceReaper)
	var reaping atomic.Bool
	var reapWG sync.WaitGroup
	if reaper != nil && reaper.ReapInterval() > 0 {
		t := time.NewTicker(reaper.ReapInterval())
		defer t.Stop()
		reapC = t.C
	}
	shardsDone := make(chan struct{})
	var shardWG sync.WaitGroup
	for _, s := range h.shards {
		shardWG.Add(1)
		go func() { defer shardWG.Done(); s.run(shardsDone) }()
	}
	h.shardsRunning.Store(true)
	defer func() {
		h.shardsRunning.Store(false)
		close(shardsDone)
		shardWG.Wait()
	}()
	pingFrame := frame.Ping()
	for {
		select {
		case op := <-h.ops:
			h.handle(op)
		case <-ping.C:
			for c := range h.clients {
				c.enqueueControl(pingFrame)
			}
		case <-reapC:
			if reaping.CompareAndSwap(false, true) {
				reapWG.Add(1)
				go func() {
					defer reapWG.Done()
					defer reaping.Store(false)
					h.reap(reaper)
				}()
			}
		case <-h.ctx.Done():
			close(stopStats)
			statsWG.Wait()
			h.drain(&reapWG)
			return nil
		}
	}
}

// handle performs one operation. Called only by the Run goroutine.
func (h *Hub) handle(op *hubOp) {
	switch op.kind {
	case opRegister:
		if h.closing.Load() {
			op.reply <- opResult{err: ErrHubClosed}
			return
		}
		h.clients[op.client] = struct{}{}
		h.stats.connections.Add(1)
		h.stats.connectionsTotal.Add(1)
		op.reply <- opResult{}
	case opUnregister:
		op.reply <- opResult{channels: h.unregister(op.client)}
	case opRemove:
		if _, ok := h.clients[op.client]; ok {
			delete(h.clients, op.client)
			h.stats.connections.Add(-1)
		}
	case opSubscribe:
		h.subscribe(op)
	case opUnsubscribe:
		op.reply <- opResult{err: h.unsubscribe(op.client, op.channel)}
	case opBrokerSubscribed:
		h.inflight--
		h.brokerSubscribed(op.ch, op.err)
	case opBrokerUnsubscribed:
		h.inflight--
		h.brokerUnsubscribed(op.ch)
	}
}

var (
	errTooManyChannels = errors.New("too many channels")
	errNotSubscribed   = errors.New("not subscribed")
)

func (h *Hub) subscribe(op *hubOp) {
	c := op.client
	if h.closing.Load() {
		op.reply <- opResult{err: ErrHubClosed}
		return
	}
	if _, ok := h.clients[c]; !ok {
		op.reply <- opResult{err: ErrHubClosed}
		return
	}
	if _, ok := c.subs[op.channel]; ok {
		c.sendJSON(encodeAck(TypeSubscribed, op.channel))
		op.reply <- opResult{}
		return
	}
	if len(c.subs) >= h.cfg.MaxChannelsPerClient {
		op.reply <- opResult{err: errTooManyChannels}
		return
	}
	ch := h.channels[op.channel]
	if ch == nil {
		ch = newChannel(op.channel)
		h.channels[op.channel] = ch
		h.stats.channels.Add(1)
		ch.pending = append(ch.pending, op)
		h.startBrokerSubscribe(ch)
		return
	}
	if ch.state != chanActive {
		ch.pending = append(ch.pending, op)
		return
	}
	h.join(ch, c)
	op.reply <- opResult{}
}

// join adds c to an active channel. The ack is queued before c enters the
// snapshot, so c sees "subscribed" before any message of the channel.
func (h *Hub) join(ch *channel, c *Client) {
	if c.subs == nil {
		c.subs = make(map[string]*channel)
	}
	c.subs[ch.name] = ch
	// c.mu is held across both steps: a delivery that sees c in the new
	// snapshot waits for it, so its frame lands after the ack.
	c.mu.Lock()
	c.appendLocked(frame.Text(encodeAck(TypeSubscribed, ch.name)))
	ch.add(c)
	c.mu.Unlock()
	h.stats.subscriptions.Add(1)
}

func (h *Hub) unsubscribe(c *Client, name string) error {
	ch, ok := c.subs[name]
	if !ok {
		return errNotSubscribed
	}
	delete(c.subs, name)
	ch.remove(c)
	h.stats.subscriptions.Add(-1)
	c.sendJSON(encodeAck(TypeUnsubscribed, name))
	h.maybeRelease(ch)
	return nil
}

// unregister removes c from every channel and returns the presence
// channels it was in, for the caller to clean up off the Run goroutine.
// c stays in h.clients until opRemove, so shutdown waits for that
// cleanup before it closes the storage.
func (h *Hub) unregister(c *Client) []string {
	if _, ok := h.clients[c]; !ok {
		return nil
	}
	var presence []string
	for name, ch := range c.subs {
		ch.remove(c)
		h.stats.subscriptions.Add(-1)
		if ch.kind == PresenceChannel {
			presence = append(presence, name)
		}
		h.maybeRelease(ch)
	}
	c.subs = nil
	return presence
}

// maybeRelease drops the broker subscription of a channel that has no
// local subscriber left.
func (h *Hub) maybeRelease(ch *channel) {
	if ch.size() > 0 || ch.state != chanActive {
		return
	}
	ch.state = chanUnsubscribing
	h.inflight++
	go func() {
		ctx, cancel := context.WithTimeout(h.ioCtx, brokerTimeout)
		defer cancel()
		if err := h.broker.Unsubscribe(ctx, ch.name); err != nil {
			h.log.Warn("ws: broker unsubscribe failed", "channel", ch.name, "err", err)
		}
		_ = h.send(&hubOp{kind: opBrokerUnsubscribed, ch: ch})
	}()
}

func (h *Hub) startBrokerSubscribe(ch *channel) {
	ch.state = chanSubscribing
	h.inflight++
	go func() {
		ctx, cancel := context.WithTimeout(h.ioCtx, brokerTimeout)
		defer cancel()
		err := h.broker.Subscribe(ctx, ch.name, func(p []byte) { h.deliver(ch, p) })
		_ = h.send(&hubOp{kind: opBrokerSubscribed, ch: ch, err: err})
	}()
}

func (h *Hub) brokerSubscribed(ch *channel, err error) {
	pending := ch.pending
	ch.pending = nil
	if err != nil {
		h.log.Warn("ws: broker subscribe failed", "channel", ch.name, "err", err)
		err = fmt.Errorf("%w: subscribe %q: %w", ErrBrokerUnavailable, ch.name, err)
		for _, op := range pending {
			op.reply <- opResult{err: err}
		}
		delete(h.channels, ch.name)
		h.stats.channels.Add(-1)
		return
	}
	ch.state = chanActive
	for _, op := range pending {
		if _, ok := h.clients[op.client]; !ok || h.closing.Load() {
			op.reply <- opResult{err: ErrHubClosed}
			continue
		}
		h.join(ch, op.client)
		op.reply <- opResult{}
	}
	h.maybeRelease(ch)
}

func (h *Hub) brokerUnsubscribed(ch *channel) {
	if len(ch.pending) > 0 && !h.closing.Load() {
		h.startBrokerSubscribe(ch)
		return
	}
	for _, op := range ch.pending {
		op.reply <- opResult{err: ErrHubClosed}
	}
	ch.pending = nil
	delete(h.channels, ch.name)
	h.stats.channels.Add(-1)
}

// deliver fans one broker payload out to the channel's local subscribers.
// It runs on the broker's delivery goroutine, reads the lock-free snapshot
// and never blocks: a full client queue disconnects that client alone.
func (h *Hub) deliver(ch *channel, payload []byte) {
	kind, except, body, err := decodeEnvelope(payload)
	if err != nil {
		h.stats.errors[errKindProtocol].Add(1)
		h.log.Warn("ws: dropped broker payload", "channel", ch.name, "err", err)
		return
	}
	subs := ch.subscribers()
	if len(subs) == 0 {
		return
	}
	f := frame.Text(body)
	var n int64
	for _, chunk := range subs {
		for _, c := range chunk {
			if except != "" && c.ID == except {
				continue
			}
			if c.enqueue(f) {
				n++
			}
		}
	}
	h.stats.messagesOut.Add(n)
	if kind == kindWhisper {
		h.stats.whispersOut.Add(n)
	}
}

// Shutdown stops the hub gracefully and waits until Run has returned or
// ctx is done. New connections are refused (503), every client gets a
// going-away close frame (1001) so it reconnects elsewhere, this node's
// presence members are removed (others see leave), OnDisconnect runs for
// every connection, broker subscriptions are dropped and the broker and
// storage are closed.
//
// ctx's deadline bounds all of it. Shortly before the deadline the hub
// stops waiting politely: its broker and storage calls are cancelled and
// the sockets still open are closed without a close handshake; at the
// deadline Run returns whatever is left. Shutdown returns nil when every
// connection closed gracefully, an error wrapping
// context.DeadlineExceeded when some had to be closed hard or were still
// tearing down at the deadline, or ctx.Err() if ctx ends before Run has
// returned. Cancelling the ctx given to NewHub
// has the same effect, with a deadline of WriteTimeout plus 5s unless
// Shutdown sets one.
//
// http.Server.Shutdown does not wait for hijacked (WebSocket) connections;
// wire the two together with
//
//	server.RegisterOnShutdown(func() { hub.Shutdown(ctx) })
func (h *Hub) Shutdown(ctx context.Context) error {
	if dl, ok := ctx.Deadline(); ok {
		h.shutdownMu.Lock()
		if h.shutdownDeadline.IsZero() || dl.Before(h.shutdownDeadline) {
			h.shutdownDeadline = dl
			select {
			case h.deadlineMoved <- struct{}{}:
			default:
			}
		}
		h.shutdownMu.Unlock()
	}
	h.closing.Store(true)
	h.cancel()
	if !h.started.Load() {
		h.finish()
		return nil
	}
	select {
	case <-h.done:
		forced, unended := h.forced.Load(), h.unended.Load()
		if forced > 0 || unended > 0 {
			return fmt.Errorf("ws: shutdown: %d connections closed hard, %d still tearing down at the deadline: %w",
				forced, unended, context.DeadlineExceeded)
		}
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// hardGrace is the most time drain keeps, at the end of the shutdown
// deadline, for closing hard whatever did not close gracefully.
const hardGrace = time.Second

// shutdownTimes returns when drain must start closing hard and when it
// must stop waiting.
func (h *Hub) shutdownTimes() (hard, giveUp time.Time) {
	h.shutdownMu.Lock()
	giveUp = h.shutdownDeadline
	h.shutdownMu.Unlock()
	if giveUp.IsZero() {
		giveUp = time.Now().Add(h.cfg.WriteTimeout + brokerTimeout)
	}
	grace := min(hardGrace, time.Until(giveUp)/4)
	return giveUp.Add(-grace), giveUp
}

// drain shuts the hub down; called by the Run goroutine once its context
// is done. It closes every client with 1001 and keeps serving operations
// until each client has torn down (left its channels and presence sets,
// OnDisconnect returned) and every broker call has reported back.
//
// At the hard time it cancels the hub's own broker and storage calls and
// closes the sockets still open; at the deadline it stops waiting and
// unregisters whatever is left itself, so Run returns in time even when a
// client is stuck in user code (an AuthProvider, ErrorHandler or
// OnDisconnect) or a broker ignores its context. The presence of clients
// unregistered that way is not removed; a PresenceReaper on another node
// removes it once this node's heartbeat expires.
func (h *Hub) drain(reaps *sync.WaitGroup) {
	h.closing.Store(true)
	start := time.Now()
	hardAt, giveUpAt := h.shutdownTimes()
	h.log.Info("ws: shutting down", "connections", len(h.clients), "deadline", giveUpAt.Sub(start).Round(time.Millisecond))
	for c := range h.clients {
		c.Close(CloseGoingAway, "server shutting down")
	}
	hard := time.NewTimer(time.Until(hardAt))
	defer hard.Stop()
	giveUp := time.NewTimer(time.Until(giveUpAt))
	defer giveUp.Stop()
	wasHard := false
	goHard := func() {
		if wasHard {
			return
		}
		wasHard = true
		h.ioStop()
		for c := range h.clients {
			c.closeNow()
		}
		h.forced.Add(int64(len(h.clients)))
	}
wait:
	for len(h.clients) > 0 || h.inflight > 0 {
		select {
		case op := <-h.ops:
			h.handle(op)
		case <-h.deadlineMoved:
			if !wasHard {
				hardAt, giveUpAt = h.shutdownTimes()
				hard.Reset(time.Until(hardAt))
				giveUp.Reset(time.Until(giveUpAt))
			}
		case <-hard.C:
			goHard()
		case <-giveUp.C:
			goHard()
			break wait
		}
	}
	h.abandon()
	h.ioStop()
	reaps.Wait()
	h.finish()
	h.log.Info("ws: shut down", "took", time.Since(start).Round(time.Millisecond), "closed_hard", h.forced.Load(), "unfinished", h.unended.Load())
}

// abandon unregisters the clients and forgets the channels that are still
// there when drain stops waiting, so Stats end at zero. Their pending
// subscribes fail with ErrHubClosed as soon as Run returns.
func (h *Hub) abandon() {
	if len(h.clients) == 0 && h.inflight == 0 {
		return
	}
	h.unended.Store(int64(len(h.clients)))
	leftPresence := 0
	for c := range h.clients {
		leftPresence += len(h.unregister(c))
		delete(h.clients, c)
		h.stats.connections.Add(-1)
	}
	for name := range h.channels {
		delete(h.channels, name)
		h.stats.channels.Add(-1)
	}
	h.log.Warn("ws: shutdown deadline passed; gave up waiting",
		"connections", h.unended.Load(), "broker_calls", h.inflight, "presence_not_removed", leftPresence)
}

// finish closes the broker and storage and marks the hub done, once.
func (h *Hub) finish() {
	h.finishOnce.Do(func() {
		h.closing.Store(true)
		h.ioStop()
		h.cancel()
		if err := h.broker.Close(); err != nil {
			h.log.Warn("ws: closing broker", "err", err)
		}
		if err := h.storage.Close(); err != nil {
			h.log.Warn("ws: closing storage", "err", err)
		}
		close(h.done)
	})
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

// newID returns 128 random bits in hex.
func newID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
