package loadgen

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"

	"github.com/vortechron/go-ws/bench/internal/proto"
)

// The reconnect storm: every connection is one user (u0, u1, ...; the
// "user" query parameter) on four channels: "all", its team's channel
// (100 users a team), its own channel, and its presence room (-storm-room
// users a room). The worker connects everyone and waits until they are
// settled, reports "ready", and on "drop" closes every socket at once
// (no close frame, as when a load balancer or a node goes away) and
// dials everyone again straight away, -parallel dials in flight; then it
// reports how long the reconnection took.
//
// A connection is subscribed once all four subscriptions are acknowledged
// on its current socket. It is settled once it is subscribed and, where
// the server keeps presence, its view of its room equals the room's users
// exactly: the view is the member list the server sent (ws: the
// "members" frame after "subscribed"; centrifuge: the reply to the
// presence command, with the join/leave pushes that arrived before it
// applied on top) updated by every join and leave since, in the order
// received; for ws the member count in the last presence frame must also
// equal the room size, and for centrifuge (whose presence lists
// connections) the view must hold exactly one connection per user, that
// is, every dropped connection's leave has arrived. A phase ends when
// every connection is settled and no frame arrived on any of them for
// -storm-quiet (five times that when some are not settled: nothing else
// can change a view), or at -storm-timeout. A connection's settle time is the
// last time it became settled (a later leave can unsettle it again), so
// the phase's settle time is when the last connection became settled for
// good.

// StormResult is what a storm worker reports about one phase: the first
// connect, or the reconnection after a drop. Times are Unix nanoseconds.
type StormResult struct {
	Conns            int   `json:"conns"`
	Failed           int   `json:"failed"` // dials that failed after every retry
	StartNs          int64 `json:"start_ns"`
	LastUpgradeNs    int64 `json:"last_upgrade_ns"`
	LastSubscribedNs int64 `json:"last_subscribed_ns"`
	LastSettledNs    int64 `json:"last_settled_ns"`
	NotSubscribed    int   `json:"not_subscribed"`
	Unsettled        int   `json:"unsettled"`
	// Why the subscribed ones among Unsettled are: no member list ever
	// came; the list holds other users than the room's; it holds the
	// room's users but the last presence frame counted another number.
	NoList, WrongMembers, StaleCount int
	// The same under the list reading of ws's frames (see wsFrame).
	LastListSettledNs int64            `json:"last_list_settled_ns"`
	ListUnsettled     int              `json:"list_unsettled"`
	ErrorFrames       int64            `json:"error_frames"`
	Retries           int64            `json:"retries"` // subscribes sent again after an error frame
	PresenceFrames    int64            `json:"presence_frames"`
	ErrorCodes        map[string]int64 `json:"error_codes,omitempty"` // error frames by code
	ErrorExample      string           `json:"error_example,omitempty"`
	Example           string           `json:"example,omitempty"` // one unsettled connection, described
	Upgrade           Hist             `json:"upgrade"`           // per connection: start to upgrade, µs
	Subscribed        Hist             `json:"subscribed"`        // per connection: start to all four acknowledged, µs
}

type stormOptions struct {
	url            string
	proto          Protocol
	conns, first   int
	local          net.IP
	readBuf        int
	parallel       int
	total, room    int
	presence       bool
	timeout, quiet time.Duration
}

type stormWorker struct {
	o     stormOptions
	d     *websocket.Dialer
	users []*stormUser
	events
	readers sync.WaitGroup

	subscribed atomic.Int64 // live sessions that are subscribed
	settled    atomic.Int64 // live sessions that are settled
	listSet    atomic.Int64 // live sessions settled under the list reading
	lastFrame  atomic.Int64 // Unix ns of the last frame on a live session
	errors     atomic.Int64
	errMu      sync.Mutex
	errCodes   map[string]int64 // guarded by errMu: error frames by code
	errExample string           // guarded by errMu
	retries    atomic.Int64
	presence   atomic.Int64
}

// stormUser is one user's slot; it holds the user's current session.
type stormUser struct {
	idx   int
	url   string
	chans [4]string // all, team, own, presence room
	want  map[string]bool

	mu sync.Mutex
	s  *session // guarded by mu; nil while (re)connecting
}

