package ws

// Channel occupancy: when a channel gets its first subscriber anywhere in
// the cluster, and when it loses its last one everywhere
// (Config.OnChannelOccupied and OnChannelVacated).
//
// A node takes part once per node-channel transition, never once per
// subscription: a channel is occupied by the node when the broker
// subscription for its first local subscriber is up, and vacant once Run
// dropped it after the last one left. One goroutine, the occupancy
// worker, records these in the storage a batch at a time
// (ChannelOccupancy); the storage decides atomically which calls took a
// channel from no node to one, or from one to none, and the worker queues
// the hooks for those on the hook runner (hooks.go).
//
// An occupation is recorded before the channel's first subscribers are
// acknowledged: the broker worker that subscribed the broker waits for
// the pass that records it (see occupy) before it reports to Run. So
// when a client has seen "subscribed", its node counts in the storage,
// and a subscriber arriving on one node as the last one leaves another
// never makes the channel look vacant in between. A vacancy is recorded
// after the fact, which can only hide a vacancy too brief for the
// storage to see, never invent one. A node that dies without vacating
// its channels is reaped by the storage's maintenance
// (OccupancyMaintainer) on another node, which reports the channels that
// thereby lost their last node to exactly one caller.

import (
	"context"
	"errors"
	"slices"
	"sync"
	"time"
)

// ChannelOccupancy is implemented by storages that know, for the whole
// cluster, which nodes have subscribers of a channel (MemoryStorage and
// RedisStorage). It is what makes Config.OnChannelOccupied and
// OnChannelVacated fire once per cluster rather than once per node.
//
// The Hub calls it only when one of those hooks is set, from one
// goroutine of its own (never from Run), once per node-channel
// transition: OccupyChannels after the node's first local subscriber of
// each channel arrived (when it subscribed the broker), VacateChannels
// after the last one left (when it unsubscribed), a batch of channels at
// a time. It never occupies a channel it occupies already or vacates one
// it does not occupy, except to retry a call that failed; for such a
// retry the calls must be idempotent per node. Implementations must be
// safe for concurrent use with the storage's other methods.
type ChannelOccupancy interface {
	// OccupyChannels records that this node has subscribers of each of
	// channels, and returns those of them that no node had until now:
	// the channels that became occupied, each reported to exactly one
	// caller across the cluster. On error, the channels returned were
	// changed all the same; the others may or may not have been.
	OccupyChannels(ctx context.Context, channels []string) (occupied []string, err error)

	// VacateChannels records that this node has no subscriber of each
	// of channels any more, and returns those that thereby have none on
	// any node: the channels that became vacant, each reported to
	// exactly one caller. Errors are as for OccupyChannels.
	VacateChannels(ctx context.Context, channels []string) (vacated []string, err error)
}

// OccupancyMaintainer is implemented by storages shared between nodes
// (RedisStorage), whose nodes can die without vacating their channels.
type OccupancyMaintainer interface {
	// MaintainOccupancy is called by the Hub every MaintainInterval from
	// one goroutine, when Config.OnChannelOccupied or OnChannelVacated is
	// set. It removes the occupancy of nodes that died, returning the
	// channels that thereby became vacant, and writes back this node's
	// own occupancy that the storage lost, returning the channels that
	// thereby became occupied again; each change exactly once across the
	// cluster. Changes already made are returned even with a non-nil
	// error; a later call finishes the rest.
	MaintainOccupancy(ctx context.Context) ([]OccupancyChange, error)

	// MaintainInterval is how often the Hub should call
	// MaintainOccupancy.
	MaintainInterval() time.Duration
}

// OccupancyChange is a channel that became occupied or vacant.
type OccupancyChange struct {
	Channel string
	// Occupied is true when the channel got its first subscriber in the
	// cluster, false when it lost its last.
	Occupied bool
}

// occupancyBatch bounds the channels of one storage call, so no call
// holds the storage for long in a reconnect storm.
const occupancyBatch = 512

