package ws

import (
	"sync"

	"github.com/vortechron/go-ws/internal/frame"
)

// Outbound permessage-deflate. A connection that negotiated it (see
// negotiate.go) gets a compressed frame instead of the plain one whenever
// the payload is at least Config.CompressionThreshold bytes and
// compressing shrinks it. Every message is compressed on its own (no
// context takeover), so a compressed frame is the same bytes for every
// connection: a post compresses its event once per protocol, on the first
// shard that needs it, and every shard shares the result. Control frames
// (ping, pong, close) are never compressed.

// deflated holds a post's compressed frames, one per protocol, made on
// first use. It is shared by every shard's copy of the post.
type deflated struct {
	mu     sync.Mutex
	frames [maxProtocols][]byte // guarded by mu; the frame to send a deflate client
}

// frame returns the frame that clients of protocol proto which negotiated
// compression get for a post whose plain frame is plain: the compressed
// frame, or plain itself when the payload is under the threshold or does
// not shrink.
func (d *deflated) frame(h *Hub, proto uint8, plain []byte) []byte {
	d.mu.Lock()
	defer d.mu.Unlock()
	f := d.frames[proto]
	if f == nil {
		f = h.compressFrame(plain)
		d.frames[proto] = f
	}
	return f
}

// compressFrame returns the frame a client that negotiated compression
// gets for the plain text frame plain.
func (h *Hub) compressFrame(plain []byte) []byte {
	p := frame.Payload(plain)
	if len(p) < h.cfg.CompressionThreshold {
		return plain
	}
	if z := frame.Compressed(p, h.cfg.CompressionLevel); z != nil {
		return z
	}
	return plain
}

// textFrame returns a text frame carrying payload for this client alone:
// compressed when the client negotiated compression and it pays.
func (c *Client) textFrame(payload []byte) []byte {
	f := frame.Text(payload)
	if c.deflate {
		f = c.hub.compressFrame(f)
	}
	return f
}
