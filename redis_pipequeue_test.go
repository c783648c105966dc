package ws

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestPipeQueueSparesASecondPipeline: while one pipeline is in flight, a
// second goes only once spare requests wait; fewer wait, and go together.
// Requests queued one at a time while the first pipeline is out must
// therefore reach the second pipeline all at once, not one by one.
func TestPipeQueueSparesASecondPipeline(t *testing.T) {
	noLeaks(t)
	const spare = 4
	q := newPipeQueue[int](16, spare)
	batches := make(chan []int, 8)
	release := make(chan struct{})
	var sent atomic.Int32 // requests handed to send
	var wg sync.WaitGroup
	done := make(chan struct{})
	q.start(&wg, done, 2, errors.New("stopped"), func(batch []*pipeItem[int]) {
		var vs []int
		for _, it := range batch {
			vs = append(vs, it.v)
		}
		sent.Add(int32(len(batch)))
		batches <- vs
		<-release
		for _, it := range batch {
			it.done <- nil
		}
	})
	var releaseOnce sync.Once
	free := func() { releaseOnce.Do(func() { close(release) }) }
	defer func() { free(); close(done); wg.Wait() }()

	results := make(chan error, 1+spare)
	submit := func(v int) {
		go func() { results <- q.submit(context.Background(), v, nil, nil) }()
	}
	next := func() []int { t.Helper(); return nextBatch(t, batches) }
	submit(0)
	require.Equal(t, []int{0}, next(), "a lone request goes at once")
	for v := 1; v <= spare; v++ {
		submit(v)
		require.Eventually(t, func() bool { // queued or sent, before the next
			q.mu.Lock()
			defer q.mu.Unlock()
			return len(q.items)+int(sent.Load()) == 1+v
		}, 5*time.Second, time.Millisecond)
	}
	require.Equal(t, []int{1, 2, 3, 4}, next(), "the second pipeline waited for %d requests", spare)
	free()
	for range 1 + spare {
		require.NoError(t, <-results)
	}
}

// TestPipeQueueSubmitAllSharesOnePipeline: requests submitted together go
// in one pipeline, in order, and the caller gets the first error; one
// whose caller gives up before a pipeline takes it is withdrawn.
func TestPipeQueueSubmitAllSharesOnePipeline(t *testing.T) {
	noLeaks(t)
	q := newPipeQueue[int](16, 1)
	batches := make(chan []int, 8)
	release := make(chan struct{}, 8) // one token lets one pipeline's replies through
	var wg sync.WaitGroup
	done := make(chan struct{})
	failed := errors.New("refused")
	q.start(&wg, done, 2, errors.New("stopped"), func(batch []*pipeItem[int]) {
		var vs []int
		for _, it := range batch {
			vs = append(vs, it.v)
		}
		batches <- vs
		<-release
		for _, it := range batch {
			var err error
			if it.v%2 == 1 {
				err = failed
			}
			it.done <- err
		}
	})
	defer func() { close(release); close(done); wg.Wait() }() // a closed release frees a worker still holding replies
	next := func() []int { t.Helper(); return nextBatch(t, batches) }
	together := func(vs ...int) error {
		t.Helper()
		res := make(chan error, 1)
		go func() { res <- q.submitAll(context.Background(), vs, nil) }()
		require.Equal(t, vs, next(), "one pipeline, in order")
		release <- struct{}{}
		return <-res
	}

	require.NoError(t, together(2, 4, 6))
	require.ErrorIs(t, together(8, 3, 5), failed)

	// Both workers busy: what is queued meanwhile waits, and goes nowhere
	// once its caller's ctx ends.
	busy := make(chan error, 2)
	go func() { busy <- q.submit(context.Background(), 10, nil, nil) }()
	require.Equal(t, []int{10}, next())
	go func() { busy <- q.submit(context.Background(), 12, nil, nil) }()
	require.Equal(t, []int{12}, next())
	ctx, cancel := context.WithCancel(context.Background())
	gaveUp := make(chan error, 1)
	go func() { gaveUp <- q.submitAll(ctx, []int{14, 16}, nil) }()
	require.Eventually(t, func() bool {
		q.mu.Lock()
		defer q.mu.Unlock()
		return len(q.items) == 2
	}, 5*time.Second, time.Millisecond)
	cancel()
	require.ErrorIs(t, <-gaveUp, context.Canceled)
	release <- struct{}{}
	release <- struct{}{}
	require.NoError(t, <-busy)
	require.NoError(t, <-busy)
	require.NoError(t, together(18), "the withdrawn requests were never sent: the next pipeline holds only 18")
}

// nextBatch returns the next pipeline's requests the test's send func
// recorded, failing t when none comes within 5 s.
func nextBatch(t *testing.T, batches <-chan []int) []int {
	t.Helper()
	select {
	case b := <-batches:
		return b
	case <-time.After(5 * time.Second):
		t.Fatal("no pipeline was sent")
		return nil
	}
}
