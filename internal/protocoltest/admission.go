package protocoltest

import (
	"bufio"
	"context"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/require"

	ws "github.com/vortechron/go-ws"
	"github.com/vortechron/go-ws/internal/wstest"
)

func originRefused(t *testing.T, newServer NewServer) {
	errs := newErrors()
	hub, u := newServer(t, ws.Config{}, &ws.Options{ErrorHandler: errs.handle})
	pu, err := url.Parse(u)
	require.NoError(t, err)

	resp, body := wstest.DialRefused(t, u, http.Header{"Origin": {"http://evil.example"}})
	require.Equal(t, http.StatusForbidden, resp.StatusCode, "status for a foreign Origin")
	require.Contains(t, body, "origin http://evil.example is not allowed")
	var ce *ws.ConnectionError
	errs.next(t, &ce)
	require.Equal(t, http.StatusForbidden, ce.StatusCode, "ConnectionError.StatusCode")

	c := wstest.Dial(t, u, http.Header{"Origin": {"http://" + pu.Host}}) // same origin
	c.Quiet()
	require.Equal(t, int64(1), hub.Stats().ConnectionsRefused, "Stats.ConnectionsRefused")
}

// dialEventually dials until the handshake succeeds: a slot freed by a
// closed connection comes back shortly after the client sees the close.
func dialEventually(t *testing.T, u string) *wstest.Client {
	t.Helper()
	var c *wstest.Client
	require.Eventually(t, func() bool {
		conn, resp, err := websocket.DefaultDialer.Dial(u, nil)
		if resp != nil {
			resp.Body.Close()
		}
		if err != nil {
			return false
		}
		c = wstest.New(t, conn)
		return true
	}, readTimeout, 5*time.Millisecond, "no connection slot came free")
	return c
}

func maxConnections(t *testing.T, newServer NewServer) {
	hub, u := newServer(t, ws.Config{MaxConnections: 1}, nil)
	first := wstest.Dial(t, u, nil)
	first.Quiet()
	resp, body := wstest.DialRefused(t, u, nil)
	require.Equal(t, http.StatusServiceUnavailable, resp.StatusCode, "status at MaxConnections")
	require.Contains(t, body, "MaxConnections")

	require.NoError(t, first.Conn.Close())
	dialEventually(t, u).Quiet()
	require.GreaterOrEqual(t, hub.Stats().ConnectionsRefused, int64(1), "Stats.ConnectionsRefused")
}

func maxConnectionsPerIP(t *testing.T, newServer NewServer) {
	_, u := newServer(t, ws.Config{MaxConnectionsPerIP: 2}, nil)
	wstest.Dial(t, u, nil).Quiet()
	wstest.Dial(t, u, nil).Quiet()
	resp, body := wstest.DialRefused(t, u, nil)
	require.Equal(t, http.StatusTooManyRequests, resp.StatusCode, "status at MaxConnectionsPerIP")
	require.Contains(t, body, "too many connections from 127.0.0.1")
}

type userKey struct{}

func middleware(t *testing.T, newServer NewServer) {
	var mu sync.Mutex
	var order []string
	record := func(name string) ws.Middleware {
		return ws.MiddlewareFunc(func(next http.Handler) http.Handler {
			return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				mu.Lock()
				order = append(order, name)
				mu.Unlock()
				next.ServeHTTP(w, r)
			})
		})
	}
	// auth refuses requests without a token and passes the token's user
	// on in the request context.
	auth := ws.MiddlewareFunc(func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			user, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
			if !ok {
				w.Header().Set("WWW-Authenticate", "Bearer")
				http.Error(w, "token required", http.StatusUnauthorized)
				return
			}
			next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), userKey{}, user)))
		})
	})
	errs := newErrors()
	connectedAs := make(chan any, 1)
	hub, u := newServer(t, ws.Config{}, &ws.Options{
		Middleware: []ws.Middleware{record("first"), auth, record("last")},
		GetUserID: func(r *http.Request) string {
			user, _ := r.Context().Value(userKey{}).(string)
			return user
		},
		AuthHandler:  func(userID, channel string) bool { return channel == "private-user."+userID },
		ErrorHandler: errs.handle,
		OnConnect:    func(c *ws.Client) { connectedAs <- c.Context().Value(userKey{}) },
	})

	resp, body := wstest.DialRefused(t, u, nil)
	require.Equal(t, http.StatusUnauthorized, resp.StatusCode, "status from the refusing middleware")
	require.Equal(t, "Bearer", resp.Header.Get("WWW-Authenticate"), "header set by the middleware")
	require.Equal(t, "token required\n", body, "body written by the middleware")
	mu.Lock()
	require.Equal(t, []string{"first"}, order, "middleware run for a refused request")
	order = nil
	mu.Unlock()

	c := wstest.Dial(t, u, http.Header{"Authorization": {"Bearer alice"}})
	c.Subscribe("private-user.alice") // GetUserID saw the middleware's request
	require.Equal(t, "alice", <-connectedAs, "value the middleware put in Client.Context()")
	mu.Lock()
	require.Equal(t, []string{"first", "last"}, order, "middleware order")
	mu.Unlock()
	require.Equal(t, int64(0), hub.Stats().ConnectionsRefused, "a middleware refusal is not a hub refusal")
	require.Empty(t, errs.ch, "ErrorHandler calls for a middleware refusal")
}

