package ws

import (
	"context"
	"errors"

	"github.com/redis/go-redis/v9"
)

// A primary behind one address that moves on failover (a managed
// service's endpoint, a DNS name, a virtual IP) leaves the connections
// opened before the failover on the old primary, which is now a replica
// of the new one. A replica answers PUBLISH, and hands the publication
// to its own subscribers only; a broker whose pool stayed there saw
// every publish accepted while the nodes that had connected since (to
// the new primary) got none of them. Nothing fails over there, and no
// Sentinel tells anyone.
//
// So every pipeline the broker sends without Redis Cluster starts with
// a write Redis refuses on a replica: DEL of a key ws never creates,
// which costs the primary a lookup and sends nothing to replicas. A
// READONLY reply to it means the publications after it went to a
// replica: Publish fails with ErrPublishUncertain (they may have reached
// that server's subscribers), go-redis closes the connection (it does
// when a pipeline's first reply is READONLY, so the next dial reaches the
// address's new server), and the shard's link goes down and its
// subscription connection is replaced, as after a Sentinel failover. The
// monitor's peer count carries the same write, so an idle broker finds
// out within a HealthInterval, and a link waiting for its peers does not
// go live while its pool still reaches a replica.
//
// Redis Cluster moves slots and masters itself (MOVED), and the broker
// follows it there: no guard.

// replicaGuardLua defines refuseOnReplica(guard) for the scripts that
// may only read: a replica would answer them from data that may be older
// than the primary's (replication is asynchronous), so a member list
// could lack the member who just joined, or a history read the latest
// publications. It deletes guard, the replica guard's key, unless it is
// "" (Redis Cluster), and returns the replica's READONLY refusal for the
// script to return; the primary deletes nothing and sends nothing to its
// replicas. Any other refusal of the DEL (NOPERM for a user without it)
// is ignored, as the broker ignores it for its guard.
const replicaGuardLua = `
local function refuseOnReplica(guard)
  if guard == '' then return nil end
  local g = redis.pcall('DEL', guard)
  if type(g) == 'table' and g.err and string.sub(g.err, 1, 8) == 'READONLY' then return g end
  return nil
end
`

// A command a replica refused (READONLY) goes again, on another
// connection: go-redis closes a connection whose reply is READONLY, and
// the pool may hold as many to the old primary as it had connections, a
// busy node's PoolSize (10 per CPU by default). So it goes again until a
// refused send is one that dialled (the pools' count of dials, Misses,
// grew since the refusal before it): the address still names the
// replica, and the command fails. The pools are looked at only after a
// refusal; go-redis may keep pipelines in a pool of their own, counted
// too. A client without pool statistics gets replicaAttempts sends, and
// none gets more than maxReplicaAttempts.
const (
	replicaAttempts    = 4
	maxReplicaAttempts = 64
)

// replicaRetry follows a replica's refusals of one command (see above).
type replicaRetry struct {
	attempt int    // sends refused so far
	misses  uint64 // the pools' dials when the last refusal came
}

// again counts a refused send of a command on client c and reports
// whether the command goes again.
func (r *replicaRetry) again(c any) bool {
	r.attempt++
	p, stats := c.(interface{ PoolStats() *redis.PoolStats })
	switch {
	case r.attempt >= maxReplicaAttempts:
		return false
	case !stats:
		return r.attempt < replicaAttempts
	}
	st := p.PoolStats()
	m := uint64(st.Misses)
	if st.PipelineStats != nil {
		m += uint64(st.PipelineStats.Misses)
	}
	dialled := r.attempt > 1 && m > r.misses
	r.misses = m
	return !dialled
}

// onPrimary runs call, a command on c that a replica refuses with
// READONLY having done nothing, and again while it is refused on a
// connection that may have been pooled (replicaRetry). A refusal that the
// storage's pipelines already followed (replicaFollowed) is final: the
// address still names the replica.
func onPrimary(c any, call func() error) error {
	var r replicaRetry
	for {
		err := call()
		var followed replicaFollowed
		if !redis.IsReadOnlyError(err) || errors.As(err, &followed) || !r.again(c) {
			return err
		}
	}
}

// replicaFollowed is a replica's refusal (READONLY) that the storage's
// pipelines sent again until a send that dialled was refused too
// (autoPipeline.send): the command around it, which reads the same pool's
// statistics, does not follow it once more. It is the refusal itself to
// everything else (redis.IsReadOnlyError, the error's text).
type replicaFollowed struct{ error }

func (e replicaFollowed) Unwrap() error { return e.error }

// runOnPrimary runs script on c (a client) once (redis_once.go), and
// again while a replica refuses it, as onPrimary does: a replica refuses
// a script at its first write, and none of ws's scripts does anything
// before its first write that outlasts the refusal (reads, no PUBLISH),
// so a refused run did nothing.
func runOnPrimary(ctx context.Context, c processor, script *redis.Script, keys []string, args ...any) *redis.Cmd {
	var cmd *redis.Cmd
	_ = onPrimary(c, func() error {
		cmd = script.Run(ctx, once(c), keys, args...)
		return cmd.Err()
	})
	return cmd
}

// errReplica is the cause given when a connection reached a replica.
var errReplica = errors.New("the Redis server this node publishes to is a replica: the primary moved (a failover behind the same address), and a publication there reaches only that server's subscribers")

// guardKeyFor returns the key the guard deletes for a broker of prefix,
// or "" on Redis Cluster.
func guardKeyFor(client redis.UniversalClient, prefix string) string {
	if isCluster(client) {
		return ""
	}
	return prefix + "primary"
}

// sendGuarded sends, in one pipeline on c, the replica guard of key ("":
// none) and then what queue adds; each queued command holds its own
// result. The guard goes first because go-redis acts on a pipeline's
// first reply (it closes the connection on READONLY). It reports whether
// the server is a replica, with the guard's refusal as err, and otherwise
// returns the pipeline's first error; any other error of the guard
// (NOPERM for a user without DEL on the prefix, say) says nothing and is
// ignored.
func sendGuarded(ctx context.Context, c redis.Cmdable, key string, queue func(redis.Pipeliner)) (replica bool, err error) {
	pipe := c.Pipeline()
	var g *redis.IntCmd
	if key != "" {
		g = pipe.Del(ctx, key)
	}
	queue(pipe)
	err = execPipe(ctx, pipe)
	if g != nil && redis.IsReadOnlyError(g.Err()) {
		return true, g.Err()
	}
	return false, err
}

// replicaSeen moves the link down and has the monitor replace the
// subscription connection, if it is still live in session (0: whatever
// session is live). Many publishes of one pipeline report one replica;
// only the first moves the link.
func (sh *pubsubShard) replicaSeen(session uint64) {
	live := sh.live.Load()
	if live == 0 || session != 0 && live != session {
		return
	}
	sh.moveOff(errReplica)
}
