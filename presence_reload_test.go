package ws_test

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	ws "github.com/vortechron/go-ws"
	"github.com/vortechron/go-ws/internal/redistest"
)

// The reload soak (issue 11's acceptance test for ordered presence): 50
// users keep reloading a page whose one presence channel three observers
// watch, on one node and on three nodes sharing a real Redis. A reload
// closes the user's tab with a close frame and opens a new one a few
// milliseconds later, on the same node or another; some tabs drop their
// TCP connection instead; some users leave for a while or open a second
// tab. Every reloadPhase the churn pauses: once every node has finished
// its presence work, each observer's list, kept from members, join and
// leave frames exactly as docs/presence.md tells clients to keep it, must
// equal the truth, the set of users with a tab open.
//
// WS_RELOAD_SOAK sets how long each variant churns, quiet points not
// counted (default 30s, so 60s of churn in all); -short skips the test.
// A quiet point that takes long says so in the final log line.

const (
	reloadChannel   = "presence-reload"
	reloadUsers     = 50
	reloadObservers = 3
	// reloadPhase is how long users churn between two quiet points.
	reloadPhase = 1500 * time.Millisecond
	// reloadSettle bounds how long an observer may take, after the
	// nodes and Redis have settled, to show the truth. A list still wrong
	// after it counts as wrong.
	reloadSettle = 2 * time.Second
)

func TestPresenceReloadSoak(t *testing.T) {
	if testing.Short() {
		t.Skip("reload soak churns for WS_RELOAD_SOAK (default 30s) per variant; skipped with -short")
	}
	addr := redistest.Addr(t)
	per := 30 * time.Second
	if v := os.Getenv("WS_RELOAD_SOAK"); v != "" {
		d, err := time.ParseDuration(v)
		require.NoError(t, err, "WS_RELOAD_SOAK=%q is not a duration", v)
		per = d
	}
	for _, n := range []int{1, 3} {
		t.Run(fmt.Sprintf("%d nodes", n), func(t *testing.T) {
			var log errorLog
			nodes := redisNodes(t, n, ws.RedisOptions{Addrs: []string{addr}}, ws.Config{}, presenceOptions(&log))
			s := newReloadSoak(t, nodes)
			s.run(per)
		})
	}
}

// reloadSoak is one variant's run. Its fields are used by the test
// goroutine only, except the users' tabs during a phase (see churn).
type reloadSoak struct {
	t         *testing.T
	nodes     []*testNode
	observers []*observer
	users     []*soakUser
	failures  failures

	// The chaos soak's settings (presence_chaos_test.go); zero for the
	// reload soak.
	retry  bool                   // tabs subscribe again after an unavailable error frame
	settle time.Duration          // the observers' bound at a quiet point (zero: reloadSettle)
	fault  func(phase int) string // run beside each phase's churn; says what it did

	opened, reloads, drops, departures, retries atomic.Int64
}

func newReloadSoak(t *testing.T, nodes []*testNode) *reloadSoak {
	s := &reloadSoak{t: t, nodes: nodes}
	for i := range reloadObservers {
		o := dialObserver(t, nodes[i%len(nodes)], i%len(nodes), fmt.Sprintf("observer-%d", i))
		s.observers = append(s.observers, o)
	}
	for i := range reloadUsers {
		s.users = append(s.users, &soakUser{id: fmt.Sprintf("user-%02d", i), rng: rand.New(rand.NewPCG(uint64(i), 11))})
	}
	t.Cleanup(s.closeAll)
	return s
}

