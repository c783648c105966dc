package ws

import (
	"container/list"
	"context"
	"math"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// Defaults of RateLimitMiddleware.
const (
	// DefaultConnectRate attempts per DefaultConnectInterval are allowed
	// from one IP, all of them at once if it likes (the burst). That is
	// far more than one browser needs, reconnects included, and still
	// lets a small office behind one NAT reconnect after a restart.
	DefaultConnectRate     = 120
	DefaultConnectInterval = time.Minute
	// DefaultMaxTrackedIPs bounds the IPs the middleware remembers.
	DefaultMaxTrackedIPs = 10000
)

// IPRateLimiter is the Middleware returned by RateLimitMiddleware: a
// limit on new connection attempts per client IP, applied before the
// upgrade. It is safe for concurrent use.
//
// Memory is bounded. An IP is remembered only until its bucket would be
// full again (burst/rate after its last attempt: a full bucket is the
// same as no entry), and never more than the WithMaxTrackedIPs most
// recently seen; past that the least recently seen is forgotten, which
// only gives it a fresh budget. Expired entries are dropped on the way
// (O(1) amortized per request); there is no background goroutine.
type IPRateLimiter struct {
	limit      rate.Limit
	burst      int
	n          int
	per        time.Duration
	maxTracked int
	trusted    []netip.Prefix
	onLimited  func(r *http.Request, err *RateLimitError)
	now        func() time.Time

	mu  sync.Mutex
	ips map[string]*list.Element // guarded by mu; values are *ipEntry
	lru list.List                // guarded by mu; most recently seen first
}

var _ Middleware = (*IPRateLimiter)(nil)

type ipEntry struct {
	key  string
	lim  *rate.Limiter
	seen time.Time
}

// RateLimitOption configures RateLimitMiddleware.
type RateLimitOption func(*IPRateLimiter)

// WithRate allows n connection attempts per interval from one IP, with a
// burst of n unless WithBurst says otherwise. It panics if n < 1 or
// per <= 0.
func WithRate(n int, per time.Duration) RateLimitOption {
	if n < 1 || per <= 0 {
		panic("ws: WithRate(" + strconv.Itoa(n) + ", " + per.String() + "): want n >= 1 and per > 0")
	}
	return func(l *IPRateLimiter) { l.n, l.per = n, per }
}

// WithBurst lets one IP make b attempts at once before the rate applies.
// It panics if b < 1.
func WithBurst(b int) RateLimitOption {
	if b < 1 {
		panic("ws: WithBurst(" + strconv.Itoa(b) + "): want b >= 1")
	}
	return func(l *IPRateLimiter) { l.burst = b }
}

// WithTrustedProxies names the reverse proxies in front of the server,
// as CIDRs ("10.0.0.0/8") or single IPs. When the TCP peer is one of
// them, the client IP is taken from X-Forwarded-For: the rightmost
// address that is not itself a trusted proxy. Without this option, or
// when the peer is not trusted, X-Forwarded-For is ignored, since any
// client can write it. The IP found is also what Config.MaxConnectionsPerIP
// counts and what Client.RemoteIP shows. It panics on a malformed CIDR.
func WithTrustedProxies(cidrs ...string) RateLimitOption {
	prefixes := make([]netip.Prefix, 0, len(cidrs))
	for _, s := range cidrs {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			a, aerr := netip.ParseAddr(s)
			if aerr != nil {
				panic("ws: WithTrustedProxies: " + strconv.Quote(s) + " is neither a CIDR nor an IP")
			}
			p = netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen())
		}
		prefixes = append(prefixes, p.Masked())
	}
	return func(l *IPRateLimiter) { l.trusted = append(l.trusted, prefixes...) }
}

// WithMaxTrackedIPs bounds how many IPs are remembered at once. It
// panics if n < 1.
func WithMaxTrackedIPs(n int) RateLimitOption {
	if n < 1 {
		panic("ws: WithMaxTrackedIPs(" + strconv.Itoa(n) + "): want n >= 1")
	}
	return func(l *IPRateLimiter) { l.maxTracked = n }
}

// WithOnRateLimited calls f for every refused attempt, with the limit and
// the client IP in err; pass the endpoint's ErrorHandler to see them
// there (ServeWS itself only returns ErrRequestRejected). f runs on the
// request's goroutine.
func WithOnRateLimited(f func(r *http.Request, err *RateLimitError)) RateLimitOption {
	return func(l *IPRateLimiter) { l.onLimited = f }
}

