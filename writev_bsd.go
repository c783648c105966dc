//go:build darwin || openbsd

package ws

import (
	"syscall"

	"golang.org/x/sys/unix"
)

// haveWritev says the fast path exists here, through x/sys/unix.Writev
// (libSystem's writev on macOS, no raw system call number).
const haveWritev = true

// vecWriter is a shard's writev argument; x/sys builds the vector.
type vecWriter struct{}

// maxIOV is the most buffers one writev takes (IOV_MAX).
const maxIOV = 1024

// writeAll writes bufs to raw's descriptor with as many non-blocking
// writev calls as it takes, stopping at the first that cannot take
// everything. It returns what is left (a copy, nil when everything was
// written), how many bytes were written, and the error of the last call
// (EAGAIN when the socket is full).
func (w *vecWriter) writeAll(raw syscall.RawConn, bufs [][]byte) (rest [][]byte, written int64, err error) {
	for len(bufs) > 0 {
		k := min(len(bufs), maxIOV)
		want := lenAll(bufs[:k])
		var n int
		var werr error
		err := raw.Write(func(fd uintptr) bool {
			n, werr = unix.Writev(int(fd), bufs[:k])
			return true // never wait for the socket: the blocking writer does that
		})
		if err == nil {
			err = werr
		}
		n = max(n, 0)
		written += int64(n)
		if n < want || err != nil {
			return append(trimWritten(bufs[:k], n), bufs[k:]...), written, err
		}
		bufs = bufs[k:]
	}
	return nil, written, nil
}

func isEAGAIN(err error) bool { return err == unix.EAGAIN }
