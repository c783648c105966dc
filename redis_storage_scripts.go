package ws

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"hash/fnv"
	"strconv"
	"strings"

	"github.com/redis/go-redis/v9"
)

// presenceKeys names the keys of RedisStorage. See the RedisStorage doc
// comment and docs/redis.md for the layout.
type presenceKeys struct{ prefix string }

func (k presenceKeys) nodes() string          { return k.prefix + "nodes" }
func (k presenceKeys) alive(id string) string { return k.prefix + "node:{" + id + "}:alive" }
func (k presenceKeys) nodeChannels(id string) string {
	return k.prefix + "node:{" + id + "}:channels"
}

// channel returns the keys of one presence channel, in the order every
// script takes them: conns, users, info, nodes, dead, version. The channel
// name is the hash tag, so all six share a cluster slot; a name that is
// empty or holds a brace (which would end the tag early) is tagged by its
// hash instead, and still spelled out in full after the tag.
//
// The six keys are cut from one string: every presence call makes them,
// and two allocations are a quarter of what building each would take.
func (k presenceKeys) channel(ch string) []string {
	tag, name := ch, ""
	if ch == "" || strings.ContainsAny(ch, "{}") {
		h := fnv.New64a()
		h.Write([]byte(ch))
		tag, name = strconv.FormatUint(h.Sum64(), 16), ch+":"
	}
	base := len(k.prefix) + len("presence:{") + len(tag) + len("}:") + len(name)
	var b strings.Builder
	b.Grow(len(presenceKeySuffixes)*base + presenceKeySuffixLen)
	for _, suffix := range presenceKeySuffixes {
		b.WriteString(k.prefix)
		b.WriteString("presence:{")
		b.WriteString(tag)
		b.WriteString("}:")
		b.WriteString(name)
		b.WriteString(suffix)
	}
	all := b.String()
	keys := make([]string, len(presenceKeySuffixes))
	for i, suffix := range presenceKeySuffixes {
		keys[i], all = all[:base+len(suffix)], all[base+len(suffix):]
	}
	return keys
}

// presenceKeySuffixes name a presence channel's keys, in script order.
var presenceKeySuffixes = [...]string{"conns", "users", "info", "nodes", "dead", "version"}

// presenceKeySuffixLen is the length of presenceKeySuffixes joined.
var presenceKeySuffixLen = func() (n int) {
	for _, s := range presenceKeySuffixes {
		n += len(s)
	}
	return n
}()

// newEpoch returns a random epoch for a script to use if it has to start
// a channel's version afresh.
func newEpoch() string {
	var b [8]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails
	return hex.EncodeToString(b[:])
}

// versionLua is the part every script shares: the channel's version.
//
// The version hash holds epoch, seq and run, the run_id of the Redis
// process that wrote it. A version is valid only on the process that
// wrote it: a Redis restarted from a snapshot or append-only file, or a
// replica promoted by a failover, may have lost the latest writes and
// would hand out a Seq that was already announced. So when run differs
// from the server's own run_id, or the hash is missing (FLUSHALL, a
// restart without persistence), the channel starts a new epoch (ARGV's
// newEpoch, made by the caller) at seq 0. Only numbering a change needs
// this check; RedisStorage.PresenceMembers reads without it. A channel
// whose last member left forgets its version, so the keyspace holds
// nothing for it.
const versionLua = `
local function epoch(newEpoch)
  local run = string.match(redis.call('INFO', 'server'), 'run_id:(%x+)')
  local v = redis.call('HMGET', KEYS[6], 'epoch', 'run')
  if v[1] and v[2] == run then return v[1] end
  redis.call('HSET', KEYS[6], 'epoch', newEpoch, 'seq', 0, 'run', run)
  return newEpoch
end
local function bump(newEpoch)
  local e = epoch(newEpoch)
  return e, redis.call('HINCRBY', KEYS[6], 'seq', 1)
end
local function forget()
  if redis.call('EXISTS', KEYS[2]) == 0 then redis.call('DEL', KEYS[6]) end
end
`

// tombstoneLua defines keepTombstones(ms), which keeps the channel's
// tombstones (reaped nodes, fenced adds) for at least ms milliseconds:
// it lengthens their expiry, never shortens it.
const tombstoneLua = `
local function keepTombstones(ms)
  if redis.call('PTTL', KEYS[5]) < tonumber(ms) then redis.call('PEXPIRE', KEYS[5], ms) end
end
`

