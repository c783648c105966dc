package ws

import (
	"context"
	"slices"
	"strings"
	"sync"
)

// MemoryStorage is a StorageClient for a single process. It is the default
// when NewHub is given a nil storage.
type MemoryStorage struct {
	mu       sync.Mutex
	channels map[string]*memPresence // guarded by mu
}

type memPresence struct {
	conns   map[string]string         // ConnID -> UserID
	members map[string]PresenceMember // UserID -> member
	count   map[string]int            // UserID -> number of conns
}

var (
	_ StorageClient   = (*MemoryStorage)(nil)
	_ PresenceCounter = (*MemoryStorage)(nil)
)

// NewMemoryStorage returns an empty in-process presence store.
func NewMemoryStorage() *MemoryStorage {
	return &MemoryStorage{channels: make(map[string]*memPresence)}
}

// AddPresence records conn; joined reports the user's first connection.
func (s *MemoryStorage) AddPresence(ctx context.Context, conn PresenceConn) (bool, error) {
	if err := ctx.Err(); err != nil {
		return false, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.channels[conn.Channel]
	if p == nil {
		p = &memPresence{conns: map[string]string{}, members: map[string]PresenceMember{}, count: map[string]int{}}
		s.channels[conn.Channel] = p
	}
	if _, ok := p.conns[conn.ConnID]; ok {
		return false, nil
	}
	uid := conn.Member.UserID
	p.conns[conn.ConnID] = uid
	p.count[uid]++
	p.members[uid] = conn.Member // the newest connection's info wins
	return p.count[uid] == 1, nil
}

// RemovePresence removes conn; left reports the user's last connection.
func (s *MemoryStorage) RemovePresence(ctx context.Context, conn PresenceConn) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.channels[conn.Channel]
	if p == nil {
		return false, nil
	}
	uid, ok := p.conns[conn.ConnID]
	if !ok {
		return false, nil
	}
	delete(p.conns, conn.ConnID)
	p.count[uid]--
	left := p.count[uid] == 0
	if left {
		delete(p.count, uid)
		delete(p.members, uid)
	}
	if len(p.conns) == 0 {
		delete(s.channels, conn.Channel)
	}
	return left, nil
}

// PresenceMembers returns the channel's members ordered by UserID.
func (s *MemoryStorage) PresenceMembers(ctx context.Context, channel string) ([]PresenceMember, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.mu.Lock()
	p := s.channels[channel]
	var out []PresenceMember
	if p != nil {
		out = make([]PresenceMember, 0, len(p.members))
		for _, m := range p.members {
			out = append(out, m)
		}
	}
	s.mu.Unlock()
	slices.SortFunc(out, func(a, b PresenceMember) int { return strings.Compare(a.UserID, b.UserID) })
	return out, nil
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
