package protocoltest

import (
	"net"
	"net/http"
	"net/url"
	"testing"

	"github.com/stretchr/testify/require"

	ws "github.com/vortechron/go-ws"
	"github.com/vortechron/go-ws/internal/wstest"
)

// identity is one way a client tells the server who it is.
type identity struct {
	getUserID func(r *http.Request) string
	// as returns the URL and header a client named user dials with.
	as func(wsURL, user string) (string, http.Header)
}

var fromHeader = identity{
	getUserID: func(r *http.Request) string { return r.Header.Get("X-User") },
	as:        func(u, user string) (string, http.Header) { return u, withUser(user) },
}

var fromQuery = identity{
	getUserID: func(r *http.Request) string { return r.URL.Query().Get("user") },
	as: func(u, user string) (string, http.Header) {
		return u + "?other=1&user=" + url.QueryEscape(user), nil
	},
}

var fromCookie = identity{
	getUserID: func(r *http.Request) string {
		ck, err := r.Cookie("session")
		if err != nil {
			return ""
		}
		return ck.Value
	},
	as: func(u, user string) (string, http.Header) {
		return u, http.Header{"Cookie": {"theme=dark; session=" + user + "; lang=en"}}
	},
}

// privateChannel checks that private-user.NAME is open to NAME only.
func privateChannel(id identity) func(t *testing.T, newServer NewServer) {
	return func(t *testing.T, newServer NewServer) {
		errs := newErrors()
		_, u := newServer(t, ws.Config{}, &ws.Options{
			GetUserID:    id.getUserID,
			AuthHandler:  func(userID, channel string) bool { return channel == "private-user."+userID },
			ErrorHandler: errs.handle,
		})
		alice := dialAs(t, id, u, "alice")
		alice.Subscribe("private-user.alice")
		alice.Send(map[string]any{"action": "subscribe", "channel": "private-user.bob"})
		alice.Expect(map[string]any{"type": "error", "code": ws.CodeUnauthorized, "action": "subscribe", "channel": "private-user.bob"})
		var ae *ws.AuthError
		errs.next(t, &ae)
		require.Equal(t, "alice", ae.UserID, "AuthError.UserID")

		anon := wstest.Dial(t, u, nil)
		anon.Send(map[string]any{"action": "subscribe", "channel": "private-user.alice"})
		anon.Expect(map[string]any{"type": "error", "code": ws.CodeUnauthorized, "channel": "private-user.alice"})
	}
}

// dialAs dials wsURL as user, the way id carries identity.
func dialAs(tb testing.TB, id identity, wsURL, user string) *wstest.Client {
	tb.Helper()
	u, h := id.as(wsURL, user)
	return wstest.Dial(tb, u, h)
}

// realRequest checks that GetUserID sees the handshake request as
// net/http would present it, and the Client what it was told.
func realRequest(t *testing.T, newServer NewServer) {
	type seen struct {
		method, path, query, host, remote, user, cookie, key string
	}
	got := make(chan seen, 1)
	connected := make(chan *ws.Client, 1)
	_, u := newServer(t, ws.Config{}, &ws.Options{
		GetUserID: func(r *http.Request) string {
			ck, _ := r.Cookie("session")
			var c string
			if ck != nil {
				c = ck.Value
			}
			got <- seen{r.Method, r.URL.Path, r.URL.RawQuery, r.Host, r.RemoteAddr,
				r.Header.Get("X-User"), c, r.Header.Get("Sec-Websocket-Key")}
			return r.Header.Get("X-User")
		},
		OnConnect: func(c *ws.Client) { connected <- c },
	})
	h := withUser("alice")
	h.Set("Cookie", "session=s3cret")
	c := wstest.Dial(t, u+"?a=1&b=two", h)
	c.Quiet()

	s := <-got
	pu, err := url.Parse(u)
	require.NoError(t, err)
	require.Equal(t, http.MethodGet, s.method, "method")
	require.Equal(t, pu.Path, s.path, "URL.Path")
	require.Equal(t, "a=1&b=two", s.query, "URL.RawQuery")
	require.Equal(t, pu.Host, s.host, "Host")
	require.Equal(t, "alice", s.user, "header X-User")
	require.Equal(t, "s3cret", s.cookie, "cookie session")
	require.NotEmpty(t, s.key, "header Sec-Websocket-Key")
	host, port, err := net.SplitHostPort(s.remote)
	require.NoError(t, err, "RemoteAddr %q is ip:port", s.remote)
	require.Equal(t, "127.0.0.1", host, "RemoteAddr IP")
	require.NotEqual(t, "0", port, "RemoteAddr port")
	require.Equal(t, c.Conn.LocalAddr().String(), s.remote, "RemoteAddr is the client's end of the TCP connection")

	sc := <-connected
	require.Equal(t, "alice", sc.UserID, "Client.UserID")
	require.Equal(t, s.remote, sc.RemoteAddr, "Client.RemoteAddr")
	require.Equal(t, "127.0.0.1", sc.RemoteIP, "Client.RemoteIP")
	require.NoError(t, sc.Context().Err(), "Client.Context() is live while the connection is")
}
