package redistest

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// MasterName is the name the Sentinel of StartSentinel monitors its
// master under.
const MasterName = "mymaster"

// Sentinel is a master, its replica and one Sentinel watching them,
// owned by one test.
type Sentinel struct {
	// Master and Replica are the two redis-servers as started; after a
	// failover the replica is the master.
	Master, Replica *Server
	// Addr is the Sentinel's address, for RedisOptions.Addrs with
	// MasterName.
	Addr string
}

// StartSentinel starts a master, a replica of it and one Sentinel
// (quorum 1, the master down after 1 s of silence), each on a spare port
// in 7000-7999, waits until the replica is in sync and the Sentinel knows
// both, and kills them when tb ends. It skips tb if redis-server is
// missing.
func StartSentinel(tb testing.TB) *Sentinel {
	tb.Helper()
	if _, err := exec.LookPath("redis-cli"); err != nil {
		skip(tb, "redis-cli not installed (apt-get install redis-tools); skipping a Redis Sentinel test")
	}
	root := tb.TempDir()
	dirs := make([]string, 3)
	for i := range dirs {
		dirs[i] = filepath.Join(root, strconv.Itoa(i))
		if err := os.Mkdir(dirs[i], 0o755); err != nil {
			tb.Fatal(err)
		}
	}
	master := startServer(tb, dirs[0])
	replica := startServer(tb, dirs[1], "--replicaof", "127.0.0.1", strconv.Itoa(master.Port))
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	waitFor(ctx, tb, "the replica in sync", func() bool {
		info, err := replica.CLI(ctx, "INFO", "replication")
		return err == nil && strings.Contains(info, "master_link_status:up")
	})
	s := &Sentinel{Master: master, Replica: replica}
	var lastErr error
	for range 20 {
		port, ok := sparePort()
		if !ok {
			continue
		}
		if lastErr = s.startSentinel(tb, dirs[2], port); lastErr == nil {
			break
		}
	}
	if s.Addr == "" {
		tb.Fatalf("could not start redis-server --sentinel: %v", lastErr)
	}
	waitFor(ctx, tb, "the Sentinel to see the replica", func() bool {
		out, err := s.cli(ctx, "SENTINEL", "REPLICAS", MasterName)
		return err == nil && strings.Contains(out, strconv.Itoa(replica.Port))
	})
	return s
}

// startSentinel writes the Sentinel's configuration (it must be
// writable: Sentinel records its state there) and starts it on port.
func (s *Sentinel) startSentinel(tb testing.TB, dir string, port int) error {
	conf := filepath.Join(dir, "sentinel-"+strconv.Itoa(port)+".conf")
	text := fmt.Sprintf(`port %d
bind 127.0.0.1
dir %s
logfile %s
sentinel monitor %s 127.0.0.1 %d 1
sentinel down-after-milliseconds %s 1000
sentinel failover-timeout %s 10000
`, port, dir, filepath.Join(dir, "sentinel.log"), MasterName, s.Master.Port, MasterName, MasterName)
	if err := os.WriteFile(conf, []byte(text), 0o644); err != nil {
		return err
	}
	p := &process{cmd: exec.Command("redis-server", conf, "--sentinel"), done: make(chan struct{})}
	if err := p.cmd.Start(); err != nil {
		return err
	}
	go func() { p.err = p.cmd.Wait(); close(p.done) }()
	addr := "127.0.0.1:" + strconv.Itoa(port)
	deadline := time.Now().Add(5 * time.Second)
	for ping(addr, 200*time.Millisecond) != nil {
		select {
		case <-p.done:
			log, _ := os.ReadFile(filepath.Join(dir, "sentinel.log"))
			return fmt.Errorf("sentinel on %d exited (%v): %s", port, p.err, log)
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			_ = p.cmd.Process.Kill()
			<-p.done
			return fmt.Errorf("sentinel on %d did not answer PING within 5s", port)
		}
	}
	tb.Cleanup(func() { _ = p.cmd.Process.Kill(); <-p.done })
	s.Addr = addr
	return nil
}

// MasterAddr returns the address the Sentinel names as the master's.
func (s *Sentinel) MasterAddr(ctx context.Context) (string, error) {
	c := redis.NewSentinelClient(&redis.Options{Addr: s.Addr, MaxRetries: -1})
	defer c.Close()
	hp, err := c.GetMasterAddrByName(ctx, MasterName).Result()
	if err != nil {
		return "", err
	}
	return strings.Join(hp, ":"), nil
}

// KillMaster SIGKILLs the master and waits (at most 30 s) until the
// Sentinel has promoted the replica.
func (s *Sentinel) KillMaster(tb testing.TB) {
	tb.Helper()
	s.Master.Kill()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	waitFor(ctx, tb, "the Sentinel to promote the replica", func() bool {
		addr, err := s.MasterAddr(ctx)
		if err != nil || addr != s.Replica.Addr {
			return false
		}
		info, err := s.Replica.CLI(ctx, "INFO", "replication")
		return err == nil && strings.Contains(info, "role:master")
	})
}

func (s *Sentinel) cli(ctx context.Context, args ...string) (string, error) {
	_, port, _ := strings.Cut(s.Addr, ":")
	full := append([]string{"-h", "127.0.0.1", "-p", port}, args...)
	out, err := exec.CommandContext(ctx, "redis-cli", full...).CombinedOutput()
	return string(out), err
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

// sparePort returns a port in 7000-7999 on which nothing listens.
func sparePort() (int, bool) {
	for range 20 {
		port := 7000 + rand.IntN(1000)
		if free(port) {
			return port, true
		}
	}
	return 0, false
}

// Switchover asks the Sentinel for a failover (SENTINEL FAILOVER) while
// the master runs, as a planned maintenance does, and waits (at most
// 60 s; it took 16 s on a 2-core machine) until the replica is master
// and the old master replicates from it.
func (s *Sentinel) Switchover(tb testing.TB) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if out, err := s.cli(ctx, "SENTINEL", "FAILOVER", MasterName); err != nil || !strings.Contains(out, "OK") {
		tb.Fatalf("SENTINEL FAILOVER: %v: %s", err, out)
	}
	waitFor(ctx, tb, "the switchover", func() bool {
		addr, err := s.MasterAddr(ctx)
		if err != nil || addr != s.Replica.Addr {
			return false
		}
		info, err := s.Master.CLI(ctx, "INFO", "replication")
		return err == nil && strings.Contains(info, "role:slave") && strings.Contains(info, "master_link_status:up")
	})
}
