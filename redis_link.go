package ws

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// linkState is where a pubsubShard's subscription connection stands. A
// shard accepts publications only while live and only while Redis
// answered on the connection within three HealthIntervals.
//
//	from           to             when                                            moved by
//	any            down           the connection failed (read or dial error)      receive loop
//	any            resubscribing  the first reply on a new connection (a          receive loop
//	                              subscribe reply counting 1 subscription)
//	resubscribing  live           Redis confirmed again every channel confirmed   receive loop
//	                              before, on the shard's first connection
//	resubscribing  awaitingPeers  the same on a connection after a failure        receive loop
//	awaitingPeers  live           as many brokers subscribe to the control        monitor
//	                              channel as before the failure, or
//	                              ResubscribeWait passed
//
// Every move happens under pubsubShard.mu. Unsubscribing a channel that
// was not confirmed again yet also counts as confirming it, so it can
// end resubscribing (under mu, from the caller of Unsubscribe).
type linkState uint8

const (
	linkConnecting    linkState = iota // the first connection has not answered yet
	linkDown                           // the connection failed; the receive loop redials
	linkResubscribing                  // new connection; channels not all confirmed again
	linkAwaitingPeers                  // channels back; other nodes may not be yet
	linkLive                           // publications are accepted
)

func (s linkState) String() string {
	switch s {
	case linkConnecting:
		return "subscription connection not up yet"
	case linkDown:
		return "subscription connection down"
	case linkResubscribing:
		return "resubscribing after a reconnect"
	case linkAwaitingPeers:
		return "waiting for the other nodes to resubscribe"
	default:
		return "live"
	}
}

// link is a shard's connection state; every field is guarded by the
// shard's mu.
type link struct {
	state   linkState
	session uint64 // number of the current connection, counted from 1
	failed  bool   // a connection failed since the shard started
	started bool   // the shard's started channel is closed
	// missing counts, while resubscribing, the channels confirmed on an
	// earlier connection that Redis has not confirmed on this one.
	missing int
	since   time.Time // when awaitingPeers began
	// peers is how many brokers subscribed to the control channel when
	// last counted while live; 0 when never counted. lower holds a lower
	// count seen once: peers drops only when two counts in a row agree,
	// so a count taken just as Redis restarted does not lower it.
	peers, lower int
	// cause is why the last connection was lost (go-redis's error: a
	// refused dial, WRONGPASS, EOF), which Publish's error repeats while
	// the link is not live; nil until a connection was lost.
	cause error
}

// peerPoll is how often a shard awaiting peers counts them.
const peerPoll = 20 * time.Millisecond

// replicaPoll is how often it counts while its pool reaches a replica
// (redis_replica.go): each such count costs a connection, which go-redis
// closes on the replica's READONLY, until the address names the primary.
const replicaPoll = 250 * time.Millisecond

// errStale is the cause given while the connection is up but silent.
var errStale = errors.New("no reply from Redis within 3 health intervals")

// lost moves the link to down after a connection failure.
func (sh *pubsubShard) lost(err error) {
	sh.mu.Lock()
	first := sh.link.state != linkDown
	sh.link.state = linkDown
	sh.link.failed = true
	sh.link.cause = err
	sh.live.Store(0)
	sh.markStarted()
	sh.mu.Unlock()
	if first {
		sh.logger.Warn("ws: redis subscription connection lost", "error", err)
	}
}

// newConnection starts resubscribing on a new connection. Caller holds mu.
func (sh *pubsubShard) newConnection() {
	sh.link.session++
	sh.link.state = linkResubscribing
	sh.live.Store(0)
	sh.link.missing = 0
	for _, s := range sh.subs {
		if s.session != 0 {
			sh.link.missing++
		}
	}
}

// confirmed records that Redis confirmed s on the current connection.
// Caller holds mu.
func (sh *pubsubShard) confirmed(s *redisSub) {
	if sh.link.state == linkResubscribing && s.session != 0 && s.session != sh.link.session {
		sh.link.missing--
	}
	s.session = sh.link.session
	sh.resubscribed()
}

// dropped accounts for s leaving subs. Caller holds mu.
func (sh *pubsubShard) dropped(s *redisSub) {
	if sh.link.state == linkResubscribing && s.session != 0 && s.session != sh.link.session {
		sh.link.missing--
		sh.resubscribed()
	}
}

