package ws_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	ws "github.com/vortechron/go-ws"
	"github.com/vortechron/go-ws/internal/wstest"
)

// awaitRun waits for n's Run to return: the hub's last log line is
// written after Done closes, just before Run returns.
func awaitRun(tb testing.TB, n *testNode) {
	tb.Helper()
	select {
	case err := <-n.runErr:
		require.NoError(tb, err)
	case <-time.After(10 * time.Second):
		tb.Fatal("Run did not return within 10s of the shutdown")
	}
}

// recordIndexes returns the indexes, in rec, of the records with message
// msg.
func recordIndexes(rec *recordHandler, msg string) []int {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	var out []int
	for i, r := range rec.records {
		if r.Message == msg {
			out = append(out, i)
		}
	}
	return out
}

// TestShutdownIsLogged proves docs/operations.md, Logging: "`Info "ws:
// shutting down"` and `Info "ws: shut down"` (with `took` and
// `closed_hard`) once per shutdown; `Warn` when the deadline forced it to
// give up on connections."
func TestShutdownIsLogged(t *testing.T) {
	for _, tc := range []struct {
		name       string
		stuck      bool // OnDisconnect holds the connection past the deadline
		closedHard int64
	}{
		{"graceful", false, 0},
		{"deadline", true, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := &recordHandler{}
			entered, release := make(chan struct{}), make(chan struct{})
			var once sync.Once
			unblock := func() { once.Do(func() { close(release) }) }
			opts := &ws.Options{}
			if tc.stuck {
				opts.OnDisconnect = func(*ws.Client) {
					close(entered)
					<-release
				}
			}
			n := newNode(t, nil, nil, ws.Config{Logger: slog.New(rec)}, opts)
			t.Cleanup(unblock) // before the node's own cleanup, which waits for OnDisconnect
			c := n.dial(t, "")
			c.subscribe("news")

			deadline := 5 * time.Second
			if tc.stuck {
				deadline = 300 * time.Millisecond
			}
			ctx, cancel := context.WithTimeout(context.Background(), deadline)
			defer cancel()
			shutdown := make(chan error, 1)
			go func() { shutdown <- n.hub.Shutdown(ctx) }()
			require.Equal(t, ws.CloseGoingAway, c.expectClose())
			c.Conn.Close() // the server waits for the TCP close after the handshake
			if tc.stuck {
				<-entered
				require.ErrorIs(t, <-shutdown, context.DeadlineExceeded)
			} else {
				require.NoError(t, <-shutdown)
			}
			awaitRun(t, n)
			_ = n.hub.Shutdown(context.Background()) // a second one logs nothing more
			unblock()

			starting, done := recordIndexes(rec, "ws: shutting down"), recordIndexes(rec, "ws: shut down")
			require.Len(t, starting, 1, "got %d \"ws: shutting down\" lines, want 1", len(starting))
			require.Len(t, done, 1, "got %d \"ws: shut down\" lines, want 1", len(done))
			require.Less(t, starting[0], done[0], "\"ws: shut down\" was logged before \"ws: shutting down\"")
			first, last := rec.withMessage("ws: shutting down")[0], rec.withMessage("ws: shut down")[0]
			require.Equal(t, slog.LevelInfo, first.Level, "got level %v for \"ws: shutting down\", want INFO", first.Level)
			require.Equal(t, slog.LevelInfo, last.Level, "got level %v for \"ws: shut down\", want INFO", last.Level)
			a := recordAttrs(last)
			require.Contains(t, a, "took")
			require.IsType(t, time.Duration(0), a["took"])
			require.Equal(t, tc.closedHard, a["closed_hard"], "got closed_hard %v, want %d", a["closed_hard"], tc.closedHard)

			warns := len(rec.atLevel(slog.LevelWarn))
			if tc.stuck {
				require.Positive(t, warns, "no Warn line when the deadline forced the hub to give up")
			} else {
				require.Zero(t, warns, "got %d Warn lines from a graceful shutdown, want 0", warns)
			}
		})
	}
}

// TestHealthIsNeverCached proves docs/operations.md, Health checks: the
// answer carries "Cache-Control: no-store", on 200 and on the 503 "with
// the same body", for GET and HEAD.
func TestHealthIsNeverCached(t *testing.T) {
	n := newNode(t, nil, nil, ws.Config{}, nil)
	srv := httptest.NewServer(n.hub.HealthHandler())
	t.Cleanup(srv.Close)
	<-n.hub.Ready()

	check := func(method string, status int) {
		t.Helper()
		req, err := http.NewRequest(method, srv.URL, nil)
		require.NoError(t, err)
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		require.Equal(t, status, resp.StatusCode, "%s", method)
		require.Equal(t, "no-store", resp.Header.Get("Cache-Control"), "got Cache-Control %q on %s %d, want no-store",
			resp.Header.Get("Cache-Control"), method, status)
	}
	check(http.MethodGet, http.StatusOK)
	check(http.MethodHead, http.StatusOK)
	require.NoError(t, n.hub.Shutdown(context.Background()))
	check(http.MethodGet, http.StatusServiceUnavailable)
	check(http.MethodHead, http.StatusServiceUnavailable)
}

