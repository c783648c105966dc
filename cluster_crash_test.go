package ws_test

import (
	"bufio"
	"context"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	ws "github.com/vortechron/go-ws"
	"github.com/vortechron/go-ws/internal/redistest"
)

// TestRedisVacatedOnceWhenTheLastNodeDies: a channel whose subscribers
// are all on a node that is SIGKILLed is vacated once in the cluster, by
// one of the survivors, within NodeTTL + ReapInterval; a channel that
// survivors still hold is not.
func TestRedisVacatedOnceWhenTheLastNodeDies(t *testing.T) {
	addr := redistest.Addr(t)
	prefix := redistest.Prefix(t)
	redistest.CleanupKeys(t, addr, prefix)
	const nodeTTL, reap = time.Second, 100 * time.Millisecond
	hooks := &hookLog{}
	cfg := ws.Config{
		OnChannelOccupied: func(ch string) { hooks.add("occupied %s", ch) },
		OnChannelVacated:  func(ch string) { hooks.add("vacated %s", ch) },
	}
	survivors := redisNodes(t, 2, ws.RedisOptions{Addrs: []string{addr}, KeyPrefix: prefix, NodeTTL: nodeTTL, ReapInterval: reap}, cfg, nil)

	// The child is this test binary acting as a node (child_test.go).
	child := exec.Command(os.Args[0], "-test.run=^$")
	child.Env = append(os.Environ(), "WS_TEST_CHILD=occupancy-node", "WS_TEST_CHILD_PREFIX="+prefix, "WS_TEST_CHILD_REDIS="+addr)
	stdout, err := child.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, child.Start())
	t.Cleanup(func() { _ = child.Process.Kill(); _ = child.Wait() })
	lines := make(chan string, 16)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()
	next := func(prefix string) string {
		t.Helper()
		for {
			select {
			case l, ok := <-lines:
				require.True(t, ok, "the child ended before printing %q", prefix)
				if v, found := strings.CutPrefix(l, prefix+" "); found {
					return v
				}
			case <-time.After(10 * time.Second):
				t.Fatalf("the child printed no %q", prefix)
			}
		}
	}
	childNode := next("NODE")
	url := next("URL")

	local := survivors[0].dial(t, "")
	join(local, "shared")
	hooks.wait(t, "occupied shared", 1)
	ghost := (&testNode{url: url}).dial(t, "")
	join(ghost, "shared")
	join(ghost, "lonely")
	require.Equal(t, "lonely", next("OCCUPIED"), "the child occupied lonely, the survivors shared")

	killed := time.Now()
	require.NoError(t, child.Process.Signal(syscall.SIGKILL))
	_ = child.Wait()
	hooks.wait(t, "vacated lonely", 1)
	took := time.Since(killed)
	t.Logf("lonely was vacated %v after SIGKILL (bound NodeTTL+ReapInterval = %v)", took.Round(time.Millisecond), nodeTTL+reap)
	require.Less(t, took, nodeTTL+reap+time.Second, "vacated came later than the documented bound")

	// Once the dead node is out of Redis no reaper can find it again;
	// then every hook has been counted.
	rc := redis.NewClient(&redis.Options{Addr: addr})
	t.Cleanup(func() { _ = rc.Close() })
	require.Eventually(t, func() bool {
		in, err := rc.SIsMember(context.Background(), prefix+"occupancy:nodes", childNode).Result()
		return err == nil && !in
	}, 10*time.Second, 5*time.Millisecond)
	env := &apiEnv{nodes: survivors, hooks: hooks}
	env.settle(t)
	require.Equal(t, 1, hooks.count("vacated lonely"), "hooks %v", hooks.all())
	require.Zero(t, hooks.count("occupied lonely"), "hooks %v", hooks.all())
	require.Zero(t, hooks.count("vacated shared"), "hooks %v", hooks.all())
	got, err := survivors[1].hub.Channels(context.Background(), "")
	require.NoError(t, err)
	require.Equal(t, []ws.ChannelInfo{{Name: "shared", Subscriptions: 1}}, got)
}
