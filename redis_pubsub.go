package ws

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// pubsubShard is one go-redis PubSub (one subscription connection) and
// the goroutines that read and watch it. A RedisBroker has one shard, or
// on Redis Cluster one per sharded pub/sub partition.
//
// Subscribe confirmation: go-redis writes SUBSCRIBE without reading the
// reply, so the shard registers the subscription as pending, writes the
// command, and waits until its receive loop reads the matching
// subscribe (or ssubscribe) reply from Redis. Publications are delivered
// only to confirmed subscriptions, which also drops stale messages left
// in flight by an earlier UNSUBSCRIBE of the same channel.
//
// Reconnects: go-redis redials after a read error and sends one SUBSCRIBE
// naming every channel it knows; Redis answers it with one reply per
// channel, counting 1, 2, 3... subscriptions on the new connection. The
// shard is always subscribed to its control channel, so a reply counting
// 1 subscription can only be the first one on a new connection. From
// there the shard counts the replies of the channels it had confirmed
// before and accepts publications again only once all of them are back
// (and the other nodes too; see linkState in redis_link.go).
//
// Slot moves: on Redis Cluster a resharding can move the shard's slot to
// another master. The old owner then drops every subscription of the slot,
// sending an sunsubscribe reply for each, while the connection stays up,
// and go-redis would keep it (and redial the same node). The shard takes
// the sunsubscribe of its control channel, which it never unsubscribes
// itself, as the sign: it replaces the PubSub with one on the slot's
// owner and subscribes everything again, as after a reconnect (rehome).
//
// Silent connections: a subscription connection can go silent while
// Redis is fine (a NAT or load balancer that forgot the flow, a
// half-open connection). go-redis waits for the operating system to
// report it dead, which with the monitor's pings outstanding takes TCP's
// retransmission timeout (about 15 minutes on Linux). Once the
// connection is stale, the monitor asks Redis on another connection
// (probe); if Redis answers there and the subscription connection is
// still silent, it closes that connection and the receive loop rehomes.
// If Redis answers nowhere (stopped, or this node's whole path to it
// stalled) the connection is kept: it may still deliver what Redis owes
// it once Redis answers again.
type pubsubShard struct {
	client  redis.UniversalClient
	ps      *redis.PubSub // replaced only by the receive loop (rehome), under mu
	sharded bool          // SSUBSCRIBE instead of SUBSCRIBE
	ctl     string        // Redis channel kept subscribed for the shard's lifetime
	every   time.Duration
	wait    time.Duration // RedisOptions.ResubscribeWait
	logger  *slog.Logger
	done    <-chan struct{} // closed by RedisBroker.Close
	// countPeers returns how many brokers subscribe to ctl; nil where
	// Redis cannot tell (classic pub/sub on a cluster).
	countPeers func(ctx context.Context) (int, error)
	// announce publishes on ctl, which makes every broker count again.
	announce func(ctx context.Context) error
	// probe asks, on a connection of the client's pool, the server the
	// shard's subscriptions live on for an answer (RedisBroker.prober).
	probe func(ctx context.Context) error
	// replacing is the PubSub the monitor closed for the receive loop to
	// replace, and why; nil otherwise.
	replacing atomic.Pointer[replacement]
	// retired is the PubSub replace last closed, until rehome replaced
	// it: a subscription written to it failed only because the broker is
	// moving, and the next PubSub subscribes it.
	retired atomic.Pointer[redis.PubSub]
	// moving asks the monitor to replace the connection, giving the
	// cause: the Sentinel master moved (masterMoved), or the server the
	// pool reaches is a replica (replicaSeen).
	moving atomic.Pointer[error]
	// refused is set while Redis refuses the new connections the
	// monitor's count needs (WRONGPASS after the password changed): the
	// shard is unhealthy, since a publication that needs a new connection
	// cannot be sent. Written by the monitor (noteRefusal).
	refused atomic.Bool
	// sawReplica is set while a link awaiting its peers found its pool on
	// a replica (peersBack). The monitor's own.
	sawReplica bool

	started  chan struct{} // closed when the link first goes live or fails
	wake     chan struct{} // tells the monitor the link awaits peers
	live     atomic.Uint64 // the session while the link is live, else 0
	lastSeen atomic.Int64  // unix nanos of the last reply; written by the receive loop

	// mu is held for writing to change subs or the link, and for
	// reading while a handler runs, so Unsubscribe returns only after any
	// delivery in progress for its channel has finished.
	mu   sync.RWMutex
	subs map[string]*redisSub // by Redis channel, ctl included; guarded by mu
	link link                 // guarded by mu
}

