package ws

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/vortechron/go-ws/internal/wire"
)

// Publish sends message to every subscriber of channel on every node.
// message is encoded to JSON once (a json.RawMessage or []byte that holds
// JSON is used as is; a string becomes a JSON string) and subscribers get
// {"type":"message","channel":...,"message":...}. Publications from one
// goroutine on one channel arrive in order.
//
// Publish returns nil once the broker has accepted the publication; this
// node's subscribers get it on the write shards right after, possibly
// after Publish has returned. An error wrapping ErrBrokerUnavailable
// means it was not sent; one wrapping ErrPublishUncertain means it may
// have been (retrying may deliver it twice).
//
// On a channel that keeps history (Config.History) the publication is
// also kept there, under the channel's next offset, and subscribers see
// the offset (docs/recovery.md).
func (h *Hub) Publish(ctx context.Context, channel string, message any) error {
	return h.PublishWith(ctx, channel, message, PublishOptions{})
}

// PublishOptions are the optional parts of a publication.
type PublishOptions struct {
	// Event names the publication. Native clients see it as the "event"
	// field of the message frame (left out when empty); Pusher clients
	// as the event name.
	Event string
	// Except is the ID of a connection that does not receive the
	// publication, on whichever node it is: the sender, when a client's
	// action made the application publish (Laravel's toOthers()).
	Except string
}

// PublishWith is Publish with options.
func (h *Hub) PublishWith(ctx context.Context, channel string, message any, opts PublishOptions) error {
	if err := ValidChannelName(channel); err != nil {
		return err
	}
	if h.isDone() {
		return ErrHubClosed
	}
	raw, err := marshalMessage(message)
	if err != nil {
		return err
	}
	ev := wire.Event{Kind: wire.Message, Channel: channel, Name: opts.Event, Data: raw}
	h.stats.publishes.Add(1)
	if hopts, hb, ok := h.historyOptions(channel); ok {
		return h.publishHistory(ctx, hb, &ev, opts.Except, hopts)
	}
	return h.publish(ctx, &ev, opts.Except)
}

// publish hands ev to the broker, to be delivered on every node to every
// subscriber of its channel but the connection except.
func (h *Hub) publish(ctx context.Context, ev *wire.Event, except string) error {
	if err := h.broker.Publish(ctx, ev.Channel, encodeEnvelope(ev, except)); err != nil {
		return h.publishFailed(ev.Channel, err)
	}
	return nil
}

// publishHistory hands ev to the broker to be kept in the channel's
// history and delivered like publish does.
func (h *Hub) publishHistory(ctx context.Context, hb HistoryBroker, ev *wire.Event, except string, opts HistoryOptions) error {
	if _, err := hb.PublishHistory(ctx, ev.Channel, encodeEnvelope(ev, except), opts); err != nil {
		return h.publishFailed(ev.Channel, err)
	}
	return nil
}

// publishFailed counts a failed publication and makes its error say
// whether it was sent.
func (h *Hub) publishFailed(channel string, err error) error {
	h.stats.brokerPublishFailures.Add(1)
	if errors.Is(err, ErrBrokerUnavailable) || errors.Is(err, ErrPublishUncertain) || errors.Is(err, ErrHubClosed) {
		return fmt.Errorf("ws: publish on %q: %w", channel, err)
	}
	return fmt.Errorf("%w: publish on %q: %w", ErrBrokerUnavailable, channel, err)
}

// marshalMessage encodes a publication's message: json.RawMessage and
// []byte must hold JSON and are used as they are.
func marshalMessage(message any) (json.RawMessage, error) {
	switch m := message.(type) {
	case json.RawMessage:
		if !json.Valid(m) {
			return nil, errors.New("ws: publish: message is a json.RawMessage that is not valid JSON")
		}
		return m, nil
	case []byte:
		if !json.Valid(m) {
			return nil, errors.New("ws: publish: message is a []byte that is not valid JSON; pass a string to send text")
		}
		return m, nil
	}
	b, err := json.Marshal(message)
	if err != nil {
		return nil, fmt.Errorf("ws: publish: encode message: %w", err)
	}
	return b, nil
}

// The broker envelope. Every payload the Hub hands to a MessageBroker is
// one envelope: a version byte, a kind byte, then the fields of the event
// that each node needs to encode it for its own subscribers, in every
// protocol they speak:
//
//	except name from info epoch users   each a uvarint length and bytes
//	num1 num2 flags                     uvarints
//	data                                the rest
//
// except is the connection to skip (a whisper's sender, PublishOptions.
// Except); name the event name (presence: "join" or "leave"); from a
// whisper's sender or the presence member's ID; info the member's info;
// epoch the presence epoch; users the presence member list as JSON; num1
// the presence version; num2 the member count; flags says whether users
// is present. delivery.go decodes it. A publication on a history channel
// is an envelope too, which the broker hands to subscribers behind the
// offset and epoch it gave it (see cutPositioned in history.go).
const envelopeVersion = 2

const (
	kindMessage  byte = 'm'
	kindWhisper  byte = 'w'
	kindPresence byte = 'p'

	flagUsers = 1
)

func encodeEnvelope(ev *wire.Event, except string) []byte {
	var kind byte
	var name, from, info, users []byte
	var num1, num2, flags uint64
	switch ev.Kind {
	case wire.Message:
		kind, name = kindMessage, []byte(ev.Name)
	case wire.WhisperEvent:
		kind, name, from = kindWhisper, []byte(ev.Name), []byte(ev.From)
	case wire.Join, wire.Leave:
		kind, name = kindPresence, []byte(presenceEvents[ev.Kind])
		if ev.Member != nil {
			from, info = []byte(ev.Member.ID), ev.Member.Info
		}
		num1, num2 = ev.Version, uint64(ev.Count)
		if ev.HasMembers {
			flags |= flagUsers
			users = ev.MembersJSON
			if users == nil {
				users = appendMembers(nil, ev.Members)
			}
		}
	}
	n := 2 + len(except) + len(name) + len(from) + len(info) + len(ev.Epoch) + len(users) + 9*binary.MaxVarintLen64 + len(ev.Data)
	b := make([]byte, 0, n)
	b = append(b, envelopeVersion, kind)
	for _, f := range [][]byte{[]byte(except), name, from, info, []byte(ev.Epoch), users} {
		b = binary.AppendUvarint(b, uint64(len(f)))
		b = append(b, f...)
	}
	b = binary.AppendUvarint(b, num1)
	b = binary.AppendUvarint(b, num2)
	b = binary.AppendUvarint(b, flags)
	return append(b, ev.Data...)
}

// appendMembers appends members as the JSON array of a presence frame's
// users.
func appendMembers(b []byte, members []wire.Member) []byte {
	b = append(b, '[')
	for i, m := range members {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendMember(b, m)
	}
	return append(b, ']')
}
