package ws

// Channel history: which channels keep one (Config.History), the
// positions in it, and reading it from Go. The broker keeps it
// (HistoryBroker, broker.go); history_seq.go delivers a history channel's
// publications in offset order on each node, and recovery.go brings a
// subscriber that asks for it up to date. docs/recovery.md says what is
// guaranteed and what it costs.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/vortechron/go-ws/internal/wire"
)

// HistoryOptions say how much of a channel's past its history keeps;
// Config.History returns them for each channel.
type HistoryOptions struct {
	// Size is how many of the channel's latest publications are kept.
	// Zero (or less) means the channel keeps no history. Above
	// MaxHistorySize it is cut to MaxHistorySize.
	Size int
	// TTL is how long a channel's history is kept after its last
	// publication: a channel that stays quiet for TTL loses its
	// publications (not its epoch and offset, which are kept for at
	// least a day; see docs/recovery.md). Zero means one hour.
	TTL time.Duration
}

// MaxHistorySize bounds HistoryOptions.Size.
const MaxHistorySize = 1_000_000

// defaultHistoryTTL is HistoryOptions.TTL's default.
const defaultHistoryTTL = time.Hour

// historyMetaTTL is the least time a channel's epoch and latest offset
// are kept after its last publication or subscribe. Kept longer than the
// publications, they let a client that was away from a quiet channel
// learn that it missed nothing, instead of being told its history is
// lost.
const historyMetaTTL = 24 * time.Hour

// HistoryPosition is a place in a channel's history: Offset counts the
// channel's publications (1, 2, 3, ...) within Epoch, which names one life
// of the history and changes when the history was lost. A client resumes
// from the position of the last publication it has (docs/protocol.md).
type HistoryPosition struct {
	Offset uint64
	Epoch  string
}

// HistoryQuery selects publications for Hub.History.
type HistoryQuery struct {
	// Since, when set, asks only for the publications after it. When the
	// history no longer reaches back to it (another epoch, or
	// publications after it were dropped) History fails with
	// ErrHistoryLost.
	Since *HistoryPosition
	// Limit caps how many publications are returned. Zero means all that
	// are kept.
	Limit int
	// Reverse returns the newest first; with Limit, the Limit newest.
	Reverse bool
}

// HistoryResult is what Hub.History returns.
type HistoryResult struct {
	// Latest is the channel's epoch and the offset of its latest
	// publication when it was read. A page that shows the newest
	// publications (Reverse) and then subscribes with "since" set to
	// Latest gets every later one, none twice.
	Latest HistoryPosition
	// Publications are the ones selected, oldest first (newest first
	// with Reverse).
	Publications []HistoryPublication
}

// HistoryPublication is one publication of a channel's history.
type HistoryPublication struct {
	Offset uint64
	// Event is PublishOptions.Event; empty when none was given.
	Event string
	// Message is the published message, as subscribers got it.
	Message json.RawMessage
}

var (
	// ErrNoHistory is returned by Hub.History for a channel that keeps no
	// history: Config.History gives it none, or the broker keeps none.
	ErrNoHistory = errors.New("ws: channel has no history")
	// ErrHistoryLost is returned by Hub.History when HistoryQuery.Since is
	// older than the channel's history reaches back.
	ErrHistoryLost = errors.New("ws: history no longer reaches back to the position")
)

// historyOptions returns the history channel keeps, if any.
func (h *Hub) historyOptions(channel string) (HistoryOptions, HistoryBroker, bool) {
	if h.cfg.History == nil {
		return HistoryOptions{}, nil, false
	}
	hb, ok := h.broker.(HistoryBroker)
	if !ok {
		return HistoryOptions{}, nil, false
	}
	o := h.cfg.History(channel)
	if o.Size <= 0 {
		return HistoryOptions{}, nil, false
	}
	o.Size = min(o.Size, MaxHistorySize)
	if o.TTL <= 0 {
		o.TTL = defaultHistoryTTL
	}
	return o, hb, true
}