// addPresenceScript records a connection.
// KEYS: the channel's. ARGV: connID nodeID userID info newEpoch token.
// Returns {-1} if the node was reaped here (it must rejoin as a new node),
// {-2} if the add was fenced (its caller gave it up and removed the
// connection: RedisStorage.fences), {0} if connID is already present, {2}
// if the user was already present through another connection, {1, epoch,
// seq} if the user joined.
var addPresenceScript = redis.NewScript(versionLua + `
if redis.call('SISMEMBER', KEYS[5], ARGV[2]) == 1 then return {-1} end
if redis.call('SISMEMBER', KEYS[5], ARGV[6]) == 1 then return {-2} end
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 then return {0} end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2] .. '|' .. ARGV[3])
redis.call('HINCRBY', KEYS[4], ARGV[2], 1)
redis.call('HSET', KEYS[3], ARGV[3], ARGV[4])
if redis.call('HINCRBY', KEYS[2], ARGV[3], 1) > 1 then return {2} end
local e, s = bump(ARGV[5])
return {1, e, s, redis.call('HLEN', KEYS[2])}
`)

// removePresenceScript removes a connection, first fencing the adds of
// it whose outcome its caller never learnt.
// KEYS: the channel's. ARGV: connID newEpoch, then, when there are adds
// to fence, fenceMillis token...
// Returns {0, nodeID} if the user is still present or {1, nodeID, userID,
// info, epoch, seq} if the user left; nodeID is the node that had added
// the connection ("" if it was not present).
var removePresenceScript = redis.NewScript(versionLua + tombstoneLua + `
if #ARGV > 2 then
  for i = 4, #ARGV do redis.call('SADD', KEYS[5], ARGV[i]) end
  keepTombstones(ARGV[3])
end
local v = redis.call('HGET', KEYS[1], ARGV[1])
if not v then return {0, ''} end
local sep = string.find(v, '|', 1, true)
local node = string.sub(v, 1, sep - 1)
local user = string.sub(v, sep + 1)
redis.call('HDEL', KEYS[1], ARGV[1])
if redis.call('HINCRBY', KEYS[4], node, -1) <= 0 then redis.call('HDEL', KEYS[4], node) end
if redis.call('HINCRBY', KEYS[2], user, -1) > 0 then return {0, node} end
local info = redis.call('HGET', KEYS[3], user) or ''
redis.call('HDEL', KEYS[2], user)
redis.call('HDEL', KEYS[3], user)
local e, s = bump(ARGV[2])
local n = redis.call('HLEN', KEYS[2])
forget()
return {1, node, user, info, e, s, n}
`)

// reapPresenceScript removes every connection of a dead node from one
// channel and leaves a tombstone so the node cannot add more here.
// KEYS: the channel's. ARGV: nodeID tombstoneMillis newEpoch.
// Returns {epoch, userID, connID, info, seq, count, ...}: five entries for
// each user who left (count: the members left right after), {} if the
// node had nothing here.
var reapPresenceScript = redis.NewScript(versionLua + tombstoneLua + `
redis.call('SADD', KEYS[5], ARGV[1])
keepTombstones(ARGV[2])
if redis.call('HEXISTS', KEYS[4], ARGV[1]) == 0 then return {} end
redis.call('HDEL', KEYS[4], ARGV[1])
local prefix = ARGV[1] .. '|'
local all = redis.call('HGETALL', KEYS[1])
local out = {''}
for i = 1, #all, 2 do
  local v = all[i + 1]
  if string.sub(v, 1, #prefix) == prefix then
    local user = string.sub(v, #prefix + 1)
    redis.call('HDEL', KEYS[1], all[i])
    if redis.call('HINCRBY', KEYS[2], user, -1) <= 0 then
      local info = redis.call('HGET', KEYS[3], user) or ''
      redis.call('HDEL', KEYS[2], user)
      redis.call('HDEL', KEYS[3], user)
      local e, s = bump(ARGV[3])
      out[1] = e
      out[#out + 1] = user
      out[#out + 1] = all[i]
      out[#out + 1] = info
      out[#out + 1] = s
      out[#out + 1] = redis.call('HLEN', KEYS[2])
    end
  end
end
forget()
return out
`)

