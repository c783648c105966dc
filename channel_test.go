package ws

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/vortechron/go-ws/internal/wstest"
)

// members lists what snapshot sn holds, in order.
func (sn *memberSnap) members() []*Client {
	var out []*Client
	for ci := range sn.chunks() {
		out = append(out, sn.chunk(ci)...)
	}
	return out
}

// TestMemberSetSnapshotsStayWhole adds and removes subscribers at random,
// some removals waiting for a later publish as closed connections' do,
// and checks after every change that the set counts its members at once,
// that the published snapshot holds exactly the members as of the last
// publish, each once, and that every snapshot published before still
// holds what it held then: fan-out reads them without a lock, so a change
// must never write where an earlier snapshot looks.
func TestMemberSetSnapshotsStayWhole(t *testing.T) {
	for _, peak := range []int{1, 3, 130, 600} {
		for _, later := range []bool{false, true} {
			t.Run(fmt.Sprintf("%d/dropLater=%v", peak, later), func(t *testing.T) {
				rng := rand.New(rand.NewPCG(1, uint64(peak)))
				ms := &memberSet{index: make(map[*Client]int)}
				var in []*Client        // the members, in any order
				var published []*Client // the members as of the last publish
				type kept struct {
					sn   *memberSnap
					want []*Client
				}
				var old []kept
				for step := range 20 * peak {
					// Grow towards peak, then shrink to nothing, twice.
					grow := step%(10*peak) < 5*peak
					switch {
					case len(in) > 0 && (!grow || rng.IntN(3) == 0):
						i := rng.IntN(len(in))
						if later && rng.IntN(4) > 0 {
							if removed, _ := ms.dropLater(in[i]); !removed {
								t.Fatalf("step %d: dropLater of a member reported false", step)
							}
						} else if !ms.remove(in[i]) {
							t.Fatalf("step %d: remove of a member reported false", step)
						}
						if ms.remove(in[i]) {
							t.Fatalf("step %d: second remove reported true", step)
						}
						in = slices.Delete(in, i, i+1)
					case len(in) < peak:
						c := &Client{}
						if !ms.add(c) || ms.add(c) {
							t.Fatalf("step %d: add of a new client and again: want true then false", step)
						}
						in = append(in, c)
					}
					if later && rng.IntN(8) == 0 && ms.unpublished {
						ms.publish() // the end of a burst
					}
					if !ms.unpublished {
						published = slices.Clone(in)
					}
					if got := int(ms.size.Load()); got != len(in) {
						t.Fatalf("step %d: size %d, want %d", step, got, len(in))
					}
					sn := ms.load()
					got := sn.members()
					if sn.n != len(published) || !sameMembers(got, published) {
						t.Fatalf("step %d: snapshot holds %d (n %d), want the %d members of the last publish", step, len(got), sn.n, len(published))
					}
					if rng.IntN(4) == 0 {
						old = append(old, kept{sn, got})
					}
				}
				for i, k := range old {
					if got := k.sn.members(); !slices.Equal(got, k.want) {
						t.Fatalf("snapshot %d changed after it was published: %d members, want %d", i, len(got), len(k.want))
					}
				}
			})
		}
	}
}

// TestDroppedConnectionsLeaveFanOut: the departures of closed
// connections, which wait for the end of a burst of the hub's work
// (memberSet.dropLater), do reach the snapshot fan-out reads once the
// hub has nothing more queued, so a mass disconnect leaves no dead
// subscriber behind for every later publication to skip. The channel's
// count is right at once.
func TestDroppedConnectionsLeaveFanOut(t *testing.T) {
	noLeaks(t)
	ctx, cancel := context.WithCancel(context.Background())
	h := NewHub(ctx, nil, nil, Config{})
	go h.Run()
	srv := httptest.NewServer(Handler(h, nil))
	t.Cleanup(func() { cancel(); <-h.Done(); srv.Close() })
	url := "ws" + strings.TrimPrefix(srv.URL, "http")

	stay := wstest.Dial(t, url, nil)
	stay.Subscribe("news")
	var gone []*wstest.Client
	for range 40 {
		c := wstest.Dial(t, url, nil)
		c.Subscribe("news")
		gone = append(gone, c)
	}
	v, ok := h.chanByName.Load("news")
	require.True(t, ok)
	ch := v.(*channel)
	inSnapshots := func() int {
		n := 0
		for _, s := range ch.sets {
			n += s.load().n
		}
		return n
	}
	require.Equal(t, 41, inSnapshots())
	for _, c := range gone {
		require.NoError(t, c.Conn.NetConn().Close()) // dropped, no close frame
	}
	require.Eventually(t, func() bool { return h.Stats().Connections == 1 }, 10*time.Second, time.Millisecond)
	require.Equal(t, 1, ch.subscribers(), "the channel's count once the connections have gone")
	require.Eventually(t, func() bool { return inSnapshots() == 1 }, 10*time.Second, time.Millisecond,
		"the snapshots fan-out reads never came down to the one subscriber left")
	require.NoError(t, h.Publish(ctx, "news", 1))
	stay.Expect(map[string]any{"type": "message", "channel": "news", "message": float64(1)})
}

