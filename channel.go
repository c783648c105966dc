package ws

import (
	"fmt"
	"strings"
	"sync/atomic"
	"unicode/utf8"
)

// Channel name rules. A name is 1 to MaxChannelNameLength bytes of ASCII
// letters, digits and the characters _ - = @ , . ; : (the set Pusher and
// Laravel Echo use, plus ':'). Names starting with "private-" are private
// channels and names starting with "presence-" are presence channels;
// both need authorization. Every other name is public, except the user
// channels: UserChannelPrefix followed by a user ID (the only names that
// may contain '#', as their first byte) is the channel of that user, which
// a connection may join only when it belongs to the user (Options.GetUserID
// at connect, or a protocol's sign-in: Pusher's pusher:signin). Publishing
// there reaches every connection the user opened it on, on every node.
const (
	MaxChannelNameLength = 164
	PrivatePrefix        = "private-"
	PresencePrefix       = "presence-"
	UserChannelPrefix    = "#server-to-user-"
)

// channelKind tells public, private, presence and user channels apart.
type channelKind int

// The channel kinds, decided by the name's prefix.
const (
	publicChannel channelKind = iota
	privateChannel
	presenceChannel
	userChannel
)

// kindOf returns the kind of the channel called name.
func kindOf(name string) channelKind {
	switch {
	case strings.HasPrefix(name, PresencePrefix):
		return presenceChannel
	case strings.HasPrefix(name, PrivatePrefix):
		return privateChannel
	case strings.HasPrefix(name, UserChannelPrefix):
		return userChannel
	default:
		return publicChannel
	}
}

// channelKindOf validates name and returns its kind.
func channelKindOf(name string) (channelKind, error) {
	if err := ValidChannelName(name); err != nil {
		return publicChannel, err
	}
	return kindOf(name), nil
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
	start := 0
	if strings.HasPrefix(name, UserChannelPrefix) {
		start = len(UserChannelPrefix)
	}
	for i := start; i < len(name); i++ {
		if !validNameByte[name[i]] {
			what := fmt.Sprintf("byte 0x%02x", name[i])
			if r, size := utf8.DecodeRuneInString(name[i:]); r != utf8.RuneError || size > 1 {
				what = fmt.Sprintf("character %q", r)
			}
			return fmt.Errorf("%w: %s at byte %d is not allowed (use ASCII letters, digits and _-=@,.;:)", ErrInvalidChannel, what, i)
		}
	}
	if name == PrivatePrefix || name == PresencePrefix || name == UserChannelPrefix {
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

// chunkSize is how many subscribers share one chunk of a channel's
// snapshot (see memberSet).
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
	kind channelKind
	sets []*memberSet // one per write shard
	// speakers counts the subscribers of each wire protocol, so a
	// delivery encodes the event only for the protocols it needs.
	speakers [maxProtocols]atomic.Int32
	// pres orders the joins and leaves of a presence channel; nil for
	// other channels. Set before the channel is shared.
	pres *presenceSeq
	// hist orders the publications of a channel that keeps history and
	// hands its subscribers from recovery to live; nil for other
	// channels. Set before the channel is shared.
	hist *historySeq

	// owned by the Hub.Run goroutine
	n       int // subscribers over all sets
	state   channelState
	pending []*hubOp // subscribes waiting for the broker
}

func newChannel(name string, shards int) *channel {
	ch := &channel{name: name, kind: kindOf(name), sets: make([]*memberSet, shards)}
	for i := range ch.sets {
		ch.sets[i] = &memberSet{index: make(map[*Client]int)}
	}
	return ch
}

func (ch *channel) size() int { return ch.n }

// add and remove change membership; called by the Hub.Run goroutine.
func (ch *channel) add(c *Client) {
	if ch.sets[c.out.shard.idx].add(c) {
		ch.n++
		ch.speakers[c.proto].Add(1)
	}
}

func (ch *channel) remove(c *Client) {
	if ch.sets[c.out.shard.idx].remove(c) {
		ch.n--
		ch.speakers[c.proto].Add(-1)
	}
}

// memberSet is the subscribers of one channel served by one shard.
//
// Fan-out reads an immutable snapshot without a lock; the Run goroutine
// publishes a new one after every change. A snapshot is n subscribers in
// fixed-size chunks. Adding writes only where no published snapshot
// looks (slot n of the last chunk, or a new chunk appended past the
// published index), so it copies nothing and costs O(1) amortised.
// Removing moves the last subscriber into the hole, which changes a slot
// that readers may see, so it copies that chunk, the last one and the
// chunk index: O(n/chunkSize + chunkSize).
type memberSet struct {
	snap atomic.Pointer[memberSnap]

	// owned by the Hub.Run goroutine
	index  map[*Client]int       // position of each subscriber
	chunks []*[chunkSize]*Client // may run past the published index
	n      int                   // subscribers
}

// memberSnap is one published state of a memberSet.
type memberSnap struct {
	chunks []*[chunkSize]*Client
	n      int
}

var emptySnap = &memberSnap{}

// chunkLen is how many subscribers chunk ci of the snapshot holds.
func (sn *memberSnap) chunkLen(ci int) int { return min(chunkSize, sn.n-ci*chunkSize) }

// add appends c and reports whether it was new.
func (ms *memberSet) add(c *Client) bool {
	if _, ok := ms.index[c]; ok {
		return false
	}
	ci, off := ms.n/chunkSize, ms.n%chunkSize
	if off == 0 {
		ms.chunks = append(ms.chunks[:ci], new([chunkSize]*Client))
	}
	ms.chunks[ci][off] = c
	ms.index[c] = ms.n
	ms.n++
	ms.publish()
	return true
}

// remove takes c out by moving the last subscriber into its place, and
// reports whether c was there.
func (ms *memberSet) remove(c *Client) bool {
	i, ok := ms.index[c]
	if !ok {
		return false
	}
	delete(ms.index, c)
	last := ms.n - 1
	li, loff := last/chunkSize, last%chunkSize
	chunks := make([]*[chunkSize]*Client, li+1, li+2)
	copy(chunks, ms.chunks[:li+1])
	lastChunk := *chunks[li] // a copy: readers of older snapshots keep theirs
	moved := lastChunk[loff]
	lastChunk[loff] = nil
	chunks[li] = &lastChunk
	if i != last {
		ci, off := i/chunkSize, i%chunkSize
		if ci != li {
			chunk := *chunks[ci]
			chunks[ci] = &chunk
		}
		chunks[ci][off] = moved
		ms.index[moved] = i
	}
	if loff == 0 {
		chunks = chunks[:li]
	}
	ms.chunks = chunks
	ms.n = last
	ms.publish()
	return true
}

func (ms *memberSet) publish() {
	nc := (ms.n + chunkSize - 1) / chunkSize
	ms.snap.Store(&memberSnap{chunks: ms.chunks[:nc:nc], n: ms.n})
}

// load returns the current snapshot; safe from any goroutine.
func (ms *memberSet) load() *memberSnap {
	if sn := ms.snap.Load(); sn != nil {
		return sn
	}
	return emptySnap
}

// empty reports whether the current snapshot has no subscriber; safe
// from any goroutine.
func (ms *memberSet) empty() bool { return ms.load().n == 0 }
