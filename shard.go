package ws

import (
	"slices"
	"sync"
	"time"

	"github.com/vortechron/go-ws/internal/wire"
)

// writeShard is one of GOMAXPROCS goroutines that fan publications out and
// write to the sockets of the clients assigned to it.
//
// A publication reaches every shard with subscribers of its channel as one
// post. A shard takes all posts waiting for it, appends each frame to the
// queue of its own subscribers of the channel, then flushes every client it
// touched (sender.flush: one non-blocking writev of the whole queue), so
// frames published close together reach a socket in one system call.
// Frames queued outside fan-out (acknowledgements, errors, pongs) put their
// client on the shard's ready list, and the shard flushes it the same way.
// The shard also pings its clients, a sixteenth of them at a time, so that
// every client is pinged once per PingInterval without a burst.
type writeShard struct {
	hub  *Hub
	idx  int
	wake chan struct{}

	mu    sync.Mutex
	room  *sync.Cond // signalled when posts are taken; uses mu
	posts []post     // guarded by mu
	ready []*sender  // guarded by mu
	live  bool       // guarded by mu; run is running

	regMu   sync.Mutex
	clients []*sender // guarded by regMu; every client served here, for pings
	cursor  int       // guarded by regMu; where the next ping slice starts
}

// post is one publication waiting for a shard's fan-out.
type post struct {
	ch      *channel
	ev      *wire.Event
	frames  [maxProtocols][]byte // ev's frame in each protocol, shared by its subscribers
	z       *deflated            // the compressed frames, shared by every shard; nil without compression
	except  string               // connection ID to skip (a whisper's sender)
	skip    []*Client            // subscribers to skip as well (presence: lists already past ev)
	only    *Client              // if set, the one subscriber to queue ev on
	whisper bool
	seq     uint64 // history channels: the post's place in the channel's sequence (history_seq.go)
	owned   bool   // ev shares no bytes with a broker's payload (see postAll)
}

// maxPosts bounds the publications waiting for one shard. A publisher
// faster than the shards waits here, which is the backpressure that
// keeps memory bounded.
const maxPosts = 4096

// pingSlices is how many parts a shard's clients are pinged in, one part
// every PingInterval/pingSlices.
const pingSlices = 16

func newWriteShard(h *Hub, idx int) *writeShard {
	s := &writeShard{hub: h, idx: idx, wake: make(chan struct{}, 1)}
	s.room = sync.NewCond(&s.mu)
	return s
}

func (s *writeShard) signal() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// post queues a publication, waiting while the shard is far behind.
func (s *writeShard) post(p post) {
	s.mu.Lock()
	for len(s.posts) >= maxPosts && s.live {
		s.room.Wait()
	}
	if s.live {
		s.posts = append(s.posts, p)
	}
	s.mu.Unlock()
	s.signal()
}

// push puts a client with frames due on the ready list. It reports false,
// leaving the client to its blocking writer, when the shard is not running
// (before Run, or after it has returned).
func (s *writeShard) push(c *sender) bool {
	s.mu.Lock()
	live := s.live
	if live {
		s.ready = append(s.ready, c)
	}
	s.mu.Unlock()
	if live {
		s.signal()
	}
	return live
}

// register and unregister keep the list of clients the shard pings.
func (s *writeShard) register(c *sender) {
	s.regMu.Lock()
	c.slot = len(s.clients)
	s.clients = append(s.clients, c)
	s.regMu.Unlock()
}

func (s *writeShard) unregister(c *sender) {
	s.regMu.Lock()
	if i := c.slot; i >= 0 && i < len(s.clients) && s.clients[i] == c {
		last := len(s.clients) - 1
		s.clients[i] = s.clients[last]
		s.clients[i].slot = i
		s.clients[last] = nil
		s.clients = s.clients[:last]
		c.slot = -1
	}
	s.regMu.Unlock()
}