// run churns for d in phases of reloadPhase, checking a quiet point after
// each, then closes every tab and checks once more.
func (s *reloadSoak) run(d time.Duration) {
	t := s.t
	var points, wrongPoints, wrongLists, wrongEntries int
	var churned, settling time.Duration
	check := func(label string) {
		start := time.Now()
		lists, entries := s.quietPoint(label)
		settling += time.Since(start)
		points++
		if lists > 0 {
			wrongPoints++
			wrongLists += lists
			wrongEntries += entries
		}
	}
	// d counts churn only, not the quiet points between phases.
	var faults []string
	for i, left := 0, d; left > 0; i++ {
		phase := min(reloadPhase, left)
		start := time.Now()
		fault := make(chan string, 1)
		if s.fault != nil {
			go func() { fault <- s.fault(i) }()
		} else {
			fault <- ""
		}
		s.churn(phase)
		label := fmt.Sprintf("quiet point %d", i+1)
		if f := <-fault; f != "" {
			faults = append(faults, f)
			label += " (after " + f + ")"
		}
		churned += time.Since(start)
		left -= phase
		check(label)
	}
	for _, u := range s.users {
		for _, tb := range u.tabs {
			if u.rng.IntN(2) == 0 {
				tb.closeFrame()
			} else {
				tb.drop()
			}
		}
		u.tabs = nil
	}
	check("after every tab closed")
	require.Empty(t, s.failures.all(), "client-side failures")
	t.Logf("%d nodes, %v churn: %d quiet points, %d with wrong lists, %d wrong observer lists of %d (%d wrong entries); tabs opened %d, reloads %d, TCP drops %d, departures %d, subscribes repeated after unavailable %d; churning took %v, quiet points %v",
		len(s.nodes), d, points, wrongPoints, wrongLists, points*len(s.observers), wrongEntries,
		s.opened.Load(), s.reloads.Load(), s.drops.Load(), s.departures.Load(), s.retries.Load(),
		churned.Round(time.Millisecond), settling.Round(time.Millisecond))
	if len(faults) > 0 {
		t.Logf("faults: %s", strings.Join(faults, "; "))
	}
	require.Zero(t, wrongLists, "got %d wrong observer lists at %d of %d quiet points, want 0", wrongLists, wrongPoints, points)
}

// churn lets every user act for d, one goroutine per user, and returns
// once all of them stopped.
func (s *reloadSoak) churn(d time.Duration) {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	var wg sync.WaitGroup
	for _, u := range s.users {
		wg.Add(1)
		go func() {
			defer wg.Done()
			u.churn(ctx, s)
		}()
	}
	wg.Wait()
}

// quietPoint waits until every node has finished its presence work, then
// gives the observers up to reloadSettle to show the truth, and returns
// how many did not and how many entries (missing or extra users) their
// lists had wrong.
func (s *reloadSoak) quietPoint(label string) (lists, entries int) {
	t := s.t
	truth := make([]string, 0, len(s.users)+len(s.observers))
	want := make([]int64, len(s.nodes)) // open connections per node
	for _, o := range s.observers {
		truth = append(truth, o.user)
		want[o.node]++
	}
	var tabs []*soakTab
	for _, u := range s.users {
		if len(u.tabs) > 0 {
			truth = append(truth, u.id)
		}
		for _, tb := range u.tabs {
			want[tb.node]++
			tabs = append(tabs, tb)
		}
	}
	slices.Sort(truth)
	// A tab is in the channel once it has its members frame.
	waiting := func() []string {
		var w []string
		for _, tb := range tabs {
			if !tb.subscribed() && tb.failure() == "" {
				w = append(w, fmt.Sprintf("%s's tab on node %d (frames: %s)", tb.user, tb.node, tb.got()))
			}
		}
		return w
	}
	if !assert.Eventually(t, func() bool { return len(waiting()) == 0 }, 10*time.Second, 2*time.Millisecond) {
		require.FailNow(t, label+": a tab got no members frame", "%v", waiting())
	}
	for _, tb := range tabs {
		require.Empty(t, tb.failure(), "%s: %s's tab on node %d", label, tb.user, tb.node)
	}
	// A node counts a connection until its presence is removed and the
	// leave published, so equal counts mean no leave is in flight.
	require.Eventually(t, func() bool {
		for i, n := range s.nodes {
			if n.hub.Stats().Connections != want[i] {
				return false
			}
		}
		return true
	}, 10*time.Second, 2*time.Millisecond, "%s: nodes did not settle at %v connections", label, want)
	settle := reloadSettle
	if s.settle > 0 {
		settle = s.settle
	}
	if s.fault == nil {
		for i, n := range s.nodes {
			require.Equal(t, truth, n.members(t, reloadChannel), "%s: node %d's PresenceMembers", label, i)
		}
	} else {
		// After a fault the storage may still be putting back what Redis
		// lost, or reaping what a node could not remove.
		for i, n := range s.nodes {
			var got []string
			ok := settles(settle, func() bool {
				ms, err := n.hub.PresenceMembers(context.Background(), reloadChannel)
				got = got[:0]
				for _, m := range ms {
					got = append(got, m.UserID)
				}
				slices.Sort(got)
				return err == nil && slices.Equal(got, truth)
			})
			require.True(t, ok, "%s: node %d's PresenceMembers %v, want %v", label, i, got, truth)
		}
	}
	// The observers get the same bound together.
	settles(settle, func() bool {
		for _, o := range s.observers {
			if !slices.Equal(o.list(), truth) {
				return false
			}
		}
		return true
	})
	for _, o := range s.observers {
		if n, msg := o.diff(truth); n > 0 {
			lists++
			entries += n
			t.Logf("%s: %s (node %d) has %d wrong: %s", label, o.user, o.node, n, msg)
		}
	}
	for _, o := range s.observers {
		require.NoError(t, o.failure(), "%s: observer %s", label, o.user)
	}
	return lists, entries
}