// redisSub is one channel's handler (nil for the control channel).
// confirmed is closed by the receive loop (its only closer) when Redis
// first acknowledges the subscription.
type redisSub struct {
	handler   func([]byte)
	confirmed chan struct{}
	// session is the connection on which Redis last confirmed the
	// subscription; 0 while it was never confirmed. Guarded by the
	// shard's mu.
	session uint64
}

// peers are the control channel's counter and announcer (see
// RedisBroker.peerCounter and publishOnce).
type peers struct {
	count    func(ctx context.Context) (int, error)
	announce func(ctx context.Context) error
	probe    func(ctx context.Context) error
}

func newPubsubShard(client redis.UniversalClient, sharded bool, ctl string, o RedisOptions, p peers, done <-chan struct{}) *pubsubShard {
	sh := &pubsubShard{
		client: client, sharded: sharded, ctl: ctl, every: o.HealthInterval, wait: o.ResubscribeWait, logger: o.Logger, done: done,
		countPeers: p.count, announce: p.announce, probe: p.probe, started: make(chan struct{}), wake: make(chan struct{}, 1),
		subs: map[string]*redisSub{ctl: {confirmed: make(chan struct{})}},
	}
	ctx, cancel := context.WithTimeout(context.Background(), sh.every)
	defer cancel()
	sh.ps = sh.newPubSub(ctx)
	return sh
}

// newPubSub returns a new PubSub subscribed to the control channel.
// Subscribing to it up front pins the connection to the node owning the
// shard's slot on Redis Cluster, and means every new connection starts
// with a subscribe reply counting 1. An error here (Redis down) is not
// fatal: go-redis keeps the channel and subscribes it when Receive
// connects.
func (sh *pubsubShard) newPubSub(ctx context.Context) *redis.PubSub {
	ctx = sh.own(ctx)
	if sh.sharded {
		return sh.client.SSubscribe(ctx, sh.ctl)
	}
	return sh.client.Subscribe(ctx, sh.ctl)
}

// start runs the receive loop and the monitor; wg tracks both.
func (sh *pubsubShard) start(wg *sync.WaitGroup) {
	wg.Add(2)
	go func() { defer wg.Done(); sh.receiveLoop() }()
	go func() { defer wg.Done(); sh.monitor() }()
}

func (sh *pubsubShard) receiveLoop() {
	ctx := sh.own(context.Background())
	failures := 0
	for {
		msg, err := sh.ps.Receive(ctx)
		if err != nil {
			if sh.closing() {
				return
			}
			r := sh.replacing.Load()
			replace := r != nil && r.ps == sh.ps && sh.replacing.CompareAndSwap(r, nil)
			if replace {
				err = r.cause
			}
			sh.lost(err)
			failures++
			if !sh.sleep(backoff(failures)) {
				return
			}
			// A rehome that dialed the slot's old owner (go-redis had not
			// yet learnt the move) gets MOVED, and go-redis keeps that
			// connection: replace it again.
			_, moved := redis.IsMovedError(err)
			if replace || moved && sh.sharded {
				if !sh.rehome(err) {
					return
				}
			}
			continue
		}
		failures = 0
		sh.lastSeen.Store(time.Now().UnixNano())
		switch m := msg.(type) {
		case *redis.Subscription:
			switch {
			case m.Kind == "subscribe" || m.Kind == "ssubscribe":
				sh.subscribed(m.Channel, m.Count)
			case m.Kind == "sunsubscribe" && m.Channel == sh.ctl:
				if !sh.rehome(errSlotMoved) {
					return
				}
			}
		case *redis.Message:
			sh.deliver(m.Channel, m.Payload)
		}
	}
}

