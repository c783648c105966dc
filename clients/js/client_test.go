// Package jsclient_test runs the JavaScript client's own tests
// (clients/js/test, node's test runner) and its type check from go test,
// so `make test` covers the client. The tests start the Go server in
// clients/js/testserver, built here once for all of them.
package jsclient_test

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/vortechron/go-ws/internal/testenv"
)

// TestJavaScriptClient installs the client's dev dependencies (npm ci),
// type-checks index.d.ts against test/types.ts (tsc --noEmit) and runs
// every test/*.test.js with node --test against the test server: on the
// machine's node, then on each node binary listed in WS_NODES.
func TestJavaScriptClient(t *testing.T) {
	if testing.Short() {
		t.Skip("skipped in -short mode: builds the test server and runs Node")
	}
	node, npm := tools(t)

	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	run(t, ctx, npm, "ci", "--no-audit", "--no-fund")

	bin := buildTestServer(t, ctx)

	t.Run("typecheck", func(t *testing.T) {
		run(t, ctx, node, filepath.Join("node_modules", "typescript", "bin", "tsc"), "--noEmit", "-p", filepath.Join("test", "tsconfig.json"))
	})

	t.Run("node", func(t *testing.T) { runSuite(t, ctx, node, bin, "package") })

	// The same suite on the other Node releases the client supports
	// (scripts/node-matrix.sh fetches them; make test passes them in
	// WS_NODES). From Node 22 on it runs on Node's own WebSocket, as a
	// Node application without the "ws" package would.
	t.Run("matrix", func(t *testing.T) {
		for _, n := range testenv.NodeReleases(t, 18) {
			ws := "package"
			if n.Major >= 22 {
				ws = "global"
			}
			t.Run(n.Version+"/"+ws, func(t *testing.T) { runSuite(t, ctx, n.Path, bin, ws) })
		}
	})
}

// runSuite runs every test/*.test.js with node --test against the test
// server bin. ws is "package" (test clients use the "ws" package) or
// "global" (the runtime's own WebSocket).
func runSuite(t *testing.T, ctx context.Context, node, bin, ws string) {
	files, err := filepath.Glob(filepath.Join("test", "*.test.js"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no test/*.test.js files (%v)", err)
	}
	args := append([]string{"--test", "--test-reporter=tap"}, files...)
	cmd := exec.CommandContext(ctx, node, args...)
	env, checkRaces := raceLogs(t, append(os.Environ(), "WS_TESTSERVER_BIN="+bin, "WS_TEST_WEBSOCKET="+ws))
	defer checkRaces()
	cmd.Env = env
	cmd.WaitDelay = 10 * time.Second
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err = cmd.Run()
	counts := summary(out.Bytes())
	if err != nil {
		t.Fatalf("node --test failed (%v): %s\n%s", err, counts, out.String())
	}
	if testing.Verbose() {
		t.Logf("node --test output:\n%s", out.String())
	}
	t.Logf("node --test: %s", counts)
	if n, _ := strconv.Atoi(tapCount(out.Bytes(), "pass")); n == 0 {
		t.Fatalf("node --test passed no test:\n%s", out.String())
	}
	// A skipped test checked nothing; it must not pass as if it had.
	for _, k := range []string{"skipped", "todo"} {
		if n, _ := strconv.Atoi(tapCount(out.Bytes(), k)); n > 0 {
			t.Fatalf("node --test: %s (a test that did not run is not a pass):\n%s", counts, out.String())
		}
	}
}

// tools returns node and npm, or skips (fails under WS_REQUIRE_TOOLS=1)
// saying what is missing.
func tools(t *testing.T) (node, npm string) {
	t.Helper()
	node, err := exec.LookPath("node")
	if err != nil {
		testenv.Missing(t, testenv.RequireTools, "node is not on PATH; install Node.js 18+ to run the JavaScript client's tests")
	}
	npm, err = exec.LookPath("npm")
	if err != nil {
		testenv.Missing(t, testenv.RequireTools, "npm is not on PATH; install Node.js 18+ (with npm) to run the JavaScript client's tests")
	}
	if _, err := exec.LookPath("go"); err != nil {
		testenv.Missing(t, testenv.RequireTools, "go is not on PATH; cannot build clients/js/testserver")
	}
	major, version, err := testenv.NodeVersion(node)
	if err != nil {
		testenv.Missing(t, testenv.RequireTools, "%v", err)
	}
	if major < 18 {
		testenv.Missing(t, testenv.RequireTools, "node %s is too old; the client and its tests need Node.js 18+", version)
	}
	return node, npm
}

// run runs a command in clients/js and fails t with its output if it fails.
func run(t *testing.T, ctx context.Context, name string, args ...string) {
	t.Helper()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.WaitDelay = 10 * time.Second
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %v: %v\n%s", name, args, err, out)
	}
}

// summary is the runner's closing counts, e.g. "tests 43, pass 38, fail 0, todo 5".
func summary(tap []byte) string {
	s := ""
	for _, k := range []string{"tests", "pass", "fail", "cancelled", "skipped", "todo"} {
		if s != "" {
			s += ", "
		}
		s += k + " " + tapCount(tap, k)
	}
	return s
}

// tapCount returns the number on the TAP comment line "# key N".
func tapCount(tap []byte, key string) string {
	m := regexp.MustCompile(`(?m)^# ` + key + ` (\d+)$`).FindSubmatch(tap)
	if m == nil {
		return "?"
	}
	return string(m[1])
}

// buildTestServer builds clients/js/testserver into a temporary directory.
func buildTestServer(t *testing.T, ctx context.Context) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "testserver")
	args := []string{"build", "-o", bin}
	if raceEnabled {
		args = append(args, "-race") // go test -race: the servers the tests start too
	}
	run(t, ctx, "go", append(args, "./testserver")...)
	return bin
}

// raceLogs sets env so that every test server the tests start writes
// what the race detector finds into files under a new directory, and
// returns a check that fails t with those reports, if any. Node starts
// and stops the servers itself, so their exit codes and output do not
// reach this test.
func raceLogs(t *testing.T, env []string) ([]string, func()) {
	t.Helper()
	dir := t.TempDir()
	env = append(env, "GORACE=log_path="+filepath.Join(dir, "race"))
	return env, func() {
		t.Helper()
		files, _ := filepath.Glob(filepath.Join(dir, "race.*"))
		for _, f := range files {
			if b, err := os.ReadFile(f); err == nil && len(bytes.TrimSpace(b)) > 0 {
				t.Errorf("a test server found a data race (%s):\n%s", filepath.Base(f), b)
			}
		}
	}
}
