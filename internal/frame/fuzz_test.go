package frame

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
)

// FuzzReaderDeflate reads arbitrary bytes as client frames on a
// connection that negotiated permessage-deflate: Next never panics, never
// returns a message over MaxSize (compressed or inflated), and fails only
// with a *ProtocolError, a *CloseError or the input running out.
func FuzzReaderDeflate(f *testing.F) {
	z := deflateRaw(f, []byte(strings.Repeat(`{"action":"ping"}`, 20)))
	f.Add(clientFrame(0x80|rsv1|OpText, z))
	f.Add(append(clientFrame(rsv1|OpText, z[:5]), clientFrame(0x80|OpContinuation, z[5:])...))
	f.Add(clientFrame(0x80|rsv1|OpText, deflateRaw(f, make([]byte, 1<<16))))
	f.Add(clientFrame(0x80|rsv1|OpText, []byte{0xff, 0, 0xff}))
	f.Add(clientFrame(0x80|rsv1|OpPing, nil))
	f.Add(clientFrame(0x80|OpText, []byte("plain")))
	const limit = 4096
	f.Fuzz(func(t *testing.T, raw []byte) {
		r := &Reader{R: bytes.NewReader(raw), MaxSize: limit, Deflate: true}
		for {
			_, p, err := r.Next(nil)
			if err != nil {
				var pe *ProtocolError
				var ce *CloseError
				if !errors.As(err, &pe) && !errors.As(err, &ce) && err != io.EOF && err != io.ErrUnexpectedEOF {
					t.Fatalf("unexpected error %T: %v", err, err)
				}
				return
			}
			if len(p) > limit {
				t.Fatalf("a %d-byte message past the %d-byte limit", len(p), limit)
			}
		}
	})
}