// occupancy is the hub's side of channel occupancy: what Run wants
// recorded and the worker that records it.
type occupancy struct {
	h     *Hub
	store ChannelOccupancy // nil: the storage cannot tell, so this node's own transitions count
	wake  chan struct{}

	// The hooks: Config's and those added by addOccupancyHooks. Set
	// before Run, read-only after; on says there is one, otherwise
	// nothing is recorded.
	on       bool
	occupied []func(channel string)
	vacated  []func(channel string)

	mu   sync.Mutex
	want map[string]bool // guarded by mu; what is to be recorded and the worker has not taken yet
	next chan struct{}   // guarded by mu; closed when the pass that takes want is done

	// owned by the worker goroutine
	held map[string]bool // channels recorded as occupied by this node
}

func (o *occupancy) init(h *Hub) {
	o.h = h
	o.addHooks(h.cfg.OnChannelOccupied, h.cfg.OnChannelVacated)
	o.store, _ = h.storage.(ChannelOccupancy)
	o.wake = make(chan struct{}, 1)
	o.want = make(map[string]bool)
	o.next = make(chan struct{})
	o.held = make(map[string]bool)
}

// vacate asks for channel, which Run has just dropped, to be recorded as
// vacant by this node. Called by the Run goroutine; it never blocks.
func (o *occupancy) vacate(channel string) {
	if !o.on {
		return
	}
	o.mu.Lock()
	o.want[channel] = false
	o.mu.Unlock()
	o.poke()
}

// occupyWait bounds how long a broker worker waits for the occupancy of
// the channels it subscribed to be recorded: a slow storage delays the
// first subscribers of new channels by that much at most.
const occupyWait = time.Second

// occupy records that this node occupies the channels of batch whose
// broker subscription succeeded, and waits for the worker's pass that
// does it, for occupyWait at most (then the occupation is recorded later,
// after the subscribers are acknowledged). Called by a broker worker
// before it reports the batch to Run. A failure does not fail the
// subscriptions: the worker tries again later.
func (o *occupancy) occupy(batch []brokerOp) {
	if !o.on {
		return
	}
	o.mu.Lock()
	n := 0
	for _, op := range batch {
		if op.subscribe && op.err == nil {
			o.want[op.ch.name] = true
			n++
		}
	}
	done := o.next
	o.mu.Unlock()
	if n == 0 {
		return
	}
	o.poke()
	t := time.NewTimer(occupyWait)
	defer t.Stop()
	select {
	case <-done:
	case <-t.C:
	case <-o.h.ioCtx.Done():
	}
}

func (o *occupancy) poke() {
	select {
	case o.wake <- struct{}{}:
	default:
	}
}

// run is the occupancy worker: it records what Run asks for until stop
// is closed, retrying failed calls with a backoff of 100ms doubling to
// 5s, and on stop records what is left once more, until deadline.
func (o *occupancy) run(stop <-chan struct{}, deadline func() time.Time) {
	var (
		retry   *time.Timer
		retryC  <-chan time.Time
		backoff = 100 * time.Millisecond
	)
	defer func() {
		if retry != nil {
			retry.Stop()
		}
	}()
	for {
		select {
		case <-o.wake:
		case <-retryC:
			retryC = nil
		case <-stop:
			// The hub's own I/O context is cancelled by now; the last pass
			// has until the shutdown deadline.
			ctx, cancel := context.WithDeadline(context.Background(), deadline())
			o.record(ctx)
			cancel()
			return
		}
		ctx, cancel := context.WithTimeout(o.h.ioCtx, brokerTimeout)
		ok := o.record(ctx)
		cancel()
		switch {
		case ok:
			backoff = 100 * time.Millisecond
		case retryC == nil:
			if retry == nil {
				retry = time.NewTimer(backoff)
			} else {
				retry.Reset(backoff)
			}
			retryC = retry.C
			backoff = min(2*backoff, 5*time.Second)
		}
	}
}