func notWebSocket(t *testing.T, newServer NewServer) {
	errs := newErrors()
	hub, u := newServer(t, ws.Config{MaxConnections: 1}, &ws.Options{ErrorHandler: errs.handle})
	tr := &http.Transport{DisableKeepAlives: true}
	t.Cleanup(tr.CloseIdleConnections)
	resp, err := (&http.Client{Transport: tr, Timeout: readTimeout}).Get(httpURL(t, u))
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusBadRequest, resp.StatusCode, "status for a plain GET")
	require.Equal(t, "13", resp.Header.Get("Sec-Websocket-Version"), "header Sec-Websocket-Version")

	var ce *ws.ConnectionError
	errs.next(t, &ce)
	require.Equal(t, "upgrade", ce.Op, "ConnectionError.Op")
	require.Equal(t, int64(1), hub.Stats().Errors["connection"], `Stats.Errors["connection"]`)
	wstest.Dial(t, u, nil).Quiet() // the failed upgrade gave its slot back
}

// handshakeStrictness sends raw handshakes that RFC 6455 section 4.2.1
// forbids and checks each is answered as specified, the same way on every
// HTTP stack: HTTP/1.0, no Host, a key that is not 16 bytes, and a
// version other than 13 (426 with Sec-WebSocket-Version: 13). A
// well-formed one is upgraded.
func handshakeStrictness(t *testing.T, newServer NewServer) {
	_, u := newServer(t, ws.Config{}, nil)
	parsed, err := url.Parse(u)
	require.NoError(t, err)
	const key = "dGhlIHNhbXBsZSBub25jZQ==" // 16 bytes, from RFC 6455
	for _, tc := range []struct {
		name, proto, host, key, version string
		want                            int
	}{
		{"well-formed", "HTTP/1.1", parsed.Host, key, "13", http.StatusSwitchingProtocols},
		{"HTTP/1.0", "HTTP/1.0", parsed.Host, key, "13", http.StatusBadRequest},
		{"no Host", "HTTP/1.1", "", key, "13", http.StatusBadRequest},
		{"key of 4 bytes", "HTTP/1.1", parsed.Host, "dGVzdA==", "13", http.StatusBadRequest},
		{"key not base64", "HTTP/1.1", parsed.Host, "not base64 at all!!!!!!=", "13", http.StatusBadRequest},
		{"version 8", "HTTP/1.1", parsed.Host, key, "8", http.StatusUpgradeRequired},
	} {
		t.Run(tc.name, func(t *testing.T) {
			conn, err := net.DialTimeout("tcp", parsed.Host, readTimeout)
			require.NoError(t, err)
			defer conn.Close()
			require.NoError(t, conn.SetDeadline(time.Now().Add(readTimeout)))
			req := "GET " + parsed.Path + " " + tc.proto + "\r\n"
			if tc.host != "" {
				req += "Host: " + tc.host + "\r\n"
			}
			req += "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: " + tc.key +
				"\r\nSec-WebSocket-Version: " + tc.version + "\r\n\r\n"
			_, err = conn.Write([]byte(req))
			require.NoError(t, err)
			resp, err := http.ReadResponse(bufio.NewReader(conn), &http.Request{Method: http.MethodGet})
			require.NoError(t, err, "reading the answer")
			resp.Body.Close()
			require.Equal(t, tc.want, resp.StatusCode, "status: got %s", resp.Status)
			if tc.want == http.StatusUpgradeRequired {
				require.Equal(t, "13", resp.Header.Get("Sec-WebSocket-Version"), "a 426 names the version the server speaks")
			}
		})
	}
}
