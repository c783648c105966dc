package ws

import (
	"maps"
	"slices"
	"strings"
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

func putConn(m map[string]map[string]PresenceMember, conn PresenceConn) {
	conns := m[conn.Channel]
	if conns == nil {
		conns = make(map[string]PresenceMember)
		m[conn.Channel] = conns
	}
	conns[conn.ConnID] = conn.Member
}

func dropConn(m map[string]map[string]PresenceMember, conn PresenceConn) {
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