// History reads a channel's history (docs/recovery.md). It fails with
// ErrNoHistory if the channel keeps none, with ErrHistoryLost (and the
// result's Latest set) if q.Since is older than the history reaches back,
// and with an error wrapping ErrBrokerUnavailable if the broker cannot be
// read.
func (h *Hub) History(ctx context.Context, channel string, q HistoryQuery) (HistoryResult, error) {
	if err := ValidChannelName(channel); err != nil {
		return HistoryResult{}, err
	}
	_, hb, ok := h.historyOptions(channel)
	if !ok {
		return HistoryResult{}, fmt.Errorf("%w: %q", ErrNoHistory, channel)
	}
	r := HistoryRange{Limit: q.Limit, Reverse: q.Reverse}
	if r.Limit <= 0 {
		r.Limit = MaxHistorySize
	}
	if q.Since != nil {
		r.After = q.Since.Offset
	}
	page, err := hb.ReadHistory(ctx, channel, r)
	if err != nil {
		return HistoryResult{}, historyReadError(channel, err)
	}
	res := HistoryResult{Latest: page.Latest}
	if q.Since != nil && !reachesBack(page, *q.Since) {
		return res, fmt.Errorf("%w: %q at offset %d of epoch %q (now at %d of %q, oldest kept %d)", ErrHistoryLost,
			channel, q.Since.Offset, q.Since.Epoch, page.Latest.Offset, page.Latest.Epoch, page.Oldest)
	}
	for _, e := range page.Entries {
		ev, _, err := decodeEnvelope(channel, e.Payload)
		if err != nil || ev.Kind != wire.Message {
			continue // not a publication of this hub's
		}
		res.Publications = append(res.Publications, HistoryPublication{Offset: e.Offset, Event: ev.Name, Message: ev.Data})
	}
	return res, nil
}

// reachesBack reports whether page (which holds the publications after
// pos, if any) shows every publication after pos still kept.
func reachesBack(page HistoryPage, pos HistoryPosition) bool {
	return pos.Epoch == page.Latest.Epoch && pos.Offset <= page.Latest.Offset && pos.Offset+1 >= page.Oldest
}

// historyReadError makes a failed read match ErrBrokerUnavailable.
func historyReadError(channel string, err error) error {
	if errors.Is(err, ErrBrokerUnavailable) || errors.Is(err, ErrHubClosed) {
		return err
	}
	return fmt.Errorf("%w: read history of %q: %w", ErrBrokerUnavailable, channel, err)
}

// A history publication reaches subscribers as its position followed by
// the payload (see HistoryBroker.PublishHistory): 'h', the offset in
// decimal, ':', the epoch, ':', payload.
const positionedMark = 'h'

// batchMark starts several history publications of one channel in one
// broker payload: then, for each, its length in decimal, ':', and the
// publication (see HistoryBroker.PublishHistory).
const batchMark = 'H'

var errBatch = errors.New("ws: malformed batch of history publications (want 'H' then length ':' publication ...)")

// eachInBatch calls fn with each publication of a batch, in order. It
// stops at the first malformed part.
func eachInBatch(b []byte, fn func(p []byte)) error {
	b = b[1:]
	for len(b) > 0 {
		i := 0
		for i < len(b) && i < 10 && b[i] >= '0' && b[i] <= '9' {
			i++
		}
		if i == 0 || i == len(b) || b[i] != ':' {
			return errBatch
		}
		n, err := strconv.Atoi(string(b[:i]))
		if err != nil || n == 0 || n > len(b)-i-1 || b[i+1] != positionedMark {
			return errBatch
		}
		fn(b[i+1 : i+1+n])
		b = b[i+1+n:]
	}
	return nil
}

// maxEpochLen bounds an epoch.
const maxEpochLen = 64

// appendPositioned appends payload as a history publication at pos.
func appendPositioned(dst []byte, pos HistoryPosition, payload []byte) []byte {
	dst = append(dst, positionedMark)
	dst = strconv.AppendUint(dst, pos.Offset, 10)
	dst = append(dst, ':')
	dst = append(dst, pos.Epoch...)
	dst = append(dst, ':')
	return append(dst, payload...)
}

var errPositioned = errors.New("ws: malformed history publication (want 'h' offset ':' epoch ':' payload)")

// cutPositioned splits a history publication into its position and
// payload; ok is false when b is not one (a plain envelope).
func cutPositioned(b []byte) (pos HistoryPosition, payload []byte, ok bool, err error) {
	if len(b) == 0 || b[0] != positionedMark {
		return pos, b, false, nil
	}
	b = b[1:]
	i := 0
	for i < len(b) && b[i] >= '0' && b[i] <= '9' {
		i++
	}
	if i == 0 || i > 20 || i == len(b) || b[i] != ':' {
		return pos, nil, true, errPositioned
	}
	off, perr := strconv.ParseUint(string(b[:i]), 10, 64)
	if perr != nil {
		return pos, nil, true, errPositioned
	}
	b = b[i+1:]
	j := 0
	for j < len(b) && j <= maxEpochLen && b[j] != ':' {
		j++
	}
	if j == 0 || j > maxEpochLen || j == len(b) {
		return pos, nil, true, errPositioned
	}
	return HistoryPosition{Offset: off, Epoch: string(b[:j])}, b[j+1:], true, nil
}
