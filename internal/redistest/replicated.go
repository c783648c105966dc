package redistest

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Replicated is a primary, its replica and one address in front of them,
// as managed Redis serves a primary without Sentinel (a DNS name or a
// virtual IP that moves on failover): clients dial Addr and reach
// whichever server is the primary when they connect.
type Replicated struct {
	// Primary and Replica are the two redis-servers as started; after
	// Failover the replica is the primary.
	Primary, Replica *Server
	// Addr is the one address clients use.
	Addr string

	proxy *Proxy
}

// StartReplicated starts a primary and a replica of it on spare ports in
// 7000-7999 and the address in front of them, waits until the replica is
// in sync, and stops them when tb ends. It skips tb if redis-server is
// missing.
func StartReplicated(tb testing.TB) *Replicated {
	tb.Helper()
	dirs := subdirs(tb, 2)
	primary := startServer(tb, dirs[0])
	replica := startServer(tb, dirs[1], "--replicaof", "127.0.0.1", strconv.Itoa(primary.Port))
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	waitFor(ctx, tb, "the replica in sync", func() bool { return linkUp(ctx, replica) })
	p := StartProxy(tb, primary.Addr)
	return &Replicated{Primary: primary, Replica: replica, Addr: p.Addr, proxy: p}
}

// Failover is Promote, then MoveAddress: what clients of a managed Redis
// see when its endpoint moves to the new primary. Connections opened
// before stay on the old primary, now a replica: it answers reads and
// PUBLISH, refuses writes with READONLY, and gets what is published on the
// new primary through replication.
func (r *Replicated) Failover(tb testing.TB) {
	tb.Helper()
	r.Promote(tb)
	r.MoveAddress()
}

// Promote swaps the two servers' roles with Redis's own coordinated
// failover (FAILOVER: the primary pauses writes until the replica has
// them all, then replicates from it) and leaves Addr where it was, on
// the old primary: an endpoint whose move is late (a DNS TTL). It waits
// (at most 20 s) until the old primary is in sync with the new one, and
// returns with Primary and Replica swapped.
func (r *Replicated) Promote(tb testing.TB) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if out, err := r.Primary.CLI(ctx, "FAILOVER"); err != nil || !strings.Contains(out, "OK") {
		tb.Fatalf("FAILOVER: %v: %s", err, out)
	}
	waitFor(ctx, tb, "the failover", func() bool {
		info, err := r.Replica.CLI(ctx, "INFO", "replication")
		return err == nil && strings.Contains(info, "role:master") && linkUp(ctx, r.Primary)
	})
	r.Primary, r.Replica = r.Replica, r.Primary
}

// MoveAddress sends Addr's new connections to the primary; the open ones
// stay where they are.
func (r *Replicated) MoveAddress() { r.proxy.Retarget(r.Primary.Addr) }

// CutReplicaLink has the replica replicate from an address where nothing
// listens: it stays a read-only replica holding the data of now, and gets
// nothing published on the primary, as a failed primary that was cut off
// does.
func (r *Replicated) CutReplicaLink(tb testing.TB) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if out, err := r.Replica.CLI(ctx, "REPLICAOF", "127.0.0.1", "1"); err != nil {
		tb.Fatalf("cutting the replica's link: %v: %s", err, out)
	}
}

// Stall holds every byte through Addr, on the open connections and on
// new ones (which still reach the server Addr names when they connect),
// until Resume.
func (r *Replicated) Stall() { r.proxy.Stall() }

// Resume forwards what Stall held, and everything after it.
func (r *Replicated) Resume() { r.proxy.Resume() }

// linkUp reports whether s replicates from its primary with the link up.
func linkUp(ctx context.Context, s *Server) bool {
	info, err := s.CLI(ctx, "INFO", "replication")
	return err == nil && strings.Contains(info, "role:slave") && strings.Contains(info, "master_link_status:up")
}
