package pusher

import (
	"encoding/json"
	"strings"
	"unicode/utf8"
)

// The mapping between a publication's message (a JSON value, as the hub
// and ws's native clients have it) and Pusher's "data", which is a string
// on the wire (docs/pusher.md):
//
//   - To Pusher clients: a message that is a JSON string whose text is
//     not itself JSON ("hello") is sent as that string; any other message
//     (an object, array, number, true, false, null, or a string like "2"
//     or "{}") is sent as a string holding its JSON text, byte for byte.
//     pusher-js parses data that is JSON, so it gets back the message's
//     value either way.
//   - From the HTTP API: data that is valid JSON text becomes the message
//     as that JSON value (so native clients see the object Laravel sent);
//     any other text becomes a JSON string. Pusher clients then get back
//     exactly the string that was sent, with one exception: data whose
//     text is a JSON string literal of non-JSON text (the five bytes
//     "hi" with their quotes) reaches them without the quotes, which
//     pusher-js reads as the same value.
//   - From Pusher clients (client events): data is a JSON value in the
//     frame and stays that value.

// appendData appends msg, a valid JSON value, as the data field of a
// Pusher frame.
func appendData(dst []byte, msg json.RawMessage) []byte {
	i := 0
	for i < len(msg) && isSpace(msg[i]) {
		i++
	}
	if i < len(msg) && msg[i] == '"' {
		j := len(msg)
		for j > i && isSpace(msg[j-1]) {
			j--
		}
		if !holdsJSON(msg[i:j]) {
			return append(dst, msg[i:j]...)
		}
	}
	if len(msg) == 0 {
		return append(dst, `"null"`...)
	}
	return appendQuoted(dst, msg)
}

// holdsJSON reports whether the JSON string token tok has a text that is
// itself valid JSON, which pusher-js would parse.
func holdsJSON(tok []byte) bool {
	k := 1
	for k < len(tok) && isSpace(tok[k]) {
		k++
	}
	// JSON text starts with one of these; a backslash (an escaped
	// character) needs the full check.
	if k >= len(tok)-1 || !strings.ContainsRune(`{["-0123456789tfn\`, rune(tok[k])) {
		return false
	}
	var s string
	if json.Unmarshal(tok, &s) != nil {
		return false
	}
	return json.Valid([]byte(s))
}

// messageFromData is the message a Pusher publication's data string
// becomes.
func messageFromData(data string) json.RawMessage {
	if json.Valid([]byte(data)) {
		return json.RawMessage(data)
	}
	b, _ := json.Marshal(data)
	return b
}

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

// appendQuoted appends s as a JSON string. Unlike encoding/json it leaves
// <, > and & alone and passes valid UTF-8 through, so a JSON text quoted
// by it is byte for byte the text pusher-js gets back.
func appendQuoted(dst []byte, s []byte) []byte {
	const hex = "0123456789abcdef"
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c >= 0x20 && c != '"' && c != '\\' && c < utf8.RuneSelf {
			i++
			continue
		}
		if c >= utf8.RuneSelf {
			r, size := utf8.DecodeRune(s[i:])
			if r == utf8.RuneError && size == 1 {
				dst = append(dst, s[start:i]...)
				dst = append(dst, `\ufffd`...)
				i++
				start = i
				continue
			}
			if r == '\u2028' || r == '\u2029' {
				dst = append(dst, s[start:i]...)
				dst = append(dst, `\u202`...)
				dst = append(dst, hex[r&0xf])
				i += size
				start = i
				continue
			}
			i += size
			continue
		}
		dst = append(dst, s[start:i]...)
		switch c {
		case '"', '\\':
			dst = append(dst, '\\', c)
		case '\n':
			dst = append(dst, '\\', 'n')
		case '\r':
			dst = append(dst, '\\', 'r')
		case '\t':
			dst = append(dst, '\\', 't')
		default:
			dst = append(dst, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
		}
		i++
		start = i
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}

// appendString appends s as a JSON string.
func appendString(dst []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c == '"' || c == '\\' || c >= utf8.RuneSelf {
			return appendQuoted(dst, []byte(s))
		}
	}
	dst = append(dst, '"')
	dst = append(dst, s...)
	return append(dst, '"')
}
