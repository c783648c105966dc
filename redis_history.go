package ws

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"github.com/redis/go-redis/v9"
)

// Channel history on Redis. Each history channel has three keys: a list
// of its latest publications, oldest first (so the last entry has the
// latest offset and the others count down from it), a hash holding its
// epoch (e), latest offset (o) and the run_id of the Redis process that
// wrote them (r), and a check marker (below). One script assigns the
// offset, appends to the list, trims it, sets the keys' expiry and
// publishes, so offset order is publish order on every node. On Redis
// Cluster with sharded pub/sub the keys carry the hash tag of the
// channel's partition ("ws:{s3}:hist:chat"), so the script's keys and the
// channel it publishes on share one slot; otherwise they carry the
// channel's name as their tag ("ws:hist:{chat}").
//
// As for presence versions (see versionLua), the epoch is valid only on
// the Redis process that wrote it: a Redis restarted from a snapshot or
// append-only file, or a replica promoted by a failover, may have lost the
// latest publications and would give their offsets out again, so the
// channel starts a new epoch there. Checking costs more than the rest of
// a publication, so it is remembered for historyCheckEvery (by the
// server's clock) in two marker keys that expire then: the channel's
// check marker holds its epoch, checked against the running process, and
// a run marker shared by many channels (see historyKeys) holds the
// run_id, which asking Redis for (INFO) costs more still. While a marker
// lives what it holds is true of the running process, since no restart or
// failover brings keys back and serves a command within that time (a
// restarted Redis drops keys whose expiry passed). So a channel published
// often reads one key (its check marker) on the way of almost every
// publication, and one published rarely reads its hash and the run marker
// instead of asking INFO each time (docs/benchmarks.md).
//
// Redis must not evict these keys (a maxmemory-policy other than
// noeviction can drop a list or hash and its history with it, without a
// new epoch; docs/redis.md). The one case the scripts do notice is a hash
// gone while its marker lives: they then start a new epoch, as for a hash
// gone any other way.

var _ HistoryBroker = (*RedisBroker)(nil)

// historyCheckEvery is, in milliseconds, how long a channel's run_id
// check holds.
const historyCheckEvery = 10

// historyEpochLua returns the channel's epoch, starting a new one (with
// no publication kept, at offset 0) when the meta hash is missing or was
// written by another Redis process, and whether it checked that (so the
// caller refreshes expiries only then). Each check also makes the hash
// live at least metaTTL (ms) more; between checks it is not touched.
// KEYS[1] is the list, KEYS[2] the hash, KEYS[3] the channel's check
// marker, KEYS[4] the run marker.
var historyEpochLua = `
local function historyEpoch(newEpoch, metaTTL)
  local marked = redis.call('get', KEYS[3])
  if marked then return marked, false end
  local m = redis.call('hmget', KEYS[2], 'e', 'r')
  local run = redis.call('get', KEYS[4])
  if not run then
    run = string.match(redis.call('info', 'server'), 'run_id:(%x+)')
    redis.call('set', KEYS[4], run, 'px', ` + strconv.Itoa(historyCheckEvery) + `)
  end
  local epoch = m[1]
  if not (epoch and m[2] == run) then
    epoch = newEpoch
    redis.call('del', KEYS[1])
    redis.call('hset', KEYS[2], 'e', epoch, 'o', 0, 'r', run)
  end
  redis.call('set', KEYS[3], epoch, 'px', ` + strconv.Itoa(historyCheckEvery) + `)
  if redis.call('pttl', KEYS[2]) < tonumber(metaTTL) then
    redis.call('pexpire', KEYS[2], metaTTL)
  end
  return epoch, true
end

-- historyLost tells whether the hash went while the marker lived (the
-- epoch came from the marker and the hash has no epoch, or another); it
-- then drops the marker so that historyEpoch starts a new epoch.
local function historyLost(epoch)
  if redis.call('hget', KEYS[2], 'e') == epoch then return false end
  redis.call('del', KEYS[3])
  return true
end
`

