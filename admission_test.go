package ws_test

import (
	"errors"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/require"

	ws "github.com/vortechron/go-ws"
)

// dialResult is the outcome of one of many concurrent dials.
type dialResult struct {
	conns    []*websocket.Conn
	statuses map[int]int // HTTP status of refused dials
	failed   []error     // dials that got no HTTP answer at all
}

// dialMany dials url count times at once, from 127.0.0.1, and returns
// the upgraded connections (closed in t.Cleanup) and the refusals.
func dialMany(tb testing.TB, url string, count int, header http.Header) *dialResult {
	tb.Helper()
	d := &websocket.Dialer{HandshakeTimeout: 15 * time.Second}
	var mu sync.Mutex
	res := &dialResult{statuses: make(map[int]int)}
	var wg sync.WaitGroup
	start := make(chan struct{})
	for range count {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			conn, resp, err := d.Dial(url, header)
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				res.conns = append(res.conns, conn)
			case resp != nil:
				res.statuses[resp.StatusCode]++
			default:
				res.failed = append(res.failed, err)
			}
			if resp != nil {
				resp.Body.Close()
			}
		}()
	}
	close(start)
	wg.Wait()
	tb.Cleanup(res.close)
	return res
}

func (r *dialResult) close() {
	for _, c := range r.conns {
		c.Close()
	}
}

// TestConnectionLimitsAreExact fires 500 concurrent dials at a hub whose
// limit is 100. Exactly 100 are upgraded and 400 refused before the
// upgrade with the limit's status; every refusal reaches ErrorHandler as
// a *ConnectionError. When the 100 close, the counts return to zero and
// a fresh round of 100 fits again.
func TestConnectionLimitsAreExact(t *testing.T) {
	const limit, attempts = 100, 500
	for _, tc := range []struct {
		name   string
		cfg    ws.Config
		status int
	}{
		{"MaxConnections", ws.Config{MaxConnections: limit}, http.StatusServiceUnavailable},
		{"MaxConnectionsPerIP", ws.Config{MaxConnectionsPerIP: limit}, http.StatusTooManyRequests},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var errs errorLog
			n := newNode(t, nil, nil, tc.cfg, &ws.Options{ErrorHandler: errs.handle})

			r := dialMany(t, n.url, attempts, nil)
			require.Empty(t, r.failed, "dials without an HTTP answer")
			require.Len(t, r.conns, limit, "got %d upgraded, want %d", len(r.conns), limit)
			require.Equal(t, map[int]int{tc.status: attempts - limit}, r.statuses)
			require.Eventually(t, func() bool { return n.hub.Stats().Connections == limit }, 10*time.Second, time.Millisecond)
			require.Equal(t, int64(attempts-limit), n.hub.Stats().ConnectionsRefused)
			refusals := 0
			for _, err := range errs.since(0) {
				var ce *ws.ConnectionError
				require.True(t, errors.As(err, &ce), "ErrorHandler got %T %v", err, err)
				require.Equal(t, "admit", ce.Op)
				require.Equal(t, tc.status, ce.StatusCode)
				refusals++
			}
			require.Equal(t, attempts-limit, refusals)

			r.close()
			require.Eventually(t, func() bool { return n.hub.Stats().Connections == 0 }, 10*time.Second, time.Millisecond)

			again := dialMany(t, n.url, limit, nil)
			require.Len(t, again.conns, limit, "after every connection closed, a fresh round of %d must fit; refused: %v %v",
				limit, again.statuses, again.failed)
			one := dialMany(t, n.url, 1, nil)
			require.Equal(t, map[int]int{tc.status: 1}, one.statuses)
			t.Logf("%d concurrent dials: %d upgraded, refused %v, %d ConnectionErrors; after close Connections=0; fresh round: %d upgraded, one more refused %v",
				attempts, len(r.conns), r.statuses, refusals, len(again.conns), one.statuses)
		})
	}
}

// TestFailedUpgradesReleaseTheSlot: a request that passes admission but
// fails the upgrade (not a WebSocket handshake) gives its slot back.
func TestFailedUpgradesReleaseTheSlot(t *testing.T) {
	n := newNode(t, nil, nil, ws.Config{MaxConnections: 1, MaxConnectionsPerIP: 1}, nil)
	httpURL := "http" + strings.TrimPrefix(n.url, "ws")
	for range 5 {
		resp, err := http.Get(httpURL)
		require.NoError(t, err)
		resp.Body.Close()
		require.Equal(t, http.StatusBadRequest, resp.StatusCode, "a plain GET fails the upgrade")
	}
	c := n.dial(t, "")
	c.subscribe("x")
}

