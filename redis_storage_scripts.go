package ws

import (
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

// channel returns the keys of one presence channel, in the order the
// scripts take them: conns, users, info, nodes, dead. The channel name is
// the hash tag, so all five share a cluster slot; a name that is empty or
// holds a brace (which would end the tag early) is tagged by its hash
// instead, and still spelled out in full after the tag.
func (k presenceKeys) channel(ch string) []string {
	base := k.prefix + "presence:{" + ch + "}:"
	if ch == "" || strings.ContainsAny(ch, "{}") {
		h := fnv.New64a()
		h.Write([]byte(ch))
		base = k.prefix + "presence:{" + strconv.FormatUint(h.Sum64(), 16) + "}:" + ch + ":"
	}
	return []string{base + "conns", base + "users", base + "info", base + "nodes", base + "dead"}
}

// addPresenceScript records a connection.
// KEYS: conns users info nodes dead. ARGV: connID nodeID userID info.
// Returns -1 if the node was reaped here (it must rejoin as a new node),
// 0 if connID is already present, 1 if the user joined, 2 if the user was
// already present through another connection.
var addPresenceScript = redis.NewScript(`
if redis.call('SISMEMBER', KEYS[5], ARGV[2]) == 1 then return -1 end
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2] .. '|' .. ARGV[3])
redis.call('HINCRBY', KEYS[4], ARGV[2], 1)
redis.call('HSET', KEYS[3], ARGV[3], ARGV[4])
if redis.call('HINCRBY', KEYS[2], ARGV[3], 1) == 1 then return 1 end
return 2
`)

// removePresenceScript removes a connection.
// KEYS: conns users info nodes. ARGV: connID.
// Returns {left, nodeID}: left is 1 if it was the user's last connection;
// nodeID is the node that had added it ("" if it was not present).
var removePresenceScript = redis.NewScript(`
local v = redis.call('HGET', KEYS[1], ARGV[1])
if not v then return {0, ''} end
local sep = string.find(v, '|', 1, true)
local node = string.sub(v, 1, sep - 1)
local user = string.sub(v, sep + 1)
redis.call('HDEL', KEYS[1], ARGV[1])
if redis.call('HINCRBY', KEYS[4], node, -1) <= 0 then redis.call('HDEL', KEYS[4], node) end
if redis.call('HINCRBY', KEYS[2], user, -1) > 0 then return {0, node} end
redis.call('HDEL', KEYS[2], user)
redis.call('HDEL', KEYS[3], user)
return {1, node}
`)

// reapPresenceScript removes every connection of a dead node from one
// channel and leaves a tombstone so the node cannot add more here.
// KEYS: conns users info nodes dead. ARGV: nodeID tombstoneMillis.
// Returns a flat list of userID, connID, info for each user who left.
var reapPresenceScript = redis.NewScript(`
redis.call('SADD', KEYS[5], ARGV[1])
redis.call('PEXPIRE', KEYS[5], ARGV[2])
if redis.call('HEXISTS', KEYS[4], ARGV[1]) == 0 then return {} end
redis.call('HDEL', KEYS[4], ARGV[1])
local prefix = ARGV[1] .. '|'
local all = redis.call('HGETALL', KEYS[1])
local out = {}
for i = 1, #all, 2 do
  local v = all[i + 1]
  if string.sub(v, 1, #prefix) == prefix then
    local user = string.sub(v, #prefix + 1)
    redis.call('HDEL', KEYS[1], all[i])
    if redis.call('HINCRBY', KEYS[2], user, -1) <= 0 then
      local info = redis.call('HGET', KEYS[3], user) or ''
      redis.call('HDEL', KEYS[2], user)
      redis.call('HDEL', KEYS[3], user)
      out[#out + 1] = user
      out[#out + 1] = all[i]
      out[#out + 1] = info
    end
  end
end
return out
`)
