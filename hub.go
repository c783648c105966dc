package ws

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"log/slog"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vortechron/go-ws/internal/wire"
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

	ops       chan *hubOp  // operations for the Run goroutine
	brokerOps brokerWorker // makes the broker calls Run asks for
	shards    []*writeShard
	nextShard atomic.Uint64
	idPrefix  string        // first half of every client ID
	nextConn  atomic.Uint64 // second half

	// The wire protocols the hub's clients speak, ws's own first (see
	// addProtocol). Slot i is written once, under protoMu, before
	// nprotocols counts it, so readers that load nprotocols read slots
	// below it without a lock. pongs[i] is protocols[i]'s answer to a
	// ping, shared by its clients.
	protoMu    sync.Mutex
	protocols  [maxProtocols]wire.Protocol
	pongs      [maxProtocols][]byte
	nprotocols atomic.Int32
	done       chan struct{} // closed when the hub stops serving operations, before Run's last steps
	exited     chan struct{} // closed by exit: Run has done everything it does (Done)
	exitOnce   sync.Once
	running    chan struct{} // closed when Run starts
	started    atomic.Bool
	closing    atomic.Bool  // set once shutdown begins; no new clients
	forced     atomic.Int64 // connections still there when shutdown closed sockets hard
	unended    atomic.Int64 // connections still tearing down when drain gave up
	stats      counters
	// dropLog throttles the log line for broker payloads that could not
	// be read (see logDropped).
	dropLog struct {
		last    atomic.Int64 // unix nanoseconds of the last line
		dropped atomic.Int64 // payloads dropped since then
	}

	finishOnce sync.Once

	shutdownMu       sync.Mutex
	shutdownDeadline time.Time     // guarded by shutdownMu
	deadlineMoved    chan struct{} // poked when shutdownDeadline changes

	admitMu sync.Mutex
	conns   int            // guarded by admitMu
	perIP   map[string]int // guarded by admitMu

	// presenceWatchers are called for every join and leave this node
	// decides (see watchPresence); guarded by protoMu.
	presenceWatchers []func(channel, userID string, left bool)

	presenceMu   sync.Mutex
	presence     map[string]*presenceSeq // guarded by presenceMu; the node's presence channels
	presenceWork taskGroup               // presence resyncs in flight
	historyWork  taskGroup               // history resyncs and paced recoveries in flight

	// The cluster API (cluster.go): the node's connections by user, the
	// control channels, channel occupancy, the hook goroutine, and the
	// node's channels by name for goroutines other than Run (written by
	// Run in step with channels; a sync.Map, so reading it never holds
	// Run up).
	users      userIndex
	ctl        control
	occ        occupancy
	hooks      hookRunner
	chanByName sync.Map // string -> *channel

	// owned by the Hub.Run goroutine
	clients  map[*Client]struct{}
	channels map[string]*channel
	inflight int // broker calls started and not yet reported back
	// Member sets that closed connections left and that wait for
	// publishDropped, and how many left them.
	unpublished []*memberSet
	dropped     int
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
		exited:        make(chan struct{}),
		running:       make(chan struct{}),
		perIP:         make(map[string]int),
		clients:       make(map[*Client]struct{}),
		channels:      make(map[string]*channel),
		presence:      make(map[string]*presenceSeq),
	}
	for range runtime.GOMAXPROCS(0) {
		h.shards = append(h.shards, newWriteShard(h, len(h.shards)))
	}
	h.brokerOps.init(h)
	h.ctl.init(h)
	h.occ.init(h)
	h.hooks.init(h)
	h.idPrefix = newConnPrefix()
	h.addProtocol(nativeProtocol{})
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

// maxProtocols bounds the wire protocols of one hub: posts carry a frame
// per protocol in an array of this size.
const maxProtocols = 4

// addProtocol registers p and returns its index; it is safe while the
// hub runs.
func (h *Hub) addProtocol(p wire.Protocol) (int, error) {
	h.protoMu.Lock()
	defer h.protoMu.Unlock()
	i := int(h.nprotocols.Load())
	if i == maxProtocols {
		return 0, errors.New("ws: too many wire protocols on one hub")
	}
	h.protocols[i] = p
	h.pongs[i] = encodeFrame(p, &wire.Event{Kind: wire.PongEvent})
	h.nprotocols.Store(int32(i + 1))
	return i, nil
}

// watchPresence registers fn to be called for every presence join and
// leave this node decides (the storage's answer to this node's add,
// remove or maintenance): once per change across the cluster.
func (h *Hub) watchPresence(fn func(channel, userID string, left bool)) {
	h.protoMu.Lock()
	defer h.protoMu.Unlock()
	h.presenceWatchers = append(h.presenceWatchers, fn)
}

// Err returns the configuration error the Hub was created with, or nil.
func (h *Hub) Err() error { return h.cfgErr }

// NodeID returns this hub's random node identifier.
func (h *Hub) NodeID() string { return h.nodeID }

// Done is closed when Run has finished: every client is closed, the
// broker and storage are closed, the hub's goroutines have returned and
// its last log line ("ws: shut down") is written. It is also closed by a
// Shutdown that comes before Run, and when Run returns a configuration
// error.
func (h *Hub) Done() <-chan struct{} { return h.exited }

// exit closes Done.
func (h *Hub) exit() { h.exitOnce.Do(func() { close(h.exited) }) }

