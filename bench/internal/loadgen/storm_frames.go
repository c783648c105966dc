package loadgen

import (
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	"github.com/vortechron/go-ws/bench/internal/proto"
)

// wsFrame is one frame of ws's protocol.
type wsFrame struct {
	Type    string `json:"type"`
	Channel string `json:"channel"`
	Event   string `json:"event"`
	Count   int    `json:"count"`
	Code    string `json:"code"`
	Action  string `json:"action"`
	Users   *[]struct {
		ID string `json:"id"`
	} `json:"users"`
	User *struct {
		ID string `json:"id"`
	} `json:"user"`
}

func (w *stormWorker) wsFrame(u *stormUser, s *session, line []byte, now int64) {
	var f wsFrame
	if json.Unmarshal(line, &f) != nil {
		return
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	if s.dead {
		return
	}
	w.lastFrame.Store(now)
	switch f.Type {
	case "subscribed":
		s.acked[f.Channel] = true
	case "presence":
		w.presence.Add(1)
		if f.Channel != u.chans[3] {
			break
		}
		// Two readings of the same frames. The incremental one (view):
		// reset on "members", then apply each join's and leave's user in
		// order; it is what clients of channels above
		// Config.PresenceUsersLimit must do, and what the protocol
		// promises to keep exact. The list one (listView): take the
		// "users" list whenever a frame carries one (ws sends it on
		// channels of up to PresenceUsersLimit members), else apply the
		// user.
		if f.Event == "members" {
			s.view = map[string]string{}
			s.haveList = true
		}
		if f.Users != nil && (f.Event == "members" || s.listView != nil) {
			s.listView = map[string]bool{}
			for _, m := range *f.Users {
				s.listView[m.ID] = true
				if f.Event == "members" {
					s.view[m.ID] = m.ID
				}
			}
		}
		if s.haveList && f.User != nil {
			switch f.Event {
			case "join":
				s.view[f.User.ID] = f.User.ID
				if f.Users == nil {
					s.listView[f.User.ID] = true
				}
			case "leave":
				delete(s.view, f.User.ID)
				if f.Users == nil {
					delete(s.listView, f.User.ID)
				}
			}
		}
		s.lastCount = f.Count
	case "error":
		w.errorFrame(f.Code, line)
		if f.Action == "subscribe" && f.Channel != "" && s.tries[f.Channel] < 5 {
			s.tries[f.Channel]++
			w.retries.Add(1)
			ch := f.Channel
			time.AfterFunc(200*time.Millisecond, func() { s.write(proto.SubscribeRequest(ch)) })
		}
	}
	w.update(u, s, now)
}

// cfReply is one line of centrifuge's JSON protocol.
type cfReply struct {
	ID    int `json:"id"`
	Error *struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
	Push *struct {
		Channel string      `json:"channel"`
		Join    *cfPresence `json:"join"`
		Leave   *cfPresence `json:"leave"`
	} `json:"push"`
	Presence *struct {
		Presence map[string]cfInfo `json:"presence"`
	} `json:"presence"`
}

type cfInfo struct {
	User   string `json:"user"`
	Client string `json:"client"`
}

type cfPresence struct {
	Info  cfInfo `json:"info"`
	leave bool
}

// centrifuge command ids: 1 connect, 2..5 the subscribes, 6 presence.
const cfPresenceID = 6

func (w *stormWorker) centrifugeFrame(u *stormUser, s *session, line []byte, now int64) {
	var f cfReply
	if json.Unmarshal(line, &f) != nil {
		return
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	if s.dead {
		return
	}
	w.lastFrame.Store(now)
	var send [][]byte
	switch {
	case f.Error != nil:
		w.errorFrame(strconv.Itoa(f.Error.Code), line)
		key := strconv.Itoa(f.ID)
		if f.ID >= 1 && f.ID <= cfPresenceID && s.tries[key] < 5 {
			s.tries[key]++
			w.retries.Add(1)
			cmd := cfCommand(u, f.ID)
			time.AfterFunc(200*time.Millisecond, func() { s.write(cmd) })
		}
	case f.Push != nil:
		if f.Push.Channel != u.chans[3] || (f.Push.Join == nil && f.Push.Leave == nil) {
			break
		}
		w.presence.Add(1)
		ev := f.Push.Join
		if ev == nil {
			ev = f.Push.Leave
			ev.leave = true
		}
		if s.haveList {
			applyCF(s.view, ev)
		} else {
			s.pending = append(s.pending, *ev)
		}
	case f.ID == 1:
		s.connected = true
		for id := 2; id <= 5; id++ {
			send = append(send, cfCommand(u, id))
		}
	case f.ID >= 2 && f.ID <= 5:
		s.acked[u.chans[f.ID-2]] = true
		if f.ID-2 == 3 && w.o.presence {
			send = append(send, cfCommand(u, cfPresenceID))
		}
	case f.ID == cfPresenceID && f.Presence != nil:
		w.presence.Add(1)
		s.view = map[string]string{}
		for id, ci := range f.Presence.Presence {
			s.view[id] = ci.User
		}
		for i := range s.pending {
			applyCF(s.view, &s.pending[i])
		}
		s.pending = nil
		s.haveList = true
	}
	w.update(u, s, now)
	if len(send) > 0 {
		go func() { // never write under u.mu
			for _, b := range send {
				s.write(b)
			}
		}()
	}
}

func applyCF(view map[string]string, ev *cfPresence) {
	if ev.leave {
		delete(view, ev.Info.Client)
	} else {
		view[ev.Info.Client] = ev.Info.User
	}
}

// cfCommand is centrifuge command id of u's session.
func cfCommand(u *stormUser, id int) []byte {
	switch {
	case id == 1:
		return []byte(`{"id":1,"connect":{}}`)
	case id >= 2 && id <= 5:
		return fmt.Appendf(nil, `{"id":%d,"subscribe":{"channel":%q}}`, id, u.chans[id-2])
	default:
		return fmt.Appendf(nil, `{"id":%d,"presence":{"channel":%q}}`, id, u.chans[3])
	}
}

// update re-evaluates s after a frame; called with u.mu held.
func (w *stormWorker) update(u *stormUser, s *session, now int64) {
	sub := len(s.acked) == len(u.chans)
	if sub && !s.isSub {
		s.isSub = true
		s.subscribedNs = now
		w.subscribed.Add(1)
	}
	set := sub && (!w.o.presence || viewSettled(u, s, w.o.proto))
	if set != s.isSet {
		s.isSet = set
		if set {
			s.settledNs = now
			w.settled.Add(1)
		} else {
			w.settled.Add(-1)
		}
	}
	list := set
	if w.o.presence && w.o.proto != ProtoCentrifuge {
		list = sub && listSettled(u, s)
	}
	if list != s.listSettled {
		s.listSettled = list
		if list {
			s.listNs = now
			w.listSet.Add(1)
		} else {
			w.listSet.Add(-1)
		}
	}
}

// listSettled reports whether s's list reading equals u.want and the last
// presence frame counted as many.
func listSettled(u *stormUser, s *session) bool {
	if !s.haveList || len(s.listView) != len(u.want) || s.lastCount != len(u.want) {
		return false
	}
	for user := range s.listView {
		if !u.want[user] {
			return false
		}
	}
	return true
}

// viewSettled reports whether s's view of its room is exactly u.want.
func viewSettled(u *stormUser, s *session, p Protocol) bool {
	if !s.haveList || len(s.view) != len(u.want) {
		return false
	}
	users := map[string]bool{}
	for _, user := range s.view {
		if !u.want[user] {
			return false
		}
		users[user] = true
	}
	if len(users) != len(u.want) {
		return false
	}
	return p == ProtoCentrifuge || s.lastCount == len(u.want)
}
