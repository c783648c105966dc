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
// the goroutines that read it. A RedisBroker has one shard, or on Redis
// Cluster one per sharded pub/sub partition.
//
// Subscribe confirmation: go-redis writes SUBSCRIBE without reading the
// reply, so the shard registers the subscription as pending, writes the
// command, and waits until its receive loop reads the matching
// subscribe (or ssubscribe) reply from Redis. Publications are delivered
// only to confirmed subscriptions, which also drops stale messages left
// in flight by an earlier UNSUBSCRIBE of the same channel.
//
// Health: the receive loop marks the shard broken on a read error and
// whole again on the next reply; a ping goroutine keeps replies coming on
// an idle connection, so a connection that stops answering goes stale.
// go-redis itself redials after a read error and resubscribes every
// channel it knows, which brings the confirmations that heal the shard.
type pubsubShard struct {
	ps      *redis.PubSub
	sharded bool   // SSUBSCRIBE instead of SUBSCRIBE
	ctl     string // Redis channel kept subscribed for the shard's lifetime
	every   time.Duration
	logger  *slog.Logger
	done    <-chan struct{} // closed by RedisBroker.Close

	broken   atomic.Bool  // set by the receive loop on a read error
	lastSeen atomic.Int64 // unix nanos of the last reply; written by the receive loop

	// mu is held for writing to change subs and for reading while a
	// handler runs, so Unsubscribe returns only after any delivery in
	// progress for its channel has finished.
	mu   sync.RWMutex
	subs map[string]*redisSub // by Redis channel; guarded by mu
}

// redisSub is one channel's handler. confirmed is closed by the receive
// loop (its only closer) when Redis acknowledges the subscription.
type redisSub struct {
	handler   func([]byte)
	confirmed chan struct{}
}

func newPubsubShard(client redis.UniversalClient, sharded bool, ctl string, every time.Duration, logger *slog.Logger, done <-chan struct{}) *pubsubShard {
	sh := &pubsubShard{sharded: sharded, ctl: ctl, every: every, logger: logger, done: done, subs: make(map[string]*redisSub)}
	// Subscribing to the control channel up front pins the connection to
	// the node owning the shard's slot on Redis Cluster, and means every
	// reconnect ends in a subscribe reply that marks the shard healthy.
	// An error here (Redis down) is not fatal: go-redis keeps the channel
	// and subscribes it when the receive loop connects.
	ctx, cancel := context.WithTimeout(context.Background(), every)
	defer cancel()
	if sharded {
		sh.ps = client.SSubscribe(ctx, ctl)
	} else {
		sh.ps = client.Subscribe(ctx, ctl)
	}
	return sh
}

// start runs the receive loop and the pinger; wg tracks both.
func (sh *pubsubShard) start(wg *sync.WaitGroup) {
	wg.Add(2)
	go func() { defer wg.Done(); sh.receiveLoop() }()
	go func() { defer wg.Done(); sh.pingLoop() }()
}

// healthy reports whether the connection is up and answered recently.
func (sh *pubsubShard) healthy() bool {
	last := sh.lastSeen.Load()
	return !sh.broken.Load() && last != 0 && time.Since(time.Unix(0, last)) < 3*sh.every
}

func (sh *pubsubShard) receiveLoop() {
	ctx := context.Background()
	failures := 0
	for {
		msg, err := sh.ps.Receive(ctx)
		if err != nil {
			if sh.closing() {
				return
			}
			if !sh.broken.Swap(true) {
				sh.logger.Warn("ws: redis subscription connection lost", "error", err)
			}
			failures++
			if !sh.sleep(backoff(failures)) {
				return
			}
			continue
		}
		failures = 0
		sh.lastSeen.Store(time.Now().UnixNano())
		if sh.broken.Swap(false) {
			sh.logger.Info("ws: redis subscription connection restored")
		}
		switch m := msg.(type) {
		case *redis.Subscription:
			if m.Kind == "subscribe" || m.Kind == "ssubscribe" {
				sh.confirm(m.Channel)
			}
		case *redis.Message:
			sh.deliver(m.Channel, m.Payload)
		}
	}
}

// confirm wakes the Subscribe waiting for channel, if any.
func (sh *pubsubShard) confirm(channel string) {
	sh.mu.RLock()
	defer sh.mu.RUnlock()
	if s := sh.subs[channel]; s != nil {
		select {
		case <-s.confirmed:
		default:
			close(s.confirmed)
		}
	}
}

// deliver calls channel's handler if its subscription is confirmed.
func (sh *pubsubShard) deliver(channel, payload string) {
	sh.mu.RLock()
	defer sh.mu.RUnlock()
	s := sh.subs[channel]
	if s == nil {
		return
	}
	select {
	case <-s.confirmed:
		s.handler([]byte(payload))
	default:
	}
}

// pingLoop pings every interval so an idle but dead connection is
// noticed; the pong is read, like everything else, by the receive loop.
func (sh *pubsubShard) pingLoop() {
	t := time.NewTicker(sh.every)
	defer t.Stop()
	for {
		select {
		case <-sh.done:
			return
		case <-t.C:
		}
		if last := sh.lastSeen.Load(); last != 0 && time.Since(time.Unix(0, last)) < sh.every {
			continue // traffic is flowing; no ping needed
		}
		ctx, cancel := context.WithTimeout(context.Background(), sh.every)
		_ = sh.ps.Ping(ctx) // a failure shows up as a read error or a stale lastSeen
		cancel()
	}
}

// subscribe registers handler for rch, sends the subscription and waits
// for Redis to confirm it.
func (sh *pubsubShard) subscribe(ctx context.Context, rch string, handler func([]byte)) error {
	s := &redisSub{handler: handler, confirmed: make(chan struct{})}
	sh.mu.Lock()
	sh.subs[rch] = s
	sh.mu.Unlock()

	var err error
	if sh.sharded {
		err = sh.ps.SSubscribe(ctx, rch)
	} else {
		err = sh.ps.Subscribe(ctx, rch)
	}
	if err == nil {
		select {
		case <-s.confirmed:
			return nil
		case <-ctx.Done():
			err = ctx.Err()
		case <-sh.done:
			err = ErrHubClosed
		}
	}
	// Forget the half-made subscription so go-redis does not restore it
	// on the next reconnect. ctx may be done, so use a short one of our own.
	sh.mu.Lock()
	if sh.subs[rch] == s {
		delete(sh.subs, rch)
	}
	sh.mu.Unlock()
	uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), sh.every)
	_ = sh.sendUnsubscribe(uctx, rch)
	cancel()
	return err
}

// unsubscribe drops rch's handler, waiting out a delivery in progress,
// then tells Redis.
func (sh *pubsubShard) unsubscribe(ctx context.Context, rch string) error {
	sh.mu.Lock()
	_, ok := sh.subs[rch]
	delete(sh.subs, rch)
	sh.mu.Unlock()
	if !ok {
		return nil
	}
	return sh.sendUnsubscribe(ctx, rch)
}

// sendUnsubscribe writes (S)UNSUBSCRIBE for rch. go-redis forgets rch
// even when the write fails, so it is not restored on reconnect.
func (sh *pubsubShard) sendUnsubscribe(ctx context.Context, rch string) error {
	if sh.sharded {
		return sh.ps.SUnsubscribe(ctx, rch)
	}
	return sh.ps.Unsubscribe(ctx, rch)
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
	err := sh.ps.Close()
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
