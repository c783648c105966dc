// Package frame builds server-to-client WebSocket frames (RFC 6455) as
// complete byte slices. Server frames are never masked, so one encoded
// frame is byte-for-byte the same for every recipient and can be shared.
package frame

import (
	"encoding/binary"
	"unicode/utf8"
)

// Opcodes of the frames the server writes.
const (
	OpText  byte = 0x1
	OpClose byte = 0x8
	OpPing  byte = 0x9
	OpPong  byte = 0xA
)

const finBit = 0x80

// HeaderLen returns the header length of an unmasked frame with an
// n-byte payload.
func HeaderLen(n int) int {
	switch {
	case n <= 125:
		return 2
	case n <= 0xFFFF:
		return 4
	default:
		return 10
	}
}

// Append appends one complete, final, unmasked frame to dst.
func Append(dst []byte, op byte, payload []byte) []byte {
	n := len(payload)
	dst = append(dst, finBit|op)
	switch {
	case n <= 125:
		dst = append(dst, byte(n))
	case n <= 0xFFFF:
		dst = append(dst, 126, byte(n>>8), byte(n))
	default:
		dst = append(dst, 127)
		dst = binary.BigEndian.AppendUint64(dst, uint64(n))
	}
	return append(dst, payload...)
}

// Text returns a text frame carrying payload, in one allocation.
func Text(payload []byte) []byte {
	return Append(make([]byte, 0, HeaderLen(len(payload))+len(payload)), OpText, payload)
}

// Ping returns an empty ping frame.
func Ping() []byte { return []byte{finBit | OpPing, 0} }

// Pong returns a pong frame echoing appData, cut to the 125 bytes a
// control frame may carry.
func Pong(appData []byte) []byte {
	if len(appData) > 125 {
		appData = appData[:125]
	}
	return Append(make([]byte, 0, 2+len(appData)), OpPong, appData)
}

// Close returns a close frame with code and reason. The reason is cut to
// fit the 125-byte control payload without splitting a UTF-8 sequence.
func Close(code int, reason string) []byte {
	if len(reason) > 123 {
		reason = reason[:123]
		for len(reason) > 0 && !utf8.ValidString(reason) {
			reason = reason[:len(reason)-1]
		}
	}
	p := make([]byte, 2, 2+len(reason))
	binary.BigEndian.PutUint16(p, uint16(code))
	p = append(p, reason...)
	return Append(make([]byte, 0, 2+len(p)), OpClose, p)
}
