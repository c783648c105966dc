package frame

import (
	"encoding/binary"
	"io"
	"unicode/utf8"
)

// Client opcodes the server reads besides those it writes.
const (
	OpContinuation byte = 0x0
	OpBinary       byte = 0x2
)

// Close codes the reader answers protocol faults with.
const (
	CodeProtocolError = 1002
	CodeInvalidData   = 1007
	CodeTooBig        = 1009
)

// ProtocolError is a frame that breaks RFC 6455. Code is the close code
// to answer with.
type ProtocolError struct {
	Code int
	Msg  string
}

func (e *ProtocolError) Error() string { return "websocket: " + e.Msg }

func protocolErr(code int, msg string) error { return &ProtocolError{Code: code, Msg: msg} }

// CloseError is returned by Next when the peer sent a close frame.
type CloseError struct {
	Code int // 1005 when the frame carried no code
	Text string
}

func (e *CloseError) Error() string { return "websocket: peer closed the connection" }

// Reader reads masked client frames from R with no buffer of its own:
// while a connection is idle it holds only a 14-byte header array, and
// message payloads go into the buffer the caller passes to Next.
type Reader struct {
	R       io.Reader
	MaxSize int64 // largest message in bytes; zero means no limit
	// Control is called for each ping and pong, including those that
	// arrive between the fragments of a message.
	Control func(op byte, payload []byte)
	// Deflate accepts compressed messages (permessage-deflate, RFC 7692,
	// negotiated with client_no_context_takeover): RSV1 on the first
	// frame of a text or binary message. Next inflates them, holding the
	// inflated size to MaxSize.
	Deflate bool
	hdr     [14]byte
}

// Next reads the next text or binary message, appending its unmasked
// payload to buf[:0], and returns the opcode and the payload. Fragmented
// messages are joined. A compressed message is inflated into a new slice.
// A close frame ends with a *CloseError; a frame that breaks the protocol
// or the size limit (before or after inflating) ends with a
// *ProtocolError.
func (r *Reader) Next(buf []byte) (op byte, payload []byte, err error) {
	buf = buf[:0]
	fragmented, compressed := false, false
	for {
		fin, fop, n, mask, rsv, err := r.header()
		if err != nil {
			return 0, buf, err
		}
		if rsv != 0 && (rsv != rsv1 || !r.Deflate || fop != OpText && fop != OpBinary) {
			if rsv == rsv1 && r.Deflate {
				return 0, buf, protocolErr(CodeProtocolError, "RSV1 set on a frame that does not start a message")
			}
			return 0, buf, protocolErr(CodeProtocolError, "reserved bits set (no extension was negotiated)")
		}
		switch fop {
		case OpClose, OpPing, OpPong:
			if !fin {
				return 0, buf, protocolErr(CodeProtocolError, "fragmented control frame")
			}
			if n > 125 {
				return 0, buf, protocolErr(CodeProtocolError, "control frame longer than 125 bytes")
			}
			var ctl [125]byte
			p := ctl[:n]
			if _, err := io.ReadFull(r.R, p); err != nil {
				return 0, buf, err
			}
			unmask(p, mask)
			if fop == OpClose {
				return 0, buf, closeError(p)
			}
			if r.Control != nil {
				r.Control(fop, p)
			}
			continue
		case OpText, OpBinary:
			if fragmented {
				return 0, buf, protocolErr(CodeProtocolError, "new message before the previous one was finished")
			}
			op = fop
			compressed = rsv != 0
		case OpContinuation:
			if !fragmented {
				return 0, buf, protocolErr(CodeProtocolError, "continuation frame without a message to continue")
			}
		default:
			return 0, buf, protocolErr(CodeProtocolError, "reserved opcode")
		}
		if r.MaxSize > 0 && uint64(len(buf))+n > uint64(r.MaxSize) {
			return 0, buf, protocolErr(CodeTooBig, "message larger than the limit")
		}
		start := len(buf)
		// The buffer grows as payload arrives, not as the header claims,
		// so a header alone never costs MaxSize bytes.
		for left := int(n); left > 0; {
			step := min(left, max(4096, len(buf)-start))
			at := len(buf)
			buf = grow(buf, step)
			if _, err := io.ReadFull(r.R, buf[at:]); err != nil {
				return 0, buf, err
			}
			left -= step
		}
		unmask(buf[start:], mask)
		if !fin {
			fragmented = true
			continue
		}
		if compressed {
			if buf, err = Inflate(buf, r.MaxSize); err != nil {
				return 0, nil, err
			}
		}
		if op == OpText && !utf8.Valid(buf) {
			return 0, buf, protocolErr(CodeInvalidData, "text message is not valid UTF-8")
		}
		return op, buf, nil
	}
}

// header reads one frame header; rsv holds its reserved bits, which Next
// checks.
func (r *Reader) header() (fin bool, op byte, n uint64, mask [4]byte, rsv byte, err error) {
	h := r.hdr[:2]
	if _, err = io.ReadFull(r.R, h); err != nil {
		return
	}
	fin, op, rsv = h[0]&0x80 != 0, h[0]&0x0F, h[0]&0x70
	if h[1]&0x80 == 0 {
		err = protocolErr(CodeProtocolError, "client frame is not masked")
		return
	}
	n = uint64(h[1] & 0x7F)
	ext := 0
	switch n {
	case 126:
		ext = 2
	case 127:
		ext = 8
	}
	rest := r.hdr[2 : 2+ext+4]
	if _, err = io.ReadFull(r.R, rest); err != nil {
		return
	}
	switch ext {
	case 2:
		n = uint64(binary.BigEndian.Uint16(rest))
	case 8:
		n = binary.BigEndian.Uint64(rest)
		if n>>63 != 0 {
			err = protocolErr(CodeProtocolError, "payload length has its top bit set")
			return
		}
	}
	copy(mask[:], rest[ext:])
	return
}

func closeError(p []byte) error {
	if len(p) == 0 {
		return &CloseError{Code: 1005}
	}
	if len(p) == 1 {
		return protocolErr(CodeProtocolError, "close frame with a one-byte payload")
	}
	code := int(binary.BigEndian.Uint16(p))
	if !validCloseCode(code) {
		return protocolErr(CodeProtocolError, "invalid close code")
	}
	if !utf8.Valid(p[2:]) {
		return protocolErr(CodeInvalidData, "close reason is not valid UTF-8")
	}
	return &CloseError{Code: code, Text: string(p[2:])}
}

func validCloseCode(code int) bool {
	switch {
	case code >= 1000 && code <= 1003, code >= 1007 && code <= 1014:
		return true
	case code >= 3000 && code <= 4999:
		return true
	}
	return false
}

// grow extends buf by n bytes.
func grow(buf []byte, n int) []byte {
	if cap(buf)-len(buf) >= n {
		return buf[:len(buf)+n]
	}
	nb := make([]byte, len(buf)+n, len(buf)+n+len(buf)/2)
	copy(nb, buf)
	return nb
}

func unmask(p []byte, key [4]byte) {
	if len(p) >= 8 {
		k := uint64(binary.LittleEndian.Uint32(key[:]))
		k |= k << 32
		for len(p) >= 8 {
			v := binary.LittleEndian.Uint64(p)
			binary.LittleEndian.PutUint64(p, v^k)
			p = p[8:]
		}
	}
	for i := range p {
		p[i] ^= key[i&3]
	}
}
