package ws

import (
	"fmt"
	"strings"
	"sync/atomic"
)

// Channel name rules. A name is 1 to MaxChannelNameLength bytes of ASCII
// letters, digits and the characters _ - = @ , . ; : (the set Pusher and
// Laravel Echo use, plus ':'). Names starting with "private-" are private
// channels and names starting with "presence-" are presence channels;
// both need authorization. Every other name is public.
const (
	MaxChannelNameLength = 164
	PrivatePrefix        = "private-"
	PresencePrefix       = "presence-"
)

// ChannelKind tells public, private and presence channels apart.
type ChannelKind int

// The channel kinds, decided by the name's prefix.
const (
	PublicChannel ChannelKind = iota
	PrivateChannel
	PresenceChannel
)

// KindOf returns the kind of the channel called name.
func KindOf(name string) ChannelKind {
	switch {
	case strings.HasPrefix(name, PresencePrefix):
		return PresenceChannel
	case strings.HasPrefix(name, PrivatePrefix):
		return PrivateChannel
	default:
		return PublicChannel
	}
}

// String returns "public", "private" or "presence".
func (k ChannelKind) String() string {
	switch k {
	case PrivateChannel:
		return "private"
	case PresenceChannel:
		return "presence"
	default:
		return "public"
	}
}

// ValidChannelName reports whether name follows the channel naming rules,
// with an error wrapping ErrInvalidChannel that says what is wrong.
func ValidChannelName(name string) error {
	if name == "" {
		return fmt.Errorf("%w: empty", ErrInvalidChannel)
	}
	if len(name) > MaxChannelNameLength {
		return fmt.Errorf("%w: %d bytes long, the limit is %d", ErrInvalidChannel, len(name), MaxChannelNameLength)
	}
	for i := 0; i < len(name); i++ {
		if !validNameByte[name[i]] {
			return fmt.Errorf("%w: character %q at byte %d is not allowed (use letters, digits and _-=@,.;:)", ErrInvalidChannel, rune(name[i]), i)
		}
	}
	if name == PrivatePrefix || name == PresencePrefix {
		return fmt.Errorf("%w: %q has a prefix but no name", ErrInvalidChannel, name)
	}
	return nil
}

var validNameByte = func() (t [256]bool) {
	for c := 'a'; c <= 'z'; c++ {
		t[c] = true
	}
	for c := 'A'; c <= 'Z'; c++ {
		t[c] = true
	}
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	for _, c := range "_-=@,.;:" {
		t[c] = true
	}
	return t
}()

// chunkSize is how many subscribers share one immutable chunk of a
// channel's snapshot. Adding or removing a subscriber copies at most two
// chunks and the chunk index, so membership changes cost O(n/chunkSize +
// chunkSize) instead of O(n), and fan-out reads need no lock.
const chunkSize = 128

type channelState int

const (
	chanSubscribing   channelState = iota // broker Subscribe in flight
	chanActive                            // broker subscription confirmed
	chanUnsubscribing                     // broker Unsubscribe in flight
)

// channel is one channel with local subscribers on this node. Its
// subscribers are split by write shard: shard i fans a publication out to
// sets[i] alone, so fan-out runs on every core and each client is always
// served by the same shard, which keeps its frames in order.
type channel struct {
	name string
	kind ChannelKind
	sets []*memberSet // one per write shard

	// owned by the Hub.Run goroutine
	n       int // subscribers over all sets
	state   channelState
	pending []*hubOp // subscribes waiting for the broker
}

func newChannel(name string, shards int) *channel {
	ch := &channel{name: name, kind: KindOf(name), sets: make([]*memberSet, shards)}
	for i := range ch.sets {
		ch.sets[i] = &memberSet{index: make(map[*Client]int)}
	}
	return ch
}

func (ch *channel) size() int { return ch.n }

// add and remove change membership; called by the Hub.Run goroutine.
func (ch *channel) add(c *Client) {
	if ch.sets[c.shard].add(c) {
		ch.n++
	}
}

func (ch *channel) remove(c *Client) {
	if ch.sets[c.shard].remove(c) {
		ch.n--
	}
}

// memberSet is the subscribers of one channel served by one shard.
type memberSet struct {
	// snap is the immutable subscriber list that fan-out reads. It is
	// replaced (never modified in place) by the Hub.Run goroutine.
	snap atomic.Pointer[[][]*Client]

	// owned by the Hub.Run goroutine
	index  map[*Client]int // position of each subscriber in chunks
	chunks [][]*Client     // the slice published in snap
}

// add appends c to the snapshot and reports whether it was new.
func (ms *memberSet) add(c *Client) bool {
	if _, ok := ms.index[c]; ok {
		return false
	}
	n := len(ms.index)
	ci, off := n/chunkSize, n%chunkSize
	chunks := make([][]*Client, ci+1)
	copy(chunks, ms.chunks)
	chunk := make([]*Client, off+1, chunkSize)
	if off > 0 {
		copy(chunk, ms.chunks[ci])
	}
	chunk[off] = c
	chunks[ci] = chunk
	ms.index[c] = n
	ms.publish(chunks)
	return true
}

// remove takes c out of the snapshot by moving the last subscriber into
// its place, and reports whether c was there.
func (ms *memberSet) remove(c *Client) bool {
	i, ok := ms.index[c]
	if !ok {
		return false
	}
	delete(ms.index, c)
	last := len(ms.index) // position of the last subscriber before removal
	li, loff := last/chunkSize, last%chunkSize
	lastClient := ms.chunks[li][loff]

	chunks := make([][]*Client, len(ms.chunks))
	copy(chunks, ms.chunks)
	if i != last {
		ci, off := i/chunkSize, i%chunkSize
		chunk := make([]*Client, len(chunks[ci]), chunkSize)
		copy(chunk, chunks[ci])
		chunk[off] = lastClient
		chunks[ci] = chunk
		ms.index[lastClient] = i
	}
	if loff == 0 {
		chunks = chunks[:li]
	} else {
		chunk := make([]*Client, loff, chunkSize)
		copy(chunk, chunks[li][:loff])
		chunks[li] = chunk
	}
	ms.publish(chunks)
	return true
}

func (ms *memberSet) publish(chunks [][]*Client) {
	if len(chunks) == 0 {
		chunks = nil
	}
	ms.chunks = chunks
	ms.snap.Store(&chunks)
}

// empty reports whether the current snapshot has no subscriber; safe
// from any goroutine.
func (ms *memberSet) empty() bool { return len(ms.subscribers()) == 0 }

// subscribers returns the current snapshot; safe from any goroutine.
func (ms *memberSet) subscribers() [][]*Client {
	if p := ms.snap.Load(); p != nil {
		return *p
	}
	return nil
}
