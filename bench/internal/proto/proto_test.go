package proto

import "testing"

func TestPayloadRoundTrip(t *testing.T) {
	for _, size := range []int{0, 64, 100, 1000} {
		p := Payload(42, 1700000000000000001, size)
		if size >= MinPayloadSize && len(p) != size {
			t.Errorf("size %d: got len %d, want %d", size, len(p), size)
		}
		seq, ts, ok := Parse(Envelope("C", p))
		if !ok || seq != 42 || ts != 1700000000000000001 {
			t.Errorf("size %d: got %d %d %v, want 42 1700000000000000001 true", size, seq, ts, ok)
		}
	}
	if _, _, ok := Parse(Subscribed("C")); ok {
		t.Errorf("Parse(ack): got ok, want !ok")
	}
}
