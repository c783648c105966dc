package ws_test

import (
	"fmt"
	"math/rand/v2"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	ws "github.com/vortechron/go-ws"
	"github.com/vortechron/go-ws/internal/redistest"
)

// The chaos soak: the reload soak (presence_reload_test.go) on three
// nodes, while Redis and the nodes' paths to it fail under the churn.
// Each node reaches a Redis server of the test's own through a proxy of
// its own, and beside every phase's churn one fault strikes, the four
// kinds in turn, at a random moment of the phase's first half second:
//
//   - Redis stops (SIGSTOP) for 0.3 to 1.5 s, then goes on;
//   - Redis is killed and restarted without persistence: every key lost;
//   - one node's path to Redis is cut (a partition of that node), every
//     other time for 1 s and for NodeTTL + 1.5 s, so that the other
//     nodes reap its members while its users are still there;
//   - one node's open connections to Redis go silent (a NAT that forgot
//     them) for a second.
//
// Tabs that get an unavailable error frame subscribe again after a
// short backoff, as docs/presence.md tells clients to. At every quiet
// point, once the fault has ended and the churn paused, every node's
// PresenceMembers and every observer's list must come to equal the truth
// within chaosSettle: the guarantee of docs/presence.md ("exactly the
// channel's membership whenever the channel is quiet") with the bounds it
// gives for lost announcements (two maintenance intervals) and for
// presence Redis lost (one).
//
// WS_CHAOS_SOAK sets how long it churns, quiet points not counted
// (default 15s); -short skips it.

const (
	chaosNodeTTL  = 3 * time.Second
	chaosMaintain = chaosNodeTTL / 2 // the Hub's maintenance interval: NodeTTL/2 (RedisOptions.ReapInterval)
	// chaosSettle bounds a quiet point after a fault: a reaped node's
	// members are put back within a maintenance interval of its path
	// coming back, a lost announcement is made good within two, and the
	// observers then get reloadSettle as in the reload soak.
	chaosSettle = 2*chaosMaintain + reloadSettle
)

func TestPresenceChaosSoak(t *testing.T) {
	if testing.Short() {
		t.Skip("chaos soak churns for WS_CHAOS_SOAK (default 15s) while Redis fails; skipped with -short")
	}
	per := 15 * time.Second
	if v := os.Getenv("WS_CHAOS_SOAK"); v != "" {
		d, err := time.ParseDuration(v)
		require.NoError(t, err, "WS_CHAOS_SOAK=%q is not a duration", v)
		per = d
	}
	srv := redistest.StartServer(t)
	o := ws.RedisOptions{NodeTTL: chaosNodeTTL, ReapInterval: chaosMaintain, HealthInterval: 100 * time.Millisecond,
		KeyPrefix: redistest.Prefix(t)}
	var log errorLog
	var nodes []*testNode
	var proxies []*redistest.Proxy
	for range 3 {
		px := redistest.StartProxy(t, srv.Addr)
		o.Addrs = []string{px.Addr}
		nodes = append(nodes, startRedisNodes(t, 1, o, ws.Config{}, presenceOptions(&log))...)
		proxies = append(proxies, px)
	}
	awaitReady(t, nodes...)

	s := newReloadSoak(t, nodes)
	s.retry = true
	s.settle = chaosSettle
	rng := rand.New(rand.NewPCG(7, 7))
	s.fault = func(phase int) string {
		// Strike some time into the phase; the fault may outlast it, and
		// the quiet point waits for it to end. It runs beside the test's
		// goroutine, so what fails goes to s.failures.
		sleep := func(d time.Duration) { <-time.After(d) }
		sleep(time.Duration(rng.IntN(int(reloadPhase / 3))))
		var what string
		switch phase % 4 {
		case 0:
			d := time.Duration(300+rng.IntN(1200)) * time.Millisecond
			what = fmt.Sprintf("Redis stopped for %v", d)
			if err := srv.Stop(); err != nil {
				s.failures.add(fmt.Sprintf("phase %d: SIGSTOP: %v", phase, err))
			}
			sleep(d)
			if err := srv.Cont(); err != nil {
				s.failures.add(fmt.Sprintf("phase %d: SIGCONT: %v", phase, err))
			}
		case 1:
			what = "Redis restarted empty"
			srv.Kill()
			if err := srv.Restart(); err != nil {
				s.failures.add(fmt.Sprintf("phase %d: restart: %v", phase, err))
			}
		case 2:
			i := rng.IntN(len(proxies))
			d := time.Second
			if phase/4%2 == 1 {
				d = chaosNodeTTL + 1500*time.Millisecond
			}
			what = fmt.Sprintf("node %d cut off for %v", i, d)
			proxies[i].Cut()
			sleep(d)
			proxies[i].Restore()
		default:
			i := rng.IntN(len(proxies))
			what = fmt.Sprintf("node %d's connections silent for 1s", i)
			proxies[i].Freeze()
			sleep(time.Second)
			proxies[i].Resume()
		}
		if !settles(20*time.Second, func() bool {
			for _, n := range nodes {
				if !n.hub.Health().BrokerHealthy {
					return false
				}
			}
			return true
		}) {
			s.failures.add(fmt.Sprintf("phase %d: the brokers were not healthy 20s after %s", phase, what))
		}
		return what
	}
	s.run(per)
	t.Logf("%d errors went to ErrorHandler (unavailable storage or broker during the faults)", len(log.all()))
}
