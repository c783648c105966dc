package loadgen

import (
	"math/bits"
	"slices"
)

// Hist is a log-linear latency histogram in microseconds: exact below 64µs,
// then 32 buckets per power of two (about 3% wide).
type Hist map[int]uint64

// bucket returns the histogram bucket of v microseconds.
func bucket(v uint64) int {
	if v < 64 {
		return int(v)
	}
	e := bits.Len64(v) - 6
	return e*32 + int(v>>e)
}

// bucketValue returns the lower bound, in microseconds, of bucket i.
func bucketValue(i int) uint64 {
	if i < 64 {
		return uint64(i)
	}
	e := i/32 - 1
	m := uint64(i%32 + 32)
	return m << e
}

// Add counts one latency of v microseconds.
func (h Hist) Add(v uint64) { h[bucket(v)]++ }

// Merge adds every count of o to h.
func (h Hist) Merge(o Hist) {
	for k, v := range o {
		h[k] += v
	}
}

// Count is the number of samples.
func (h Hist) Count() uint64 {
	var n uint64
	for _, v := range h {
		n += v
	}
	return n
}

// Quantile returns the q-quantile (0..1) in microseconds, 0 when empty.
func (h Hist) Quantile(q float64) uint64 {
	total := h.Count()
	if total == 0 {
		return 0
	}
	keys := make([]int, 0, len(h))
	for k := range h {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	rank := uint64(q * float64(total))
	if rank >= total {
		rank = total - 1
	}
	var seen uint64
	for _, k := range keys {
		seen += h[k]
		if seen > rank {
			return bucketValue(k)
		}
	}
	return bucketValue(keys[len(keys)-1])
}
