package ws

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/redis/go-redis/v9"
)

// autoPipeline is a go-redis hook that lets the Lua scripts of many
// goroutines share round trips: the RedisStorage installs it on the
// client it creates, so that a reconnect storm's thousands of presence
// scripts (each connection's join, each dropped connection's leave) go to
// Redis a few hundred per pipeline instead of each waiting for one of
// the pool's connections, which under a storm ran out (go-redis's pool
// timeout) long before Redis was busy.
//
// Only scripts (EVALSHA, EVAL) and the node index's SADD and SREM are
// gathered: they are the storage's per-connection work (a join, a leave,
// a node's first entry on a channel and its last), and they depend on no
// connection state. Every other command passes through unchanged; above
// all those go-redis sends to set up a new connection (HELLO, AUTH,
// SELECT), which it sends through the same hooks and which must reach
// that connection. So do the pipelines and transactions the caller
// builds itself (MULTI/EXEC), and every script once the hook's workers
// have stopped (while the storage closes).
//
// A script is queued (pipeQueue) and sent with the others queued
// meanwhile; its caller gets the command back filled in, as go-redis
// would have filled it, and returns only then. Calls made one after the
// other by one goroutine still reach Redis in that order.
type autoPipeline struct {
	client redis.UniversalClient
	guard  string // the replica guard's key, "" for none (redis_replica.go)
	queue  *pipeQueue[redis.Cmder]
	sent   atomic.Int64 // pipelines sent, and so round trips
}

var _ redis.Hook = (*autoPipeline)(nil)

// errAutoPipelineStopped answers a command queued as the storage closed.
var errAutoPipelineStopped = fmt.Errorf("the storage is closing: %w", redis.ErrClosed)

// installAutoPipeline adds the hook to client and starts its workers
// until done is closed; wg tracks them. guardKey is the replica guard's
// key, "" for none.
func installAutoPipeline(client redis.UniversalClient, guardKey string, wg *sync.WaitGroup, done <-chan struct{}) *autoPipeline {
	a := &autoPipeline{client: client, guard: guardKey, queue: newPipeQueue[redis.Cmder](pipeBatch, 1)}
	a.queue.start(wg, done, scriptWorkers, errAutoPipelineStopped, a.send)
	client.AddHook(a)
	return a
}

func (a *autoPipeline) DialHook(next redis.DialHook) redis.DialHook { return next }

func (a *autoPipeline) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}

// ProcessHook queues a script for the next pipeline. A caller whose ctx ends
// before a pipeline took the command gets ctx's error and the command is
// not sent; once taken, the caller waits for the reply (bounded by the
// client's read and write timeouts), since the pipeline writes it into
// cmd.
func (a *autoPipeline) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if !gathered(cmd.Name()) {
			return next(ctx, cmd)
		}
		err := a.queue.submit(ctx, cmd, errAutoPipelineStopped, nil)
		switch {
		case err == errAutoPipelineStopped:
			return next(ctx, cmd) // not sent: the storage is closing, go direct
		case err != nil && cmd.Err() == nil:
			cmd.SetErr(err) // withdrawn before it was sent
		}
		return cmd.Err()
	}
}

// processAll sends cmds one after the other in one pipeline where it has
// room for them all (pipeQueue.submitAll), so that a caller with several
// independent commands waits one round trip for all of them, and returns
// the first error. Each cmd holds its own reply; one withdrawn because ctx
// ended before a pipeline took it holds none (use the returned error).
func (a *autoPipeline) processAll(ctx context.Context, cmds ...redis.Cmder) error {
	err := a.queue.submitAll(ctx, cmds, errAutoPipelineStopped)
	if err != errAutoPipelineStopped {
		return err
	}
	return processInTurn(ctx, a.client, cmds...) // the storage is closing: directly
}

// processInTurn sends cmds one after the other through c and returns the
// first error, sending nothing after it.
func processInTurn(ctx context.Context, c interface {
	Process(context.Context, redis.Cmder) error
}, cmds ...redis.Cmder) error {
	for _, cmd := range cmds {
		if err := c.Process(ctx, cmd); err != nil {
			return err
		}
	}
	return nil
}

// gathered reports whether the hook queues commands named name.
func gathered(name string) bool {
	switch name {
	case "evalsha", "eval", "sadd", "srem":
		return true
	}
	return false
}

// send runs batch as one pipeline (on Redis Cluster, go-redis splits it
// by node) and hands every command its result.
//
// The pipeline starts with the replica guard (redis_replica.go). When the
// server turns out to be a replica, the commands it refused with READONLY
// go again in a new pipeline, on another connection (go-redis closed
// that one), while the pool may still hold connections to the old
// primary (replicaRetry), until a send that dialled is refused too,
// which is then final (replicaFollowed): a replica refuses a
// script at its first write, and the storage's scripts do nothing before
// their first write that outlasts them, so a refused command did nothing
// there, and the caller gets its answer from the new primary instead of
// an error. The scripts that only read refuse a replica themselves
// (replicaGuardLua), so they go again too, rather than answer from the
// replica's older data.
func (a *autoPipeline) send(batch []*pipeItem[redis.Cmder]) {
	ctx := context.Background() // the sockets' Read/WriteTimeout bound it
	todo := make([]*pipeItem[redis.Cmder], len(batch))
	copy(todo, batch)
	var retry replicaRetry
	for len(todo) > 0 {
		a.sent.Add(1)
		replica, _ := sendGuarded(ctx, a.client, a.guard, func(pipe redis.Pipeliner) {
			for _, it := range todo {
				_ = pipe.Process(it.ctx, it.v) // queued, not sent: a Pipeline's Process only appends
			}
		})
		if !replica {
			break
		}
		refused := todo[:0]
		for _, it := range todo {
			if redis.IsReadOnlyError(it.v.Err()) {
				refused = append(refused, it)
			}
		}
		if !retry.again(a.client) {
			for _, it := range refused {
				it.v.SetErr(replicaFollowed{it.v.Err()}) // final for onPrimary around the call
			}
			break
		}
		for _, it := range refused {
			it.v.SetErr(nil)
		}
		todo = refused
	}
	for _, it := range batch {
		it.done <- it.v.Err()
	}
}