// claimPresenceScript makes sure each of a node's live connections is
// recorded in one channel, under the node's current ID: a connection that
// is missing (Redis lost it, or it was reaped while the node stalled) is
// added, and one recorded under another of the node's IDs is moved.
// KEYS: the channel's. ARGV: nodeID newEpoch, then connID userID info for
// each connection.
// Returns {-1} if the node was reaped here, else {0, epoch, code, seq,
// count, ...} with one code, seq and count per connection: 0 already
// there, 1 moved, 2 added (the user was present), 3 added and the user
// joined at seq, leaving count members.
var claimPresenceScript = redis.NewScript(versionLua + `
if redis.call('SISMEMBER', KEYS[5], ARGV[1]) == 1 then return {-1} end
local out = {0, ''}
for i = 3, #ARGV, 3 do
  local conn, user, info = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  local v = redis.call('HGET', KEYS[1], conn)
  local code, seq, count = 0, 0, 0
  if v then
    local sep = string.find(v, '|', 1, true)
    local owner = string.sub(v, 1, sep - 1)
    if owner ~= ARGV[1] then
      redis.call('HSET', KEYS[1], conn, ARGV[1] .. '|' .. string.sub(v, sep + 1))
      if redis.call('HINCRBY', KEYS[4], owner, -1) <= 0 then redis.call('HDEL', KEYS[4], owner) end
      redis.call('HINCRBY', KEYS[4], ARGV[1], 1)
      code = 1
    end
  else
    redis.call('HSET', KEYS[1], conn, ARGV[1] .. '|' .. user)
    redis.call('HINCRBY', KEYS[4], ARGV[1], 1)
    redis.call('HSET', KEYS[3], user, info)
    code = 2
    if redis.call('HINCRBY', KEYS[2], user, 1) == 1 then
      local e
      e, seq = bump(ARGV[2])
      out[2] = e
      code = 3
      count = redis.call('HLEN', KEYS[2])
    end
  end
  out[#out + 1] = code
  out[#out + 1] = seq
  out[#out + 1] = count
end
return out
`)

// membersScript reads a channel's members and version together, as a
// script rather than MULTI/EXEC so that the member-list reads of a
// reconnect storm share round trips with the other scripts
// (redis_autopipeline.go). KEYS: info, version; ARGV: the replica guard's
// key. It returns {epoch or false, seq or false, user, info, user, info,
// ...}.
var membersScript = redis.NewScript(replicaGuardLua + `
local refused = refuseOnReplica(ARGV[1])
if refused then return refused end
local out = redis.call('HMGET', KEYS[2], 'epoch', 'seq')
local info = redis.call('HGETALL', KEYS[1])
for i = 1, #info do out[#out + 1] = info[i] end
return out
`)

// countScript counts a channel's members, on the primary
// (replicaGuardLua).
// KEYS: info; ARGV: the replica guard's key.
var countScript = redis.NewScript(replicaGuardLua + `
local refused = refuseOnReplica(ARGV[1])
if refused then return refused end
return redis.call('HLEN', KEYS[1])
`)

// scriptReply reads a script's reply: a flat list of integers and
// strings. The first error sticks; later reads return zero values.
type scriptReply struct {
	vals []any
	err  error
}

func newScriptReply(res any, err error) *scriptReply {
	r := &scriptReply{err: err}
	if err == nil {
		vals, ok := res.([]any)
		if !ok {
			r.err = fmt.Errorf("unexpected script reply %T", res)
		}
		r.vals = vals
	}
	return r
}

func (r *scriptReply) len() int { return len(r.vals) }

func (r *scriptReply) int(i int) int64 {
	if r.err != nil {
		return 0
	}
	if i < len(r.vals) {
		if v, ok := r.vals[i].(int64); ok {
			return v
		}
	}
	r.err = fmt.Errorf("unexpected script reply %v: want an integer at %d", r.vals, i)
	return 0
}

func (r *scriptReply) str(i int) string {
	if r.err != nil {
		return ""
	}
	if i < len(r.vals) {
		if v, ok := r.vals[i].(string); ok {
			return v
		}
	}
	r.err = fmt.Errorf("unexpected script reply %v: want a string at %d", r.vals, i)
	return ""
}

func (r *scriptReply) list(i int) []any {
	if r.err != nil {
		return nil
	}
	if i < len(r.vals) {
		if v, ok := r.vals[i].([]any); ok {
			return v
		}
	}
	r.err = fmt.Errorf("unexpected script reply %v: want a list at %d", r.vals, i)
	return nil
}

// version reads an epoch at i and a seq at j.
func (r *scriptReply) version(i, j int) PresenceVersion {
	return PresenceVersion{Epoch: r.str(i), Seq: uint64(r.int(j))}
}
