package redistest

import (
	"context"
	"crypto/tls"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// Server is a redis-server process owned by one test.
type Server struct {
	// Port is the TCP port, kept across Restart.
	Port int
	// Addr is "127.0.0.1:<Port>".
	Addr string

	dir      string
	extra    []string    // extra redis-server arguments
	tls      *tls.Config // for clients of a TLS-only server (StartTLSServer)
	password string      // requirepass

	mu  sync.Mutex
	run *process // guarded by mu; nil while stopped
}

// process is one run of redis-server.
type process struct {
	cmd  *exec.Cmd
	done chan struct{} // closed when cmd.Wait returned
	err  error         // cmd.Wait's result, readable after done
}

// StartServer starts a redis-server on a spare port in 7000-7999 with
// persistence off, and kills it when tb ends. It skips tb if
// redis-server is not installed.
func StartServer(tb testing.TB) *Server {
	tb.Helper()
	return startServer(tb, tb.TempDir())
}

func startServer(tb testing.TB, dir string, extra ...string) *Server {
	tb.Helper()
	return startServerAuth(tb, dir, "", extra...)
}

// startServerAuth is startServer with password for clients
// (requirepass) and for its replication link to a master (masterauth),
// unless password is "".
func startServerAuth(tb testing.TB, dir, password string, extra ...string) *Server {
	tb.Helper()
	if password != "" {
		extra = append([]string{"--requirepass", password, "--masterauth", password}, extra...)
	}
	if _, err := exec.LookPath("redis-server"); err != nil {
		skip(tb, "redis-server not installed (apt-get install redis-server); skipping a test that starts its own Redis")
	}
	var lastErr error
	for range 20 {
		port := 7000 + rand.IntN(1000)
		if !free(port) || !free(port+10000) {
			continue
		}
		s := &Server{Port: port, Addr: "127.0.0.1:" + strconv.Itoa(port), dir: dir, extra: extra, password: password}
		if lastErr = s.Start(); lastErr == nil {
			tb.Cleanup(s.Kill)
			return s
		}
	}
	tb.Fatalf("could not start redis-server: %v", lastErr)
	return nil
}

// free reports whether nothing listens on 127.0.0.1:port.
func free(port int) bool {
	l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port))
	if err != nil {
		return false
	}
	_ = l.Close()
	return true
}

// Start runs redis-server on s.Port and waits (at most 5s) until it
// answers PING. Its log goes to redis-<port>.log in the server's dir.
func (s *Server) Start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.run != nil {
		return fmt.Errorf("redis-server on %d already running", s.Port)
	}
	logfile := filepath.Join(s.dir, "redis-"+strconv.Itoa(s.Port)+".log")
	args := append([]string{"--port", strconv.Itoa(s.Port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--dir", s.dir, "--logfile", logfile}, s.extra...)
	p, err := startProcess(args, s.Addr, logfile, s.ping)
	if err != nil {
		return err
	}
	s.run = p
	return nil
}

// ping sends PING as a client of the server would (over TLS, with the
// password, when the server wants them).
func (s *Server) ping() error {
	return ping(&redis.Options{Addr: s.Addr, TLSConfig: s.tls, Password: s.password}, 200*time.Millisecond)
}

// startProcess runs redis-server with args and waits (at most 5s) until
// ping, which PINGs it at addr, succeeds; if it exits first, the error
// carries logfile.
func startProcess(args []string, addr, logfile string, ping func() error) (*process, error) {
	p := &process{cmd: exec.Command("redis-server", args...), done: make(chan struct{})}
	if err := p.cmd.Start(); err != nil {
		return nil, err
	}
	go func() { p.err = p.cmd.Wait(); close(p.done) }()
	deadline := time.Now().Add(5 * time.Second)
	for ping() != nil {
		select {
		case <-p.done:
			log, _ := os.ReadFile(logfile)
			return nil, fmt.Errorf("redis-server %v on %s exited (%v): %s", args, addr, p.err, log)
		case <-time.After(20 * time.Millisecond): // polling an external process; nothing to wait on
		}
		if time.Now().After(deadline) {
			p.kill()
			return nil, fmt.Errorf("redis-server %v on %s did not answer PING within 5s", args, addr)
		}
	}
	return p, nil
}

// kill SIGKILLs the process and waits for it to exit.
func (p *process) kill() {
	_ = p.cmd.Process.Kill()
	<-p.done
}

// Kill stops the server with SIGKILL, as a crash would, and waits for it
// to exit. Killing a stopped server does nothing.
func (s *Server) Kill() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.run == nil {
		return
	}
	s.run.kill()
	s.run = nil
}

// Restart starts the killed server again on the same port.
func (s *Server) Restart() error { return s.Start() }

// FlushAll deletes every key on the server, as FLUSHALL does (a Redis
// that lost its data while the test's clients stay connected).
func (s *Server) FlushAll(ctx context.Context) error {
	c := redis.NewClient(&redis.Options{Addr: s.Addr, Password: s.password, MaxRetries: -1})
	defer c.Close()
	return c.FlushAll(ctx).Err()
}

// CLI runs redis-cli against the server (with its password, if it has
// one) and returns its output.
func (s *Server) CLI(ctx context.Context, args ...string) (string, error) {
	return cliAuth(ctx, s.Addr, s.password, args...)
}

// CLI runs redis-cli with args against the server or Sentinel at addr
// and returns what it printed.
func CLI(ctx context.Context, addr string, args ...string) (string, error) {
	return cli(ctx, addr, args...)
}

func cli(ctx context.Context, addr string, args ...string) (string, error) {
	return cliAuth(ctx, addr, "", args...)
}

// cliAuth is cli with password ("" for none), passed as redis-cli reads
// it from its environment so that it does not warn about it.
func cliAuth(ctx context.Context, addr, password string, args ...string) (string, error) {
	host, port, _ := strings.Cut(addr, ":")
	full := append([]string{"-h", host, "-p", port}, args...)
	cmd := exec.CommandContext(ctx, "redis-cli", full...)
	if password != "" {
		cmd.Env = append(os.Environ(), "REDISCLI_AUTH="+password)
	}
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// subdirs makes n numbered directories under a temporary directory of
// tb's and returns their paths.
func subdirs(tb testing.TB, n int) []string {
	tb.Helper()
	root := tb.TempDir()
	dirs := make([]string, n)
	for i := range dirs {
		dirs[i] = filepath.Join(root, strconv.Itoa(i))
		if err := os.Mkdir(dirs[i], 0o755); err != nil {
			tb.Fatal(err)
		}
	}
	return dirs
}

// waitFor polls cond (an external process's state: nothing to wait on)
// until it holds, failing tb when ctx ends first.
func waitFor(ctx context.Context, tb testing.TB, what string, cond func() bool) {
	tb.Helper()
	for !cond() {
		select {
		case <-ctx.Done():
			tb.Fatalf("timed out waiting for %s", what)
		case <-time.After(50 * time.Millisecond):
		}
	}
}
