package ws

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/vortechron/go-ws/internal/redistest"
)

// The HistoryBroker contract: every broker that keeps history runs it
// (memory here, Redis and Redis Cluster below and in contract_test.go).

// positioned reads what a recorder got as history publications.
func positioned(t *testing.T, got []string) (offsets []uint64, epochs, payloads []string) {
	t.Helper()
	for _, g := range got {
		pos, p, ok, err := cutPositioned([]byte(g))
		require.NoError(t, err)
		require.True(t, ok, "a history publication reaches subscribers behind its position: %q", g)
		offsets, epochs, payloads = append(offsets, pos.Offset), append(epochs, pos.Epoch), append(payloads, string(p))
	}
	return offsets, epochs, payloads
}

func entryOffsets(page HistoryPage) []uint64 {
	out := []uint64{}
	for _, e := range page.Entries {
		out = append(out, e.Offset)
	}
	return out
}

func testHistoryContract(t *testing.T, newBroker func(t *testing.T) HistoryBroker) {
	opts := HistoryOptions{Size: 100, TTL: time.Minute}
	tests := []struct {
		name string
		run  func(t *testing.T, b HistoryBroker)
	}{
		{"offsets count up and subscribers get them in order", func(t *testing.T, b HistoryBroker) {
			ctx := testCtx(t)
			var r recorder
			require.NoError(t, b.Subscribe(ctx, "h", r.handle))
			var epoch string
			for i := 1; i <= 5; i++ {
				pos, err := b.PublishHistory(ctx, "h", []byte("p"+strconv.Itoa(i)), opts)
				require.NoError(t, err)
				require.Equal(t, uint64(i), pos.Offset)
				if i == 1 {
					epoch = pos.Epoch
					require.NotEmpty(t, epoch)
					require.NotContains(t, epoch, ":")
				}
				require.Equal(t, epoch, pos.Epoch)
			}
			offs, epochs, payloads := positioned(t, r.waitFor(t, 5))
			require.Equal(t, []uint64{1, 2, 3, 4, 5}, offs)
			require.Equal(t, []string{epoch, epoch, epoch, epoch, epoch}, epochs)
			require.Equal(t, []string{"p1", "p2", "p3", "p4", "p5"}, payloads)
		}},
		{"reads return the position and the range asked for", func(t *testing.T, b HistoryBroker) {
			ctx := testCtx(t)
			for i := 1; i <= 5; i++ {
				_, err := b.PublishHistory(ctx, "r", []byte(strconv.Itoa(i)), opts)
				require.NoError(t, err)
			}
			page, err := b.ReadHistory(ctx, "r", HistoryRange{})
			require.NoError(t, err)
			require.Equal(t, uint64(5), page.Latest.Offset)
			require.Equal(t, uint64(1), page.Oldest)
			require.Empty(t, page.Entries, "Limit 0 reads the position only")
			for _, tc := range []struct {
				r    HistoryRange
				want []uint64
			}{
				{HistoryRange{Limit: 10}, []uint64{1, 2, 3, 4, 5}},
				{HistoryRange{After: 2, Limit: 10}, []uint64{3, 4, 5}},
				{HistoryRange{After: 2, Until: 4, Limit: 10}, []uint64{3, 4}},
				{HistoryRange{After: 2, Limit: 2}, []uint64{3, 4}},
				{HistoryRange{After: 2, Limit: 2, Reverse: true}, []uint64{5, 4}},
				{HistoryRange{Until: 3, Limit: 10, Reverse: true}, []uint64{3, 2, 1}},
				{HistoryRange{After: 5, Limit: 10}, []uint64{}},
				{HistoryRange{After: 9, Limit: 10}, []uint64{}},
			} {
				page, err := b.ReadHistory(ctx, "r", tc.r)
				require.NoError(t, err)
				require.Equal(t, tc.want, entryOffsets(page), "range %+v", tc.r)
				for _, e := range page.Entries {
					require.Equal(t, strconv.FormatUint(e.Offset, 10), string(e.Payload))
				}
			}
		}},
		{"the history keeps Size publications", func(t *testing.T, b HistoryBroker) {
			ctx := testCtx(t)
			for i := 1; i <= 8; i++ {
				_, err := b.PublishHistory(ctx, "small", []byte(strconv.Itoa(i)), HistoryOptions{Size: 3, TTL: time.Minute})
				require.NoError(t, err)
			}
			page, err := b.ReadHistory(ctx, "small", HistoryRange{Limit: 10})
			require.NoError(t, err)
			require.Equal(t, uint64(6), page.Oldest)
			require.Equal(t, []uint64{6, 7, 8}, entryOffsets(page))
		}},
		{"a channel read before its first publication keeps its epoch", func(t *testing.T, b HistoryBroker) {
			ctx := testCtx(t)
			page, err := b.ReadHistory(ctx, "fresh", HistoryRange{Limit: 10})
			require.NoError(t, err)
			require.Equal(t, uint64(0), page.Latest.Offset)
			require.Equal(t, uint64(1), page.Oldest)
			require.NotEmpty(t, page.Latest.Epoch)
			pos, err := b.PublishHistory(ctx, "fresh", []byte("x"), opts)
			require.NoError(t, err)
			require.Equal(t, HistoryPosition{Offset: 1, Epoch: page.Latest.Epoch}, pos)
		}},
		{"channels have their own offsets", func(t *testing.T, b HistoryBroker) {
			ctx := testCtx(t)
			for i := range 3 {
				for j := range i + 1 {
					pos, err := b.PublishHistory(ctx, "ch-"+strconv.Itoa(i), []byte("x"), opts)
					require.NoError(t, err)
					require.Equal(t, uint64(j+1), pos.Offset)
				}
			}
		}},
		{"publications expire after TTL, the position stays", func(t *testing.T, b HistoryBroker) {
			ctx := testCtx(t)
			var epoch string
			for range 3 {
				pos, err := b.PublishHistory(ctx, "ttl", []byte("x"), HistoryOptions{Size: 10, TTL: 50 * time.Millisecond})
				require.NoError(t, err)
				epoch = pos.Epoch
			}
			require.Eventually(t, func() bool {
				page, err := b.ReadHistory(ctx, "ttl", HistoryRange{Limit: 10})
				require.NoError(t, err)
				return len(page.Entries) == 0
			}, contractWait, 10*time.Millisecond, "the publications never expired")
			page, err := b.ReadHistory(ctx, "ttl", HistoryRange{Limit: 10})
			require.NoError(t, err)
			require.Equal(t, HistoryPosition{Offset: 3, Epoch: epoch}, page.Latest, "the epoch and offset outlive the publications")
			require.Equal(t, uint64(4), page.Oldest)
			pos, err := b.PublishHistory(ctx, "ttl", []byte("y"), opts)
			require.NoError(t, err)
			require.Equal(t, HistoryPosition{Offset: 4, Epoch: epoch}, pos)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.run(t, newBroker(t))
		})
	}
}