// session is one socket of a user. Its fields are guarded by the user's
// mu; frames are written under wmu (the reader and retry timers write).
type session struct {
	ws  *websocket.Conn
	wmu sync.Mutex

	dead         bool // dropped: its frames no longer count
	upgradedNs   int64
	subscribedNs int64
	settledNs    int64
	acked        map[string]bool
	connected    bool // centrifuge: connect reply received
	haveList     bool
	view         map[string]string // ws: user -> user; centrifuge: client -> user
	listView     map[string]bool   // ws: the list reading (see wsFrame)
	listSettled  bool
	listNs       int64
	pending      []cfPresence // centrifuge: pushes before the presence reply
	lastCount    int
	isSub, isSet bool
	tries        map[string]int // error retries per channel
}

func stormMain(o stormOptions, stdin io.Reader, stdout io.Writer) error {
	if o.total == 0 {
		o.total = o.first + o.conns
	}
	if o.room < 1 || o.first+o.conns > o.total {
		return fmt.Errorf("storm: want -storm-room >= 1 and -first + -conns <= -storm-total")
	}
	w := &stormWorker{o: o, d: dialer(o.local, o.readBuf, 0, false, false), events: events{enc: json.NewEncoder(stdout)}}
	for i := range o.conns {
		idx := o.first + i
		u := &stormUser{idx: idx, want: map[string]bool{}}
		u.url = fmt.Sprintf("%s?user=u%d&subs=4", o.url, idx)
		u.chans = [4]string{"all", proto.Indexed("team-", idx/100), proto.Indexed("user-", idx), proto.Indexed("presence-room-", idx/o.room)}
		room := idx / o.room
		for j := room * o.room; j < min((room+1)*o.room, o.total); j++ {
			u.want["u"+strconv.Itoa(j)] = true
		}
		w.users = append(w.users, u)
	}
	defer w.closeAll()
	w.send(Event{Event: "ready", Storm: w.phase()})
	return w.serveCommands(stdin, func(cmd Command) bool {
		if cmd.Cmd != "drop" {
			return false
		}
		w.send(Event{Event: "storm", Storm: w.phase()})
		return true
	})
}

