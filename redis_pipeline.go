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

// publishPipe lets concurrent Publish calls share round trips to Redis:
// each call queues its command (pipeQueue) and publishWorkers goroutines
// send what is queued as one pipeline per Redis node.
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
	guard   string // the replica guard's key, "" for none (redis_replica.go)
	queue   *pipeQueue[pubReq]
	sent    atomic.Int64 // pipelines sent, and so round trips
}

// pubReq is one PUBLISH waiting for its pipeline.
type pubReq struct {
	rch     string
	payload []byte
}

const (
	// publishWorkers is how many publish pipelines may be in flight at
	// once: two, but the second goes only once publishSpare calls wait
	// (pipeQueue.spare). Fewer wait for the first pipeline's replies and
	// go together in the next, so under load a pipeline carries many
	// publishers' calls, and the publishing node, Redis and the
	// subscribing nodes make fewer system calls per publication. With a
	// second pipeline free to go at once, it took the calls that came
	// while the first was out one or two at a time: on a 2-core machine
	// BenchmarkRedisPublish/plain/16-publishers-5000-channels went from
	// a median of 50k to 66k publications/s, 8-publishers from 26k to
	// 31k (docs/benchmarks.md, "A second publish pipeline only when it
	// is worth one"). One pipeline alone gained less and, in a reconnect
	// storm, left presence announcements waiting past the storage
	// deadline.
	publishWorkers = 2
	publishSpare   = 8
	// scriptWorkers is how many pipelines of storage commands may be in
	// flight at once (redis_autopipeline.go): two, so that Redis runs
	// one gathering's scripts while the next is on its way. One made a
	// reconnect storm's presence scripts wait past the storage deadline
	// (thousands of "unavailable" errors per storm, where two gave 0-10).
	scriptWorkers = 2
	// pipeBatch bounds the commands of one pipeline.
	pipeBatch = 512
)

// errPipeStopped answers a publish queued as the broker closed.
var errPipeStopped = fmt.Errorf("the broker is closing: %w", redis.ErrClosed)

func newPublishPipe(client redis.UniversalClient, sharded bool, guardKey string) *publishPipe {
	return &publishPipe{client: client, sharded: sharded, guard: guardKey, queue: newPipeQueue[pubReq](pipeBatch, publishSpare)}
}

// start runs the workers until done is closed; wg tracks them.
func (p *publishPipe) start(wg *sync.WaitGroup, done <-chan struct{}) {
	p.queue.start(wg, done, publishWorkers, errPipeStopped, p.send)
}

// publish sends one (S)PUBLISH of payload on the Redis channel rch in the
// next pipeline and returns its error: nil when Redis replied. When ctx
// ends first, the command is withdrawn if no pipeline took it yet (an
// error publishNotSent recognises), else the outcome is unknown.
func (p *publishPipe) publish(ctx context.Context, rch string, payload []byte) error {
	return p.queue.submit(ctx, pubReq{rch: rch, payload: payload}, errPipeStopped, func(err error) error {
		// Not wrapped: publishNotSent takes context errors for "not sent".
		return fmt.Errorf("gave up waiting for the reply: %v", err)
	})
}

// send runs batch as one pipeline per Redis node and hands every command
// its result.
func (p *publishPipe) send(batch []*pipeItem[pubReq]) {
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
	byNode := map[*redis.Client][]*pipeItem[pubReq]{}
	for _, it := range batch {
		node, err := cc.MasterForKey(ctx, it.v.rch)
		if err != nil {
			it.done <- &noConnError{err: err}
			continue
		}
		byNode[node] = append(byNode[node], it)
	}
	var wg sync.WaitGroup
	for node, its := range byNode {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if p.exec(ctx, node, its) {
				cc.ReloadState(ctx) // a slot moved: learn where to
			}
		}()
	}
	wg.Wait()
}

// exec sends its as one pipeline on c, after the replica guard when there
// is one, and reports whether Redis answered any command with MOVED.
func (p *publishPipe) exec(ctx context.Context, c redis.Cmdable, its []*pipeItem[pubReq]) (moved bool) {
	cmds := make([]*redis.IntCmd, len(its))
	p.sent.Add(1)
	// Each command carries its own error.
	replica, _ := sendGuarded(ctx, c, p.guard, func(pipe redis.Pipeliner) {
		for i, it := range its {
			cmds[i] = publishAtMostOnce(ctx, pipe, p.sharded, it.v.rch, it.v.payload) // redis_once.go
		}
	})
	for i, it := range its {
		err := cmds[i].Err()
		if err == nil && replica {
			err = errReplica
		}
		if _, m := redis.IsMovedError(err); m {
			moved = true
		}
		var op *net.OpError
		if len(its) > 1 && errors.As(err, &op) && op.Op == "write" {
			err = &partialWriteError{err: err}
		}
		it.done <- err
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