// testHistoryMultiNode: publications from two nodes get one offset
// order, the order both nodes receive them in.
func testHistoryMultiNode(t *testing.T, newBroker func(t *testing.T) HistoryBroker) {
	t.Run("two nodes share one offset order", func(t *testing.T) {
		ctx := testCtx(t)
		b1, b2 := newBroker(t), newBroker(t)
		var r1, r2 recorder
		require.NoError(t, b1.Subscribe(ctx, "shared", r1.handle))
		require.NoError(t, b2.Subscribe(ctx, "shared", r2.handle))
		const each = 100
		var wg sync.WaitGroup
		for i, b := range []HistoryBroker{b1, b2} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for j := range each {
					_, err := b.PublishHistory(ctx, "shared", []byte(fmt.Sprintf("%d-%d", i, j)), HistoryOptions{Size: 1000, TTL: time.Minute})
					require.NoError(t, err)
				}
			}()
		}
		wg.Wait()
		o1, _, p1 := positioned(t, r1.waitFor(t, 2*each))
		o2, _, p2 := positioned(t, r2.waitFor(t, 2*each))
		for i := range o1 {
			require.Equal(t, uint64(i+1), o1[i], "node 1 gets the offsets in order")
		}
		require.Equal(t, o1, o2)
		require.Equal(t, p1, p2, "both nodes get the publications in the same order")
		page, err := b1.ReadHistory(ctx, "shared", HistoryRange{Limit: 1000})
		require.NoError(t, err)
		for i, e := range page.Entries {
			require.Equal(t, p1[i], string(e.Payload), "the history's order is the delivery order")
		}
	})
}

