package ws

import (
	"encoding/base64"
	"net/http"
	"strings"
)

// checkHandshake applies RFC 6455 section 4.2.1 to a request that asks
// for a WebSocket upgrade, the same way for every HTTP stack (ServeWS and
// the adaptors): HTTP/1.1 or later, a Host, a Sec-WebSocket-Key that is
// the base64 of 16 bytes, and version 13, else 426 Upgrade Required (the
// caller adds Sec-WebSocket-Version: 13 so the client learns what to
// speak). A request that does not ask for an upgrade at all is left to the
// upgrader, which answers 400. It returns 0 when the request is fine.
func checkHandshake(r *http.Request) (status int, reason string) {
	if !headerHasToken(r.Header, "Upgrade", "websocket") {
		return 0, ""
	}
	switch {
	case !r.ProtoAtLeast(1, 1):
		return http.StatusBadRequest, "a WebSocket handshake needs HTTP/1.1 or later"
	case r.Host == "":
		return http.StatusBadRequest, "a WebSocket handshake needs a Host header"
	case !validKey(r.Header.Get("Sec-WebSocket-Key")):
		return http.StatusBadRequest, "Sec-WebSocket-Key must be the base64 encoding of 16 bytes"
	case r.Header.Get("Sec-WebSocket-Version") != "13":
		return http.StatusUpgradeRequired, "unsupported Sec-WebSocket-Version; this server speaks 13"
	}
	return 0, ""
}

func validKey(k string) bool {
	if len(k) != 24 {
		return false
	}
	b, err := base64.StdEncoding.DecodeString(k)
	return err == nil && len(b) == 16
}

// headerHasToken reports whether the comma-separated header name holds
// token, ignoring case.
func headerHasToken(h http.Header, name, token string) bool {
	for _, v := range h.Values(name) {
		for _, t := range strings.Split(v, ",") {
			if strings.EqualFold(strings.TrimSpace(t), token) {
				return true
			}
		}
	}
	return false
}
