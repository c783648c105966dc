// Package proto holds the wire format shared by every benchmark server and
// the load generator: the payload each publication carries (a sequence
// number and a send timestamp) and the envelope the ws-style servers wrap
// it in.
package proto

import (
	"bytes"
	"fmt"
	"strconv"
)

// MinPayloadSize is the smallest payload Payload can build: the JSON object
// with its sequence number, timestamp and an empty pad.
const MinPayloadSize = 64

// Payload returns a JSON object of exactly size bytes (at least
// MinPayloadSize) carrying seq and ts (Unix nanoseconds of the publish):
//
//	{"seq":12,"ts":1700000000000000000,"pad":"xxxx..."}
func Payload(seq int64, ts int64, size int) []byte {
	b := make([]byte, 0, max(size, MinPayloadSize))
	b = append(b, `{"seq":`...)
	b = strconv.AppendInt(b, seq, 10)
	b = append(b, `,"ts":`...)
	b = strconv.AppendInt(b, ts, 10)
	b = append(b, `,"pad":"`...)
	for len(b) < size-2 {
		b = append(b, 'x')
	}
	return append(b, `"}`...)
}

// Envelope wraps payload the way the ws library frames a publication, so
// the hand-written servers put the same bytes on the wire as ws does:
//
//	{"type":"message","channel":"C","message":<payload>}
func Envelope(channel string, payload []byte) []byte {
	b := make([]byte, 0, len(payload)+len(channel)+40)
	b = append(b, `{"type":"message","channel":`...)
	b = strconv.AppendQuote(b, channel)
	b = append(b, `,"message":`...)
	b = append(b, payload...)
	return append(b, '}')
}

// Subscribed is the acknowledgement the ws-style servers send once a
// subscription is in place.
func Subscribed(channel string) []byte {
	b := append([]byte(`{"type":"subscribed","channel":`), strconv.Quote(channel)...)
	return append(b, '}')
}

// SubscribeRequest is the client frame asking for a subscription.
func SubscribeRequest(channel string) []byte {
	b := append([]byte(`{"action":"subscribe","channel":`), strconv.Quote(channel)...)
	return append(b, '}')
}

var (
	seqKey = []byte(`"seq":`)
	tsKey  = []byte(`"ts":`)
	// The same keys inside a JSON string: Pusher's "data" carries the
	// payload as text, {"data":"{\"seq\":12,\"ts\":...}"}.
	seqKeyQuoted = []byte(`"seq\":`)
	tsKeyQuoted  = []byte(`"ts\":`)
)

// Parse finds the sequence number and timestamp of a publication inside
// one JSON message (any envelope, the payload an object or a string that
// holds it). ok is false for messages that carry no publication (acks,
// pings, errors).
func Parse(msg []byte) (seq, ts int64, ok bool) {
	sk, tk := seqKey, tsKey
	i := bytes.Index(msg, sk)
	if i < 0 {
		sk, tk = seqKeyQuoted, tsKeyQuoted
		if i = bytes.Index(msg, sk); i < 0 {
			return 0, 0, false
		}
	}
	seq, rest, ok := digits(msg[i+len(sk):])
	if !ok {
		return 0, 0, false
	}
	j := bytes.Index(rest, tk)
	if j < 0 {
		return 0, 0, false
	}
	ts, _, ok = digits(rest[j+len(tk):])
	return seq, ts, ok
}

func digits(b []byte) (int64, []byte, bool) {
	var v int64
	n := 0
	for n < len(b) && b[n] >= '0' && b[n] <= '9' {
		v = v*10 + int64(b[n]-'0')
		n++
	}
	return v, b[n:], n > 0
}

// ChannelOf extracts the "channel" string of a ws-style client frame
// without a full JSON decode; ok is false when absent.
func ChannelOf(msg []byte) (string, bool) {
	i := bytes.Index(msg, []byte(`"channel":"`))
	if i < 0 {
		return "", false
	}
	rest := msg[i+len(`"channel":"`):]
	j := bytes.IndexByte(rest, '"')
	if j < 0 {
		return "", false
	}
	return string(rest[:j]), true
}

// PusherSubscribe is the Pusher protocol's subscribe event.
func PusherSubscribe(channel string) []byte {
	b := append([]byte(`{"event":"pusher:subscribe","data":{"channel":`), strconv.Quote(channel)...)
	return append(b, `}}`...)
}

// Indexed names the i-th of many channels: prefix and i as 12 digits,
// the way redis-benchmark expands __rand_int__, so the harness, the
// servers and redis-benchmark name the same channels.
func Indexed(prefix string, i int) string {
	return fmt.Sprintf("%s%012d", prefix, i)
}