// RateLimitMiddleware limits new connection attempts per client IP at the
// HTTP layer, before any upgrade: an attempt over the limit gets HTTP 429
// Too Many Requests with a Retry-After header (whole seconds) and never
// reaches the hub. With no options it allows DefaultConnectRate attempts
// per DefaultConnectInterval per IP, and remembers at most
// DefaultMaxTrackedIPs IPs. IPv6 clients are limited per /64 network.
//
//	Middleware: []ws.Middleware{ws.RateLimitMiddleware()}
//	Middleware: []ws.Middleware{ws.RateLimitMiddleware(
//		ws.WithRate(10, time.Second), ws.WithBurst(20),
//		ws.WithTrustedProxies("10.0.0.0/8"))}
func RateLimitMiddleware(opts ...RateLimitOption) *IPRateLimiter {
	l := &IPRateLimiter{
		n:          DefaultConnectRate,
		per:        DefaultConnectInterval,
		maxTracked: DefaultMaxTrackedIPs,
		now:        time.Now,
		ips:        make(map[string]*list.Element),
	}
	for _, o := range opts {
		if o != nil {
			o(l)
		}
	}
	if l.burst == 0 {
		l.burst = l.n
	}
	l.limit = rate.Limit(float64(l.n) / l.per.Seconds())
	return l
}

// Handle refuses attempts over the limit and passes the others to next.
func (l *IPRateLimiter) Handle(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ip, viaProxy := l.clientIP(r)
		if wait, ok := l.allow(ipKey(ip)); !ok {
			secs := int(math.Ceil(wait.Seconds()))
			if secs < 1 {
				secs = 1
			}
			w.Header().Set("Retry-After", strconv.Itoa(secs))
			http.Error(w, "Too Many Requests: connection attempts from "+ip+" are over the limit of "+
				strconv.Itoa(l.n)+" per "+l.per.String()+"; retry in "+strconv.Itoa(secs)+"s", http.StatusTooManyRequests)
			if l.onLimited != nil {
				l.onLimited(r, &RateLimitError{RemoteIP: ip, Messages: l.n, Interval: l.per})
			}
			return
		}
		if viaProxy {
			r = r.WithContext(context.WithValue(r.Context(), clientIPKey{}, ip))
		}
		next.ServeHTTP(w, r)
	})
}

// Tracked returns how many IPs the limiter remembers now.
func (l *IPRateLimiter) Tracked() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.ips)
}

// allow takes one token for key, or says how long until one is there.
func (l *IPRateLimiter) allow(key string) (time.Duration, bool) {
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	l.expire(now)
	var e *ipEntry
	if el, ok := l.ips[key]; ok {
		e = el.Value.(*ipEntry)
		l.lru.MoveToFront(el)
	} else {
		for len(l.ips) >= l.maxTracked {
			l.drop(l.lru.Back())
		}
		e = &ipEntry{key: key, lim: rate.NewLimiter(l.limit, l.burst)}
		l.ips[key] = l.lru.PushFront(e)
	}
	e.seen = now
	res := e.lim.ReserveN(now, 1)
	if d := res.DelayFrom(now); d > 0 {
		res.CancelAt(now)
		return d, false
	}
	return 0, true
}

// expire forgets the IPs whose bucket is full again. The list is ordered
// by last attempt, so they are all at its back. l.mu is held.
func (l *IPRateLimiter) expire(now time.Time) {
	refill := time.Duration(float64(l.burst) / float64(l.limit) * float64(time.Second))
	for el := l.lru.Back(); el != nil; el = l.lru.Back() {
		if now.Sub(el.Value.(*ipEntry).seen) < refill {
			return
		}
		l.drop(el)
	}
}

func (l *IPRateLimiter) drop(el *list.Element) {
	delete(l.ips, el.Value.(*ipEntry).key)
	l.lru.Remove(el)
}

// clientIP returns the client IP of r and whether it came from
// X-Forwarded-For through a trusted proxy.
func (l *IPRateLimiter) clientIP(r *http.Request) (string, bool) {
	peer := peerIP(r)
	if len(l.trusted) == 0 {
		return peer, false
	}
	a, err := netip.ParseAddr(peer)
	if err != nil || !l.isTrusted(a) {
		return peer, false
	}
	// Walk the hops right to left: the rightmost untrusted address is the
	// one our own proxies saw; everything left of it is client-written.
	values := r.Header.Values("X-Forwarded-For")
	last := peer
	for i := len(values) - 1; i >= 0; i-- {
		v := values[i]
		for v != "" {
			hop := v
			if j := strings.LastIndexByte(v, ','); j >= 0 {
				hop, v = v[j+1:], v[:j]
			} else {
				v = ""
			}
			hop = strings.TrimSpace(hop)
			if hop == "" {
				continue
			}
			h, err := netip.ParseAddr(hop)
			if err != nil {
				return last, last != peer // garbage: stop at the last trusted hop
			}
			h = h.Unmap().WithZone("")
			if !l.isTrusted(h) {
				return h.String(), true
			}
			last = h.String()
		}
	}
	return last, last != peer
}

func (l *IPRateLimiter) isTrusted(a netip.Addr) bool {
	a = a.Unmap()
	for _, p := range l.trusted {
		if p.Contains(a) {
			return true
		}
	}
	return false
}
