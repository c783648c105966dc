package frame

import (
	"bytes"
	"compress/flate"
	"errors"
	"runtime"
	"strings"
	"testing"
)

// deflateRaw compresses p as a permessage-deflate sender does: one
// message, no context takeover, the sync flush's tail stripped.
func deflateRaw(t testing.TB, p []byte) []byte {
	t.Helper()
	var b bytes.Buffer
	zw, err := flate.NewWriter(&b, flate.BestSpeed)
	if err != nil {
		t.Fatal(err)
	}
	zw.Write(p)
	zw.Flush()
	return bytes.TrimSuffix(b.Bytes(), deflateTail)
}

// clientFrame builds one masked client frame with the given first byte.
func clientFrame(first byte, payload []byte) []byte {
	key := [4]byte{1, 2, 3, 4}
	f := Append(nil, 0, payload)
	f[0] = first
	f[1] |= 0x80
	hl := HeaderLen(len(payload))
	out := append(append(append([]byte{}, f[:hl]...), key[:]...), f[hl:]...)
	unmask(out[hl+4:], key)
	return out
}

func TestCompressedRoundTrip(t *testing.T) {
	msg := []byte(`{"type":"message","channel":"room","message":{"text":"` + strings.Repeat("hello, deflate! ", 40) + `"}}`)
	f := Compressed(msg, 1)
	if f == nil {
		t.Fatal("Compressed returned nil for a compressible message")
	}
	if f[0] != 0x80|rsv1|OpText {
		t.Fatalf("first byte = %#x, want FIN|RSV1|text (%#x)", f[0], 0x80|rsv1|OpText)
	}
	z := Payload(f)
	if len(z) >= len(msg)/4 {
		t.Fatalf("compressed to %d of %d bytes, want far fewer", len(z), len(msg))
	}
	got, err := Inflate(z, 1<<20)
	if err != nil || !bytes.Equal(got, msg) {
		t.Fatalf("inflate: got %q, %v; want the message back", got, err)
	}
	for level := 1; level <= 9; level++ {
		if got, err := Inflate(Payload(Compressed(msg, level)), 0); err != nil || !bytes.Equal(got, msg) {
			t.Fatalf("level %d: got %q, %v; want the message back", level, got, err)
		}
	}
	if f := Compressed([]byte(`{"a":1}`), 1); f != nil {
		t.Fatalf("Compressed of 7 bytes = %d bytes, want nil (not smaller)", len(f))
	}
}

func TestReaderInflates(t *testing.T) {
	msg := []byte(strings.Repeat(`{"text":"compress me"}`, 50))
	z := deflateRaw(t, msg)
	half := len(z) / 2
	var raw []byte
	raw = append(raw, clientFrame(0x80|rsv1|OpText, z)...)           // one frame
	raw = append(raw, clientFrame(rsv1|OpText, z[:half])...)         // fragmented: RSV1 on the first only
	raw = append(raw, clientFrame(0x80|OpPing, []byte("p"))...)      // a ping between fragments
	raw = append(raw, clientFrame(0x80|OpContinuation, z[half:])...) // the rest
	raw = append(raw, clientFrame(0x80|OpText, []byte("plain"))...)  // uncompressed still works
	r := &Reader{R: bytes.NewReader(raw), MaxSize: 1 << 20, Deflate: true}
	for i, want := range []string{string(msg), string(msg), "plain"} {
		op, p, err := r.Next(nil)
		if err != nil || op != OpText || string(p) != want {
			t.Fatalf("message %d: got op %d, %d bytes, %v; want text of %d bytes", i, op, len(p), err, len(want))
		}
	}
}

func TestReaderDeflateFaults(t *testing.T) {
	z := deflateRaw(t, []byte(strings.Repeat("a", 100)))
	exact := deflateRaw(t, bytes.Repeat([]byte("b"), 1000))
	bomb := deflateRaw(t, make([]byte, 10<<20)) // 10 MB of zeros: about 10 KB compressed
	cases := []struct {
		name    string
		deflate bool
		raw     []byte
		code    int
	}{
		{"RSV1 not negotiated", false, clientFrame(0x80|rsv1|OpText, z), CodeProtocolError},
		{"RSV1 on a ping", true, clientFrame(0x80|rsv1|OpPing, nil), CodeProtocolError},
		{"RSV1 on a continuation", true, append(clientFrame(OpText, []byte("a")), clientFrame(0x80|rsv1|OpContinuation, z)...), CodeProtocolError},
		{"RSV2", true, clientFrame(0x80|0x20|OpText, z), CodeProtocolError},
		{"corrupt", true, clientFrame(0x80|rsv1|OpText, []byte{0xff, 0xff, 0xff, 0xff}), CodeInvalidData},
		{"one byte over after inflating", true, clientFrame(0x80|rsv1|OpText, deflateRaw(t, bytes.Repeat([]byte("b"), 1001))), CodeTooBig},
		{"zip bomb", true, clientFrame(0x80|rsv1|OpText, bomb), CodeTooBig},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := &Reader{R: bytes.NewReader(tc.raw), MaxSize: 1000, Deflate: tc.deflate}
			if tc.name == "zip bomb" {
				r.MaxSize = 1 << 20 // the compressed bytes fit; the inflated do not
			}
			_, _, err := r.Next(nil)
			var pe *ProtocolError
			if !errors.As(err, &pe) || pe.Code != tc.code {
				t.Fatalf("got %v, want protocol error %d", err, tc.code)
			}
		})
	}
	t.Run("exactly the limit after inflating", func(t *testing.T) {
		r := &Reader{R: bytes.NewReader(clientFrame(0x80|rsv1|OpText, exact)), MaxSize: 1000, Deflate: true}
		if _, p, err := r.Next(nil); err != nil || len(p) != 1000 {
			t.Fatalf("got %d bytes, %v; want 1000 bytes", len(p), err)
		}
	})
}

// TestZipBombAllocatesWithinTheLimit inflates 10 MB of zeros sent as
// about 10 KB against a 128 KiB limit and checks that what it cost is
// bounded by the limit, not by the 10 MB.
func TestZipBombAllocatesWithinTheLimit(t *testing.T) {
	const limit = 64 << 10
	raw := clientFrame(0x80|rsv1|OpText, deflateRaw(t, make([]byte, 10<<20)))
	r := &Reader{R: bytes.NewReader(raw), MaxSize: 2 * limit, Deflate: true}
	// Warm the inflater pool so the figure is the message's own cost.
	if _, err := Inflate(deflateRaw(t, []byte("warm")), limit); err != nil {
		t.Fatal(err)
	}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	_, _, err := r.Next(nil)
	runtime.ReadMemStats(&after)
	var pe *ProtocolError
	if !errors.As(err, &pe) || pe.Code != CodeTooBig {
		t.Fatalf("got %v, want protocol error %d", err, CodeTooBig)
	}
	spent := after.TotalAlloc - before.TotalAlloc
	// Reading the frame grows its buffer in steps (under 3x its size);
	// the output's doublings up to the limit sum to under twice the
	// limit; an inflater and its window cost more when the pool has none.
	budget := 3*uint64(len(raw)) + 4*(2*limit)
	if spent > budget {
		t.Fatalf("a zip bomb cost %d bytes of allocation, want at most %d (limit %d)", spent, budget, 2*limit)
	}
	t.Logf("zip bomb of %d bytes (inflating to 10 MB) cost %d bytes against a %d-byte limit", len(raw), spent, 2*limit)
}
