package protocoltest

import (
	"errors"
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/vortechron/go-ws/internal/wstest"
)

// readTimeout bounds every frame or event a test waits for.
const readTimeout = wstest.ReadTimeout

func withUser(name string) http.Header { return http.Header{"X-User": {name}} }

// httpURL turns a ws:// URL into the http:// URL of the same endpoint.
func httpURL(tb testing.TB, wsURL string) string {
	tb.Helper()
	u, err := url.Parse(wsURL)
	require.NoError(tb, err)
	u.Scheme = "http"
	return u.String()
}

// errorsOf collects what Options.ErrorHandler receives.
type errorsOf struct {
	ch chan error
}

func newErrors() *errorsOf { return &errorsOf{ch: make(chan error, 64)} }

func (e *errorsOf) handle(err error) {
	select {
	case e.ch <- err:
	default:
	}
}

// next waits for the next reported error that matches target (as
// errors.As), skipping others.
func (e *errorsOf) next(tb testing.TB, target any) {
	tb.Helper()
	deadline := time.After(readTimeout)
	for {
		select {
		case err := <-e.ch:
			if errors.As(err, target) {
				return
			}
		case <-deadline:
			tb.Fatalf("ErrorHandler got no %T within %s", target, readTimeout)
		}
	}
}
