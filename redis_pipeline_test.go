package ws

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/vortechron/go-ws/internal/redistest"
)

// TestConcurrentPublishesShareRoundTrips publishes from 16 goroutines at
// once, each on its own channel, through one broker: every publication
// reaches a subscriber on another broker in its channel's order, and the
// 3,200 calls took far fewer pipelines (round trips) than calls.
func TestConcurrentPublishesShareRoundTrips(t *testing.T) {
	addr := redistest.Addr(t)
	noLeaks(t)
	prefix := redistest.Prefix(t)
	pub := newTestRedisBroker(t, RedisOptions{Addrs: []string{addr}, KeyPrefix: prefix})
	sub := newTestRedisBroker(t, RedisOptions{Addrs: []string{addr}, KeyPrefix: prefix})
	ctx := testCtx(t)
	const goroutines, each = 16, 200
	recs := make([]*recorder, goroutines)
	for g := range recs {
		recs[g] = &recorder{}
		require.NoError(t, sub.Subscribe(ctx, "ch"+strconv.Itoa(g), recs[g].handle))
	}
	require.Eventually(t, func() bool { return pub.Healthy() && sub.Healthy() }, contractWait, 5*time.Millisecond)
	before := pub.pipe.sent.Load()
	var wg sync.WaitGroup
	errs := make(chan error, goroutines*each)
	for g := range goroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				if err := pub.Publish(ctx, "ch"+strconv.Itoa(g), []byte(strconv.Itoa(i))); err != nil {
					errs <- err
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("publish: %v", err)
	}
	pipelines := pub.pipe.sent.Load() - before
	for g, r := range recs {
		got := r.waitFor(t, each)
		for i, p := range got {
			require.Equal(t, strconv.Itoa(i), p, "channel %d, delivery %d: out of order", g, i)
		}
	}
	t.Logf("%d publishes from %d goroutines took %d pipelines", goroutines*each, goroutines, pipelines)
	require.Less(t, pipelines, int64(goroutines*each/2), "concurrent publishes share round trips")
}

// TestPipelineErrorsKeepTheirMeaning: a call whose ctx ended before a
// pipeline took it was not sent; a failed write of several commands is
// uncertain, of one command not sent.
func TestPipelineErrorsKeepTheirMeaning(t *testing.T) {
	addr := redistest.Addr(t)
	noLeaks(t)
	b := newTestRedisBroker(t, RedisOptions{Addrs: []string{addr}, KeyPrefix: redistest.Prefix(t)})
	require.Eventually(t, b.Healthy, contractWait, 5*time.Millisecond)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err := b.pipe.publish(ctx, "x", []byte("p"))
	require.True(t, publishNotSent(err), "a cancelled call is not sent: %v", err)

	write := &net.OpError{Op: "write", Net: "tcp", Err: errors.New("broken pipe")}
	require.True(t, publishNotSent(write), "a failed write of one command")
	require.False(t, publishNotSent(&partialWriteError{err: write}), "a failed write of a pipeline")
	require.False(t, publishNotSent(fmt.Errorf("gave up waiting for the reply: %v", context.DeadlineExceeded)))
}
