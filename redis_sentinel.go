package ws

import (
	"context"
	"log/slog"
	"net"
	"sync"

	"github.com/redis/go-redis/v9"
)

// masterWatch tells a broker on Redis Sentinel when its client starts
// dialing another address, which with Sentinel is a new master: go-redis
// moves its pool there at once (on Sentinel's +switch-master, or when a
// dial asks Sentinel again) but leaves the subscription connections where
// they are. A master that was switched over while still running keeps
// them and receives nothing that is published on the new one until it
// replicates from it, ten seconds and more later, so the broker moves its
// subscriptions as soon as its client dials the new master.
//
// A dial for a shard's own subscription connection (go-redis reconnecting
// it after the old master died) is not a move: the connection is already
// where it should be. Such dials carry the shard in their context (see
// pubsubShard.own); the watch records where each shard's connection went
// and moves only the shards whose connection is elsewhere when the pool
// dials a new master. Before, a master crash cost every node a second
// resubscribe right after the first.
//
// The client dials the Sentinels through the same dialer, and a dial to a
// Sentinel is not a master move. The Sentinels are those in Addrs and
// those the Sentinels name: go-redis asks a Sentinel for the others
// (SENTINEL SENTINELS) each time it connects to one, and turns to them
// when the listed ones fail, so the watch asks too, on each dial to a
// Sentinel it knows. A Sentinel that no Sentinel had named when the watch
// last asked still looks like a master and costs one needless resubscribe.
type masterWatch struct {
	ask    func(ctx context.Context, addr string) ([]string, error) // the Sentinels that addr names
	logger *slog.Logger
	ctx    context.Context // ends at stop, which cancels it under mu
	cancel context.CancelFunc
	wg     sync.WaitGroup // the asking goroutine

	mu        sync.Mutex
	sentinels map[string]bool         // guarded by mu; Addrs and the Sentinels they named
	asking    bool                    // guarded by mu; a question to a Sentinel in flight
	addr      string                  // guarded by mu; the address of the pool's last dial to a master
	subs      map[*pubsubShard]string // guarded by mu; where each shard's subscription connection was dialed
	b         *RedisBroker            // guarded by mu; nil until follow
}

// newMasterWatch returns the watch for a broker made from o, which has
// MasterName set.
func newMasterWatch(o RedisOptions) *masterWatch {
	w := newWatch(o.Logger)
	for _, a := range o.Addrs {
		w.sentinels[a] = true
	}
	w.ask = func(ctx context.Context, addr string) ([]string, error) {
		c := redis.NewSentinelClient(&redis.Options{
			Addr:          addr,
			Username:      o.SentinelUsername,
			Password:      o.SentinelPassword,
			TLSConfig:     o.TLSConfig,
			Dialer:        o.dialer(nil),
			DialTimeout:   o.DialTimeout,
			ReadTimeout:   o.ReadTimeout,
			WriteTimeout:  o.WriteTimeout,
			PoolSize:      1,
			MaxRetries:    -1,
			DialerRetries: 1,
		})
		defer c.Close()
		ss, err := c.Sentinels(ctx, o.MasterName).Result()
		if err != nil {
			return nil, err
		}
		// The address as go-redis makes it of the same reply.
		addrs := make([]string, 0, len(ss))
		for _, s := range ss {
			if ip, port := s["ip"], s["port"]; ip != "" && port != "" {
				addrs = append(addrs, net.JoinHostPort(ip, port))
			}
		}
		return addrs, nil
	}
	return w
}

// failoverAddr is what go-redis puts in the options of a client made by
// redis.NewFailoverClient, as the address of a server it finds through
// the Sentinels.
const failoverAddr = "FailoverClient"

