package redistest

import (
	"net"
	"sync"
	"testing"
)

// Proxy forwards TCP connections to a server and can cut them, which
// breaks one client's path to Redis while others keep theirs (a network
// partition of one node), or stall them: stop forwarding without closing
// anything, as a network that drops every packet for a while does. It
// forwards to any TCP server, not only Redis.
type Proxy struct {
	// Addr is the address to connect to instead of the server's.
	Addr string

	l  net.Listener
	wg sync.WaitGroup // the accept loop and the copiers

	mu      sync.Mutex
	target  string                     // guarded by mu: where new connections go
	cut     bool                       // guarded by mu: new connections are closed at once (Cut or Refuse)
	conns   map[net.Conn]struct{}      // guarded by mu: both ends of every open pair
	stalled chan struct{}              // guarded by mu: non-nil while stalled, closed by Resume
	frozen  map[net.Conn]chan struct{} // guarded by mu: connections Freeze stopped, each with what Resume closes
}

// StartProxy listens on a free loopback port and forwards every
// connection to target. It stops, closing every connection, when tb ends.
func StartProxy(tb testing.TB, target string) *Proxy {
	tb.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatalf("proxy listen: %v", err)
	}
	p := &Proxy{Addr: l.Addr().String(), target: target, l: l, conns: make(map[net.Conn]struct{}), frozen: make(map[net.Conn]chan struct{})}
	p.wg.Add(1)
	go p.accept()
	tb.Cleanup(p.close)
	return p
}

// Cut closes every forwarded connection, and closes each new one as
// soon as it is accepted, until Restore.
func (p *Proxy) Cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cut = true
	for c := range p.conns {
		_ = c.Close()
	}
}

// Refuse closes each new connection as soon as it is accepted, until
// Restore, and leaves the open ones alone: they forward everything
// until either end closes. After the server is killed that is a node
// whose way back comes later than the server's, without dropping what
// the server sent before it died, which Cut would while those bytes
// wait in the proxy.
func (p *Proxy) Refuse() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cut = true
}

// Stall stops forwarding bytes, in both directions and on every
// connection, new ones included, until Resume; nothing is closed. What
// is sent meanwhile waits in the proxy and the kernel's buffers.
func (p *Proxy) Stall() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.stalled == nil {
		p.stalled = make(chan struct{})
	}
}

// Freeze stops forwarding bytes on the connections open now, in both
// directions, until Resume; nothing is closed and new connections
// forward as usual. That is one TCP connection going silent while the
// path to the server works (a NAT or load balancer that forgot the flow,
// a half-open connection).
func (p *Proxy) Freeze() {
	p.mu.Lock()
	defer p.mu.Unlock()
	thaw := make(chan struct{})
	for c := range p.conns {
		if _, ok := p.frozen[c]; !ok {
			p.frozen[c] = thaw
		}
	}
}

// Resume forwards again what Stall or Freeze held and everything after
// it.
func (p *Proxy) Resume() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.stalled != nil {
		close(p.stalled)
		p.stalled = nil
	}
	thawed := map[chan struct{}]bool{}
	for c, thaw := range p.frozen {
		if !thawed[thaw] {
			close(thaw)
			thawed[thaw] = true
		}
		delete(p.frozen, c)
	}
}

// gate returns a channel to wait on while src is stalled or frozen, or
// nil.
func (p *Proxy) gate(src net.Conn) chan struct{} {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.stalled != nil {
		return p.stalled
	}
	return p.frozen[src]
}

// Retarget sends new connections to target from now on and leaves the
// open ones where they are, as a DNS name or a virtual IP moved to
// another server does for clients that keep their connections.
func (p *Proxy) Retarget(target string) {
	p.mu.Lock()
	p.target = target
	p.mu.Unlock()
}

// Restore forwards new connections again, after Cut or Refuse.
func (p *Proxy) Restore() {
	p.mu.Lock()
	p.cut = false
	p.mu.Unlock()
}

func (p *Proxy) accept() {
	defer p.wg.Done()
	for {
		in, err := p.l.Accept()
		if err != nil {
			return // closed
		}
		p.mu.Lock()
		cut := p.cut
		p.mu.Unlock()
		if cut {
			_ = in.Close()
			continue
		}
		p.mu.Lock()
		target := p.target
		p.mu.Unlock()
		out, err := net.Dial("tcp", target)
		if err != nil {
			_ = in.Close()
			continue
		}
		p.mu.Lock()
		if p.cut { // cut while dialling
			p.mu.Unlock()
			_, _ = in.Close(), out.Close()
			continue
		}
		p.conns[in], p.conns[out] = struct{}{}, struct{}{}
		p.mu.Unlock()
		p.wg.Add(2)
		go p.pipe(in, out)
		go p.pipe(out, in)
	}
}

// pipe copies src to dst until either fails, then closes both. While
// the proxy is stalled it holds what it read.
func (p *Proxy) pipe(dst, src net.Conn) {
	defer p.wg.Done()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if g := p.gate(src); g != nil {
				<-g // Resume, or close, which resumes
			}
			if _, werr := dst.Write(buf[:n]); werr != nil {
				break
			}
		}
		if err != nil {
			break
		}
	}
	p.mu.Lock()
	delete(p.conns, dst)
	delete(p.conns, src)
	p.mu.Unlock()
	_ = dst.Close()
	_ = src.Close()
}

func (p *Proxy) close() {
	_ = p.l.Close()
	p.Cut()
	p.Resume()
	p.wg.Wait()
}
