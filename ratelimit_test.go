package ws_test

import (
	"errors"
	"fmt"
	"log"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/require"

	ws "github.com/vortechron/go-ws"
)

// TestRateLimitMiddlewareDefaults uses the README's form, with no
// arguments: of 500 concurrent attempts from one IP the default burst
// gets through, plus what refilled meanwhile (2 per second); the rest get
// 429 with Retry-After and never reach the hub.
func TestRateLimitMiddlewareDefaults(t *testing.T) {
	const attempts = 500
	opts := &ws.Options{Middleware: []ws.Middleware{ws.RateLimitMiddleware()}}
	n := newNode(t, nil, nil, ws.Config{}, opts)

	start := time.Now()
	r := dialMany(t, n.url, attempts, nil)
	refilled := int(time.Since(start).Seconds()*float64(ws.DefaultConnectRate)/ws.DefaultConnectInterval.Seconds()) + 1
	require.Empty(t, r.failed)
	require.GreaterOrEqual(t, len(r.conns), ws.DefaultConnectRate)
	require.LessOrEqual(t, len(r.conns), ws.DefaultConnectRate+refilled)
	require.Equal(t, map[int]int{http.StatusTooManyRequests: attempts - len(r.conns)}, r.statuses)

	// The next attempt is refused, unless a token came back meanwhile;
	// then the one after it is.
	upgraded := len(r.conns)
	var resp *http.Response
	for range 10 {
		conn, rsp, err := websocket.DefaultDialer.Dial(n.url, nil)
		require.NotNil(t, rsp, "dial: %v", err)
		rsp.Body.Close()
		if err == nil {
			t.Cleanup(func() { conn.Close() })
			upgraded++
			continue
		}
		resp = rsp
		break
	}
	require.NotNil(t, resp, "10 attempts in a row got through")
	require.Equal(t, http.StatusTooManyRequests, resp.StatusCode)
	require.Equal(t, "1", resp.Header.Get("Retry-After"), "one token comes back every 0.5s")

	// A client sees its upgrade a moment before the hub registers it.
	require.Eventually(t, func() bool { return n.hub.Stats().ConnectionsTotal == int64(upgraded) }, 5*time.Second, time.Millisecond)
	require.Equal(t, int64(0), n.hub.Stats().ConnectionsRefused, "refused attempts must not reach the hub")
	t.Logf("%d concurrent dials with the defaults: %d upgraded (burst %d + %d refilled), refused %v, Retry-After %s",
		attempts, len(r.conns), ws.DefaultConnectRate, len(r.conns)-ws.DefaultConnectRate, r.statuses, resp.Header.Get("Retry-After"))
}

// TestRateLimitMiddlewareIsExact: with no refill during the test, 500
// concurrent attempts let exactly the burst through.
func TestRateLimitMiddlewareIsExact(t *testing.T) {
	const burst, attempts = 100, 500
	mw := ws.RateLimitMiddleware(ws.WithRate(1, time.Hour), ws.WithBurst(burst))
	n := newNode(t, nil, nil, ws.Config{}, &ws.Options{Middleware: []ws.Middleware{mw}})
	r := dialMany(t, n.url, attempts, nil)
	require.Empty(t, r.failed)
	require.Len(t, r.conns, burst, "got %d upgraded, want %d", len(r.conns), burst)
	require.Equal(t, map[int]int{http.StatusTooManyRequests: attempts - burst}, r.statuses)
	require.Eventually(t, func() bool { return n.hub.Stats().ConnectionsTotal == burst }, 5*time.Second, time.Millisecond)
	t.Logf("%d concurrent dials: %d upgraded, refused %v", attempts, len(r.conns), r.statuses)
}

// TestRateLimitMiddlewareOptions checks WithRate, Retry-After and the
// *RateLimitError handed to WithOnRateLimited.
func TestRateLimitMiddlewareOptions(t *testing.T) {
	var mu sync.Mutex
	var limited []*ws.RateLimitError
	mw := ws.RateLimitMiddleware(ws.WithRate(3, time.Hour), ws.WithOnRateLimited(func(_ *http.Request, err *ws.RateLimitError) {
		mu.Lock()
		limited = append(limited, err)
		mu.Unlock()
	}))
	n := newNode(t, nil, nil, ws.Config{}, &ws.Options{Middleware: []ws.Middleware{mw}})
	for range 3 {
		n.dial(t, "")
	}
	_, resp, err := websocket.DefaultDialer.Dial(n.url, nil)
	require.Error(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusTooManyRequests, resp.StatusCode)
	require.Equal(t, "1200", resp.Header.Get("Retry-After"), "one token per 20 minutes")
	mu.Lock()
	defer mu.Unlock()
	require.Len(t, limited, 1)
	require.Equal(t, &ws.RateLimitError{RemoteIP: "127.0.0.1", Messages: 3, Interval: time.Hour}, limited[0])
	var target *ws.RateLimitError
	require.True(t, errors.As(error(limited[0]), &target))
}

