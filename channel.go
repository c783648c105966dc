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

// channel is one channel with local subscribers on this node.
type channel struct {
	name string
	kind ChannelKind

	// snap is the immutable subscriber list that fan-out reads. It is
	// replaced (never modified in place) by the Hub.Run goroutine.
	snap atomic.Pointer[[][]*Client]

	// owned by the Hub.Run goroutine
	state   channelState
	index   map[*Client]int // position of each subscriber in chunks
	chunks  [][]*Client     // the slice published in snap
	pending []*hubOp        // subscribes waiting for the broker
}

func newChannel(name string) *channel {
	return &channel{name: name, kind: KindOf(name), index: make(map[*Client]int)}
}

func (ch *channel) size() int { return len(ch.index) }

// add appends c to the snapshot. Called by the Hub.Run goroutine.
func (ch *channel) add(c *Client) {
	if _, ok := ch.index[c]; ok {
		return
	}
	n := len(ch.index)
	ci, off := n/chunkSize, n%chunkSize
	chunks := make([][]*Client, ci+1)
	copy(chunks, ch.chunks)
	chunk := make([]*Client, off+1, chunkSize)
	if off > 0 {
		copy(chunk, ch.chunks[ci])
	}
	chunk[off] = c
	chunks[ci] = chunk
	ch.index[c] = n
	ch.publish(chunks)
}

// remove takes c out of the snapshot by moving the last subscriber into
// its place. Called by the Hub.Run goroutine.
func (ch *channel) remove(c *Client) {
	i, ok := ch.index[c]
	if !ok {
		return
	}
	delete(ch.index, c)
	last := len(ch.index) // position of the last subscriber before removal
	li, loff := last/chunkSize, last%chunkSize
	lastClient := ch.chunks[li][loff]

	chunks := make([][]*Client, len(ch.chunks))
	copy(chunks, ch.chunks)
	if i != last {
		ci, off := i/chunkSize, i%chunkSize
		chunk := make([]*Client, len(chunks[ci]), chunkSize)
		copy(chunk, chunks[ci])
		chunk[off] = lastClient
		chunks[ci] = chunk
		ch.index[lastClient] = i
	}
	if loff == 0 {
		chunks = chunks[:li]
	} else {
		chunk := make([]*Client, loff, chunkSize)
		copy(chunk, chunks[li][:loff])
		chunks[li] = chunk
	}
	ch.publish(chunks)
}

func (ch *channel) publish(chunks [][]*Client) {
	if len(chunks) == 0 {
		chunks = nil
	}
	ch.chunks = chunks
	ch.snap.Store(&chunks)
}

// subscribers returns the current snapshot; safe from any goroutine.
func (ch *channel) subscribers() [][]*Client {
	if p := ch.snap.Load(); p != nil {
		return *p
	}
	return nil
}
