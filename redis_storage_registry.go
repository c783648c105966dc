package ws

import (
	"errors"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"
)

// The storage's own record of its connections: the ones it added and has
// not removed (live), which MaintainPresence writes back when Redis lost
// them, and the ones whose removal failed (orphans), which it removes
// again. Both are guarded by RedisStorage.mu.

// track records conn as live, added under identity n. An add that wrote
// under an identity that has been rotated away since is claimed by the
// next MaintainPresence.
func (s *RedisStorage) track(conn PresenceConn, n *presenceNode) {
	s.mu.Lock()
	defer s.mu.Unlock()
	putConn(s.live, conn)
	dropConn(s.orphans, conn)
	if s.node != n {
		s.heal = true
	}
}

// untrack forgets conn as live.
func (s *RedisStorage) untrack(conn PresenceConn) {
	s.mu.Lock()
	defer s.mu.Unlock()
	dropConn(s.live, conn)
}

// orphan records a removal of conn that failed, for MaintainPresence to
// retry.
func (s *RedisStorage) orphan(conn PresenceConn) {
	s.mu.Lock()
	defer s.mu.Unlock()
	putConn(s.orphans, conn)
}

// holds reports whether conn is in set m (s.live or s.orphans).
func (s *RedisStorage) holds(m map[string]map[string]PresenceMember, conn PresenceConn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := m[conn.Channel][conn.ConnID]
	return ok
}

// snapshot copies set m (s.live or s.orphans), by channel, each channel's
// connections ordered by ConnID.
func (s *RedisStorage) snapshot(m map[string]map[string]PresenceMember) map[string][]PresenceConn {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string][]PresenceConn, len(m))
	for ch, conns := range m {
		list := make([]PresenceConn, 0, len(conns))
		for _, id := range slices.Sorted(maps.Keys(conns)) {
			list = append(list, PresenceConn{Channel: ch, ConnID: id, Member: conns[id]})
		}
		out[ch] = list
	}
	return out
}

func putConn(m map[string]map[string]PresenceMember, conn PresenceConn) { putIn(m, conn, conn.Member) }

// putIn sets v as conn's value in m, a map by channel and ConnID.
func putIn[V any](m map[string]map[string]V, conn PresenceConn, v V) {
	conns := m[conn.Channel]
	if conns == nil {
		conns = make(map[string]V)
		m[conn.Channel] = conns
	}
	conns[conn.ConnID] = v
}

// dropConn deletes conn from m, a map by channel and ConnID.
func dropConn[V any](m map[string]map[string]V, conn PresenceConn) {
	if conns := m[conn.Channel]; conns != nil {
		delete(conns, conn.ConnID)
		if len(conns) == 0 {
			delete(m, conn.Channel)
		}
	}
}

// sortedChannels returns the keys of a snapshot in order.
func sortedChannels(m map[string][]PresenceConn) []string {
	return slices.SortedFunc(maps.Keys(m), strings.Compare)
}

// An add whose outcome the storage never learnt (its script failed: a
// timeout, a dropped connection) may still run in Redis after the caller
// gave it up and removed the connection: its bytes wait in a kernel's
// buffer while the path to Redis is silent, or in a stopped Redis. Run
// then, it would leave an entry that no removal ever comes for, and a
// member who is not there for as long as the node lives. So every add
// script carries a token (fenceToken), the storage remembers the tokens of
// the adds whose outcome it does not know (fences), and the connection's
// removal adds them to the channel's tombstones (the dead set) in the
// same script, before it removes anything; an add finds its token there
// and does nothing. The tombstones are kept fenceTTL: longer than Linux
// keeps retransmitting unacknowledged data (about 15 minutes), so a late
// add that comes after them has been waiting in a Redis stopped that
// long.
const fenceTTL = 30 * time.Minute

// errFenced is what an add script says when its token was fenced; only a
// script run after its caller gave up should meet it.
var errFenced = errors.New("the add was fenced: its connection was removed before it ran")

// fenceToken names add number n of connection connID.
func fenceToken(connID string, n uint64) string {
	return connID + "#" + strconv.FormatUint(n, 10)
}

// fence records token, an add of conn whose outcome is unknown, for the
// connection's removal to fence. Like the removal, it runs under conn's
// connOps lock.
func (s *RedisStorage) fence(conn PresenceConn, token string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	putIn(s.fences, conn, append(s.fences[conn.Channel][conn.ConnID], token))
}

// fenceTokens returns the tokens conn's removal fences.
func (s *RedisStorage) fenceTokens(conn PresenceConn) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.fences[conn.Channel][conn.ConnID]
}

// unfence forgets conn's tokens once a removal fenced them: none can have
// come since, as both hold conn's connOps lock.
func (s *RedisStorage) unfence(conn PresenceConn) {
	s.mu.Lock()
	defer s.mu.Unlock()
	dropConn(s.fences, conn)
}
