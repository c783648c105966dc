//go:build linux

package ws

import (
	"runtime"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// haveWritev says the fast path exists here: a non-blocking writev of a
// whole queue, with a vector reused from call to call.
const haveWritev = true

// maxIOV is the most buffers one writev takes (IOV_MAX).
const maxIOV = 1024

// vecWriter is a shard's reusable writev argument.
type vecWriter struct {
	iov []unix.Iovec
}

// writeAll writes bufs to raw's descriptor with as many non-blocking
// writev calls as it takes, stopping at the first that cannot take
// everything. It returns what is left (a copy, nil when everything was
// written), how many bytes were written, and the error of the last call
// (EAGAIN when the socket is full).
func (w *vecWriter) writeAll(raw syscall.RawConn, bufs [][]byte) (rest [][]byte, written int64, err error) {
	for len(bufs) > 0 {
		k := min(len(bufs), maxIOV)
		n, want, werr := w.writev(raw, bufs[:k])
		written += int64(n)
		if n < want || werr != nil {
			return append(trimWritten(bufs[:k], n), bufs[k:]...), written, werr
		}
		bufs = bufs[k:]
	}
	return nil, written, nil
}

// writev writes bufs (none empty) with one writev that does not wait.
func (w *vecWriter) writev(raw syscall.RawConn, bufs [][]byte) (n, want int, err error) {
	w.iov = w.iov[:0]
	for _, b := range bufs {
		v := unix.Iovec{Base: &b[0]}
		v.SetLen(len(b))
		w.iov = append(w.iov, v)
		want += len(b)
	}
	var written uintptr
	var errno syscall.Errno
	err = raw.Write(func(fd uintptr) bool {
		written, _, errno = syscall.Syscall(unix.SYS_WRITEV, fd, uintptr(unsafe.Pointer(&w.iov[0])), uintptr(len(w.iov)))
		return true // never wait for the socket: the blocking writer does that
	})
	runtime.KeepAlive(bufs)
	clear(w.iov) // drop the pointers so the frames can be collected
	switch {
	case err != nil:
		return 0, want, err
	case errno != 0:
		return 0, want, errno
	}
	return int(written), want, nil
}

func isEAGAIN(err error) bool { return err == unix.EAGAIN }