// pingSome pings the next slice of the shard's clients.
func (s *writeShard) pingSome() {
	s.regMu.Lock()
	n := len(s.clients)
	k := (n + pingSlices - 1) / pingSlices
	if s.cursor >= n {
		s.cursor = 0
	}
	batch := make([]*sender, 0, k)
	for i := 0; i < k && s.cursor < n; i++ {
		batch = append(batch, s.clients[s.cursor])
		s.cursor++
	}
	s.regMu.Unlock()
	for _, c := range batch {
		c.control(true, nil)
	}
}

// start marks the shard running; Run calls it before starting run.
func (s *writeShard) start() {
	s.mu.Lock()
	s.live = true
	s.mu.Unlock()
}

// stop marks the shard stopped, releases every waiting publisher and
// hands the clients still on the ready list to their blocking writers, so
// what they have queued is still written.
func (s *writeShard) stop() {
	s.mu.Lock()
	s.live = false
	s.posts = nil
	ready := s.ready
	s.ready = nil
	s.room.Broadcast()
	s.mu.Unlock()
	for _, c := range ready {
		c.handOff()
	}
}

// run fans out, writes and pings until done is closed.
func (s *writeShard) run(done <-chan struct{}) {
	defer s.stop()
	ping := time.NewTicker(max(s.hub.cfg.PingInterval/pingSlices, time.Millisecond))
	defer ping.Stop()
	var sparePosts []post
	var spareReady, dirty []*sender
	w := &vecWriter{}
	for {
		select {
		case <-s.wake:
		case <-ping.C:
			s.pingSome()
			continue
		case <-done:
			return
		}
		for {
			s.mu.Lock()
			posts, ready := s.posts, s.ready
			s.posts, s.ready = sparePosts[:0], spareReady[:0]
			s.room.Broadcast()
			s.mu.Unlock()
			if len(posts) == 0 && len(ready) == 0 {
				sparePosts, spareReady = posts, ready
				break
			}
			dirty = append(dirty[:0], ready...)
			for _, p := range posts {
				dirty = s.fanOut(p, dirty)
			}
			for _, c := range dirty {
				c.flush(w)
			}
			clear(posts)
			clear(ready)
			clear(dirty)
			sparePosts, spareReady = posts, ready
		}
	}
}

// fanOut queues p's frame on this shard's subscribers of p's channel (or
// on p.only, when set) and returns dirty extended by the clients this
// shard must now flush.
func (s *writeShard) fanOut(p post, dirty []*sender) []*sender {
	var n int64
	var zf [maxProtocols][]byte // p.z's frames, fetched once per fan-out
	snap := p.ch.sets[s.idx].load()
	hist := p.ch.hist != nil
	for ci := range snap.chunks() {
		for _, c := range snap.chunk(ci) {
			if p.only != nil && c != p.only || p.except != "" && c.ID == p.except || len(p.skip) > 0 && slices.Contains(p.skip, c) {
				continue
			}
			if hist && !c.admits(&p) {
				continue // see historySub.admits
			}
			f := p.frame(s.hub, c.proto)
			if len(f) == 0 {
				continue // the protocol sends nothing for this event
			}
			if c.deflate && p.z != nil {
				if zf[c.proto] == nil {
					zf[c.proto] = p.z.frame(s.hub, c.proto, f)
				}
				f = zf[c.proto]
			}
			var ok, kick bool
			if p.only != nil {
				ok, kick = c.out.enqueueShardUnbounded(f) // its own member list: it asked for it
			} else {
				ok, kick = c.out.enqueueShard(f)
				if ok {
					n++
				}
			}
			if kick {
				dirty = append(dirty, &c.out)
			}
		}
	}
	s.hub.stats.messagesOut.Add(n)
	if p.whisper {
		s.hub.stats.whispersOut.Add(n)
	}
	return dirty
}

// frame returns the post's frame in protocol proto, encoding it the first
// time this shard needs it: a subscriber whose protocol had no subscriber
// of the channel when the post was made, or a post for one client.
func (p *post) frame(h *Hub, proto uint8) []byte {
	f := p.frames[proto]
	if f == nil {
		if f = encodeFrame(h.protocols[proto], p.ev); f == nil {
			f = noFrame
		}
		p.frames[proto] = f
	}
	return f
}
