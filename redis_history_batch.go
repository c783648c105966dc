package ws

import (
	"context"
	"fmt"
	"slices"
	"sync"
)

// historyBatcher groups the history publications of one channel made at
// the same time into one run of the publish script (group commit): one
// round trip and one script for a whole batch instead of one per
// publication, which is what the script's fixed cost needs under
// concurrent publishers. A lone publication is sent at once, without
// waiting for company.
//
// A publication of a channel with fewer than historyInFlight batches in
// flight leads: it runs its batch (itself). Publications made while that
// many are in flight queue; when a batch returns, the first of them leads
// the next batch (all of them, up to historyBatchMax) and the old leader
// returns. A publisher waits for each publication's outcome before it
// makes the next, so its publications are never in two batches at once
// and keep their order; Redis gives the offsets in the order it runs the
// batches. A publication still queued when its ctx ends is taken out and
// reported not sent; one already in a batch reports the batch's outcome.
type historyBatcher struct {
	mu     sync.Mutex
	queues map[string]*historyQueue // guarded by mu; channels with a batch in flight
}

// historyQueue is one channel's batches in flight and what waits for them.
type historyQueue struct {
	inFlight int            // guarded by historyBatcher.mu
	waiting  []*historyCall // guarded by historyBatcher.mu
}

// historyInFlight is how many batches of one channel may run at once.
// More in flight means smaller batches (more CPU per publication) but
// less waiting; with BenchmarkRedisPublish's 8 publishers, 4 gave the best
// throughput unless the machine was saturated (docs/benchmarks.md).
const historyInFlight = 4

// historyCall is one PublishHistory.
type historyCall struct {
	ctx     context.Context
	payload []byte
	opts    HistoryOptions
	done    chan struct{} // closed when pos and err are set, or when batch is
	pos     HistoryPosition
	err     error
	batch   []*historyCall // set when this call leads the next batch (itself first)
}

// historyBatchMax bounds a batch (the script unpacks its payloads as
// arguments of one RPUSH).
const historyBatchMax = 64

// publish sends one publication through b, in a batch.
func (q *historyBatcher) publish(ctx context.Context, b *RedisBroker, channel string, payload []byte, opts HistoryOptions) (HistoryPosition, error) {
	call := &historyCall{ctx: ctx, payload: payload, opts: opts, done: make(chan struct{})}
	q.mu.Lock()
	if q.queues == nil {
		q.queues = make(map[string]*historyQueue)
	}
	cq := q.queues[channel]
	if cq == nil {
		cq = &historyQueue{}
		q.queues[channel] = cq
	}
	if cq.inFlight < historyInFlight {
		cq.inFlight++
		q.mu.Unlock()
		q.lead(b, channel, []*historyCall{call})
		return call.pos, call.err
	}
	cq.waiting = append(cq.waiting, call)
	q.mu.Unlock()
	select {
	case <-call.done:
	case <-ctx.Done():
		q.mu.Lock()
		if i := slices.Index(cq.waiting, call); i >= 0 {
			cq.waiting = slices.Delete(cq.waiting, i, i+1)
			q.mu.Unlock()
			return HistoryPosition{}, fmt.Errorf("%w: redis publish on %q: %w", ErrBrokerUnavailable, channel, ctx.Err())
		}
		q.mu.Unlock()
		<-call.done // in a batch already: its outcome comes
	}
	if call.batch != nil {
		q.lead(b, channel, call.batch)
	}
	return call.pos, call.err
}

// lead runs batch (whose first call is the caller's), answers the others
// and hands the lead to the next batch, if any. The batch runs under the
// first of its calls' contexts that has not ended (so one caller giving
// up does not fail the others'); if they all have, it is not sent.
func (q *historyBatcher) lead(b *RedisBroker, channel string, batch []*historyCall) {
	ctx := batch[0].ctx
	for _, c := range batch {
		if c.ctx.Err() == nil {
			ctx = c.ctx
			break
		}
	}
	b.runHistoryBatch(ctx, channel, batch)
	for _, c := range batch[1:] {
		close(c.done)
	}
	q.mu.Lock()
	cq := q.queues[channel]
	if len(cq.waiting) == 0 {
		if cq.inFlight--; cq.inFlight == 0 {
			delete(q.queues, channel)
		}
		q.mu.Unlock()
		return
	}
	n := min(len(cq.waiting), historyBatchMax)
	next := slices.Clone(cq.waiting[:n])
	cq.waiting = slices.Delete(cq.waiting, 0, n)
	q.mu.Unlock()
	next[0].batch = next
	close(next[0].done)
}