// resubscribed ends resubscribing once nothing is missing. Caller holds mu.
func (sh *pubsubShard) resubscribed() {
	if sh.link.state != linkResubscribing || sh.link.missing > 0 {
		return
	}
	if sh.link.failed {
		sh.link.state = linkAwaitingPeers
		sh.link.since = time.Now()
	} else {
		sh.goLive()
	}
	// Either way the monitor has work at once: announce this broker and
	// count the peers, so a failure soon after a start finds them
	// counted, or poll them.
	sh.poke()
}

// poke wakes the monitor.
func (sh *pubsubShard) poke() {
	select {
	case sh.wake <- struct{}{}:
	default:
	}
}

// goLive opens the link to publications. Caller holds mu.
func (sh *pubsubShard) goLive() {
	sh.link.state = linkLive
	sh.live.Store(sh.link.session)
	sh.markStarted()
}

// markStarted closes started once. Caller holds mu.
func (sh *pubsubShard) markStarted() {
	if !sh.link.started {
		sh.link.started = true
		close(sh.started)
	}
}

// healthy reports whether the link is live, Redis answered recently and
// does not refuse the broker's new connections.
func (sh *pubsubShard) healthy() bool {
	return sh.live.Load() != 0 && sh.fresh() && !sh.refused.Load()
}

func (sh *pubsubShard) fresh() bool {
	last := sh.lastSeen.Load()
	return last != 0 && time.Since(time.Unix(0, last)) < 3*sh.every
}

// admit returns the live session a publication may be sent in, or why
// none may be. On a new broker it first waits, within ctx and three
// health intervals, for the link to go live or fail for the first time.
func (sh *pubsubShard) admit(ctx context.Context) (uint64, error) {
	select {
	case <-sh.started:
	default:
		t := time.NewTimer(3 * sh.every)
		select {
		case <-sh.started:
		case <-ctx.Done():
		case <-t.C:
		}
		t.Stop()
	}
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	session := sh.live.Load()
	if session == 0 {
		// Read again with the state, which changes with it under mu: the
		// link may have gone live since.
		sh.mu.RLock()
		state, cause := sh.link.state, sh.link.cause
		session = sh.live.Load()
		sh.mu.RUnlock()
		if session == 0 {
			if cause != nil {
				return 0, fmt.Errorf("%s (connection lost: %v)", state, cause)
			}
			return 0, errors.New(state.String())
		}
	}
	if !sh.fresh() {
		return 0, errStale
	}
	return session, nil
}

// stillLive reports whether the link is still live in session: no
// connection failed since admit returned it.
func (sh *pubsubShard) stillLive(session uint64) bool {
	return sh.live.Load() == session
}

// monitor pings an idle connection every HealthInterval so a silent one
// goes stale; while live, it announces the broker on the control channel
// once per connection and counts the brokers subscribed to it (every
// HealthInterval, and whenever a broker announces itself); and it ends
// awaitingPeers.
func (sh *pubsubShard) monitor() {
	timer := time.NewTimer(sh.every)
	defer timer.Stop()
	var lastPing time.Time
	var announced uint64 // the last session this broker announced itself in
	for {
		select {
		case <-sh.done:
			return
		case <-timer.C:
		case <-sh.wake:
		}
		next := sh.every
		if cause := sh.moving.Swap(nil); cause != nil {
			sh.replace(*cause)
		}
		sh.mu.RLock()
		state, session := sh.link.state, sh.link.session
		sh.mu.RUnlock()
		switch state {
		case linkLive:
			if announced != session && sh.announce != nil {
				// Tell the other brokers to count again, so they know
				// about this one before any failure. Best effort.
				announced = session
				ctx, cancel := context.WithTimeout(context.Background(), sh.every)
				_ = sh.announce(ctx)
				cancel()
			}
			sh.countLive(session)
		case linkAwaitingPeers:
			if wait := sh.peersBack(session); wait > 0 {
				next = wait
			}
		}
		if state != linkDown && !sh.recentlySeen() && time.Since(lastPing) >= sh.every {
			lastPing = time.Now()
			ctx, cancel := context.WithTimeout(context.Background(), sh.every)
			_ = sh.pubsub().Ping(sh.own(ctx)) // a failure shows up as a read error or a stale lastSeen
			cancel()
		}
		if state != linkDown && sh.lastSeen.Load() != 0 && !sh.fresh() {
			sh.replaceIfSilent()
		}
		timer.Reset(next)
	}
}