// subscribed records Redis's confirmation of channel, which leaves count
// subscriptions on the connection, and wakes the Subscribe waiting for it.
// A subscription confirmed again on a new connection may have missed
// publications meanwhile: its handler gets an empty payload to say so
// (see MessageBroker.Subscribe), before any publication of the new
// connection.
func (sh *pubsubShard) subscribed(channel string, count int) {
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if count == 1 {
		sh.newConnection()
	}
	s := sh.subs[channel]
	if s == nil {
		return
	}
	select {
	case <-s.confirmed:
	default:
		close(s.confirmed)
	}
	restored := s.session != 0 && s.session != sh.link.session
	sh.confirmed(s)
	if restored && s.handler != nil {
		s.handler(nil)
	}
}

// deliver calls channel's handler if its subscription is confirmed. A
// message on the control channel, a broker announcing itself, makes the
// monitor count the brokers again.
func (sh *pubsubShard) deliver(channel, payload string) {
	if channel == sh.ctl {
		sh.poke()
		return
	}
	sh.mu.RLock()
	defer sh.mu.RUnlock()
	s := sh.subs[channel]
	if s == nil || s.handler == nil {
		return
	}
	select {
	case <-s.confirmed:
		s.handler([]byte(payload))
	default:
	}
}

var (
	// errSlotMoved is the cause given when Redis Cluster dropped the
	// shard's subscriptions because its slot moved to another master.
	errSlotMoved = errors.New("the partition's slot moved to another Redis Cluster master")
	// errSilent is the cause given when the monitor closed a connection
	// that stayed silent while Redis answered on another one.
	errSilent = errors.New("the subscription connection stayed silent while Redis answered on another connection")
	// errElsewhere is the cause given when the monitor closed a connection
	// whose server is not the one that takes this broker's publications.
	errElsewhere = errors.New("the Redis server that takes this node's publications does not see its subscriptions (a failover moved the master)")
	// errLeftReplica is the cause given when the monitor moves a
	// connection that may have been dialled while the address named a
	// replica, once the pool reaches the primary (peersBack).
	errLeftReplica = errors.New("moving the subscription connection to the primary: it was dialled while the address may have named a replica")
)

// replacement is a PubSub the monitor closed, for the receive loop to
// replace, and why.
type replacement struct {
	ps    *redis.PubSub
	cause error
}

// rehome replaces the shard's PubSub (whose node no longer owns the
// shard's slot, or whose connection went silent) with a new one, on the
// slot's owner on Redis Cluster, and subscribes there every channel the
// shard has, the control channel first. The link goes down until Redis
// confirms them all and the other brokers are back, as after a
// reconnect; restored subscriptions' handlers are told that publications
// may have been missed. It reports false if the broker is closing. Only
// the receive loop calls it.
func (sh *pubsubShard) rehome(cause error) bool {
	sh.lost(cause)
	if cc, ok := sh.client.(*redis.ClusterClient); ok {
		cc.ReloadState(context.Background()) // go-redis reloads in the background; see receiveLoop
	}
	ctx, cancel := context.WithTimeout(context.Background(), sh.every)
	defer cancel()
	ps := sh.newPubSub(ctx)
	sh.mu.Lock()
	if sh.closing() {
		sh.mu.Unlock()
		_ = ps.Close()
		return false
	}
	old := sh.ps
	sh.ps = ps
	rchs := make([]string, 0, len(sh.subs))
	for rch := range sh.subs {
		if rch != sh.ctl {
			rchs = append(rchs, rch)
		}
	}
	sh.mu.Unlock()
	sh.retired.CompareAndSwap(old, nil)
	_ = old.Close()
	if len(rchs) == 0 {
		return true
	}
	// A failure to subscribe is a dial error or a failed write: go-redis
	// keeps the channels and subscribes them when Receive connects.
	_ = sh.sendSubscribe(ctx, ps, rchs)
	// A channel unsubscribed meanwhile went to the new PubSub before the
	// lines above subscribed it again there: unsubscribe it once more.
	sh.mu.RLock()
	var gone []string
	for _, rch := range rchs {
		if _, ok := sh.subs[rch]; !ok {
			gone = append(gone, rch)
		}
	}
	sh.mu.RUnlock()
	if len(gone) > 0 {
		_ = sh.sendUnsubscribe(ctx, ps, gone)
	}
	return true
}

