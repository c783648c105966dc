package ws

import (
	"math"
	"slices"
	"sync/atomic"
)

// historySub is one client's subscription to a history channel: which of
// the channel's posts the write shards queue for the client (admits).
//
//	state       hidden  floor     set by                      when
//	hidden      true    recovering the Run goroutine (attach)  the client joins the snapshot
//	recovering  false   recovering recovery.go, under seq.mu   its "subscribed" frame is queued
//	live        false   a post     recovery.go, under seq.mu   it has every publication up to the node's last
//
// Hidden, nothing of the channel is queued for the client; recovering,
// everything but the publications (whispers, presence frames), which its
// recovery queues itself; live, the posts after floor.
type historySub struct {
	ch     *channel
	gone   chan struct{} // closed by the Run goroutine when the client leaves the channel
	hidden atomic.Bool
	floor  atomic.Uint64 // the last post of the channel's sequence not for the client
}

// recovering is the floor of a subscription that is not live yet.
const recovering = math.MaxUint64

// admits reports whether the shards queue p for the subscriber.
func (s *historySub) admits(p *post) bool {
	if p.seq == 0 {
		return !s.hidden.Load() // not a publication: a whisper or a presence frame
	}
	return p.seq > s.floor.Load()
}

// isGone reports whether the client left the channel.
func (s *historySub) isGone() bool {
	select {
	case <-s.gone:
		return true
	default:
		return false
	}
}

// admits reports whether the shards queue p, a post of a history channel,
// for c (see historySub).
func (c *Client) admits(p *post) bool {
	if sub := c.historySub(p.ch); sub != nil {
		return sub.admits(p)
	}
	return false // joining or leaving
}

// historySub returns c's subscription to ch, or nil; safe from any
// goroutine.
func (c *Client) historySub(ch *channel) *historySub {
	if subs := c.hist.Load(); subs != nil {
		for _, s := range *subs {
			if s.ch == ch {
				return s
			}
		}
	}
	return nil
}

// attach gives c, which is joining the channel, its subscription, hidden.
// Called by the Run goroutine before c enters the channel's snapshot.
func (s *historySeq) attach(c *Client) {
	sub := &historySub{ch: s.ch, gone: make(chan struct{})}
	sub.hidden.Store(true)
	sub.floor.Store(recovering)
	var subs []*historySub
	if old := c.hist.Load(); old != nil {
		subs = slices.Clone(*old)
	}
	subs = append(subs, sub)
	c.hist.Store(&subs)
}

// detach ends c's subscription, which stops its recovery. Called by the
// Run goroutine when c leaves the channel.
func (s *historySeq) detach(c *Client) {
	old := c.hist.Load()
	if old == nil {
		return
	}
	i := slices.IndexFunc(*old, func(sub *historySub) bool { return sub.ch == s.ch })
	if i < 0 {
		return
	}
	close((*old)[i].gone)
	subs := slices.Delete(slices.Clone(*old), i, i+1)
	if len(subs) == 0 {
		c.hist.Store(nil)
		return
	}
	c.hist.Store(&subs)
}

// goLiveLocked makes sub live: the shards queue the posts after the
// current one. The caller holds s.mu and has given the client everything
// up to last.
func (s *historySeq) goLiveLocked(sub *historySub) {
	sub.floor.Store(s.posted)
}
