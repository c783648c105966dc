package ws

import (
	"context"
	"sync"
)

// brokerOp is one broker subscription change the Run goroutine asked for,
// and, once done, its result.
type brokerOp struct {
	ch        *channel
	subscribe bool  // false: unsubscribe
	err       error // the broker's answer
}

// brokerWorker makes the broker calls the Run goroutine asks for, a batch
// at a time, on a fixed pool of brokerWorkers goroutines: Run never waits
// for the network and never starts a goroutine per call. A free goroutine
// takes everything queued as its batch; a broker that implements
// BatchSubscriber gets a batch's subscribes and unsubscribes in one call
// each. Run asks for the next call on a channel only once the last one
// has reported back, so the pool never reorders the calls of one channel,
// and a call that hangs (until brokerTimeout) holds up only its own batch.
type brokerWorker struct {
	h    *Hub
	wake chan struct{}
	stop chan struct{} // closed by Run once nothing is in flight
	done chan struct{} // closed when every goroutine of the pool returned

	mu    sync.Mutex
	queue []brokerOp // guarded by mu
}

// brokerWorkers is the size of the pool.
const brokerWorkers = 4

func (w *brokerWorker) init(h *Hub) {
	w.h = h
	w.wake = make(chan struct{}, 1)
	w.stop = make(chan struct{})
	w.done = make(chan struct{})
}

// start runs the pool until stop is closed.
func (w *brokerWorker) start() {
	var wg sync.WaitGroup
	for range brokerWorkers {
		wg.Add(1)
		go func() { defer wg.Done(); w.run() }()
	}
	go func() { wg.Wait(); close(w.done) }()
}

// add queues op; it never blocks.
func (w *brokerWorker) add(op brokerOp) {
	w.mu.Lock()
	w.queue = append(w.queue, op)
	w.mu.Unlock()
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

// run makes calls until stop is closed, reporting each batch to Run.
func (w *brokerWorker) run() {
	for {
		w.mu.Lock()
		batch := w.queue
		w.queue = nil
		w.mu.Unlock()
		if len(batch) == 0 {
			select {
			case <-w.wake:
				continue
			case <-w.stop:
				return
			}
		}
		w.call(batch)
		// The node occupies the channels it subscribed before Run
		// acknowledges their first subscribers (occupancy.go).
		w.h.occ.occupy(batch)
		select {
		case w.h.ops <- &hubOp{kind: opBrokerDone, broker: batch}:
		case <-w.stop:
			return
		}
	}
}

// call makes one batch of broker calls, recording each result in place.
func (w *brokerWorker) call(batch []brokerOp) {
	h := w.h
	ctx, cancel := context.WithTimeout(h.ioCtx, brokerTimeout)
	defer cancel()
	if bs, ok := h.broker.(BatchSubscriber); ok {
		w.callBatch(ctx, bs, batch)
		return
	}
	for i := range batch {
		op := &batch[i]
		if op.subscribe {
			op.err = h.broker.Subscribe(ctx, op.ch.name, h.handlerFor(op.ch))
		} else if err := h.broker.Unsubscribe(ctx, op.ch.name); err != nil {
			h.log.Warn("ws: broker unsubscribe failed", "channel", op.ch.name, "err", err)
		}
	}
}

// callBatch hands a batch to a BatchSubscriber. A channel appears in a
// batch at most once, because Run waits for the result of one call on a
// channel before it asks for the next, so the unsubscribes and subscribes
// of a batch touch different channels and their order does not matter.
func (w *brokerWorker) callBatch(ctx context.Context, bs BatchSubscriber, batch []brokerOp) {
	h := w.h
	var subs []BrokerSubscription
	var subIdx []int
	var unsubs []string
	for i, op := range batch {
		if op.subscribe {
			subs = append(subs, BrokerSubscription{Channel: op.ch.name, Handler: h.handlerFor(op.ch)})
			subIdx = append(subIdx, i)
		} else {
			unsubs = append(unsubs, op.ch.name)
		}
	}
	if len(unsubs) > 0 {
		if err := bs.UnsubscribeBatch(ctx, unsubs); err != nil {
			h.log.Warn("ws: broker unsubscribe failed", "channels", len(unsubs), "err", err)
		}
	}
	if len(subs) > 0 {
		errs := bs.SubscribeBatch(ctx, subs)
		for j, i := range subIdx {
			if j < len(errs) {
				batch[i].err = errs[j]
			}
		}
	}
}

// handlerFor returns the broker handler that delivers ch's publications.
func (h *Hub) handlerFor(ch *channel) func([]byte) {
	return func(p []byte) { h.deliver(ch, p) }
}