func TestMemoryHistoryContract(t *testing.T) {
	noLeaks(t)
	testHistoryContract(t, func(t *testing.T) HistoryBroker {
		b := NewMemoryBroker()
		t.Cleanup(func() { _ = b.Close() })
		return b
	})
}

func TestRedisHistoryContract(t *testing.T) {
	addr := redistest.Addr(t)
	noLeaks(t)
	newBroker := func(t *testing.T) HistoryBroker {
		b := newTestRedisBroker(t, RedisOptions{Addrs: []string{addr}, KeyPrefix: redistest.Prefix(t)})
		// A publication on a broker that is not live yet fails fast.
		require.Eventually(t, b.Healthy, contractWait, time.Millisecond)
		return b
	}
	testHistoryContract(t, newBroker)
	testHistoryMultiNode(t, newBroker)
}

// TestRedisHistoryBatchLeavesCancelledWaiters: publications of one channel
// made while another is in flight wait for the next batch; one whose ctx
// ends while it waits is reported not sent (ErrBrokerUnavailable) and is
// indeed never sent. Redis is frozen (SIGSTOP) to hold the first batch.
func TestRedisHistoryBatchLeavesCancelledWaiters(t *testing.T) {
	noLeaks(t)
	srv := redistest.StartServer(t)
	b := newTestRedisBroker(t, RedisOptions{Addrs: []string{srv.Addr}, ReadTimeout: 2 * time.Second, HealthInterval: 10 * time.Second})
	require.Eventually(t, b.Healthy, contractWait, time.Millisecond)
	opts := HistoryOptions{Size: 10, TTL: time.Minute}
	ctx := testCtx(t)
	_, err := b.PublishHistory(ctx, "frozen", []byte("before"), opts)
	require.NoError(t, err)

	require.NoError(t, srv.Stop())
	held := make(chan error, historyInFlight)
	for range historyInFlight { // every batch that may run at once is stuck
		go func() { _, err := b.PublishHistory(ctx, "frozen", []byte("held"), opts); held <- err }()
	}
	require.Eventually(t, func() bool {
		b.history.mu.Lock()
		defer b.history.mu.Unlock()
		q := b.history.queues["frozen"]
		return q != nil && q.inFlight == historyInFlight
	}, contractWait, time.Millisecond, "the first publications lead")
	short, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	_, err = b.PublishHistory(short, "frozen", []byte("given up"), opts)
	cancel()
	require.ErrorIs(t, err, ErrBrokerUnavailable, "a publication that never left the queue was not sent")
	require.NotErrorIs(t, err, ErrPublishUncertain)
	require.NoError(t, srv.Cont())
	for range historyInFlight {
		<-held // whatever became of them
	}

	require.Eventually(t, b.Healthy, contractWait, time.Millisecond)
	page, err := b.ReadHistory(ctx, "frozen", HistoryRange{Limit: 10})
	require.NoError(t, err)
	for _, e := range page.Entries {
		require.NotEqual(t, "given up", string(e.Payload), "a publication reported not sent is in the history")
	}
}

// TestHistoryBatchPayload: a broker may hand several history
// publications in one payload; each reaches the channel in order, and a
// malformed batch is refused whole from the first bad part.
func TestHistoryBatchPayload(t *testing.T) {
	one := appendPositioned(nil, HistoryPosition{Offset: 7, Epoch: "e"}, []byte("\x02m\x00\x00\x00\x00\x00\x00\x00\x00\x001"))
	two := appendPositioned(nil, HistoryPosition{Offset: 8, Epoch: "e"}, []byte("\x02m\x00\x00\x00\x00\x00\x00\x00\x00\x002"))
	batch := []byte("H")
	for _, p := range [][]byte{one, two} {
		batch = append(batch, []byte(strconv.Itoa(len(p))+":")...)
		batch = append(batch, p...)
	}
	var got [][]byte
	require.NoError(t, eachInBatch(batch, func(p []byte) { got = append(got, p) }))
	require.Equal(t, [][]byte{one, two}, got)
	for _, bad := range []string{"H5", "H5:", "H0:", "H99:h1:e:x", "Hx:h1:e:x", "H3:abc"} {
		require.Error(t, eachInBatch([]byte(bad), func([]byte) {}), "eachInBatch(%q)", bad)
	}
}
