// Package wire is the seam between the hub and a wire protocol. A
// Protocol turns a client frame into an Action and a hub Event into the
// bytes of a server frame. The hub does everything in between (limits,
// authorization, channels, presence, whispers, history) the same way for
// every protocol: ws's own JSON protocol is one implementation, the
// Pusher Channels protocol (package pusher) another.
//
// Events shared by many subscribers (publications, whispers, presence
// changes) are encoded once per protocol and the bytes shared; a Protocol
// must therefore encode them from the Event alone, never from the
// connection that will receive them.
package wire

import (
	"bytes"
	"encoding/json"
)

// ActionKind names what a client frame asks for.
type ActionKind uint8

// The actions.
const (
	Invalid     ActionKind = iota // the frame could not be decoded: see Action.Code and Action.Err
	Subscribe                     // join Channel
	Unsubscribe                   // leave Channel
	Whisper                       // send Event with Data to the other subscribers of Channel
	Ping                          // answer with a Pong event
	Pong                          // the client answered a protocol-level ping: nothing to do
	Publish                       // a client tried to publish: refused
	Unknown                       // an action the protocol does not know: refused
	Signin                        // the protocol authenticated the connection's user: Grant.Member
)

// Action is one decoded client frame.
type Action struct {
	Kind ActionKind
	// Name is the action as the client spelled it, echoed in errors.
	Name    string
	Channel string
	// Event and Data are a whisper's.
	Event string
	Data  json.RawMessage
	// Since asks a subscribe to recover the publications after a
	// position in the channel's history.
	Since *Position
	// Grant, when set, is a subscribe that the protocol authorized
	// itself (a signed token in the frame); the hub then skips its own
	// authorization hooks. Nil means the hub decides. On a Signin action
	// Grant.Member is the user the protocol authenticated.
	Grant *Grant
	// Code and Err say what was wrong with an Invalid frame (Code is one
	// of ws's error codes; Err's text is safe to show the client).
	Code string
	Err  error
}

// Grant is a protocol's authorization of one subscribe, or of a sign-in.
type Grant struct {
	// Member is who the connection is on the channel: on a presence
	// channel the member it joins as, and on any channel the user its
	// whispers there come from. Nil means the connection's own user.
	Member *Member
}

// Position is a place in a channel's history: an offset within an epoch.
type Position struct {
	Offset uint64
	Epoch  string
}

// Member is one user of a presence channel.
type Member struct {
	ID   string
	Info json.RawMessage // any JSON value, or nil
}

// EventKind names what an Event tells a client.
type EventKind uint8

// The events.
const (
	Message      EventKind = iota // a publication on Channel
	WhisperEvent                  // a whisper from another client
	Members                       // the presence member list, after a subscribe (or again)
	Join                          // a user joined a presence channel
	Leave                         // a user left a presence channel
	Subscribed                    // a subscribe succeeded
	Unsubscribed                  // an unsubscribe succeeded
	Error                         // an action was refused or failed
	PongEvent                     // the answer to a Ping action
	SignedIn                      // a Signin succeeded: Member is the user, Data what the protocol's Signin carried
)

// Event is one thing the server tells a client.
type Event struct {
	Kind    EventKind
	Channel string
	// Name is a publication's or a whisper's event name (may be empty for
	// a publication).
	Name string
	// Data is a publication's message or a whisper's data: JSON.
	Data json.RawMessage
	// From is a whisper's sender (a user ID, possibly empty).
	From string
	// User is the user a Message on the "#user" pseudo-channel is
	// addressed to (ws.Hub.PublishToUser); empty otherwise.
	User string

	// Presence: Member who joined or left; Members the list when it is
	// carried (Members events always; Join and Leave on small channels),
	// with HasMembers telling an empty list from none; Count the number
	// of members; Version the channel's presence version after the event.
	Member     *Member
	Members    []Member
	HasMembers bool
	Count      int
	Version    uint64
	// MembersJSON, when set, is the list already written as the native
	// protocol's users array ([{"id":...,"info":...},...]), and Members
	// is nil: a Join or Leave that came through the broker carries its
	// list so, and protocols write it as it came rather than decode and
	// encode it again on every node. Only Join and Leave have it.
	MembersJSON json.RawMessage

	// History: a publication's Offset; and on a Subscribed event of a
	// history channel, the channel's latest position and, when the
	// subscribe asked for recovery, whether it succeeded.
	History   bool
	Offset    uint64
	Epoch     string
	Recover   bool // the subscribe asked for recovery
	Recovered bool

	// Error: Code (one of ws's error codes), Text for people, and the
	// Action and Channel it answers.
	Code, Text, Action string
}

// Clone returns a copy of ev with bytes of its own: an Event decoded
// from a broker's payload shares its bytes (Data, the member's info, the
// list in MembersJSON) with that payload, which the broker may reuse once
// its handler returns, so what outlives the handler is a clone. Members,
// which no payload is decoded into, stays shared.
func (ev *Event) Clone() *Event {
	c := *ev
	c.Data = bytes.Clone(ev.Data)
	if ev.Member != nil {
		m := *ev.Member
		m.Info = bytes.Clone(m.Info)
		c.Member = &m
	}
	c.MembersJSON = bytes.Clone(ev.MembersJSON)
	return &c
}

// Protocol is one wire protocol.
type Protocol interface {
	// Decode turns one client text frame into an Action. socketID is the
	// connection's ID, for protocols that sign subscriptions with it.
	Decode(socketID string, frame []byte) Action
	// Encode appends the payload of ev's server frame to dst. It returns
	// dst unchanged when the protocol sends nothing for ev.
	Encode(dst []byte, ev *Event) []byte
	// Hello returns the payload of the frame sent when a connection
	// opens, or nil.
	Hello(socketID string) []byte
	// CloseCode maps a close code of ws (docs/protocol.md) to the code
	// the protocol's clients expect.
	CloseCode(code int) int
}
