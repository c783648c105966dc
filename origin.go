package ws

import (
	"net/http"
	"strings"
)

// originAllowed applies Config.AllowedOrigins, or same-origin when it is
// empty. Requests without an Origin header are not from browsers and are
// allowed; browsers always send one on a WebSocket handshake.
func (h *Hub) originAllowed(r *http.Request) bool {
	origin := r.Header.Get("Origin")
	if origin == "" {
		return true
	}
	o, ok := parseOrigin(origin, false)
	if !ok {
		return false
	}
	if len(h.cfg.AllowedOrigins) == 0 {
		hostport := o.host
		if o.port != "" {
			hostport += ":" + o.port
		}
		return strings.EqualFold(hostport, r.Host)
	}
	for _, pattern := range h.cfg.AllowedOrigins {
		if pattern == "*" {
			return true
		}
		if p, ok := parseOrigin(pattern, true); ok && p.match(o) {
			return true
		}
	}
	return false
}

// origin is a parsed origin, or origin pattern: scheme://host[:port],
// lowercased.
type origin struct {
	scheme, host, port string
}

// parseOrigin splits s into scheme, host and port. It refuses anything a
// browser's Origin header cannot hold: userinfo, a path, a query or a
// fragment, and host characters other than letters, digits, '.' and '-'
// (or a bracketed IPv6 literal). In a pattern (wild) the host and the
// port may also hold '*'. Since a host cannot contain '/', '@', '?', '#'
// or ':', no origin can make a pattern's literal suffix appear anywhere
// but at the end of its host.
func parseOrigin(s string, wild bool) (origin, bool) {
	s = strings.ToLower(s)
	i := strings.Index(s, "://")
	if i <= 0 {
		return origin{}, false
	}
	o := origin{scheme: s[:i]}
	for j := 0; j < len(o.scheme); j++ {
		c := o.scheme[j]
		if !(c >= 'a' && c <= 'z' || j > 0 && (c >= '0' && c <= '9' || c == '+' || c == '-' || c == '.')) {
			return origin{}, false
		}
	}
	rest := s[i+3:]
	if strings.HasPrefix(rest, "[") { // IPv6 literal
		end := strings.IndexByte(rest, ']')
		if end < 0 {
			return origin{}, false
		}
		o.host, rest = rest[:end+1], rest[end+1:]
		for j := 1; j < len(o.host)-1; j++ {
			if c := o.host[j]; !(isHex(c) || c == ':' || c == '.') {
				return origin{}, false
			}
		}
		if rest != "" && rest[0] != ':' {
			return origin{}, false
		}
	} else {
		end := strings.IndexByte(rest, ':')
		if end < 0 {
			end = len(rest)
		}
		o.host, rest = rest[:end], rest[end:]
		if o.host == "" {
			return origin{}, false
		}
		for j := 0; j < len(o.host); j++ {
			c := o.host[j]
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '.' || c == '-' || wild && c == '*') {
				return origin{}, false
			}
		}
	}
	if rest != "" { // ":port"
		o.port = rest[1:]
		if wild && o.port == "*" {
			return o, true
		}
		if o.port == "" || len(o.port) > 5 {
			return origin{}, false
		}
		for j := 0; j < len(o.port); j++ {
			if c := o.port[j]; c < '0' || c > '9' {
				return origin{}, false
			}
		}
	}
	return o, true
}

func isHex(c byte) bool { return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' }

// match reports whether origin o fits pattern p: same scheme, same port
// (a missing port is the scheme's default; "*" is any port) and a host
// that matches p's host, where each '*' stands for one or more host
// characters, dots included (https://*.example.com matches
// https://a.example.com and https://a.b.example.com, never
// https://example.com or https://a.example.com.evil.com).
func (p origin) match(o origin) bool {
	if p.scheme != o.scheme {
		return false
	}
	if p.port != "*" && defaultPort(p.scheme, p.port) != defaultPort(o.scheme, o.port) {
		return false
	}
	return hostMatch(p.host, o.host)
}

func defaultPort(scheme, port string) string {
	if port != "" {
		return port
	}
	switch scheme {
	case "http", "ws":
		return "80"
	case "https", "wss":
		return "443"
	}
	return ""
}

// hostMatch matches host against pattern, where '*' matches one or more
// bytes. It is the usual backtracking glob: O(len(pattern)*len(host)) at
// worst, with no recursion.
func hostMatch(pattern, host string) bool {
	px, hx := 0, 0
	star, mark := -1, 0 // position after the last '*', and where it began matching
	for hx < len(host) {
		switch {
		case px < len(pattern) && pattern[px] == '*':
			star = px + 1
			hx++ // '*' takes at least one byte
			mark = hx
			px++
		case px < len(pattern) && pattern[px] == host[hx]:
			px++
			hx++
		case star >= 0:
			mark++ // let the last '*' take one more byte
			hx = mark
			px = star
		default:
			return false
		}
	}
	return px == len(pattern) // a '*' left over has nothing to take
}