// TestShutdownRefusalReachesErrorHandler proves docs/security.md, Before
// the upgrade: "Hub shutting down | | | HTTP 503 | `*ConnectionError`
// wrapping `ErrHubClosed`".
func TestShutdownRefusalReachesErrorHandler(t *testing.T) {
	var errs errorLog
	entered, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	unblock := func() { once.Do(func() { close(release) }) }
	// OnDisconnect holds the hub in its drain while the test dials.
	opts := &ws.Options{ErrorHandler: errs.handle, OnDisconnect: func(*ws.Client) {
		close(entered)
		<-release
	}}
	n := newNode(t, nil, nil, ws.Config{}, opts)
	t.Cleanup(unblock) // before the node's own cleanup, which waits for OnDisconnect
	c := n.dial(t, "")
	c.subscribe("news")

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	shutdown := make(chan error, 1)
	go func() { shutdown <- n.hub.Shutdown(ctx) }()
	require.Equal(t, ws.CloseGoingAway, c.expectClose())
	c.Conn.Close() // the server waits for the TCP close after the handshake
	<-entered      // the drain has begun: the hub closes its clients only then

	resp, _ := wstest.DialRefused(t, n.url, nil)
	require.Equal(t, http.StatusServiceUnavailable, resp.StatusCode)
	ce := lastError[*ws.ConnectionError](t, &errs)
	require.Equal(t, "admit", ce.Op)
	require.Equal(t, http.StatusServiceUnavailable, ce.StatusCode)
	require.True(t, errors.Is(ce, ws.ErrHubClosed), "got %v, want a *ConnectionError wrapping ErrHubClosed", ce)

	unblock()
	require.NoError(t, <-shutdown)
}

// TestUserChannelIsOnlyItsUsers proves docs/protocol.md, Channel names:
// "user channels `#server-to-user-{id}` ... a connection may join only
// its own user's (`GetUserID`, ...), and what is published there reaches
// each of that user's connections that joined it". Another user's (or an
// anonymous connection's) subscribe is answered like a refused private
// subscribe: an error frame naming the action and the channel, code
// `unauthorized`, and an `*AuthError` to ErrorHandler; the code table in
// docs/protocol.md lists `unauthorized` for private and presence
// refusals only.
func TestUserChannelIsOnlyItsUsers(t *testing.T) {
	const channel = ws.UserChannelPrefix + "alice"
	for _, be := range nodeBackends {
		t.Run(be.name, func(t *testing.T) {
			var errs errorLog
			opts := userOptions()
			opts.ErrorHandler = errs.handle
			nodes := be.start(t, 2, ws.Config{}, opts)
			on := func(i int) *testNode { return nodes[i%len(nodes)] }

			alice := []*testClient{on(0).dial(t, "alice"), on(1).dial(t, "alice")}
			for _, c := range alice {
				c.subscribe(channel)
			}
			bob, anonymous := on(1).dial(t, "bob"), on(1).dial(t, "")
			for _, c := range []*testClient{bob, anonymous} {
				c.send(map[string]any{"action": "subscribe", "channel": channel})
				c.expect(map[string]any{"type": "error", "code": "unauthorized", "action": "subscribe", "channel": channel})
			}
			var refusals int
			for _, err := range errs.all() {
				var ae *ws.AuthError
				if errors.As(err, &ae) && ae.Channel == channel {
					refusals++
				}
			}
			require.Equal(t, 2, refusals, "got %d *AuthError for %s, want 2; ErrorHandler got %v", refusals, channel, errs.all())
			var want int64 // alice's subscriptions on bob's node
			for i := range alice {
				if on(i) == on(1) {
					want++
				}
			}
			got := on(1).hub.Stats().Subscriptions
			require.Equal(t, want, got, "got %d subscriptions on bob's node, want %d: a refused subscribe left one", got, want)

			require.NoError(t, on(0).hub.Publish(context.Background(), channel, "for alice"))
			for _, c := range alice {
				c.expect(map[string]any{"type": "message", "channel": channel, "message": "for alice"})
			}
			bob.expectQuiet()
			anonymous.expectQuiet()
		})
	}
}

// slowLastLine is a log sink that takes a while to write "ws: shut down",
// as a remote one can.
type slowLastLine struct{ *recordHandler }

func (h slowLastLine) Handle(ctx context.Context, r slog.Record) error {
	if r.Message == "ws: shut down" {
		<-time.After(100 * time.Millisecond) // the sink's slowness, not a wait for an event
	}
	return h.recordHandler.Handle(ctx, r)
}

// TestDoneComesAfterRunFinished proves Hub.Done's doc comment and the
// README's shutdown pattern (wait for hub.Done(), then exit): once Done
// is closed, or Shutdown has returned, Run has finished everything it
// does, its last log line included, so a program that exits then loses
// nothing. Both ways of stopping a hub: Shutdown, and cancelling the
// context given to NewHub.
func TestDoneComesAfterRunFinished(t *testing.T) {
	for _, viaShutdown := range []bool{true, false} {
		name := map[bool]string{true: "Shutdown", false: "context"}[viaShutdown]
		t.Run(name, func(t *testing.T) {
			rec := &recordHandler{}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			hub := ws.NewHub(ctx, nil, nil, ws.Config{Logger: slog.New(slowLastLine{rec})})
			ran := make(chan error, 1)
			go func() { ran <- hub.Run() }()
			<-hub.Ready() // Run has started (a Shutdown before Run has no Run to wait for)
			if viaShutdown {
				require.NoError(t, hub.Shutdown(context.Background()))
				require.Len(t, rec.withMessage("ws: shut down"), 1, "Shutdown returned before Run's last log line")
			} else {
				cancel()
			}
			select {
			case <-hub.Done():
			case <-time.After(10 * time.Second):
				t.Fatal("Done was not closed within 10s of the shutdown")
			}
			require.Len(t, rec.withMessage("ws: shut down"), 1, "Done was closed before Run's last log line")
			require.NoError(t, <-ran)
		})
	}
}
