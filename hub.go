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

	ops       chan *hubOp // operations for the Run goroutine
	shards    []*writeShard
	nextShard atomic.Uint64
	done      chan struct{} // closed when Run returns
	started   atomic.Bool
	closing   atomic.Bool  // set once shutdown begins; no new clients
	forced    atomic.Int64 // connections still there when shutdown closed sockets hard
	unended   atomic.Int64 // connections still tearing down when drain gave up
	stats     counters

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
		h.shards = append(h.shards, newWriteShard(h, len(h.shards)))
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
// Publish returns once the broker has taken the publication; delivery to
// this node's subscribers happens on the write shards right after, so a
// subscriber may receive it after Publish has returned.
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
	env := encodeMessageEnvelope(channel, raw)
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
	maintainer, _ := h.storage.(PresenceMaintainer)
	var reaping atomic.Bool
	var reapWG sync.WaitGroup
	if maintainer != nil && maintainer.MaintainInterval() > 0 {
		t := time.NewTicker(maintainer.MaintainInterval())
		defer t.Stop()
		reapC = t.C
	}
	shardsDone := make(chan struct{})
	var shardWG sync.WaitGroup
	for _, s := range h.shards {
		s.setLive(true)
		shardWG.Add(1)
		go func() { defer shardWG.Done(); s.run(shardsDone) }()
	}
	defer func() {
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
					h.maintain(maintainer)
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

// newID returns 128 random bits in hex.
func newID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