// settles polls cond every few milliseconds for up to bound and reports
// whether it became true.
func settles(bound time.Duration, cond func() bool) bool {
	deadline := time.NewTimer(bound)
	defer deadline.Stop()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-deadline.C:
			return cond()
		case <-tick.C:
		}
	}
	return true
}

// soakUser is one user of the soak. Its fields are used by its churn
// goroutine during a phase and by the test goroutine between phases.
type soakUser struct {
	id   string
	rng  *rand.Rand
	tabs []*soakTab
}

// churn repeats random actions until ctx ends.
func (u *soakUser) churn(ctx context.Context, s *reloadSoak) {
	for {
		if !u.wait(ctx, time.Duration(20+u.rng.IntN(400))*time.Millisecond) {
			return
		}
		u.act(s)
	}
}

// wait waits d or until ctx ends, reporting whether d passed.
func (u *soakUser) wait(ctx context.Context, d time.Duration) bool {
	tm := time.NewTimer(d)
	defer tm.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-tm.C:
		return true
	}
}

// act does one thing a user does to a page.
func (u *soakUser) act(s *reloadSoak) {
	nodes := len(s.nodes)
	r := u.rng.IntN(100)
	switch {
	case len(u.tabs) == 0: // come (back)
		u.open(s, u.rng.IntN(nodes))
	case r < 65: // reload: close frame, or the TCP connection drops
		i := u.rng.IntN(len(u.tabs))
		old := u.tabs[i]
		u.tabs = slices.Delete(u.tabs, i, i+1)
		if r < 50 {
			old.closeFrame()
			s.reloads.Add(1)
		} else {
			old.drop()
			s.drops.Add(1)
		}
		node := old.node
		if nodes > 1 && u.rng.IntN(2) == 0 {
			node = (node + 1 + u.rng.IntN(nodes-1)) % nodes
		}
		// The new page loads a few milliseconds later; it is opened even
		// if the phase ended meanwhile, as a browser would.
		u.wait(context.Background(), time.Duration(1+u.rng.IntN(10))*time.Millisecond)
		u.open(s, node)
	case r < 80: // close the last tab and stay away a while
		i := u.rng.IntN(len(u.tabs))
		u.tabs[i].closeFrame()
		u.tabs = slices.Delete(u.tabs, i, i+1)
		s.departures.Add(1)
	case r < 90 && len(u.tabs) < 3: // another tab
		u.open(s, u.rng.IntN(nodes))
	}
}

// open dials node as u and subscribes to the channel without waiting for
// the answer; the tab's reader notes the members frame.
func (u *soakUser) open(s *reloadSoak, node int) {
	var retries *atomic.Int64
	if s.retry {
		retries = &s.retries
	}
	tb, err := dialTab(s.nodes[node], node, u.id, retries)
	if err != nil {
		s.failures.add(fmt.Sprintf("%s: dial node %d: %v", u.id, node, err))
		return
	}
	s.opened.Add(1)
	u.tabs = append(u.tabs, tb)
}

func (s *reloadSoak) closeAll() {
	for _, u := range s.users {
		for _, tb := range u.tabs {
			tb.drop()
		}
		u.tabs = nil
	}
	for _, o := range s.observers {
		o.close()
	}
}

