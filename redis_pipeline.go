package ws

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"

	"github.com/redis/go-redis/v9"
)

// publishPipe lets concurrent Publish calls share round trips to Redis.
// A call queues its command and waits; each of pipeWorkers goroutines
// takes everything queued (up to pipeBatch commands) and sends it as one
// pipeline, so while one pipeline waits for its replies the calls made
// meanwhile gather into the next. A lone call still costs one round trip
// and no more; sixteen goroutines publishing at once cost a few.
//
// What a call's result means is unchanged (see RedisBroker.Publish).
// Redis runs a pipeline's commands in order, and a call returns only once
// its reply was read, so calls made one after the other (from one
// goroutine, or ordered by the application) reach Redis in that order;
// only calls in flight together may be sent in either order, as they
// could be without pipelining. A pipeline whose writing failed may have
// reached Redis in part, so its commands are uncertain, unless it held
// one command (a command is never run in part).
type publishPipe struct {
	client  redis.UniversalClient
	sharded bool
	wake    chan struct{}
	sent    atomic.Int64 // pipelines sent, and so round trips

	mu      sync.Mutex
	queue   []*pubReq // guarded by mu; commands not taken yet
	stopped bool      // guarded by mu; the workers have returned
}

// pubReq is one Publish waiting for its pipeline.
type pubReq struct {
	rch     string
	payload []byte
	done    chan error // receives the result once; buffered
	taken   bool       // guarded by the pipe's mu: in a pipeline
	dropped bool       // guarded by the pipe's mu: the caller gave up first
}

const (
	// pipeWorkers is how many pipelines may be in flight at once: two,
	// so that one gathers calls while the other waits for its replies.
	// More make smaller pipelines and cost more than they save (measured
	// with 16 publishing goroutines on a 2-core machine).
	pipeWorkers = 2
	// pipeBatch bounds the commands of one pipeline.
	pipeBatch = 512
)

// errPipeStopped answers a publish queued as the broker closed.
var errPipeStopped = fmt.Errorf("the broker is closing: %w", redis.ErrClosed)

func newPublishPipe(client redis.UniversalClient, sharded bool) *publishPipe {
	return &publishPipe{client: client, sharded: sharded, wake: make(chan struct{}, 1)}
}

// start runs the workers until done is closed; wg tracks them.
func (p *publishPipe) start(wg *sync.WaitGroup, done <-chan struct{}) {
	var workers sync.WaitGroup
	workers.Add(pipeWorkers)
	wg.Add(pipeWorkers + 1)
	for range pipeWorkers {
		go func() {
			defer wg.Done()
			defer workers.Done()
			p.run(done)
		}()
	}
	go func() {
		defer wg.Done()
		workers.Wait()
		p.stop()
	}()
}

// publish sends one (S)PUBLISH of payload on the Redis channel rch in the
// next pipeline and returns its error: nil when Redis replied. When ctx
// ends first, the command is withdrawn if no pipeline took it yet (an
// error publishNotSent recognises), else the outcome is unknown.
func (p *publishPipe) publish(ctx context.Context, rch string, payload []byte) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	r := &pubReq{rch: rch, payload: payload, done: make(chan error, 1)}
	p.mu.Lock()
	if p.stopped {
		p.mu.Unlock()
		return errPipeStopped
	}
	p.queue = append(p.queue, r)
	p.mu.Unlock()
	select {
	case p.wake <- struct{}{}:
	default:
	}
	select {
	case err := <-r.done:
		return err
	case <-ctx.Done():
	}
	p.mu.Lock()
	taken := r.taken
	r.dropped = !taken
	p.mu.Unlock()
	if !taken {
		return ctx.Err() // withdrawn: nothing was sent
	}
	// Not wrapped: publishNotSent takes context errors for "not sent".
	return fmt.Errorf("gave up waiting for the reply: %v", ctx.Err())
}

// run sends pipelines until done is closed.
func (p *publishPipe) run(done <-chan struct{}) {
	for {
		batch := p.take()
		if len(batch) == 0 {
			select {
			case <-p.wake:
				continue
			case <-done:
				return
			}
		}
		// Another worker may find more queued meanwhile.
		select {
		case p.wake <- struct{}{}:
		default:
		}
		p.send(batch)
	}
}

// take removes up to pipeBatch commands from the queue, skipping those
// whose callers gave up.
func (p *publishPipe) take() []*pubReq {
	p.mu.Lock()
	defer p.mu.Unlock()
	var batch []*pubReq
	i := 0
	for ; i < len(p.queue) && len(batch) < pipeBatch; i++ {
		r := p.queue[i]
		if !r.dropped {
			r.taken = true
			batch = append(batch, r)
		}
	}
	rest := copy(p.queue, p.queue[i:])
	clear(p.queue[rest:])
	p.queue = p.queue[:rest]
	return batch
}

// stop fails what is still queued once the workers have returned, and
// anything queued later.
func (p *publishPipe) stop() {
	p.mu.Lock()
	p.stopped = true
	queue := p.queue
	p.queue = nil
	p.mu.Unlock()
	for _, r := range queue {
		r.done <- errPipeStopped
	}
}

// send runs batch as one pipeline per Redis node and hands every command
// its result.
func (p *publishPipe) send(batch []*pubReq) {
	ctx := context.Background() // the sockets' Read/WriteTimeout bound it
	cc, cluster := p.client.(*redis.ClusterClient)
	if !cluster {
		p.exec(ctx, p.client, batch)
		return
	}
	// On Redis Cluster each command goes to the node that owns its slot,
	// through that node's own client: the cluster client would send a
	// command again, maybe to another node, after a timeout or a dropped
	// connection, and a PUBLISH sent twice is delivered twice.
	byNode := map[*redis.Client][]*pubReq{}
	for _, r := range batch {
		node, err := cc.MasterForKey(ctx, r.rch)
		if err != nil {
			r.done <- &noConnError{err: err}
			continue
		}
		byNode[node] = append(byNode[node], r)
	}
	var wg sync.WaitGroup
	for node, rs := range byNode {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if p.exec(ctx, node, rs) {
				cc.ReloadState(ctx) // a slot moved: learn where to
			}
		}()
	}
	wg.Wait()
}

// exec sends rs as one pipeline on c and reports whether Redis answered
// any command with MOVED.
func (p *publishPipe) exec(ctx context.Context, c redis.Cmdable, rs []*pubReq) (moved bool) {
	pipe := c.Pipeline()
	cmds := make([]*redis.IntCmd, len(rs))
	for i, r := range rs {
		if p.sharded {
			cmds[i] = pipe.SPublish(ctx, r.rch, r.payload)
		} else {
			cmds[i] = pipe.Publish(ctx, r.rch, r.payload)
		}
	}
	p.sent.Add(1)
	_, _ = pipe.Exec(ctx) // each command carries its own error
	for i, r := range rs {
		err := cmds[i].Err()
		if _, m := redis.IsMovedError(err); m {
			moved = true
		}
		var op *net.OpError
		if len(rs) > 1 && errors.As(err, &op) && op.Op == "write" {
			err = &partialWriteError{err: err}
		}
		r.done <- err
	}
	return moved
}

// partialWriteError is a failed write of a pipeline of several commands:
// those written whole before the failure may have run, so publishNotSent
// does not count it as "not sent" as it does a failed write of one
// command.
type partialWriteError struct{ err error }

func (e *partialWriteError) Error() string { return "pipeline write failed part way: " + e.err.Error() }
func (e *partialWriteError) Unwrap() error { return e.err }