// phase drops every live session, connects every user again and waits
// until they are settled; it reports the phase.
func (w *stormWorker) phase() *StormResult {
	start := time.Now()
	for _, u := range w.users {
		u.mu.Lock()
		s := u.s
		u.s = nil
		if s != nil {
			s.dead = true
		}
		u.mu.Unlock()
		if s != nil {
			s.ws.NetConn().Close()
		}
	}
	w.subscribed.Store(0)
	w.settled.Store(0)
	w.listSet.Store(0)
	w.errors.Store(0)
	w.errMu.Lock()
	w.errCodes, w.errExample = map[string]int64{}, ""
	w.errMu.Unlock()
	w.retries.Store(0)
	w.presence.Store(0)
	w.lastFrame.Store(start.UnixNano())

	var failed atomic.Int64
	sem := make(chan struct{}, w.o.parallel)
	dialsDone := make(chan struct{})
	go func() {
		var wg sync.WaitGroup
		for _, u := range w.users {
			sem <- struct{}{}
			wg.Add(1)
			go func() {
				defer func() { <-sem; wg.Done() }()
				if !w.connect(u) {
					failed.Add(1)
				}
			}()
		}
		wg.Wait()
		close(dialsDone)
	}()

	deadline := start.Add(w.o.timeout)
	want := int64(len(w.users))
	dialling := true
	for time.Now().Before(deadline) {
		if dialling {
			select {
			case <-dialsDone:
				dialling = false
			default:
			}
		}
		// Only a frame can change a view: once the dials are done and no
		// frame came for quiet, everyone settled is final; a phase with
		// connections still unsettled waits five times longer for late
		// corrections before it gives up.
		idle := time.Since(time.Unix(0, w.lastFrame.Load()))
		all := min(w.settled.Load(), w.listSet.Load())+failed.Load() >= want
		if !dialling && idle >= w.o.quiet && (all || idle >= 5*w.o.quiet) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if dialling {
		<-dialsDone // bounded by the dial timeouts
	}
	return w.collect(start, int(failed.Load()))
}

// connect dials u (a few tries) and starts its session's reader.
func (w *stormWorker) connect(u *stormUser) bool {
	for attempt := range 5 {
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		c, _, err := w.d.DialContext(ctx, u.url, nil)
		cancel()
		if err == nil {
			s := &session{ws: c, upgradedNs: time.Now().UnixNano(), acked: map[string]bool{}, tries: map[string]int{}}
			u.mu.Lock()
			u.s = s
			u.mu.Unlock()
			w.readers.Add(1)
			go func() {
				defer w.readers.Done()
				w.serve(u, s)
			}()
			return true
		}
		time.Sleep(time.Duration(50*(attempt+1)) * time.Millisecond)
	}
	return false
}

func (s *session) write(b []byte) {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	s.ws.SetWriteDeadline(time.Now().Add(10 * time.Second))
	s.ws.WriteMessage(websocket.TextMessage, b)
}

// serve sends the session's first frames and reads it until it ends.
func (w *stormWorker) serve(u *stormUser, s *session) {
	if w.o.proto == ProtoCentrifuge {
		s.write([]byte(`{"id":1,"connect":{}}`))
	} else {
		for _, ch := range u.chans {
			s.write(proto.SubscribeRequest(ch))
		}
	}
	for {
		_, msg, err := s.ws.ReadMessage()
		if err != nil {
			return
		}
		now := time.Now().UnixNano()
		for line := range bytes.SplitSeq(msg, []byte{'\n'}) { // centrifuge packs replies
			if len(line) == 0 {
				continue
			}
			if w.o.proto == ProtoCentrifuge {
				if string(line) == "{}" {
					s.write([]byte("{}")) // centrifuge's ping
					continue
				}
				w.centrifugeFrame(u, s, line, now)
			} else {
				w.wsFrame(u, s, line, now)
			}
		}
	}
}

// collect summarises the phase that began at start.
func (w *stormWorker) collect(start time.Time, failed int) *StormResult {
	r := &StormResult{Conns: len(w.users), Failed: failed, StartNs: start.UnixNano(),
		ErrorFrames: w.errors.Load(), Retries: w.retries.Load(), PresenceFrames: w.presence.Load(),
		ErrorCodes: w.errCodes, ErrorExample: w.errExample,
		Upgrade: Hist{}, Subscribed: Hist{}}
	t0 := start.UnixNano()
	for _, u := range w.users {
		u.mu.Lock()
		s := u.s
		switch {
		case s == nil:
			r.NotSubscribed++
			r.Unsettled++
			r.ListUnsettled++
		default:
			r.LastUpgradeNs = max(r.LastUpgradeNs, s.upgradedNs)
			r.Upgrade.Add(uint64(max(s.upgradedNs-t0, 0) / 1000))
			if s.isSub {
				r.LastSubscribedNs = max(r.LastSubscribedNs, s.subscribedNs)
				r.Subscribed.Add(uint64(max(s.subscribedNs-t0, 0) / 1000))
			} else {
				r.NotSubscribed++
			}
			if s.listSettled {
				r.LastListSettledNs = max(r.LastListSettledNs, s.listNs)
			} else {
				r.ListUnsettled++
			}
			if s.isSet {
				r.LastSettledNs = max(r.LastSettledNs, s.settledNs)
			} else {
				r.Unsettled++
				switch {
				case !s.isSub:
				case !s.haveList:
					r.NoList++
				case w.o.proto != ProtoCentrifuge && viewSettled(u, s, ProtoCentrifuge):
					r.StaleCount++ // the right members, a wrong count
				default:
					r.WrongMembers++
				}
				if r.Example == "" {
					r.Example = describe(u, s)
				}
			}
		}
		u.mu.Unlock()
	}
	return r
}

func describe(u *stormUser, s *session) string {
	var view []string
	for id, user := range s.view {
		view = append(view, id+"="+user)
	}
	return fmt.Sprintf("u%d: %d of %d subscribed, list received %v, view %v (last count %d), want %d users",
		u.idx, len(s.acked), len(u.chans), s.haveList, view, s.lastCount, len(u.want))
}

// errorFrame counts one error frame.
func (w *stormWorker) errorFrame(code string, line []byte) {
	w.errors.Add(1)
	w.errMu.Lock()
	defer w.errMu.Unlock()
	w.errCodes[code]++
	if w.errExample == "" {
		w.errExample = string(line)
	}
}

func (w *stormWorker) closeAll() {
	for _, u := range w.users {
		u.mu.Lock()
		if u.s != nil {
			u.s.dead = true
			u.s.ws.Close()
		}
		u.mu.Unlock()
	}
	done := make(chan struct{})
	go func() { w.readers.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
	}
}