// TestForwardedForIsTrustedOnlyWhenAskedFor: X-Forwarded-For is ignored
// unless the peer is a trusted proxy; then the rightmost untrusted hop is
// the client, for the middleware, MaxConnectionsPerIP and Client.RemoteIP.
func TestForwardedForIsTrustedOnlyWhenAskedFor(t *testing.T) {
	xff := func(v string) http.Header { return http.Header{"X-Forwarded-For": {v}} }
	status := func(n *testNode, h http.Header) int {
		t.Helper()
		conn, resp, err := websocket.DefaultDialer.Dial(n.url, h)
		if err == nil {
			t.Cleanup(func() { conn.Close() })
		}
		require.NotNil(t, resp, "dial: %v", err)
		resp.Body.Close()
		return resp.StatusCode
	}

	t.Run("untrusted", func(t *testing.T) {
		mw := ws.RateLimitMiddleware(ws.WithRate(1, time.Hour))
		n := newNode(t, nil, nil, ws.Config{}, &ws.Options{Middleware: []ws.Middleware{mw}})
		require.Equal(t, http.StatusSwitchingProtocols, status(n, xff("1.1.1.1")))
		require.Equal(t, http.StatusTooManyRequests, status(n, xff("2.2.2.2")), "a forged header must not buy a new budget")
	})

	t.Run("trusted proxy", func(t *testing.T) {
		ips := make(chan string, 10)
		mw := ws.RateLimitMiddleware(ws.WithRate(1, time.Hour), ws.WithTrustedProxies("127.0.0.0/8", "10.0.0.0/8"))
		opts := &ws.Options{
			Middleware: []ws.Middleware{mw},
			OnConnect:  func(c *ws.Client) { ips <- c.RemoteIP },
		}
		n := newNode(t, nil, nil, ws.Config{MaxConnectionsPerIP: 1}, opts)
		require.Equal(t, http.StatusSwitchingProtocols, status(n, xff("1.1.1.1")))
		require.Equal(t, "1.1.1.1", <-ips)
		require.Equal(t, http.StatusTooManyRequests, status(n, xff("1.1.1.1")))
		// The client wrote 6.6.6.6; our proxies appended 2.2.2.2 and 10.0.0.7.
		require.Equal(t, http.StatusSwitchingProtocols, status(n, xff("6.6.6.6, 2.2.2.2, 10.0.0.7")))
		require.Equal(t, "2.2.2.2", <-ips)
		require.Equal(t, http.StatusTooManyRequests, status(n, xff("6.6.6.7, 2.2.2.2")), "spoofed left part is ignored")
		require.Equal(t, http.StatusSwitchingProtocols, status(n, http.Header{"X-Forwarded-For": {"3.3.3.3", "10.0.0.8"}}))
		require.Equal(t, "3.3.3.3", <-ips)
	})

	t.Run("MaxConnectionsPerIP counts the forwarded IP", func(t *testing.T) {
		mw := ws.RateLimitMiddleware(ws.WithTrustedProxies("127.0.0.1"))
		n := newNode(t, nil, nil, ws.Config{MaxConnectionsPerIP: 1}, &ws.Options{Middleware: []ws.Middleware{mw}})
		require.Equal(t, http.StatusSwitchingProtocols, status(n, xff("4.4.4.4")))
		require.Equal(t, http.StatusTooManyRequests, status(n, xff("4.4.4.4")))
		require.Equal(t, http.StatusSwitchingProtocols, status(n, xff("5.5.5.5")))
	})
}

