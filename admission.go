package ws

import (
	"net"
	"net/http"
	"net/netip"
	"strconv"
)

// admit takes a connection slot for the per-IP key (see ipKey), or says
// which limit refused it. Every slot taken is given back exactly once by
// release; both run under admitMu, so the counts are exact however many
// requests race.
func (h *Hub) admit(key string) (status int, reason string) {
	h.admitMu.Lock()
	defer h.admitMu.Unlock()
	if m := h.cfg.MaxConnections; m > 0 && h.conns >= m {
		return http.StatusServiceUnavailable, "server is at MaxConnections (" + strconv.Itoa(m) + ")"
	}
	if m := h.cfg.MaxConnectionsPerIP; m > 0 && h.perIP[key] >= m {
		return http.StatusTooManyRequests, "too many connections from " + key + " (MaxConnectionsPerIP " + strconv.Itoa(m) + ")"
	}
	h.conns++
	h.perIP[key]++
	return 0, ""
}

// release gives back the slot taken by admit. An IP with no connection
// left is deleted, so perIP holds only IPs with open connections.
func (h *Hub) release(key string) {
	h.admitMu.Lock()
	defer h.admitMu.Unlock()
	h.conns--
	if h.perIP[key] <= 1 {
		delete(h.perIP, key)
	} else {
		h.perIP[key]--
	}
}

// clientIPKey is the request-context key under which RateLimitMiddleware
// stores the client IP it resolved through a trusted proxy.
type clientIPKey struct{}

// remoteIP is the client IP of r: the one RateLimitMiddleware resolved
// from X-Forwarded-For when the peer is a trusted proxy, otherwise the
// TCP peer's. X-Forwarded-For is never read here: a header is whatever
// the client wants it to be.
func remoteIP(r *http.Request) string {
	if ip, ok := r.Context().Value(clientIPKey{}).(string); ok && ip != "" {
		return ip
	}
	return peerIP(r)
}

// peerIP is the IP of the TCP peer, IPv4-mapped IPv6 addresses unmapped.
func peerIP(r *http.Request) string {
	if ap, err := netip.ParseAddrPort(r.RemoteAddr); err == nil {
		return ap.Addr().Unmap().WithZone("").String()
	}
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// ipKey is what per-IP limits count under: the address itself for IPv4,
// and its /64 network for IPv6, because one IPv6 host usually has a
// whole /64 to pick source addresses from.
func ipKey(ip string) string {
	a, err := netip.ParseAddr(ip)
	if err != nil {
		return ip
	}
	a = a.Unmap().WithZone("")
	if a.Is4() {
		return a.String()
	}
	p, err := a.Prefix(64)
	if err != nil {
		return a.String()
	}
	return p.String()
}