// recentlySeen reports a reply within the last interval, so no ping is
// needed.
func (sh *pubsubShard) recentlySeen() bool {
	last := sh.lastSeen.Load()
	return last != 0 && time.Since(time.Unix(0, last)) < sh.every
}

// countLive updates link.peers from a count taken while live in session.
func (sh *pubsubShard) countLive(session uint64) {
	if sh.countPeers == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), sh.every)
	n, err := sh.countPeers(ctx)
	cancel()
	sh.noteRefusal(err)
	if errors.Is(err, errReplica) {
		sh.replicaSeen(session)
		return
	}
	if err != nil {
		return
	}
	if sh.recount(session, n) {
		// This broker's own subscription to the control channel is live,
		// yet the server that counted (the one publications go to) does
		// not have it: the subscriptions sit on another server. With
		// Sentinel that is a failover (go-redis moves the pool to the new
		// master and leaves the subscription connection on the old one,
		// where publications no longer arrive): move them.
		sh.replace(errElsewhere)
	}
}

// noteRefusal records whether err, a count's result, is Redis refusing
// the connection it needed: an authentication error reply (the password
// or the user changed on Redis), which a new connection's handshake gets
// before any command. It logs when that starts and ends.
func (sh *pubsubShard) noteRefusal(err error) {
	refused := redis.HasErrorPrefix(err, "WRONGPASS") || redis.HasErrorPrefix(err, "NOAUTH")
	if sh.refused.Swap(refused) == refused {
		return
	}
	if refused {
		sh.logger.Warn("ws: redis refuses the broker's new connections; publications that need one fail", "error", err)
	} else {
		sh.logger.Info("ws: redis accepts the broker's new connections again")
	}
}

// recount records n, a count taken while live in session, and reports
// whether it leaves out this broker's own subscription.
func (sh *pubsubShard) recount(session uint64, n int) (elsewhere bool) {
	sh.mu.Lock()
	defer sh.mu.Unlock()
	l := &sh.link
	if l.state != linkLive || l.session != session {
		return false
	}
	switch {
	case n == 0:
		return true
	case n >= l.peers:
		l.peers, l.lower = n, 0
	case n == l.lower:
		l.peers, l.lower = n, 0
	default:
		l.lower = n
	}
	return false
}

// peersBack makes the link live, and returns 0, once as many brokers
// subscribe to the control channel as before the failure or the wait is
// over. Without a count from before (or a way to count) it waits it out.
// Otherwise it returns when to look again: peerPoll, or replicaPoll
// while the pool reaches a replica.
//
// It counts even without a count from before: the count is also how a
// link finds that publications would go to a replica, and a link lost
// before its first count (a node started or failing over while the
// address named a replica) would otherwise go live after the wait with
// its subscriptions on the replica, where publications that returned nil
// never arrive.
func (sh *pubsubShard) peersBack(session uint64) time.Duration {
	sh.mu.RLock()
	since, peers, cause := sh.link.since, sh.link.peers, sh.link.cause
	sh.mu.RUnlock()
	back := time.Since(since) >= sh.wait
	if sh.countPeers != nil {
		ctx, cancel := context.WithTimeout(context.Background(), sh.every)
		n, err := sh.countPeers(ctx)
		cancel()
		switch {
		case errors.Is(err, errReplica):
			sh.sawReplica = true
			return replicaPoll // publications would go to a replica: not even after the wait
		case err == nil && (sh.sawReplica || cause == errReplica):
			// The pool left the replica. This connection was dialled
			// while the address still named it, and is probably there,
			// where no other broker counts it: move it as well. So was
			// a connection that replaced one lost to a replica, unless
			// the address moved between its dial and this count: move
			// it too, at the cost of a move when it was already right.
			sh.sawReplica = false
			sh.moveOff(errLeftReplica)
			return peerPoll
		}
		back = back || peers > 0 && err == nil && n >= peers
	}
	if !back {
		return peerPoll
	}
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if sh.link.state != linkAwaitingPeers || sh.link.session != session {
		return 0 // moved on meanwhile; the next round looks again
	}
	sh.goLive()
	sh.logger.Info("ws: redis subscription connection restored", "waited", time.Since(since).Round(time.Millisecond))
	return 0
}
