package ws

import (
	"net/http"
	"strconv"
	"strings"

	"github.com/gorilla/websocket"
)

// What a handshake negotiates besides the upgrade itself: a subprotocol
// (RFC 6455 section 1.9) and permessage-deflate (RFC 7692). Both are
// decided here, from the request alone, before the upgrade, the same way
// for every HTTP stack; the upgraders then only write the answer.

// negotiated is what a handshake agreed on.
type negotiated struct {
	subprotocol string // "" when none was selected
	deflate     bool   // permessage-deflate, no context takeover both ways
}

// deflateResponse is the extension answer to an accepted
// permessage-deflate offer: this server compresses every message on its
// own and asks the client to do the same, so no connection keeps a
// compression window between messages.
const deflateResponse = "permessage-deflate; server_no_context_takeover; client_no_context_takeover"

// negotiate decides the handshake's subprotocol and compression. A client
// that offers subprotocols of which the server (Config.Subprotocols)
// speaks none is refused with 400 and a reason naming both lists; status
// is 0 otherwise.
func (h *Hub) negotiate(r *http.Request) (n negotiated, status int, reason string) {
	offered := websocket.Subprotocols(r)
	if len(h.cfg.Subprotocols) > 0 && len(offered) > 0 {
		n.subprotocol = selectSubprotocol(h.cfg.Subprotocols, offered)
		if n.subprotocol == "" {
			return n, http.StatusBadRequest, "none of the offered subprotocols (" + strings.Join(offered, ", ") +
				") is spoken here; this server speaks " + strings.Join(h.cfg.Subprotocols, ", ")
		}
	}
	n.deflate = h.cfg.EnableCompression && deflateOffered(r.Header)
	return n, 0, ""
}

// selectSubprotocol returns the first of the server's protocols, in its
// order of preference, that the client offered, or "".
func selectSubprotocol(server, offered []string) string {
	for _, s := range server {
		for _, o := range offered {
			if o == s {
				return s
			}
		}
	}
	return ""
}

// deflateOffered reports whether the request offers permessage-deflate in
// a form this server can accept with deflateResponse. An offer is
// accepted when each of its parameters appears at most once and is one of:
//
//   - server_no_context_takeover and client_no_context_takeover, without
//     a value: the answer carries both anyway;
//   - client_max_window_bits, without a value or with 8 to 15: the client
//     may use any window, and the inflater reads them all.
//
// An offer with server_max_window_bits is declined: Go's compressor
// always uses a 32 KiB window, and the upgraders cannot echo the
// parameter, which accepting even the value 15 requires. An offer with
// any other parameter is declined too, as RFC 7692 section 5 asks. A
// header value that does not parse is ignored whole; the client may offer
// several alternatives, and one acceptable is enough.
func deflateOffered(h http.Header) bool {
	for _, v := range h.Values("Sec-WebSocket-Extensions") {
		offers, ok := parseExtensions(v)
		if !ok {
			continue
		}
		for _, o := range offers {
			if o.name == "permessage-deflate" && deflateParamsOK(o.params) {
				return true
			}
		}
	}
	return false
}

func deflateParamsOK(params []extParam) bool {
	seen := map[string]bool{}
	for _, p := range params {
		if seen[p.name] {
			return false
		}
		seen[p.name] = true
		switch p.name {
		case "server_no_context_takeover", "client_no_context_takeover":
			if p.hasValue {
				return false
			}
		case "client_max_window_bits":
			if p.hasValue && !windowBits(p.value) {
				return false
			}
		default: // server_max_window_bits, or unknown
			return false
		}
	}
	return true
}

// windowBits reports whether v is a window size of 8 to 15 written as RFC
// 7692 section 7.1.2 asks (decimal, no leading zero).
func windowBits(v string) bool {
	switch v {
	case "8", "9", "10", "11", "12", "13", "14", "15":
		return true
	}
	return false
}

// extension is one offer of a Sec-WebSocket-Extensions header.
type extension struct {
	name   string
	params []extParam
}

type extParam struct {
	name, value string
	hasValue    bool
}

// parseExtensions parses one Sec-WebSocket-Extensions header value (RFC
// 6455 section 9.1): extensions separated by commas, each a token
// followed by parameters, token or token=(token / quoted-string),
// separated by semicolons. ok is false if any of it is malformed.
func parseExtensions(v string) (exts []extension, ok bool) {
	s := v
	for {
		var name string
		name, s = nextToken(skipSpace(s))
		if name == "" {
			return nil, false
		}
		ext := extension{name: name}
		for s = skipSpace(s); strings.HasPrefix(s, ";"); s = skipSpace(s) {
			var p extParam
			p.name, s = nextToken(skipSpace(s[1:]))
			if p.name == "" {
				return nil, false
			}
			if s = skipSpace(s); strings.HasPrefix(s, "=") {
				p.hasValue = true
				if p.value, s, ok = tokenOrQuoted(skipSpace(s[1:])); !ok {
					return nil, false
				}
			}
			ext.params = append(ext.params, p)
		}
		exts = append(exts, ext)
		if s == "" {
			return exts, true
		}
		if s[0] != ',' {
			return nil, false
		}
		s = s[1:]
	}
}

func skipSpace(s string) string {
	return strings.TrimLeft(s, " \t")
}

// nextToken splits s after its leading token (RFC 7230 tchar).
func nextToken(s string) (token, rest string) {
	i := 0
	for i < len(s) && isTokenChar(s[i]) {
		i++
	}
	return s[:i], s[i:]
}

// tokenOrQuoted splits s after its leading token or quoted string, the
// latter unquoted (a quoted parameter value must hold a token).
func tokenOrQuoted(s string) (value, rest string, ok bool) {
	if !strings.HasPrefix(s, `"`) {
		value, rest = nextToken(s)
		return value, rest, value != ""
	}
	var b strings.Builder
	for i := 1; i < len(s); i++ {
		switch c := s[i]; {
		case c == '"':
			value = b.String()
			_, bad := nextToken(value)
			return value, s[i+1:], value != "" && bad == ""
		case c == '\\' && i+1 < len(s):
			i++
			b.WriteByte(s[i])
		default:
			b.WriteByte(c)
		}
	}
	return "", "", false
}

func isTokenChar(c byte) bool {
	if c <= ' ' || c >= 0x7f {
		return false
	}
	return !strings.ContainsRune(`()<>@,;:\"/[]?={}`, rune(c))
}

// validSubprotocol reports whether p may be offered and selected: a
// non-empty RFC 7230 token.
func validSubprotocol(p string) bool {
	t, rest := nextToken(p)
	return t != "" && rest == ""
}

// validSubprotocols checks Config.Subprotocols: tokens, each once.
func validSubprotocols(list []string) []error {
	var errs []error
	seen := map[string]bool{}
	for _, p := range list {
		switch {
		case !validSubprotocol(p):
			errs = append(errs, &ConfigError{Field: "Subprotocols",
				Reason: strconv.Quote(p) + " is not a token (letters, digits and !#$%&'*+-.^_`|~, no spaces)"})
		case seen[p]:
			errs = append(errs, &ConfigError{Field: "Subprotocols", Reason: strconv.Quote(p) + " is listed twice"})
		}
		seen[p] = true
	}
	return errs
}