// historyPublishScript publishes a batch of one or more publications of
// one channel (see redis_history_batch.go), as one pub/sub message: the
// publication, or the batch of them (see eachInBatch). The list's expiry
// is set when the list is new and refreshed at each run_id check, so it
// runs from the channel's last publication give or take
// historyCheckEvery. KEYS list, meta, check marker, run marker; ARGV size,
// ttl (ms), meta ttl (ms, at least historyMetaTTL: far longer than
// historyCheckEvery, so refreshing it at each check is enough), a fresh
// epoch in case the channel has none, the Redis channel, "1" for
// SPUBLISH, then the payloads. It returns {first offset, epoch}; the
// payloads have the offsets from there on, in order.
var historyPublishScript = redis.NewScript(historyEpochLua + historyPublishLua)

const historyPublishLua = `
local epoch, checked = historyEpoch(ARGV[4], ARGV[3])
local n = #ARGV - 6
local last = redis.call('hincrby', KEYS[2], 'o', n)
if last == n and not checked and historyLost(epoch) then
  epoch, checked = historyEpoch(ARGV[4], ARGV[3])
  last = redis.call('hincrby', KEYS[2], 'o', n)
end
local size = tonumber(ARGV[1])
local len = redis.call('rpush', KEYS[1], unpack(ARGV, 7))
if len > size then
  redis.call('ltrim', KEYS[1], -size, -1)
end
if checked or len == n then
  redis.call('pexpire', KEYS[1], ARGV[2])
end
local msg
if n == 1 then
  msg = 'h' .. string.format('%d', last) .. ':' .. epoch .. ':' .. ARGV[7]
else
  local parts = {'H'}
  for i = 1, n do
    local p = 'h' .. string.format('%d', last - n + i) .. ':' .. epoch .. ':' .. ARGV[6 + i]
    parts[#parts + 1] = string.format('%d', #p) .. ':' .. p
  end
  msg = table.concat(parts)
end
if ARGV[6] == '1' then
  redis.call('spublish', ARGV[5], msg)
else
  redis.call('publish', ARGV[5], msg)
end
return {string.format('%d', last - n + 1), epoch}
`

// historyReadScript: KEYS list, meta, check marker, run marker; ARGV a
// fresh epoch in case the channel has none, meta ttl (ms), after, until
// (0: none), limit, "1" for newest first, the replica guard's key (it
// writes only when the check marker has gone, so it refuses a replica
// itself: replicaGuardLua). It returns {epoch, latest, oldest, offset1,
// payload1, offset2, payload2, ...}, offsets as strings.
var historyReadScript = redis.NewScript(historyEpochLua + replicaGuardLua + `
local refused = refuseOnReplica(ARGV[7])
if refused then return refused end
local epoch, checked = historyEpoch(ARGV[1], ARGV[2])
local top = redis.call('hget', KEYS[2], 'o')
if not top and not checked and historyLost(epoch) then
  epoch = historyEpoch(ARGV[1], ARGV[2])
  top = redis.call('hget', KEYS[2], 'o')
end
top = tonumber(top)
local oldest = top - redis.call('llen', KEYS[1]) + 1
local res = {epoch, string.format('%d', top), string.format('%d', oldest)}
local limit = tonumber(ARGV[5])
local from, to = math.max(tonumber(ARGV[3]) + 1, oldest), top
if ARGV[4] ~= '0' then to = math.min(to, tonumber(ARGV[4])) end
if limit <= 0 or from > to then return res end
if ARGV[6] == '1' then
  from = math.max(from, to - limit + 1)
  local entries = redis.call('lrange', KEYS[1], from - oldest, to - oldest)
  for i = #entries, 1, -1 do
    res[#res + 1] = string.format('%d', from + i - 1)
    res[#res + 1] = entries[i]
  end
else
  to = math.min(to, from + limit - 1)
  local entries = redis.call('lrange', KEYS[1], from - oldest, to - oldest)
  for i = 1, #entries do
    res[#res + 1] = string.format('%d', from + i - 1)
    res[#res + 1] = entries[i]
  end
end
return res
`)