// TestRateLimitMiddlewareMemoryIsBounded floods the limiter with 20,000
// distinct client IPs, directly and as forged X-Forwarded-For through a
// trusted proxy: it never remembers more than WithMaxTrackedIPs.
func TestRateLimitMiddlewareMemoryIsBounded(t *testing.T) {
	const maxTracked, flood = 1000, 20000
	mw := ws.RateLimitMiddleware(ws.WithRate(1, time.Hour), ws.WithMaxTrackedIPs(maxTracked), ws.WithTrustedProxies("10.0.0.1"))
	h := mw.Handle(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	for i := range flood {
		r := httptest.NewRequest(http.MethodGet, "/ws", nil)
		ip := fmt.Sprintf("%d.%d.%d.%d", 11+i>>16&0xff, i>>8&0xff, i&0xff, 1)
		if i%2 == 0 {
			r.RemoteAddr = ip + ":1234"
		} else {
			r.RemoteAddr = "10.0.0.1:1234"
			r.Header.Set("X-Forwarded-For", ip)
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if w.Code != http.StatusOK {
			t.Fatalf("first attempt of %s got %d, want 200", ip, w.Code)
		}
		if i%100 == 0 && mw.Tracked() > maxTracked {
			t.Fatalf("after %d IPs the limiter tracks %d, want at most %d", i+1, mw.Tracked(), maxTracked)
		}
	}
	require.Equal(t, maxTracked, mw.Tracked())
	t.Logf("%d distinct IPs: tracked %d (cap %d)", flood, mw.Tracked(), maxTracked)
}

// TestRateLimitMiddlewareForgetsIdleIPs: an IP whose bucket is full again
// is forgotten, so the map holds only recent attempts.
func TestRateLimitMiddlewareForgetsIdleIPs(t *testing.T) {
	// One token per millisecond, burst 1: an entry is idle after 1ms.
	mw := ws.RateLimitMiddleware(ws.WithRate(1000, time.Second), ws.WithBurst(1))
	h := mw.Handle(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	hit := func(ip string) int {
		r := httptest.NewRequest(http.MethodGet, "/ws", nil)
		r.RemoteAddr = ip + ":1"
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		return w.Code
	}
	for i := range 100 {
		hit("10.1.0." + strconv.Itoa(i))
	}
	require.Positive(t, mw.Tracked())
	require.Eventually(t, func() bool {
		hit("10.2.0.1")
		return mw.Tracked() == 1
	}, 5*time.Second, time.Millisecond, "idle IPs were not forgotten")
}

// TestRateLimitMiddlewareGroupsIPv6By64 counts an IPv6 /64 as one client.
func TestRateLimitMiddlewareGroupsIPv6By64(t *testing.T) {
	mw := ws.RateLimitMiddleware(ws.WithRate(1, time.Hour))
	h := mw.Handle(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	hit := func(addr string) int {
		r := httptest.NewRequest(http.MethodGet, "/ws", nil)
		r.RemoteAddr = addr
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		return w.Code
	}
	require.Equal(t, http.StatusOK, hit("[2001:db8::1]:1"))
	require.Equal(t, http.StatusTooManyRequests, hit("[2001:db8::ffff:2]:1"), "same /64")
	require.Equal(t, http.StatusOK, hit("[2001:db8:0:1::1]:1"), "another /64")
	require.Equal(t, http.StatusOK, hit("[::ffff:192.0.2.1]:1"))
	require.Equal(t, http.StatusTooManyRequests, hit("192.0.2.1:1"), "IPv4-mapped is the same IPv4")
}

func TestRateLimitOptionsPanicOnNonsense(t *testing.T) {
	require.Panics(t, func() { ws.WithRate(0, time.Second) })
	require.Panics(t, func() { ws.WithRate(1, 0) })
	require.Panics(t, func() { ws.WithBurst(0) })
	require.Panics(t, func() { ws.WithMaxTrackedIPs(0) })
	require.Panics(t, func() { ws.WithTrustedProxies("10.0.0.0/33") })
	require.Panics(t, func() { ws.WithTrustedProxies("proxy.example.com") })
}

// The README's form: no arguments, sensible defaults.
func ExampleRateLimitMiddleware() {
	options := &ws.Options{
		Middleware: []ws.Middleware{
			ws.RateLimitMiddleware(),
		},
	}
	_ = options
}

// Behind a load balancer at 10.0.0.0/8, with a tighter limit whose
// refusals reach the endpoint's ErrorHandler.
func ExampleRateLimitMiddleware_options() {
	options := &ws.Options{ErrorHandler: func(err error) { log.Println(err) }}
	options.Middleware = []ws.Middleware{
		ws.RateLimitMiddleware(
			ws.WithRate(10, time.Second),
			ws.WithBurst(20),
			ws.WithTrustedProxies("10.0.0.0/8"),
			ws.WithOnRateLimited(func(_ *http.Request, err *ws.RateLimitError) { options.ErrorHandler(err) }),
		),
	}
}