// TestOriginValidation covers same-origin by default, wildcard patterns,
// and origins crafted to slip past a careless wildcard.
func TestOriginValidation(t *testing.T) {
	allowed := []string{"https://*.example.com", "https://app.test", "http://localhost:*"}
	cases := []struct {
		name    string
		allowed []string
		origin  string // "self" means the server's own origin
		want    int
	}{
		{"no Origin header (not a browser)", nil, "", http.StatusSwitchingProtocols},
		{"same origin by default", nil, "self", http.StatusSwitchingProtocols},
		{"other origin by default", nil, "https://evil.com", http.StatusForbidden},
		{"opaque origin by default", nil, "null", http.StatusForbidden},
		{"wildcard subdomain", allowed, "https://a.example.com", http.StatusSwitchingProtocols},
		{"wildcard nested subdomain", allowed, "https://a.b.example.com", http.StatusSwitchingProtocols},
		{"wildcard is case-insensitive", allowed, "HTTPS://A.Example.COM", http.StatusSwitchingProtocols},
		{"exact origin", allowed, "https://app.test", http.StatusSwitchingProtocols},
		{"explicit default port", allowed, "https://app.test:443", http.StatusSwitchingProtocols},
		{"wildcard port", allowed, "http://localhost:5173", http.StatusSwitchingProtocols},
		{"wildcard needs a label", allowed, "https://example.com", http.StatusForbidden},
		{"wildcard with empty label", allowed, "https://.example.com", http.StatusForbidden},
		{"path trick", allowed, "https://evil.com/.example.com", http.StatusForbidden},
		{"suffix trick", allowed, "https://a.example.com.evil.com", http.StatusForbidden},
		{"lookalike suffix", allowed, "https://evilexample.com", http.StatusForbidden},
		{"userinfo trick", allowed, "https://a.example.com@evil.com", http.StatusForbidden},
		{"query trick", allowed, "https://evil.com?.example.com", http.StatusForbidden},
		{"fragment trick", allowed, "https://evil.com#.example.com", http.StatusForbidden},
		{"port trick", allowed, "https://evil.com:.example.com", http.StatusForbidden},
		{"backslash trick", allowed, `https://evil.com\.example.com`, http.StatusForbidden},
		{"encoded slash trick", allowed, "https://evil.com%2f.example.com", http.StatusForbidden},
		{"wrong scheme", allowed, "http://a.example.com", http.StatusForbidden},
		{"wrong port", allowed, "https://a.example.com:8443", http.StatusForbidden},
		{"exact origin plus path", allowed, "https://app.test/x", http.StatusForbidden},
		{"exact origin as prefix", allowed, "https://app.test.evil.com", http.StatusForbidden},
		{"null against patterns", allowed, "null", http.StatusForbidden},
		{"allow all", []string{"*"}, "https://anything.example", http.StatusSwitchingProtocols},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var errs errorLog
			n := newNode(t, nil, nil, ws.Config{AllowedOrigins: tc.allowed}, &ws.Options{ErrorHandler: errs.handle})
			h := http.Header{}
			switch tc.origin {
			case "":
			case "self":
				h.Set("Origin", n.server.URL)
			default:
				h.Set("Origin", tc.origin)
			}
			conn, resp, err := websocket.DefaultDialer.Dial(n.url, h)
			require.NotNil(t, resp, "dial error %v", err)
			resp.Body.Close()
			require.Equal(t, tc.want, resp.StatusCode, "got status %d, want %d", resp.StatusCode, tc.want)
			if err == nil {
				conn.Close()
				return
			}
			errs.waitFor(t, 0, func(err error) bool {
				var ce *ws.ConnectionError
				return errors.As(err, &ce) && ce.StatusCode == http.StatusForbidden
			})
			require.Equal(t, int64(0), n.hub.Stats().ConnectionsTotal)
		})
	}
}

func TestInvalidOriginPatternIsAConfigError(t *testing.T) {
	err := ws.Config{AllowedOrigins: []string{"https://*.example.com/path"}}.Validate()
	var ce *ws.ConfigError
	require.ErrorAs(t, err, &ce)
	require.Equal(t, "AllowedOrigins", ce.Field)
	require.NoError(t, ws.Config{AllowedOrigins: []string{"*", "https://*.example.com", "http://[::1]:*"}}.Validate())
}
