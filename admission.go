package ws

import (
	"net"
	"net/http"
	"net/url"
	"path"
	"strconv"
	"strings"
)

// admit takes a connection slot for ip, or says which limit refused it.
func (h *Hub) admit(ip string) (status int, reason string) {
	h.admitMu.Lock()
	defer h.admitMu.Unlock()
	if m := h.cfg.MaxConnections; m > 0 && h.conns >= m {
		return http.StatusServiceUnavailable, "server is at MaxConnections (" + strconv.Itoa(m) + ")"
	}
	if m := h.cfg.MaxConnectionsPerIP; m > 0 && h.perIP[ip] >= m {
		return http.StatusTooManyRequests, "too many connections from " + ip + " (limit " + strconv.Itoa(m) + ")"
	}
	h.conns++
	h.perIP[ip]++
	return 0, ""
}

// release gives back the slot taken by admit.
func (h *Hub) release(ip string) {
	h.admitMu.Lock()
	defer h.admitMu.Unlock()
	h.conns--
	if h.perIP[ip] <= 1 {
		delete(h.perIP, ip)
	} else {
		h.perIP[ip]--
	}
}

// remoteIP is the IP of the TCP peer. X-Forwarded-For is not trusted here;
// RateLimitMiddleware has an opt-in for it.
func remoteIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// originAllowed applies Config.AllowedOrigins, or same-origin when it is
// empty. Requests without an Origin header are not from browsers and are
// allowed.
func (h *Hub) originAllowed(r *http.Request) bool {
	origin := r.Header.Get("Origin")
	if origin == "" {
		return true
	}
	if len(h.cfg.AllowedOrigins) == 0 {
		u, err := url.Parse(origin)
		return err == nil && strings.EqualFold(u.Host, r.Host)
	}
	for _, pattern := range h.cfg.AllowedOrigins {
		if originMatch(pattern, origin) {
			return true
		}
	}
	return false
}

// originMatch matches origin against pattern, where "*" matches any run
// of characters other than "/" (so https://*.example.com matches
// https://app.example.com) and a lone "*" matches every origin.
func originMatch(pattern, origin string) bool {
	if pattern == "*" {
		return true
	}
	if !strings.Contains(pattern, "*") {
		return strings.EqualFold(pattern, origin)
	}
	ok, err := path.Match(strings.ToLower(pattern), strings.ToLower(origin))
	return err == nil && ok
}
