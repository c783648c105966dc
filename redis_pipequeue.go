package ws

import (
	"context"
	"sync"
)

// pipeQueue gathers requests made concurrently so that one or a few worker
// goroutines can send each gathering to Redis as one pipeline. It is
// what the broker's publishes (redis_pipeline.go) and the storage's
// commands (redis_autopipeline.go) share: a caller queues its request and
// waits; each worker takes everything queued (up to max requests), sends
// it, and hands every request its result, so while one pipeline waits for
// its replies the requests made meanwhile gather into the next. A lone
// request still costs one round trip.
type pipeQueue[T any] struct {
	max int // requests per pipeline
	// spare is how many requests must wait before a worker sends them
	// while another pipeline is in flight; below it they wait for that
	// pipeline to return and go with the next, so a second pipeline is
	// not spent on a request or two. 1 sends whatever waits.
	spare int
	wake  chan struct{}

	mu       sync.Mutex
	items    []*pipeItem[T] // guarded by mu; not taken yet
	inFlight int            // guarded by mu; pipelines sent and not yet answered
	stopped  bool           // guarded by mu; the workers have returned
}

// pipeItem is one queued request and, once sent, its result.
type pipeItem[T any] struct {
	v       T
	ctx     context.Context
	done    chan error // receives the result once; buffered
	taken   bool       // guarded by the queue's mu: in a pipeline
	dropped bool       // guarded by the queue's mu: the caller gave up first
}

func newPipeQueue[T any](size, spare int) *pipeQueue[T] {
	return &pipeQueue[T]{max: size, spare: max(spare, 1), wake: make(chan struct{}, 1)}
}

// start runs workers goroutines that hand each batch to send until done is
// closed, then fail whatever is still queued with stopErr; wg tracks them.
// send must give every item of the batch its result.
func (q *pipeQueue[T]) start(wg *sync.WaitGroup, done <-chan struct{}, workers int, stopErr error, send func([]*pipeItem[T])) {
	var running sync.WaitGroup
	running.Add(workers)
	wg.Add(workers + 1)
	for range workers {
		go func() {
			defer wg.Done()
			defer running.Done()
			q.run(done, send)
		}()
	}
	go func() {
		defer wg.Done()
		running.Wait()
		q.stop(stopErr)
	}()
}

// submit queues v and waits for its result. When ctx ends before a
// pipeline took it, v is withdrawn and submit returns ctx's error: nothing
// was sent. When ctx ends after, submit returns inFlight(ctx's error) at
// once, or, with inFlight nil, keeps waiting for the result (for a request
// whose result the pipeline writes into memory the caller reads).
func (q *pipeQueue[T]) submit(ctx context.Context, v T, stopErr error, inFlight func(error) error) error {
	it := &pipeItem[T]{v: v, ctx: ctx, done: make(chan error, 1)}
	if err := q.enqueue(ctx, stopErr, it); err != nil {
		return err
	}
	return q.wait(ctx, it, inFlight)
}

// submitAll queues vs together, in order, so that they go in one
// pipeline when it has room for them all, and waits for every result as
// submit does with inFlight nil; it returns the first error. One caller
// thus pays one round trip for several independent requests.
func (q *pipeQueue[T]) submitAll(ctx context.Context, vs []T, stopErr error) error {
	its := make([]*pipeItem[T], len(vs))
	for i, v := range vs {
		its[i] = &pipeItem[T]{v: v, ctx: ctx, done: make(chan error, 1)}
	}
	if err := q.enqueue(ctx, stopErr, its...); err != nil {
		return err
	}
	var first error
	for _, it := range its {
		if err := q.wait(ctx, it, nil); err != nil && first == nil {
			first = err
		}
	}
	return first
}

// enqueue appends its to the queue in one step, so that no pipeline
// takes some of them without the ones before, and wakes a worker. It
// returns ctx's error if ctx has ended and stopErr once the workers have
// stopped; then nothing is queued.
func (q *pipeQueue[T]) enqueue(ctx context.Context, stopErr error, its ...*pipeItem[T]) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	q.mu.Lock()
	if q.stopped {
		q.mu.Unlock()
		return stopErr
	}
	q.items = append(q.items, its...)
	q.mu.Unlock()
	q.poke()
	return nil
}

// wait returns its result; when ctx ends first, what submit's doc says.
func (q *pipeQueue[T]) wait(ctx context.Context, it *pipeItem[T], inFlight func(error) error) error {
	select {
	case err := <-it.done:
		return err
	case <-ctx.Done():
	}
	select {
	case err := <-it.done: // the result came as ctx ended
		return err
	default:
	}
	q.mu.Lock()
	taken := it.taken
	it.dropped = !taken
	q.mu.Unlock()
	switch {
	case !taken:
		return ctx.Err()
	case inFlight != nil:
		return inFlight(ctx.Err())
	}
	return <-it.done
}

func (q *pipeQueue[T]) poke() {
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

// run sends batches until done is closed.
func (q *pipeQueue[T]) run(done <-chan struct{}, send func([]*pipeItem[T])) {
	for {
		batch := q.take()
		if len(batch) == 0 {
			select {
			case <-q.wake:
				continue
			case <-done:
				return
			}
		}
		q.poke() // another worker may find more queued meanwhile
		send(batch)
		q.mu.Lock()
		q.inFlight-- // this worker takes what waited for it next
		q.mu.Unlock()
	}
}

// take removes up to max items from the queue, skipping those whose
// callers gave up.
func (q *pipeQueue[T]) take() []*pipeItem[T] {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.inFlight > 0 && len(q.items) < q.spare {
		return nil // they go with the next pipeline
	}
	var batch []*pipeItem[T]
	i := 0
	for ; i < len(q.items) && len(batch) < q.max; i++ {
		if it := q.items[i]; !it.dropped {
			it.taken = true
			batch = append(batch, it)
		}
	}
	rest := copy(q.items, q.items[i:])
	clear(q.items[rest:])
	q.items = q.items[:rest]
	if len(batch) > 0 {
		q.inFlight++
	}
	return batch
}

// stop fails what is still queued once the workers have returned, and
// anything queued later.
func (q *pipeQueue[T]) stop(err error) {
	q.mu.Lock()
	q.stopped = true
	items := q.items
	q.items = nil
	q.mu.Unlock()
	for _, it := range items {
		it.done <- err
	}
}