// sameMembers reports whether got holds want's members, each once, in
// any order: require.ElementsMatch compares pairwise, which at 600
// members on every step of the test took minutes.
func sameMembers(got, want []*Client) bool {
	if len(got) != len(want) {
		return false
	}
	seen := make(map[*Client]bool, len(got))
	for _, c := range got {
		if c == nil || seen[c] {
			return false
		}
		seen[c] = true
	}
	for _, c := range want {
		if !seen[c] {
			return false
		}
	}
	return true
}

// BenchmarkMemberSet measures one subscribe and one unsubscribe on a
// shard's member set that holds n subscribers: the allocations are what
// a connection's arrival and departure cost each of its channels.
func BenchmarkMemberSet(b *testing.B) {
	for _, n := range []int{1, 10, 100, 10000} {
		b.Run(strconv.Itoa(n), func(b *testing.B) {
			ms := &memberSet{index: make(map[*Client]int)}
			in := make([]*Client, n-1)
			for i := range in {
				in[i] = &Client{}
				ms.add(in[i])
			}
			spare := make([]*Client, 64)
			for i := range spare {
				spare[i] = &Client{}
			}
			rng := rand.New(rand.NewPCG(1, 2))
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				c := spare[i%len(spare)]
				ms.add(c)
				// The one leaving is anywhere in the set, as after a drop.
				if j := rng.IntN(n); j < len(in) {
					ms.remove(in[j])
					in[j], c = c, in[j]
					spare[i%len(spare)] = c
				} else {
					ms.remove(c)
				}
			}
		})
	}
}

// BenchmarkChannelOfOne measures a channel with one subscriber, the
// shape of per-user channels: B/op is what each such channel keeps while
// its user is connected.
func BenchmarkChannelOfOne(b *testing.B) {
	cs := make([]*Client, 64)
	for i := range cs {
		cs[i] = &Client{out: sender{shard: &writeShard{}}}
	}
	b.ReportAllocs()
	for i := range b.N {
		ch := newChannel("private-user.1", 2)
		ch.add(cs[i%len(cs)])
	}
}

// BenchmarkMemberSetMassDrop measures a departure from a shard's member
// set of n subscribers when they all drop at once, in random order:
// published one by one (remove) and once per maxDropped departures, as
// Run publishes the departures of closed connections (dropLater).
func BenchmarkMemberSetMassDrop(b *testing.B) {
	for _, n := range []int{100, 10000} {
		for _, later := range []bool{false, true} {
			b.Run(fmt.Sprintf("%d/dropLater=%v", n, later), func(b *testing.B) {
				ms := &memberSet{index: make(map[*Client]int)}
				cs := make([]*Client, n)
				for i := range cs {
					cs[i] = &Client{}
				}
				rng := rand.New(rand.NewPCG(1, 2))
				fill := func() {
					b.StopTimer()
					for _, c := range cs {
						ms.add(c)
					}
					rng.Shuffle(len(cs), func(i, j int) { cs[i], cs[j] = cs[j], cs[i] })
					b.StartTimer()
				}
				fill()
				k, dropped := 0, 0
				b.ReportAllocs()
				for range b.N {
					if k == n {
						fill()
						k = 0
					}
					if !later {
						ms.remove(cs[k])
					} else if ms.dropLater(cs[k]); dropped+1 == maxDropped || k+1 == n {
						ms.publish()
						dropped = 0
					} else {
						dropped++
					}
					k++
				}
			})
		}
	}
}
