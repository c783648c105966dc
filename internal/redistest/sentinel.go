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

// Sentinel is a master, its replica and the Sentinels watching them (one
// until AddSentinel), owned by one test.
type Sentinel struct {
	// Master and Replica are the two redis-servers as started; after a
	// failover the replica is the master.
	Master, Replica *Server
	// Addr is the first Sentinel's address, for RedisOptions.Addrs with
	// MasterName.
	Addr string

	dir      string              // the Sentinels' directory
	procs    map[string]*process // by address
	password string              // the Sentinels' own (requirepass), "" for none
}

// SentinelAuth is the passwords of StartSentinelWithAuth.
type SentinelAuth struct {
	// Password is the master's and the replica's (requirepass, and
	// masterauth for replication); the Sentinels use it too (auth-pass).
	Password string
	// SentinelPassword is the Sentinels' own (requirepass, and
	// sentinel-pass between them).
	SentinelPassword string
}

// StartSentinel starts a master, a replica of it and one Sentinel
// (quorum 1, the master down after 1 s of silence), each on a spare port
// in 7000-7999, waits until the replica is in sync and the Sentinel knows
// both, and kills them when tb ends. It skips tb if redis-server is
// missing.
func StartSentinel(tb testing.TB) *Sentinel {
	tb.Helper()
	return StartSentinelWithAuth(tb, SentinelAuth{})
}

// StartSentinelWithAuth is StartSentinel with passwords on the servers
// and on the Sentinels (those of auth that are not "").
func StartSentinelWithAuth(tb testing.TB, auth SentinelAuth) *Sentinel {
	tb.Helper()
	if _, err := exec.LookPath("redis-cli"); err != nil {
		skip(tb, "redis-cli not installed (apt-get install redis-tools); skipping a Redis Sentinel test")
	}
	dirs := subdirs(tb, 3)
	master := startServerAuth(tb, dirs[0], auth.Password)
	replica := startServerAuth(tb, dirs[1], auth.Password, "--replicaof", "127.0.0.1", strconv.Itoa(master.Port))
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	waitFor(ctx, tb, "the replica in sync", func() bool {
		info, err := replica.CLI(ctx, "INFO", "replication")
		return err == nil && strings.Contains(info, "master_link_status:up")
	})
	s := &Sentinel{Master: master, Replica: replica, dir: dirs[2], procs: map[string]*process{}, password: auth.SentinelPassword}
	s.Addr = s.startSentinel(tb)
	waitFor(ctx, tb, "the Sentinel to see the replica", func() bool {
		out, err := s.CLI(ctx, s.Addr, "SENTINEL", "REPLICAS", MasterName)
		return err == nil && strings.Contains(out, strconv.Itoa(replica.Port))
	})
	return s
}

// AddSentinel starts one more Sentinel of the master, waits (at most
// 20 s; Sentinels announce themselves every 2 s) until the first
// Sentinel names it in SENTINEL SENTINELS, and returns its address.
func (s *Sentinel) AddSentinel(tb testing.TB) string {
	tb.Helper()
	addr := s.startSentinel(tb)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	_, port, _ := strings.Cut(addr, ":")
	waitFor(ctx, tb, "the first Sentinel to name the new one", func() bool {
		out, err := s.CLI(ctx, s.Addr, "SENTINEL", "SENTINELS", MasterName)
		return err == nil && strings.Contains(out, "\n"+port+"\n")
	})
	return addr
}

// KillSentinel SIGKILLs the Sentinel at addr and waits for it to exit.
func (s *Sentinel) KillSentinel(addr string) { s.procs[addr].kill() }

// startSentinel starts a Sentinel on a spare port and returns its
// address.
func (s *Sentinel) startSentinel(tb testing.TB) string {
	tb.Helper()
	var lastErr error
	for range 20 {
		port := 7000 + rand.IntN(1000)
		if !free(port) {
			continue
		}
		addr, err := s.startSentinelOn(tb, port)
		if err == nil {
			return addr
		}
		lastErr = err
	}
	tb.Fatalf("could not start redis-server --sentinel: %v", lastErr)
	return ""
}

// startSentinelOn writes a Sentinel's configuration (it must be
// writable: Sentinel records its state there) and starts it on port.
func (s *Sentinel) startSentinelOn(tb testing.TB, port int) (string, error) {
	dir := s.dir
	conf := filepath.Join(dir, "sentinel-"+strconv.Itoa(port)+".conf")
	logfile := filepath.Join(dir, "sentinel-"+strconv.Itoa(port)+".log")
	text := fmt.Sprintf(`port %d
bind 127.0.0.1
dir %s
logfile %s
sentinel monitor %s 127.0.0.1 %d 1
sentinel down-after-milliseconds %s 1000
sentinel failover-timeout %s 10000
`, port, dir, logfile, MasterName, s.Master.Port, MasterName, MasterName)
	if s.Master.password != "" {
		text += fmt.Sprintf("sentinel auth-pass %s %s\n", MasterName, s.Master.password)
	}
	if s.password != "" {
		text += fmt.Sprintf("requirepass %s\nsentinel sentinel-pass %s\n", s.password, s.password)
	}
	if err := os.WriteFile(conf, []byte(text), 0o644); err != nil {
		return "", err
	}
	addr := "127.0.0.1:" + strconv.Itoa(port)
	p, err := startProcess([]string{conf, "--sentinel"}, addr, logfile, func() error { return ping(&redis.Options{Addr: addr, Password: s.password}, 200*time.Millisecond) })
	if err != nil {
		return "", err
	}
	tb.Cleanup(p.kill)
	s.procs[addr] = p
	return addr, nil
}

// MasterAddr returns the address the Sentinel names as the master's.
func (s *Sentinel) MasterAddr(ctx context.Context) (string, error) {
	c := redis.NewSentinelClient(&redis.Options{Addr: s.Addr, Password: s.password, MaxRetries: -1})
	defer c.Close()
	hp, err := c.GetMasterAddrByName(ctx, MasterName).Result()
	if err != nil {
		return "", err
	}
	return strings.Join(hp, ":"), nil
}

// CLI runs redis-cli against the Sentinel at addr, with the Sentinels'
// password if they have one, and returns its output.
func (s *Sentinel) CLI(ctx context.Context, addr string, args ...string) (string, error) {
	return cliAuth(ctx, addr, s.password, args...)
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

// Switchover asks the Sentinel for a failover (SENTINEL FAILOVER) while
// the master runs, as a planned maintenance does, and waits (at most
// 60 s; it took 16 s on a 2-core machine) until the replica is master
// and the old master replicates from it.
func (s *Sentinel) Switchover(tb testing.TB) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if out, err := s.CLI(ctx, s.Addr, "SENTINEL", "FAILOVER", MasterName); err != nil || !strings.Contains(out, "OK") {
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
