package ws

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// memoryHistory is MemoryBroker's channel history: for each channel a
// stream of its latest publications, with its epoch and latest offset.
// Epochs are the broker's random base and a counter of the streams it
// began, so a new broker (a restarted process) and a stream begun again
// after it was forgotten both have new ones.
type memoryHistory struct {
	base string        // random, new with every broker
	gen  atomic.Uint64 // streams begun

	mu        sync.Mutex
	streams   map[string]*memoryStream // guarded by mu
	lastSweep time.Time                // guarded by mu
}

// memoryStream is one channel's history.
type memoryStream struct {
	mu          sync.Mutex
	dead        bool   // guarded by mu; swept away: look the channel up again
	epoch       string // guarded by mu
	top         uint64 // guarded by mu; the latest offset
	entries     []HistoryEntry
	start       int       // guarded by mu; entries[start:] are kept, oldest first
	expires     time.Time // guarded by mu; the publications are dropped then
	metaExpires time.Time // guarded by mu; the whole stream is forgotten then
}

// memorySweepEvery is how often forgotten streams are looked for.
const memorySweepEvery = time.Minute

func (m *memoryHistory) init() {
	var b [6]byte
	_, _ = rand.Read(b[:])
	m.base = hex.EncodeToString(b[:])
	m.streams = make(map[string]*memoryStream)
}

// lock returns channel's stream, locked, begun if it had none.
func (m *memoryHistory) lock(channel string) *memoryStream {
	for {
		now := time.Now()
		m.mu.Lock()
		if now.Sub(m.lastSweep) >= memorySweepEvery {
			m.sweepLocked(now)
		}
		s := m.streams[channel]
		if s == nil {
			s = &memoryStream{}
			m.begin(s, now)
			m.streams[channel] = s
		}
		m.mu.Unlock()
		s.mu.Lock()
		if !s.dead {
			if !now.Before(s.metaExpires) {
				m.begin(s, now)
			} else if !now.Before(s.expires) {
				s.entries, s.start = nil, 0
			}
			return s
		}
		s.mu.Unlock()
	}
}

// begin starts s's history afresh, under a new epoch.
func (m *memoryHistory) begin(s *memoryStream, now time.Time) {
	s.epoch = m.base + "-" + strconv.FormatUint(m.gen.Add(1), 10)
	s.top, s.entries, s.start = 0, nil, 0
	s.expires, s.metaExpires = now, now.Add(historyMetaTTL)
}

// sweepLocked forgets the streams whose epoch expired. A stream busy at
// the moment is left for the next sweep.
func (m *memoryHistory) sweepLocked(now time.Time) {
	m.lastSweep = now
	for name, s := range m.streams {
		if !s.mu.TryLock() {
			continue
		}
		if !now.Before(s.metaExpires) {
			s.dead = true
			delete(m.streams, name)
		}
		s.mu.Unlock()
	}
}

// push appends e, keeping the size latest.
func (s *memoryStream) push(e HistoryEntry, size int) {
	s.entries = append(s.entries, e)
	if n := len(s.entries) - s.start; n > size {
		clear(s.entries[s.start : s.start+n-size])
		s.start += n - size
	}
	if s.start >= 64 && s.start >= len(s.entries)/2 {
		kept := copy(s.entries, s.entries[s.start:])
		clear(s.entries[kept:])
		s.entries, s.start = s.entries[:kept], 0
	}
}

// PublishHistory keeps payload in channel's history and delivers it to
// channel's handler before it returns, in offset order: publications of
// one channel are made one at a time.
func (b *MemoryBroker) PublishHistory(ctx context.Context, channel string, payload []byte, opts HistoryOptions) (HistoryPosition, error) {
	if err := ctx.Err(); err != nil {
		return HistoryPosition{}, err
	}
	if opts.TTL <= 0 {
		opts.TTL = defaultHistoryTTL
	}
	opts.Size = max(opts.Size, 1)
	s := b.history.lock(channel)
	defer s.mu.Unlock()
	b.mu.RLock()
	defer b.mu.RUnlock()
	if b.closed {
		return HistoryPosition{}, ErrHubClosed
	}
	s.top++
	pos := HistoryPosition{Offset: s.top, Epoch: s.epoch}
	// One copy serves the subscribers (position and payload) and the
	// history (payload), which are never modified.
	p := appendPositioned(make([]byte, 0, len(payload)+32), pos, payload)
	s.push(HistoryEntry{Offset: pos.Offset, Payload: p[len(p)-len(payload):]}, opts.Size)
	now := time.Now()
	s.expires = now.Add(opts.TTL)
	s.metaExpires = later(s.metaExpires, now.Add(max(opts.TTL, historyMetaTTL)))
	if h := b.handlers[channel]; h != nil {
		h(p)
	}
	return pos, nil
}

// ReadHistory reads channel's history; see HistoryBroker.
func (b *MemoryBroker) ReadHistory(ctx context.Context, channel string, r HistoryRange) (HistoryPage, error) {
	if err := ctx.Err(); err != nil {
		return HistoryPage{}, err
	}
	b.mu.RLock()
	closed := b.closed
	b.mu.RUnlock()
	if closed {
		return HistoryPage{}, ErrHubClosed
	}
	s := b.history.lock(channel)
	defer s.mu.Unlock()
	s.metaExpires = later(s.metaExpires, time.Now().Add(historyMetaTTL))
	kept := s.entries[s.start:]
	page := HistoryPage{Latest: HistoryPosition{Offset: s.top, Epoch: s.epoch}, Oldest: s.top + 1}
	if len(kept) > 0 {
		page.Oldest = kept[0].Offset
	}
	if r.Limit <= 0 || len(kept) == 0 {
		return page, nil
	}
	// Offsets in kept run from Oldest to top without a gap.
	from, to := max(r.After+1, page.Oldest), s.top
	if r.Until > 0 {
		to = min(to, r.Until)
	}
	if from > to {
		return page, nil
	}
	sel := kept[from-page.Oldest : to-page.Oldest+1]
	if len(sel) > r.Limit {
		if r.Reverse {
			sel = sel[len(sel)-r.Limit:]
		} else {
			sel = sel[:r.Limit]
		}
	}
	page.Entries = make([]HistoryEntry, len(sel))
	for i, e := range sel {
		if r.Reverse {
			i = len(sel) - 1 - i
		}
		page.Entries[i] = e
	}
	return page, nil
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}