// replaceIfSilent closes the shard's connection, for the receive loop to
// replace, if Redis answers the probe on another connection while this
// one stays silent. The monitor calls it while the link is stale.
func (sh *pubsubShard) replaceIfSilent() {
	ctx, cancel := context.WithTimeout(context.Background(), sh.every)
	err := sh.probe(ctx)
	cancel()
	if err != nil || sh.fresh() {
		return // Redis silent everywhere, or the connection answered meanwhile
	}
	sh.replace(errSilent)
}

// masterMoved moves the link down at once, so a publish in flight on the
// new master cannot return nil while this node's subscriptions are on the
// old one, and has the monitor replace the connection. It must not wait
// on go-redis: masterWatch calls it from inside go-redis's dial.
func (sh *pubsubShard) masterMoved() { sh.moveOff(errElsewhere) }

// moveOff moves the link down at once, giving cause, and has the monitor
// replace the connection.
func (sh *pubsubShard) moveOff(cause error) {
	sh.lost(cause)
	sh.moving.Store(&cause)
	sh.poke()
}

// replace closes the shard's connection for the receive loop to replace
// (its Receive fails, and it rehomes), giving cause as the reason.
func (sh *pubsubShard) replace(cause error) {
	ps := sh.pubsub()
	sh.replacing.Store(&replacement{ps: ps, cause: cause})
	sh.retired.Store(ps)
	_ = ps.Close()
}

// subscribe registers handler for rch, sends the subscription and waits
// for Redis to confirm it.
func (sh *pubsubShard) subscribe(ctx context.Context, rch string, handler func([]byte)) error {
	return sh.subscribeMany(ctx, []string{rch}, []func([]byte){handler})[0]
}

// subscribeMany registers handlers[i] for rchs[i] (all different), sends
// one subscription for all of them and waits until Redis confirmed each,
// returning one error per channel. A channel not confirmed when ctx ends
// is forgotten and unsubscribed.
func (sh *pubsubShard) subscribeMany(ctx context.Context, rchs []string, handlers []func([]byte)) []error {
	subs := make([]*redisSub, len(rchs))
	sh.mu.Lock()
	for i, rch := range rchs {
		s := &redisSub{handler: handlers[i], confirmed: make(chan struct{})}
		if old := sh.subs[rch]; old != nil {
			sh.dropped(old)
		}
		sh.subs[rch] = s
		subs[i] = s
	}
	ps := sh.ps
	sh.mu.Unlock()

	err := sh.sendSubscribe(ctx, ps, rchs)
	if err != nil && sh.replaced(ps) {
		// The new PubSub subscribes rchs: they were in subs before ps was
		// read.
		err = nil
	}
	errs := make([]error, len(rchs))
	var failed []string
	for i, s := range subs {
		if errs[i] = err; err == nil {
			errs[i] = sh.awaitConfirmed(ctx, s)
		}
		if errs[i] == nil {
			continue
		}
		// Forget the half-made subscription so go-redis does not restore
		// it on the next reconnect.
		sh.mu.Lock()
		if sh.subs[rchs[i]] == s {
			delete(sh.subs, rchs[i])
			sh.dropped(s)
		}
		sh.mu.Unlock()
		failed = append(failed, rchs[i])
	}
	if len(failed) > 0 {
		// ctx may be done, so use a short one of our own.
		uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), sh.every)
		_ = sh.sendUnsubscribe(uctx, sh.pubsub(), failed)
		cancel()
	}
	return errs
}

