package servers

import (
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// closer closes the ceiling's connections once their peer has closed
// them, without a goroutine or a read per connection: one epoll instance
// watches every connection for EPOLLRDHUP and one goroutine waits on it.
// A closed connection's next write fails, and its shard drops it then.
// Without it a storm of reconnections would leave every dropped socket
// open (in CLOSE-WAIT) until the process runs out of files.
type closer struct {
	epfd int

	mu    sync.Mutex
	conns map[uint64]*ceilingConn // guarded by mu
	next  uint64                  // guarded by mu
}

func newCloser() (*closer, error) {
	fd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, err
	}
	return &closer{epfd: fd, conns: map[uint64]*ceilingConn{}}, nil
}

// watch adds c, whose socket is raw, to the watched connections.
func (cl *closer) watch(c *ceilingConn, raw syscall.RawConn) error {
	cl.mu.Lock()
	cl.next++
	id := cl.next
	cl.conns[id] = c
	cl.mu.Unlock()
	var cerr error
	err := raw.Control(func(fd uintptr) {
		ev := unix.EpollEvent{Events: unix.EPOLLRDHUP}
		// The event carries id, not the descriptor, which the kernel
		// may hand to a new connection once this one is closed.
		ev.Fd, ev.Pad = int32(id), int32(id>>32)
		cerr = unix.EpollCtl(cl.epfd, unix.EPOLL_CTL_ADD, int(fd), &ev)
	})
	if err == nil {
		err = cerr
	}
	if err != nil {
		cl.mu.Lock()
		delete(cl.conns, id)
		cl.mu.Unlock()
	}
	return err
}

// run closes connections as their peers hang up, until done.
func (cl *closer) run(done <-chan struct{}) {
	defer unix.Close(cl.epfd)
	events := make([]unix.EpollEvent, 256)
	for {
		select {
		case <-done:
			return
		default:
		}
		n, err := unix.EpollWait(cl.epfd, events, 100)
		if err != nil && err != unix.EINTR {
			return
		}
		for _, ev := range events[:max(n, 0)] {
			id := uint64(uint32(ev.Fd)) | uint64(uint32(ev.Pad))<<32
			cl.mu.Lock()
			c := cl.conns[id]
			delete(cl.conns, id)
			cl.mu.Unlock()
			if c != nil {
				c.conn.Close() // also removes it from the epoll set
			}
		}
	}
}
