//go:build !linux && !darwin && !openbsd

package ws

import (
	"errors"
	"syscall"
)

// haveWritev says there is no fast path on this platform (Windows,
// FreeBSD, wasm, …): every connection writes from its own goroutine,
// which passes net.Buffers to the socket (one writev or WSASend a batch
// where the platform has it).
const haveWritev = false

type vecWriter struct{}

var errNoWritev = errors.New("ws: no non-blocking writev on this platform")

// writeAll is never called here: rawConn returns nil when haveWritev is
// false, so no connection takes the fast path.
func (w *vecWriter) writeAll(raw syscall.RawConn, bufs [][]byte) (rest [][]byte, written int64, err error) {
	return bufs, 0, errNoWritev
}

func isEAGAIN(err error) bool { return false }