// awaitConfirmed waits until Redis confirmed s, ctx ends or the broker
// closes; a confirmation that came in time wins over an ended ctx.
func (sh *pubsubShard) awaitConfirmed(ctx context.Context, s *redisSub) error {
	select {
	case <-s.confirmed:
		return nil
	default:
	}
	select {
	case <-s.confirmed:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-sh.done:
		return ErrHubClosed
	}
}

// unsubscribe drops the handlers of rchs, waiting out a delivery in
// progress, then tells Redis with one command.
func (sh *pubsubShard) unsubscribe(ctx context.Context, rchs []string) error {
	var known []string
	sh.mu.Lock()
	for _, rch := range rchs {
		if s, ok := sh.subs[rch]; ok {
			delete(sh.subs, rch)
			sh.dropped(s)
			known = append(known, rch)
		}
	}
	ps := sh.ps
	sh.mu.Unlock()
	if len(known) == 0 {
		return nil
	}
	err := sh.sendUnsubscribe(ctx, ps, known)
	if err != nil && sh.replaced(ps) {
		// The new PubSub subscribes what subs holds: known had left it
		// before ps was read.
		return nil
	}
	return err
}

// replaced reports whether a rehome replaced ps, or is about to (the
// monitor closed ps for one): a command that failed on ps failed only
// because the broker is moving, and the new PubSub subscribes what subs
// holds when it replaces ps.
func (sh *pubsubShard) replaced(ps *redis.PubSub) bool {
	return sh.pubsub() != ps || sh.retired.Load() == ps
}

// pubsub returns the shard's current PubSub.
func (sh *pubsubShard) pubsub() *redis.PubSub {
	sh.mu.RLock()
	defer sh.mu.RUnlock()
	return sh.ps
}

// ownDial keys the shard a context of a call on its PubSub belongs to, so
// that a dial go-redis makes for that call (a reconnect) is known as the
// shard's subscription connection's (see masterWatch).
type ownDial struct{}

// own returns ctx marked as a call on the shard's PubSub.
func (sh *pubsubShard) own(ctx context.Context) context.Context {
	return context.WithValue(ctx, ownDial{}, sh)
}

// sendSubscribe writes one (S)SUBSCRIBE for rchs on ps; go-redis keeps
// rchs even when the write fails, and subscribes them on reconnect.
func (sh *pubsubShard) sendSubscribe(ctx context.Context, ps *redis.PubSub, rchs []string) error {
	ctx = sh.own(ctx)
	if sh.sharded {
		return ps.SSubscribe(ctx, rchs...)
	}
	return ps.Subscribe(ctx, rchs...)
}

// sendUnsubscribe writes one (S)UNSUBSCRIBE for rchs on ps, which must
// not be empty (go-redis reads no channels as all of them). go-redis
// forgets rchs even when the write fails, so they are not restored on
// reconnect.
func (sh *pubsubShard) sendUnsubscribe(ctx context.Context, ps *redis.PubSub, rchs []string) error {
	ctx = sh.own(ctx)
	if sh.sharded {
		return ps.SUnsubscribe(ctx, rchs...)
	}
	return ps.Unsubscribe(ctx, rchs...)
}

func (sh *pubsubShard) closing() bool {
	select {
	case <-sh.done:
		return true
	default:
		return false
	}
}

// sleep waits d or until the broker closes; it reports false on close.
func (sh *pubsubShard) sleep(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-sh.done:
		return false
	case <-t.C:
		return true
	}
}

func (sh *pubsubShard) close() error {
	err := sh.pubsub().Close()
	if errors.Is(err, redis.ErrClosed) {
		return nil
	}
	return err
}

// backoff is the wait before the n-th consecutive reconnect attempt:
// 50ms doubling up to 1s.
func backoff(n int) time.Duration {
	d := 50 * time.Millisecond
	for i := 1; i < n && d < time.Second; i++ {
		d *= 2
	}
	return min(d, time.Second)
}
