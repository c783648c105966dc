// Package testenv decides what a test does when something it needs from
// the machine (a Redis server, Node, Chromium) is missing: skip with a
// message that says how to provide it, or fail when the run asked for
// everything, as `make test` and CI do. A skip there would count a test
// that never ran as a pass.
package testenv

import (
	"os"
	"testing"
)

// Env variables that turn a missing dependency from a skip into a failure.
const (
	RequireRedis = "WS_REQUIRE_REDIS" // a Redis server
	RequireTools = "WS_REQUIRE_TOOLS" // node, npm, go and Chromium
)

// Missing skips tb with the formatted message, or fails it when the
// variable env is "1".
func Missing(tb testing.TB, env, format string, args ...any) {
	tb.Helper()
	if os.Getenv(env) == "1" {
		tb.Fatalf(env+"=1 but "+format, args...)
	}
	tb.Skipf(format, args...)
}
