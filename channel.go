package ws

import (
	"fmt"
	"math/bits"
	"slices"
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

// drop is remove for a client whose sender has closed: its member set
// publishes at the end of the burst (Hub.publishDropped), and is appended
// to unpublished when it starts waiting.
func (ch *channel) drop(c *Client, unpublished []*memberSet) []*memberSet {
	ms := ch.sets[c.out.shard.idx]
	removed, first := ms.dropLater(c)
	if removed {
		ch.n--
		ch.speakers[c.proto].Add(-1)
	}
	if first {
		unpublished = append(unpublished, ms)
	}
	return unpublished
}

// memberSet is the subscribers of one channel served by one shard.
//
// Fan-out reads an immutable snapshot without a lock; the Run goroutine
// publishes a new one after every change, except the departures of
// closed connections, which wait for the end of a burst (dropLater). A
// snapshot is n subscribers in chunks of chunkSize. The first chunk is a
// slice that starts with room for one and doubles as it fills, because
// most channels (a user's own, a document's) have a few subscribers and a
// full chunk is 1 KiB; the rest are fixed arrays. Adding writes only
// where no published snapshot looks (slot n of the last chunk, a new
// chunk appended past the published index, or a grown first chunk, which
// snapshots hold by value), so it costs O(1) amortised. Removing moves
// the last subscriber into the hole, which changes a slot that readers
// may see, so it copies that chunk, the last one and the index of the
// rest: O(n/chunkSize + chunkSize), and O(n) while n fits in the first
// chunk. Copies made since the last publish are seen by no reader, so the
// removals of one burst copy each chunk once.
type memberSet struct {
	snap atomic.Pointer[memberSnap]
	// size counts the subscribers at once, where the snapshot may still
	// hold departed ones until the end of a burst; any goroutine reads it.
	size atomic.Int32

	// owned by the Hub.Run goroutine
	index map[*Client]int       // position of each subscriber
	first []*Client             // chunk 0, as long as its room
	rest  []*[chunkSize]*Client // chunks 1 on; may run past the published index
	n     int                   // subscribers
	// What was copied since the last publish, and so is seen by no
	// reader and may be written in place.
	ownFirst, ownRest bool
	own               []*[chunkSize]*Client
	unpublished       bool // a change waits for publish
}

// memberSnap is one published state of a memberSet.
type memberSnap struct {
	first []*Client
	rest  []*[chunkSize]*Client
	n     int
}

var emptySnap = &memberSnap{}

// chunks is how many chunks hold the snapshot's subscribers.
func (sn *memberSnap) chunks() int { return (sn.n + chunkSize - 1) / chunkSize }

// chunk returns the subscribers in chunk ci < sn.chunks().
func (sn *memberSnap) chunk(ci int) []*Client {
	n := min(chunkSize, sn.n-ci*chunkSize)
	if ci == 0 {
		return sn.first[:n]
	}
	return sn.rest[ci-1][:n]
}

// add appends c and reports whether it was new. It publishes at once,
// with any departure still waiting.
func (ms *memberSet) add(c *Client) bool {
	if _, ok := ms.index[c]; ok {
		return false
	}
	ci, off := ms.n/chunkSize, ms.n%chunkSize
	switch {
	case ci > 0:
		if off == 0 {
			ms.rest = append(ms.rest[:ci-1], new([chunkSize]*Client))
		} else if ms.unpublished {
			// Slot n may be below the published n: write into a copy.
			ms.ownIndex()
			ms.writable(ci - 1)
		}
		ms.rest[ci-1][off] = c
	default:
		if off == len(ms.first) || ms.unpublished && !ms.ownFirst {
			// Full, or possibly seen: a copy, with room to grow into.
			grown := make([]*Client, max(1, min(2*off, chunkSize), len(ms.first)))
			copy(grown, ms.first[:off])
			ms.first = grown
		}
		ms.first[off] = c
	}
	ms.index[c] = ms.n
	ms.n++
	ms.size.Add(1)
	ms.publish()
	return true
}

// remove takes c out, publishing at once, and reports whether c was
// there.
func (ms *memberSet) remove(c *Client) bool {
	if !ms.take(c) {
		return false
	}
	ms.publish()
	return true
}

// dropLater takes out c, whose sender has closed, without publishing,
// and reports whether c was there and whether the set now waits for
// publish (it did not before). Until then fan-out may still find c and
// queues nothing for it, a closed sender refusing every frame.
func (ms *memberSet) dropLater(c *Client) (removed, first bool) {
	was := ms.unpublished
	if !ms.take(c) {
		return false, false
	}
	ms.unpublished = true
	return true, !was
}

// take removes c by moving the last subscriber into its place, writing
// only into copies made since the last publish.
func (ms *memberSet) take(c *Client) bool {
	i, ok := ms.index[c]
	if !ok {
		return false
	}
	delete(ms.index, c)
	last := ms.n - 1
	li, loff := last/chunkSize, last%chunkSize
	ci, off := i/chunkSize, i%chunkSize
	var moved *Client
	switch {
	case last == 0:
		ms.first = nil
	case li == 0:
		moved = ms.first[loff]
		if ms.ownFirst {
			ms.first[loff] = nil
		} else {
			// Copied at the room it now needs, so a channel that
			// shrank stops paying for its peak.
			first := make([]*Client, 1<<bits.Len(uint(last-1)))
			copy(first, ms.first[:last])
			ms.first, ms.ownFirst = first, true
		}
	default:
		ms.ownIndex()
		moved = ms.rest[li-1][loff]
		if loff == 0 {
			ms.rest = ms.rest[:li-1] // the last chunk held only moved
		} else {
			ms.writable(li - 1)[loff] = nil
		}
		if ci > 0 && ci != li {
			ms.writable(ci - 1)
		}
		if ci == 0 && !ms.ownFirst {
			ms.first, ms.ownFirst = slices.Clone(ms.first), true
		}
	}
	if i != last {
		if ci == 0 {
			ms.first[off] = moved
		} else {
			ms.rest[ci-1][off] = moved
		}
		ms.index[moved] = i
	}
	ms.n = last
	ms.size.Add(-1)
	return true
}

// ownIndex makes the index of the rest a copy of its own, unless it is
// one already.
func (ms *memberSet) ownIndex() {
	if !ms.ownRest {
		nr := (ms.n+chunkSize-1)/chunkSize - 1
		rest := make([]*[chunkSize]*Client, nr, nr+1)
		copy(rest, ms.rest[:nr])
		ms.rest, ms.ownRest = rest, true
	}
}

// writable makes chunk 1+k of the rest a copy of its own, unless it is
// one already, and returns it. The index of the rest must be one.
func (ms *memberSet) writable(k int) *[chunkSize]*Client {
	chunk := ms.rest[k]
	if slices.Contains(ms.own, chunk) {
		return chunk
	}
	cp := *chunk
	ms.rest[k] = &cp
	ms.own = append(ms.own, &cp)
	return &cp
}

// publish makes the set's state the snapshot fan-out reads.
func (ms *memberSet) publish() {
	nr := max(0, (ms.n+chunkSize-1)/chunkSize-1)
	ms.snap.Store(&memberSnap{first: ms.first, rest: ms.rest[:nr:nr], n: ms.n})
	ms.ownFirst, ms.ownRest, ms.unpublished = false, false, false
	clear(ms.own)
	ms.own = ms.own[:0]
}

// load returns the current snapshot; safe from any goroutine.
func (ms *memberSet) load() *memberSnap {
	if sn := ms.snap.Load(); sn != nil {
		return sn
	}
	return emptySnap
}

// empty reports whether the set has no subscriber (a snapshot may still
// hold departed ones); safe from any goroutine.
func (ms *memberSet) empty() bool { return ms.size.Load() == 0 }