// Ready is closed once the hub takes part in the cluster: Run has started
// and the hub has subscribed, through its broker, the control channels on
// which other nodes reach it (see docs/cluster.md). Until then the hub
// serves connections, but requests made meanwhile on other nodes
// (PublishToUser, DisconnectUser, UnsubscribeUser, Channels, Channel) do
// not see them, and HealthHandler answers 503 with status "starting" so
// that a load balancer sends it no traffic yet. With the in-memory
// broker, or a broker that answers, it closes within a moment of Run; it
// stays open while the broker refuses the subscriptions, and for good if
// Run returns first.
func (h *Hub) Ready() <-chan struct{} { return h.ctl.ready }

// Config returns the configuration in use, with defaults filled in.
func (h *Hub) Config() Config { return h.cfg }

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
	opBrokerDone
	opRemove
)

// hubOp is one request to the Run goroutine. reply, when set, has room for
// one answer so Run never blocks on it.
type hubOp struct {
	kind    opKind
	client  *Client
	channel string
	broker  []brokerOp // for opBrokerDone
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
		h.exit()
		return h.cfgErr
	}
	if !h.started.CompareAndSwap(false, true) {
		return errors.New("ws: Hub.Run called twice")
	}
	if h.isDone() { // Shutdown came first
		return nil
	}
	close(h.running)
	bg := h.startBackground()
	for {
		select {
		case op := <-h.ops:
			h.handle(op)
		case <-h.ctx.Done():
			h.drain(bg)
			h.exit()
			return nil
		}
	}
}

// background is what Run starts beside its own loop: the write shards,
// the broker worker, the stats logger and presence maintenance. None of
// it runs on the Run goroutine.
type background struct {
	shardsDone chan struct{}
	shards     sync.WaitGroup
	stop       chan struct{} // stops the stats logger, maintenance and the cluster tasks
	tasks      sync.WaitGroup
	cluster    func() // stops what startCluster started outside tasks
}

func (h *Hub) startBackground() *background {
	bg := &background{shardsDone: make(chan struct{}), stop: make(chan struct{})}
	for _, s := range h.shards {
		s.start()
		bg.shards.Add(1)
		go func() { defer bg.shards.Done(); s.run(bg.shardsDone) }()
	}
	h.brokerOps.start()
	if h.cfg.ShouldLogStats {
		bg.tasks.Add(1)
		go func() { defer bg.tasks.Done(); h.logStatsEvery(h.cfg.StatsInterval, bg.stop) }()
	}
	if m, ok := h.storage.(PresenceMaintainer); ok && m.MaintainInterval() > 0 {
		bg.tasks.Add(1)
		go func() { defer bg.tasks.Done(); h.maintainEvery(m, bg.stop) }()
	}
	bg.cluster = h.startCluster(bg)
	return bg
}

// stopTasks stops the stats logger and presence maintenance and waits
// for them; drain calls it before the storage is closed.
func (bg *background) stopTasks() {
	close(bg.stop)
	bg.tasks.Wait()
	bg.cluster()
}

// stopShards stops the write shards and waits for them; the last thing
// Run does.
func (bg *background) stopShards() {
	close(bg.shardsDone)
	bg.shards.Wait()
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
		if op.client.UserID != "" {
			h.users.add(op.client, op.client.UserID)
		}
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
	case opBrokerDone:
		h.brokerDone(op.broker)
	}
	if h.dropped > 0 && (len(h.ops) == 0 || h.dropped >= maxDropped) {
		h.publishDropped()
	}
}

// maxDropped bounds how many departures of closed connections wait for
// one publish of their member sets. They wait while more operations are
// queued, as when thousands of connections drop at once: every removal
// then copies the chunks it writes once per burst, not once per client.
const maxDropped = 256

// publishDropped publishes the member sets that closed connections left.
func (h *Hub) publishDropped() {
	for _, ms := range h.unpublished {
		if ms.unpublished { // an add may have published it since
			ms.publish()
		}
	}
	clear(h.unpublished)
	h.unpublished, h.dropped = h.unpublished[:0], 0
}

// newID returns 128 random bits in hex: a node's identity.
func newID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// newConnPrefix returns a random 15-digit number, the first half of the
// client IDs of one hub. The second half counts the hub's connections, so
// IDs are unique across a cluster unless two hubs draw the same prefix
// (about one in 10^12 for a hundred hubs). The form "123.456" is what
// Pusher clients and server SDKs expect of a socket ID.
func newConnPrefix() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return strconv.FormatUint(binary.BigEndian.Uint64(b[:])%9e14+1e14, 10)
}

// newClientID returns the next client ID of this hub.
func (h *Hub) newClientID() string {
	return h.idPrefix + "." + strconv.FormatUint(h.nextConn.Add(1), 10)
}

// taskGroup tracks goroutines that may be started while the hub shuts
// down, unlike a sync.WaitGroup, whose Add must not race with Wait: once
// closeAndWait has begun, start refuses.
type taskGroup struct {
	mu     sync.Mutex
	n      int  // guarded by mu
	closed bool // guarded by mu
	idle   sync.Cond
}

// start counts one more task, or reports false once the group is closed.
func (g *taskGroup) start() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return false
	}
	g.n++
	return true
}

func (g *taskGroup) done() {
	g.mu.Lock()
	g.n--
	if g.n == 0 && g.idle.L != nil {
		g.idle.Broadcast()
	}
	g.mu.Unlock()
}

// closeAndWait refuses new tasks and waits for the running ones.
func (g *taskGroup) closeAndWait() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.closed = true
	g.idle.L = &g.mu
	for g.n > 0 {
		g.idle.Wait()
	}
}