// historyKeys returns the list, meta, check marker and run marker keys of
// channel, in partition i. The run marker is shared by every channel
// whose keys can share a slot with it: all of them on one Redis server,
// those of one partition with sharded pub/sub, and on Redis Cluster
// without it none (each channel has its own).
func (b *RedisBroker) historyKeys(i int, channel string) []string {
	if b.sharded {
		tag := b.prefix + "{s" + strconv.Itoa(i) + "}:"
		return []string{tag + "hist:" + channel, tag + "hmeta:" + channel, tag + "hchk:" + channel, tag + "hrun"}
	}
	tag := "{" + channel + "}"
	run := b.prefix + "hrun"
	if isCluster(b.client) {
		run += ":" + tag
	}
	return []string{b.prefix + "hist:" + tag, b.prefix + "hmeta:" + tag, b.prefix + "hchk:" + tag, run}
}

// scripter returns the client to run a script on key with: on Redis
// Cluster the client of the node that owns key's slot, so a command is
// never sent again to another node (see publishOnce).
func (b *RedisBroker) scripter(ctx context.Context, key string) (processor, error) {
	cc, cluster := b.client.(*redis.ClusterClient)
	if !cluster {
		return b.client, nil
	}
	node, err := cc.MasterForKey(ctx, key)
	if err != nil {
		return nil, &noConnError{err: err}
	}
	return node, nil
}

// PublishHistory runs one script that keeps payload in channel's history
// and publishes it (see HistoryBroker); publications of one channel made
// at the same time share one run (redis_history_batch.go). It promises
// what Publish does: nil means Redis ran the script while this node's
// subscriptions were live, ErrBrokerUnavailable that it did not,
// ErrPublishUncertain that it may have.
func (b *RedisBroker) PublishHistory(ctx context.Context, channel string, payload []byte, opts HistoryOptions) (HistoryPosition, error) {
	if b.closed.Load() {
		return HistoryPosition{}, ErrHubClosed
	}
	if opts.TTL <= 0 {
		opts.TTL = defaultHistoryTTL
	}
	opts.Size = max(opts.Size, 1)
	return b.history.publish(ctx, b, channel, payload, opts)
}

// runHistoryBatch runs the publish script for batch, publications of
// channel in order, and records each one's position or error.
func (b *RedisBroker) runHistoryBatch(ctx context.Context, channel string, batch []*historyCall) {
	i := b.shardOf(channel)
	sh := b.shards[i]
	fail := func(err error) {
		for _, c := range batch {
			c.err = err
		}
	}
	session, err := sh.admit(ctx)
	if err != nil {
		fail(fmt.Errorf("%w: redis publish on %q: %w", ErrBrokerUnavailable, channel, err))
		return
	}
	keys := b.historyKeys(i, channel)
	sharded := "0"
	if b.sharded {
		sharded = "1"
	}
	// The batch's options are its first call's: every node gives a
	// channel the same.
	opts := batch[0].opts
	args := make([]any, 0, 6+len(batch))
	args = append(args, opts.Size, opts.TTL.Milliseconds(), max(opts.TTL, historyMetaTTL).Milliseconds(), newEpoch(),
		b.redisChannel(i, channel), sharded)
	for _, c := range batch {
		args = append(args, c.payload)
	}
	var res []any
	c, err := b.scripter(ctx, keys[0])
	if err == nil {
		res, err = runScript(ctx, c, historyPublishScript, keys, args...)
	}
	if err != nil {
		if publishNotSent(err) {
			fail(fmt.Errorf("%w: redis publish on %q: %w", ErrBrokerUnavailable, channel, err))
		} else {
			fail(fmt.Errorf("%w: redis publish on %q: %w", ErrPublishUncertain, channel, err))
		}
		return
	}
	var first uint64
	var epoch string
	if len(res) == 2 {
		first, err = replyUint(res[0])
		epoch, _ = res[1].(string)
	}
	if len(res) != 2 || err != nil || epoch == "" {
		fail(fmt.Errorf("%w: redis publish on %q: unexpected reply %v", ErrPublishUncertain, channel, res))
		return
	}
	live := sh.stillLive(session)
	for j, c := range batch {
		c.pos = HistoryPosition{Offset: first + uint64(j), Epoch: epoch}
		if !live {
			c.err = fmt.Errorf("%w: redis publish on %q: the subscription connection failed while publishing", ErrPublishUncertain, channel)
		}
	}
}

