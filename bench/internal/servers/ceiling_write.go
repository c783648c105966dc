package servers

import (
	"bytes"
	"compress/flate"
	"encoding/binary"
	"time"

	"golang.org/x/sys/unix"
)

// serverFrame encodes payload as one unmasked text frame.
func serverFrame(payload []byte) []byte {
	n := len(payload)
	var b []byte
	switch {
	case n < 126:
		b = append(make([]byte, 0, n+2), 0x81, byte(n))
	case n < 1<<16:
		b = append(make([]byte, 0, n+4), 0x81, 126, byte(n>>8), byte(n))
	default:
		b = append(make([]byte, 0, n+10), 0x81, 127)
		b = binary.BigEndian.AppendUint64(b, uint64(n))
	}
	return append(b, payload...)
}

// deflateTail is the end of a flushed DEFLATE block, which RFC 7692 strips
// from every compressed message.
var deflateTail = []byte{0x00, 0x00, 0xff, 0xff}

// finalBlock is an empty final stored block.
var finalBlock = []byte{0x01, 0x00, 0x00, 0xff, 0xff}

// deflateFrame compresses payload on its own (no context takeover) and
// frames it as one text frame with RSV1 set.
func (s *ceilingServer) deflateFrame(payload []byte) []byte {
	var buf bytes.Buffer
	w := s.zpool.Get().(*flate.Writer)
	w.Reset(&buf)
	w.Write(payload)
	w.Flush()
	s.zpool.Put(w)
	z := bytes.TrimSuffix(buf.Bytes(), deflateTail)
	f := serverFrame(z)
	f[0] |= 0x40
	return f
}

// pass is one channel's frames of one shard pass, in the forms the
// connections need, each built once and only when some connection needs it.
type pass struct {
	frames        []ceilingFrame
	iovs, ziovs   [][]byte // for writev
	joined, zjoin []byte   // for one tls.Conn.Write
}

func (p *pass) reset(frames []ceilingFrame) {
	p.frames = frames
	p.iovs, p.ziovs = p.iovs[:0], p.ziovs[:0]
	p.joined, p.zjoin = p.joined[:0], p.zjoin[:0]
}

func (p *pass) vectors(deflate bool) [][]byte {
	if deflate {
		if len(p.ziovs) == 0 {
			for _, f := range p.frames {
				p.ziovs = append(p.ziovs, f.zdata)
			}
		}
		return p.ziovs
	}
	if len(p.iovs) == 0 {
		for _, f := range p.frames {
			p.iovs = append(p.iovs, f.data)
		}
	}
	return p.iovs
}

func (p *pass) bytes(deflate bool) []byte {
	if deflate {
		if len(p.zjoin) == 0 {
			for _, f := range p.frames {
				p.zjoin = append(p.zjoin, f.zdata...)
			}
		}
		return p.zjoin
	}
	if len(p.joined) == 0 {
		for _, f := range p.frames {
			p.joined = append(p.joined, f.data...)
		}
	}
	return p.joined
}

// write hands c the pass's frames; false means c cannot take them.
func (c *ceilingConn) write(p *pass) bool {
	if c.tls != nil {
		c.tls.SetWriteDeadline(time.Now().Add(time.Second))
		_, err := c.tls.Write(p.bytes(c.deflate))
		return err == nil
	}
	return c.writev(p.vectors(c.deflate))
}

// writev writes all of iovs with one non-blocking writev; false means the
// socket could not take them all at once (or is gone).
func (c *ceilingConn) writev(iovs [][]byte) bool {
	want := 0
	for _, b := range iovs {
		want += len(b)
	}
	var n int
	var werr error
	err := c.raw.Write(func(fd uintptr) bool {
		n, werr = unix.Writev(int(fd), iovs)
		return true
	})
	return err == nil && werr == nil && n == want
}