// record makes one pass over what is wanted: channels this node should
// occupy and does not, and those it occupies and should not. It reports
// whether every call succeeded; what failed is wanted again, unless
// something newer is.
func (o *occupancy) record(ctx context.Context) bool {
	o.mu.Lock()
	want, done := o.want, o.next
	o.want, o.next = make(map[string]bool), make(chan struct{})
	o.mu.Unlock()
	defer close(done)
	var add, drop []string
	for ch, on := range want {
		switch {
		case on && !o.held[ch]:
			add = append(add, ch)
		case !on && o.held[ch]:
			drop = append(drop, ch)
		}
	}
	slices.Sort(add)
	slices.Sort(drop)
	ok := true
	for len(drop) > 0 {
		batch := drop[:min(len(drop), occupancyBatch)]
		drop = drop[len(batch):]
		if !o.apply(ctx, batch, false) {
			ok = false
		}
	}
	for len(add) > 0 {
		batch := add[:min(len(add), occupancyBatch)]
		add = add[len(batch):]
		if !o.apply(ctx, batch, true) {
			ok = false
		}
	}
	return ok
}

// apply occupies (or vacates) batch in the storage and queues a hook for
// each channel whose cluster-wide state changed.
func (o *occupancy) apply(ctx context.Context, batch []string, occupy bool) bool {
	changed, err := batch, error(nil)
	if o.store != nil {
		if occupy {
			changed, err = o.store.OccupyChannels(ctx, batch)
		} else {
			changed, err = o.store.VacateChannels(ctx, batch)
		}
	}
	if err != nil {
		o.h.stats.errors[errKindStorage].Add(1)
		o.h.log.Warn("ws: recording channel occupancy failed; retrying", "channels", len(batch), "occupy", occupy, "err", err)
		// What failed is asked for again. The storage's calls are
		// idempotent per node, so a call that did reach it changes
		// nothing the second time; the hook of such a change is lost.
		o.mu.Lock()
		for _, ch := range batch {
			if _, newer := o.want[ch]; !newer {
				o.want[ch] = occupy
			}
		}
		o.mu.Unlock()
	}
	done := batch
	if err != nil {
		done = changed // known to be recorded
	}
	for _, ch := range done {
		if occupy {
			o.held[ch] = true
		} else {
			delete(o.held, ch)
		}
	}
	for _, ch := range changed {
		o.h.occupancyHook(OccupancyChange{Channel: ch, Occupied: occupy})
	}
	return err == nil
}

// maintainEvery calls m.MaintainOccupancy every MaintainInterval until
// stop is closed, and queues the hooks of the changes it reports. It
// runs on a goroutine of its own, started by Run.
func (o *occupancy) maintainEvery(m OccupancyMaintainer, stop <-chan struct{}) {
	t := time.NewTicker(m.MaintainInterval())
	defer t.Stop()
	for {
		select {
		case <-t.C:
		case <-stop:
			return
		}
		ctx, cancel := context.WithTimeout(o.h.ioCtx, brokerTimeout)
		changes, err := m.MaintainOccupancy(ctx)
		cancel()
		for _, c := range changes {
			o.h.occupancyHook(c)
		}
		if err != nil {
			o.h.stats.errors[errKindStorage].Add(1)
			o.h.log.Warn("ws: channel occupancy maintenance failed", "err", err)
		}
	}
}

// addHooks adds hooks to call on occupancy changes; nil ones are skipped.
func (o *occupancy) addHooks(occupied, vacated func(string)) {
	if occupied != nil {
		o.occupied = append(o.occupied, occupied)
		o.on = true
	}
	if vacated != nil {
		o.vacated = append(o.vacated, vacated)
		o.on = true
	}
}

// addOccupancyHooks adds functions called as Config.OnChannelOccupied and
// OnChannelVacated are, for the module's packages that serve a hub they
// did not configure (the Pusher webhooks, through bridge). Only before
// Run.
func (h *Hub) addOccupancyHooks(occupied, vacated func(string)) error {
	if h.started.Load() {
		return errors.New("ws: occupancy hooks must be added before Hub.Run")
	}
	h.occ.addHooks(occupied, vacated)
	return nil
}

// occupancyHook queues the occupancy hooks for c.
func (h *Hub) occupancyHook(c OccupancyChange) {
	hooks := h.occ.vacated
	if c.Occupied {
		hooks = h.occ.occupied
	}
	for _, f := range hooks {
		h.hooks.add(func() { f(c.Channel) })
	}
}
