package loadgen

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"strings"
	"sync"

	"github.com/vortechron/go-ws/internal/frame"
)

// inflatingConn sits between a client's TCP connection and gorilla's
// WebSocket reader and inflates permessage-deflate messages itself, each
// distinct compressed payload once per process: a message's frame reaches
// gorilla as the uncompressed frame it stands for (RSV1 cleared).
//
// Why: in the compression scenario thousands of clients on the same two
// cores as the server inflate every message on their own, which costs
// them about ten times what reading a plain frame does, so the load
// generator, not the server, sets the rate. Real clients inflate on their
// own devices. With server_no_context_takeover (which every client here
// asks for, and a server must then honour, RFC 7692 7.1.1.1) a message's
// compressed bytes alone decide its text, so inflating equal payloads
// once is exact: every delivery is still read, parsed and checked, and the
// wire bytes are counted below this layer.
//
// It reads the handshake response through unchanged, then whole frames.
// A compressed message sent in fragments is joined into one frame;
// control frames between its fragments go through at once. A read that
// fails mid-frame (a deadline) leaves the stream unusable, which the load
// generator never needs: it sets read deadlines only while subscribing.
type inflatingConn struct {
	net.Conn
	r *bufio.Reader

	upgraded bool         // the HTTP response has been passed through
	midLine  bool         // the response line read last was cut by the buffer
	out      bytes.Buffer // bytes for gorilla not yet read
	frag     []byte       // a compressed message's fragments so far
	fragOp   byte         // its opcode
	inFrag   bool
}

func newInflatingConn(c net.Conn) *inflatingConn {
	return &inflatingConn{Conn: c, r: bufio.NewReaderSize(c, 4096)}
}

func (c *inflatingConn) Read(p []byte) (int, error) {
	for c.out.Len() == 0 {
		if err := c.next(); err != nil {
			return 0, err
		}
	}
	return c.out.Read(p)
}

// next moves the handshake response, or one frame, into out.
func (c *inflatingConn) next() error {
	if !c.upgraded {
		// Through the blank line that ends the response's header.
		for {
			line, err := c.r.ReadSlice('\n')
			c.out.Write(line)
			if err == bufio.ErrBufferFull {
				c.midLine = true
				continue
			}
			if err != nil {
				return err
			}
			blank := !c.midLine && strings.TrimRight(string(line), "\r\n") == ""
			c.midLine = false
			if blank {
				c.upgraded = true
				return nil
			}
		}
	}
	var h [14]byte
	if _, err := io.ReadFull(c.r, h[:2]); err != nil {
		return err
	}
	fin, rsv1, op := h[0]&0x80 != 0, h[0]&0x40 != 0, h[0]&0x0f
	if h[1]&0x80 != 0 {
		return errors.New("loadgen: a masked frame from the server")
	}
	n := uint64(h[1] & 0x7f)
	hl := 2
	switch n {
	case 126:
		if _, err := io.ReadFull(c.r, h[2:4]); err != nil {
			return err
		}
		n, hl = uint64(binary.BigEndian.Uint16(h[2:4])), 4
	case 127:
		if _, err := io.ReadFull(c.r, h[2:10]); err != nil {
			return err
		}
		n, hl = binary.BigEndian.Uint64(h[2:10]), 10
	}
	if n > maxInflatedSize {
		return fmt.Errorf("loadgen: a frame of %d bytes", n)
	}
	compressedStart := rsv1 && (op == frame.OpText || op == frame.OpBinary)
	if !compressedStart && !(c.inFrag && op == 0) {
		// Not part of a compressed message: through unchanged.
		c.out.Write(h[:hl])
		_, err := io.CopyN(&c.out, c.r, int64(n))
		return err
	}
	if compressedStart {
		c.frag, c.fragOp, c.inFrag = c.frag[:0], op, true
	}
	start := len(c.frag)
	c.frag = slices.Grow(c.frag, int(n))[:start+int(n)]
	if _, err := io.ReadFull(c.r, c.frag[start:]); err != nil {
		return err
	}
	if !fin {
		return nil
	}
	c.inFrag = false
	f, err := inflateOnce(c.fragOp, c.frag)
	if err != nil {
		return err
	}
	c.out.Write(f)
	return nil
}

// inflated remembers, by compressed payload, the uncompressed frame each
// stands for, up to maxInflated of them (then it starts afresh).
var inflated = struct {
	sync.RWMutex
	m map[string][]byte
}{m: map[string][]byte{}}

const maxInflated = 4096

// maxInflatedSize bounds what one message may inflate to.
const maxInflatedSize = 64 << 20

// inflateOnce returns the final uncompressed frame (opcode op) of a
// compressed payload, inflating it only the first time this process sees
// it. The caller must not change it.
func inflateOnce(op byte, payload []byte) ([]byte, error) {
	inflated.RLock()
	f, ok := inflated.m[string(payload)]
	inflated.RUnlock()
	if ok && f[0]&0x0f == op {
		return f, nil
	}
	text, err := frame.Inflate(payload, maxInflatedSize)
	if err != nil {
		return nil, fmt.Errorf("loadgen: inflating a %d-byte message: %w", len(payload), err)
	}
	f = frame.Append(nil, op, text)
	inflated.Lock()
	if len(inflated.m) >= maxInflated {
		clear(inflated.m)
	}
	inflated.m[string(payload)] = f
	inflated.Unlock()
	return f, nil
}