// ReadHistory reads channel's history with one script (see HistoryBroker).
// Errors wrap ErrBrokerUnavailable.
func (b *RedisBroker) ReadHistory(ctx context.Context, channel string, r HistoryRange) (HistoryPage, error) {
	if b.closed.Load() {
		return HistoryPage{}, ErrHubClosed
	}
	i := b.shardOf(channel)
	keys := b.historyKeys(i, channel)
	reverse := "0"
	if r.Reverse {
		reverse = "1"
	}
	c, err := b.scripter(ctx, keys[0])
	var res []any
	if err == nil {
		res, err = runScript(ctx, c, historyReadScript, keys, newEpoch(), historyMetaTTL.Milliseconds(),
			r.After, r.Until, max(r.Limit, 0), reverse, b.guardKey)
	}
	if err != nil {
		return HistoryPage{}, fmt.Errorf("%w: redis read history of %q: %w", ErrBrokerUnavailable, channel, err)
	}
	page, err := parseHistoryReply(res)
	if err != nil {
		return HistoryPage{}, fmt.Errorf("%w: redis read history of %q: %w", ErrBrokerUnavailable, channel, err)
	}
	return page, nil
}

// runScript runs s (EVALSHA, then EVAL if Redis does not have it yet) and
// returns its array reply.
func runScript(ctx context.Context, c processor, s *redis.Script, keys []string, args ...any) ([]any, error) {
	v, err := runOnPrimary(ctx, c, s, keys, args...).Result()
	if err != nil {
		return nil, err
	}
	res, ok := v.([]any)
	if !ok {
		return nil, fmt.Errorf("unexpected reply %T", v)
	}
	return res, nil
}

var errHistoryReply = errors.New("malformed history reply")

// parseHistoryReply reads historyReadScript's reply.
func parseHistoryReply(res []any) (HistoryPage, error) {
	var page HistoryPage
	if len(res) < 3 || len(res)%2 == 0 {
		return page, errHistoryReply
	}
	epoch, ok := res[0].(string)
	if !ok {
		return page, errHistoryReply
	}
	top, err1 := replyUint(res[1])
	oldest, err2 := replyUint(res[2])
	if err := errors.Join(err1, err2); err != nil {
		return page, err
	}
	page.Latest, page.Oldest = HistoryPosition{Offset: top, Epoch: epoch}, oldest
	for i := 3; i < len(res); i += 2 {
		off, err := replyUint(res[i])
		if err != nil {
			return page, err
		}
		p, ok := res[i+1].(string)
		if !ok {
			return page, errHistoryReply
		}
		page.Entries = append(page.Entries, HistoryEntry{Offset: off, Payload: []byte(p)})
	}
	return page, nil
}

// replyUint reads an offset from a script's reply: a string of digits.
func replyUint(v any) (uint64, error) {
	switch x := v.(type) {
	case string:
		n, err := strconv.ParseUint(x, 10, 64)
		if err != nil {
			return 0, errHistoryReply
		}
		return n, nil
	case int64:
		if x >= 0 {
			return uint64(x), nil
		}
	}
	return 0, errHistoryReply
}
