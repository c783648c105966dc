package ws

import (
	"context"
	"slices"
	"strconv"
	"strings"
	"sync"
)

// MemoryStorage is a StorageClient for a single process. It is the default
// when NewHub is given a nil storage.
//
// A channel's state, version included, lives while the channel has
// members; when the last one leaves it is forgotten, and the channel's
// next join starts a new epoch. Epochs are the storage's random ID and a
// count of channel lives, so they never repeat.
type MemoryStorage struct {
	id string // random, made by NewMemoryStorage

	mu       sync.Mutex
	channels map[string]*memPresence // guarded by mu
	lives    uint64                  // guarded by mu; channel states created so far
	occupied map[string]int          // guarded by mu; channel -> hubs with subscribers (memory_occupancy.go)
}

type memPresence struct {
	conns   map[string]string         // ConnID -> UserID
	members map[string]PresenceMember // UserID -> member
	count   map[string]int            // UserID -> number of conns
	version PresenceVersion
}

var (
	_ StorageClient    = (*MemoryStorage)(nil)
	_ PresenceCounter  = (*MemoryStorage)(nil)
	_ ChannelOccupancy = (*MemoryStorage)(nil)
)

// NewMemoryStorage returns an empty in-process presence store.
func NewMemoryStorage() *MemoryStorage {
	return &MemoryStorage{id: newID()[:16], channels: make(map[string]*memPresence)}
}

// AddPresence records conn; changed reports the user's first connection,
// with the join event.
func (s *MemoryStorage) AddPresence(ctx context.Context, conn PresenceConn) (PresenceEvent, bool, error) {
	if err := ctx.Err(); err != nil {
		return PresenceEvent{}, false, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.channels[conn.Channel]
	if p == nil {
		s.lives++
		p = &memPresence{
			conns: map[string]string{}, members: map[string]PresenceMember{}, count: map[string]int{},
			version: PresenceVersion{Epoch: s.id + "." + strconv.FormatUint(s.lives, 36)},
		}
		s.channels[conn.Channel] = p
	}
	if _, ok := p.conns[conn.ConnID]; ok {
		return PresenceEvent{}, false, nil
	}
	uid := conn.Member.UserID
	p.conns[conn.ConnID] = uid
	p.count[uid]++
	p.members[uid] = conn.Member // the newest connection's info wins
	if p.count[uid] > 1 {
		return PresenceEvent{}, false, nil
	}
	p.version.Seq++
	return PresenceEvent{Conn: conn, Version: p.version, Count: len(p.members)}, true, nil
}

// RemovePresence removes conn; changed reports the user's last
// connection, with the leave event.
func (s *MemoryStorage) RemovePresence(ctx context.Context, conn PresenceConn) (PresenceEvent, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.channels[conn.Channel]
	if p == nil {
		return PresenceEvent{}, false, nil
	}
	uid, ok := p.conns[conn.ConnID]
	if !ok {
		return PresenceEvent{}, false, nil
	}
	delete(p.conns, conn.ConnID)
	p.count[uid]--
	if p.count[uid] > 0 {
		return PresenceEvent{}, false, nil
	}
	ev := PresenceEvent{Conn: PresenceConn{Channel: conn.Channel, ConnID: conn.ConnID, Member: p.members[uid]}, Left: true}
	delete(p.count, uid)
	delete(p.members, uid)
	p.version.Seq++
	ev.Version, ev.Count = p.version, len(p.members)
	if len(p.conns) == 0 {
		delete(s.channels, conn.Channel)
	}
	return ev, true, nil
}

// PresenceMembers returns the channel's members ordered by UserID and its
// version; a channel without members has the zero version.
func (s *MemoryStorage) PresenceMembers(ctx context.Context, channel string) ([]PresenceMember, PresenceVersion, error) {
	if err := ctx.Err(); err != nil {
		return nil, PresenceVersion{}, err
	}
	s.mu.Lock()
	p := s.channels[channel]
	var (
		out []PresenceMember
		v   PresenceVersion
	)
	if p != nil {
		out = make([]PresenceMember, 0, len(p.members))
		for _, m := range p.members {
			out = append(out, m)
		}
		v = p.version
	}
	s.mu.Unlock()
	slices.SortFunc(out, func(a, b PresenceMember) int { return strings.Compare(a.UserID, b.UserID) })
	return out, v, nil
}

// PresenceCount returns the number of users on channel in O(1), so a
// leave on a channel above Config.PresenceUsersLimit does not list it.
func (s *MemoryStorage) PresenceCount(ctx context.Context, channel string) (int, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if p := s.channels[channel]; p != nil {
		return len(p.members), nil
	}
	return 0, nil
}

// Close releases nothing; it exists to satisfy StorageClient.
func (s *MemoryStorage) Close() error { return nil }
