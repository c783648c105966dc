package loadgen

import "testing"

func TestBucketRoundTrip(t *testing.T) {
	prev := -1
	for v := uint64(0); v < 1<<22; v += 1 + v/97 {
		b := bucket(v)
		if b < prev {
			t.Fatalf("bucket(%d) = %d, below previous %d", v, b, prev)
		}
		prev = b
		lo := bucketValue(b)
		if lo > v || (v >= 64 && float64(v-lo) > 0.04*float64(v)) {
			t.Fatalf("bucketValue(bucket(%d)) = %d, want within 4%% below", v, lo)
		}
	}
}

func TestQuantile(t *testing.T) {
	h := Hist{}
	for v := uint64(1); v <= 1000; v++ {
		h.Add(v)
	}
	if got := h.Quantile(0.5); got < 480 || got > 501 {
		t.Errorf("p50: got %d, want about 500", got)
	}
	if got := h.Quantile(0.99); got < 960 || got > 991 {
		t.Errorf("p99: got %d, want about 990", got)
	}
}