// watchFailoverClient returns a watch for a broker on client, the
// application's own, when client is a Sentinel client
// (redis.NewFailoverClient), and nil otherwise. The broker made from
// options sees its client's dials through the dialer it gives it; on a
// client it did not make, the watch sees them through a dial hook, which
// it adds to client, and which does nothing once the broker closed (a
// client cannot drop a hook). The hook sees only the client's own
// dials, to a master, and not its Sentinel client's: there are no
// Sentinels to tell apart. It learns the address from the connection,
// since go-redis hands a Sentinel client's dial hooks failoverAddr.
func watchFailoverClient(client redis.UniversalClient, o RedisOptions) *masterWatch {
	c, ok := client.(*redis.Client)
	if !ok || c.Options().Addr != failoverAddr {
		return nil
	}
	w := newWatch(o.Logger)
	c.AddHook(dialWatch{w})
	return w
}

// dialWatch is the dial hook of watchFailoverClient.
type dialWatch struct{ w *masterWatch }

func (h dialWatch) DialHook(next redis.DialHook) redis.DialHook {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := next(ctx, network, addr)
		if err == nil {
			if a := c.RemoteAddr(); a != nil { // a wrapper of the application's may have none
				h.w.dialed(ctx, a.String())
			}
		}
		return c, err
	}
}

func (dialWatch) ProcessHook(next redis.ProcessHook) redis.ProcessHook { return next }

func (dialWatch) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}

// newWatch returns a watch that knows no Sentinel yet and asks none.
func newWatch(logger *slog.Logger) *masterWatch {
	w := &masterWatch{logger: logger, sentinels: map[string]bool{}, subs: map[*pubsubShard]string{}}
	w.ctx, w.cancel = context.WithCancel(context.Background())
	return w
}

func (w *masterWatch) follow(b *RedisBroker) {
	w.mu.Lock()
	w.b = b
	w.mu.Unlock()
}

// dialed is called by the client's dialer with each new connection's
// context and address, on go-redis's goroutine and, for a subscription
// connection, with go-redis's PubSub locked: it must not wait on the
// network.
func (w *masterWatch) dialed(ctx context.Context, addr string) {
	w.mu.Lock()
	if w.ctx.Err() != nil { // stopped: the broker closed
		w.mu.Unlock()
		return
	}
	if w.sentinels[addr] {
		if !w.asking {
			w.asking = true
			w.wg.Add(1)
			go w.learn(addr)
		}
		w.mu.Unlock()
		return
	}
	if sh, ok := ctx.Value(ownDial{}).(*pubsubShard); ok {
		w.subs[sh] = addr
		atMaster := addr == w.addr
		w.mu.Unlock()
		if atMaster {
			sh.moving.Store(nil) // a move it was told of: this connection made it
		}
		return
	}
	prev, b := w.addr, w.b
	w.addr = addr
	var move []*pubsubShard
	if prev != "" && prev != addr && b != nil {
		for _, sh := range b.shards {
			if w.subs[sh] != addr {
				move = append(move, sh)
			}
		}
	}
	w.mu.Unlock()
	for _, sh := range move {
		sh.masterMoved()
	}
}

// learn asks the Sentinel at addr for the others and adds them to the
// known Sentinels.
func (w *masterWatch) learn(addr string) {
	defer w.wg.Done()
	addrs, err := w.ask(w.ctx, addr)
	w.mu.Lock()
	defer w.mu.Unlock()
	w.asking = false
	if err != nil {
		if w.ctx.Err() == nil { // not stopped
			w.logger.Debug("ws: redis sentinel: could not ask for the other sentinels", "sentinel", addr, "error", err)
		}
		return
	}
	for _, a := range addrs {
		if !w.sentinels[a] {
			w.sentinels[a] = true
			w.logger.Info("ws: redis sentinel discovered", "sentinel", a, "from", addr)
		}
	}
}

// stop ends a question in flight and waits for it. Dials after stop
// change nothing, and the watch lets the broker go.
func (w *masterWatch) stop() {
	w.mu.Lock()
	w.cancel() // under mu: no dial starts a question after this
	w.b, w.subs = nil, nil
	w.mu.Unlock()
	w.wg.Wait()
}