// soakTab is one open page: a WebSocket subscribed to reloadChannel whose
// frames a reader goroutine drains.
type soakTab struct {
	user    string
	node    int
	conn    *websocket.Conn
	ready   chan struct{} // closed by the reader when the members frame came
	done    chan struct{} // closed when the reader returned
	dropped atomic.Bool   // the test ended the connection
	retries *atomic.Int64 // non-nil: subscribe again after an unavailable error frame, counted here
	wmu     sync.Mutex    // held by those subscribes again, which may follow each other on different goroutines
	mu      sync.Mutex
	fail    string   // guarded by mu; an error frame the tab got
	frames  []string // guarded by mu; type/event of every frame read
}

// dialTab opens a tab of user on n (node n); retries: see soakTab.
func dialTab(n *testNode, node int, user string, retries *atomic.Int64) (*soakTab, error) {
	conn, err := dialAs(n, user)
	if err != nil {
		return nil, err
	}
	tb := &soakTab{user: user, node: node, conn: conn, ready: make(chan struct{}), done: make(chan struct{}), retries: retries}
	if err := conn.WriteJSON(map[string]any{"action": "subscribe", "channel": reloadChannel}); err != nil {
		conn.Close()
		return nil, err
	}
	go tb.read()
	return tb, nil
}

func dialAs(n *testNode, user string) (*websocket.Conn, error) {
	h := http.Header{}
	h.Set("X-User", user)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, resp, err := websocket.DefaultDialer.DialContext(ctx, n.url, h)
	if err != nil {
		return nil, err
	}
	resp.Body.Close()
	return conn, nil
}

// soakFrame is what the soak reads of a server frame.
type soakFrame struct {
	Type    string              `json:"type"`
	Channel string              `json:"channel"`
	Event   string              `json:"event"`
	User    *ws.PresenceMember  `json:"user"`
	Users   []ws.PresenceMember `json:"users"`
	Version *uint64             `json:"version"`
	Error   string              `json:"error"`
	Code    string              `json:"code"`
}

func (tb *soakTab) read() {
	defer close(tb.done)
	subscribed := false
	for {
		_, b, err := tb.conn.ReadMessage()
		if err != nil {
			if !tb.dropped.Load() {
				tb.setFailure(fmt.Sprintf("the connection ended: %v", err))
			}
			return
		}
		var f soakFrame
		if err := json.Unmarshal(b, &f); err != nil {
			tb.setFailure(fmt.Sprintf("frame %q: %v", b, err))
			continue
		}
		tb.mu.Lock()
		tb.frames = append(tb.frames, f.Type+"/"+f.Event)
		tb.mu.Unlock()
		switch {
		case f.Type == "presence" && f.Event == "members" && !subscribed:
			subscribed = true
			close(tb.ready)
		case f.Type == "error" && f.Code == "unavailable" && tb.retries != nil && !subscribed:
			// As docs/presence.md tells clients to: the same subscribe
			// after a short backoff (the frame's action is subscribe).
			tb.retries.Add(1)
			time.AfterFunc(time.Duration(50+rand.IntN(200))*time.Millisecond, func() {
				tb.wmu.Lock()
				defer tb.wmu.Unlock()
				_ = tb.conn.WriteJSON(map[string]any{"action": "subscribe", "channel": reloadChannel})
			})
		case f.Type == "error":
			tb.setFailure(string(b))
		}
	}
}

func (tb *soakTab) setFailure(s string) {
	tb.mu.Lock()
	defer tb.mu.Unlock()
	if tb.fail == "" {
		tb.fail = s
	}
}

// got lists the type/event of the frames the tab read.
func (tb *soakTab) got() string {
	tb.mu.Lock()
	defer tb.mu.Unlock()
	return strings.Join(tb.frames, " ")
}

func (tb *soakTab) failure() string {
	tb.mu.Lock()
	defer tb.mu.Unlock()
	return tb.fail
}

func (tb *soakTab) subscribed() bool {
	select {
	case <-tb.ready:
		return true
	default:
		return false
	}
}

// closeFrame closes the tab as a browser closing a page does: a close
// frame, then the TCP connection.
func (tb *soakTab) closeFrame() {
	tb.dropped.Store(true)
	_ = tb.conn.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseGoingAway, ""), time.Now().Add(time.Second))
	tb.drop()
}

