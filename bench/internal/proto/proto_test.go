package proto

import (
	"encoding/json"
	"testing"
)

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

func TestChatPayload(t *testing.T) {
	total := 0
	for i := range int64(100) {
		p := ChatPayload(7+i, 1700000000000000001+i)
		if !json.Valid(p) {
			t.Fatalf("seq %d: not valid JSON: %s", 7+i, p)
		}
		seq, ts, ok := Parse(Envelope("C", p))
		if !ok || seq != 7+i || ts != 1700000000000000001+i {
			t.Fatalf("seq %d: got %d %d %v, want %d %d true", 7+i, seq, ts, ok, 7+i, 1700000000000000001+i)
		}
		total += len(p)
	}
	if mean := total / 100; mean < 900 || mean > 1200 {
		t.Errorf("mean size: got %d bytes, want about 1 KB", mean)
	}
	if s := DeflateSaving([][]byte{ChatPayload(1, 1)}, 1); s < 0.2 || s > 0.6 {
		t.Errorf("deflate saving at level 1: got %.2f, want a realistic 0.2..0.6", s)
	}
}

// A Pusher client gets the payload as the text of "data".
func TestParsePusherFrame(t *testing.T) {
	p := Payload(42, 1700000000000000001, 100)
	data, err := json.Marshal(string(p))
	if err != nil {
		t.Fatal(err)
	}
	frame := []byte(`{"event":"bench","channel":"C","data":` + string(data) + `}`)
	seq, ts, ok := Parse(frame)
	if !ok || seq != 42 || ts != 1700000000000000001 {
		t.Errorf("Parse(%s): got %d %d %v, want 42 1700000000000000001 true", frame, seq, ts, ok)
	}
	if _, _, ok := Parse([]byte(`{"event":"pusher_internal:subscription_succeeded","channel":"C","data":"{}"}`)); ok {
		t.Errorf("Parse(ack): got ok, want !ok")
	}
	if !json.Valid(PusherSubscribe("C")) {
		t.Errorf("PusherSubscribe: not JSON: %s", PusherSubscribe("C"))
	}
}
