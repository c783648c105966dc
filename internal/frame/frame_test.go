package frame

import (
	"bytes"
	"testing"
)

func TestAppendHeaderLengths(t *testing.T) {
	for _, n := range []int{0, 1, 125, 126, 65535, 65536} {
		f := Text(bytes.Repeat([]byte{'a'}, n))
		if got, want := len(f), HeaderLen(n)+n; got != want {
			t.Fatalf("len(Text(%d bytes)) = %d, want %d", n, got, want)
		}
		if f[0] != 0x81 {
			t.Fatalf("first byte = %#x, want 0x81", f[0])
		}
	}
}

func TestCloseReasonIsCut(t *testing.T) {
	f := Close(1001, string(bytes.Repeat([]byte("é"), 100)))
	if len(f) > 127 {
		t.Fatalf("close frame is %d bytes, want at most 127", len(f))
	}
}