// drop ends the TCP connection without a close frame and waits for the
// reader to return.
func (tb *soakTab) drop() {
	tb.dropped.Store(true)
	_ = tb.conn.Close()
	<-tb.done
}

// observer is a client that keeps the channel's member list the way
// docs/presence.md tells clients to: reset on members, add on join,
// delete on leave, in the order the frames arrive.
type observer struct {
	user string
	node int
	conn *websocket.Conn
	done chan struct{} // closed when the reader returned

	mu      sync.Mutex
	members map[string]bool     // guarded by mu
	recent  map[string][]string // guarded by mu; the last events per user, for failure messages
	err     error               // guarded by mu; why the reader stopped early
	closing bool                // guarded by mu
}

func dialObserver(t *testing.T, n *testNode, node int, user string) *observer {
	t.Helper()
	conn, err := dialAs(n, user)
	require.NoError(t, err)
	o := &observer{user: user, node: node, conn: conn, done: make(chan struct{}),
		members: map[string]bool{}, recent: map[string][]string{}}
	require.NoError(t, conn.WriteJSON(map[string]any{"action": "subscribe", "channel": reloadChannel}))
	go o.read()
	require.Eventually(t, func() bool { return slices.Contains(o.list(), user) || o.failure() != nil },
		10*time.Second, 2*time.Millisecond, "observer %s got no members frame", user)
	require.NoError(t, o.failure())
	return o
}

func (o *observer) read() {
	defer close(o.done)
	for {
		_, b, err := o.conn.ReadMessage()
		if err != nil {
			o.mu.Lock()
			if !o.closing {
				o.err = fmt.Errorf("connection ended: %w", err)
			}
			o.mu.Unlock()
			return
		}
		var f soakFrame
		if err := json.Unmarshal(b, &f); err != nil || f.Type == "error" {
			o.mu.Lock()
			o.err = fmt.Errorf("unexpected frame %s (%v)", b, err)
			o.mu.Unlock()
			continue
		}
		if f.Type == "presence" {
			o.apply(f)
		}
	}
}

func (o *observer) apply(f soakFrame) {
	o.mu.Lock()
	defer o.mu.Unlock()
	at := time.Now().Format("15:04:05.000")
	version := ""
	if f.Version != nil {
		version = fmt.Sprintf(" v%d", *f.Version)
	}
	note := func(user, what string) {
		r := append(o.recent[user], what+version+" "+at)
		if len(r) > 6 {
			r = r[len(r)-6:]
		}
		o.recent[user] = r
	}
	switch f.Event {
	case "members":
		clear(o.members)
		for _, m := range f.Users {
			o.members[m.UserID] = true
			note(m.UserID, "members")
		}
	case "join":
		o.members[f.User.UserID] = true
		note(f.User.UserID, "join")
	case "leave":
		delete(o.members, f.User.UserID)
		note(f.User.UserID, "leave")
	}
}

// list returns the observer's members, sorted.
func (o *observer) list() []string {
	o.mu.Lock()
	defer o.mu.Unlock()
	out := make([]string, 0, len(o.members))
	for id := range o.members {
		out = append(out, id)
	}
	slices.Sort(out)
	return out
}

// diff counts the users the observer has wrong against truth and says
// which, with the last events it saw for each.
func (o *observer) diff(truth []string) (n int, msg string) {
	have := o.list()
	o.mu.Lock()
	defer o.mu.Unlock()
	var b strings.Builder
	for _, id := range truth {
		if !slices.Contains(have, id) {
			n++
			fmt.Fprintf(&b, "missing %s (saw %v); ", id, o.recent[id])
		}
	}
	for _, id := range have {
		if !slices.Contains(truth, id) {
			n++
			fmt.Fprintf(&b, "extra %s (saw %v); ", id, o.recent[id])
		}
	}
	return n, b.String()
}

func (o *observer) failure() error {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.err
}

func (o *observer) close() {
	o.mu.Lock()
	o.closing = true
	o.mu.Unlock()
	_ = o.conn.Close()
	<-o.done
}

// failures collects what went wrong on churn goroutines, where the test
// cannot fail at once.
type failures struct {
	mu   sync.Mutex
	errs []string // guarded by mu
}

func (f *failures) add(s string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.errs = append(f.errs, s)
}

func (f *failures) all() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.errs)
}
