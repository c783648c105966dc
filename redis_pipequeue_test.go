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
	next := func() []int {
		t.Helper()
		select {
		case b := <-batches:
			return b
		case <-time.After(5 * time.Second):
			t.Fatal("no pipeline was sent")
			return nil
		}
	}
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
