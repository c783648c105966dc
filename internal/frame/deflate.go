package frame

import (
	"bytes"
	"compress/flate"
	"io"
	"math"
	"sync"
)

// permessage-deflate (RFC 7692) without context takeover in either
// direction: every message is compressed, and inflated, on its own, so a
// compressed frame is the same bytes for every recipient and no
// connection keeps a compression window between messages.

// rsv1 marks the first frame of a compressed message.
const rsv1 = 0x40

// deflateTail is what RFC 7692 section 7.2.1 has the sender strip from
// the end of a compressed message (the empty stored block of a sync
// flush), and the receiver put back before inflating.
var deflateTail = []byte{0x00, 0x00, 0xff, 0xff}

// inflateTail is deflateTail followed by an empty final stored block, so
// that the inflater ends a well-formed message with io.EOF.
var inflateTail = []byte{0x00, 0x00, 0xff, 0xff, 0x01, 0x00, 0x00, 0xff, 0xff}

// writers holds one pool of compressors per level, 1 to 9; a compressor
// costs hundreds of kilobytes to set up, and Reset makes one as new.
var writers [10]sync.Pool

// compressBufs holds the buffers messages are compressed into before
// their frame is made.
var compressBufs = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// Compressed returns a final text frame with RSV1 set whose payload is
// payload compressed at level (1 to 9) with no context takeover, or nil
// when compressing does not make the frame smaller (short or random
// payloads). The frame is one allocation and may be shared.
func Compressed(payload []byte, level int) []byte {
	if level < flate.BestSpeed || level > flate.BestCompression {
		level = flate.BestSpeed
	}
	buf := compressBufs.Get().(*bytes.Buffer)
	buf.Reset()
	zw, _ := writers[level].Get().(*flate.Writer)
	if zw == nil {
		zw, _ = flate.NewWriter(buf, level) // cannot fail for 1..9
	} else {
		zw.Reset(buf)
	}
	_, _ = zw.Write(payload) // a bytes.Buffer never fails
	_ = zw.Flush()
	writers[level].Put(zw)
	z := bytes.TrimSuffix(buf.Bytes(), deflateTail)
	var f []byte
	if len(z) < len(payload) {
		f = Append(make([]byte, 0, HeaderLen(len(z))+len(z)), OpText, z)
		f[0] |= rsv1
	}
	if buf.Cap() <= 64<<10 {
		compressBufs.Put(buf)
	}
	return f
}

// Payload returns the payload of the complete unmasked frame f, as built
// by Append.
func Payload(f []byte) []byte {
	switch n := f[1] & 0x7F; n {
	case 126:
		return f[4:]
	case 127:
		return f[10:]
	default:
		return f[2:]
	}
}

// readers holds inflaters; each keeps a 32 KiB window and its tables.
var readers sync.Pool

// Inflate decompresses the payload of a compressed message into a new
// slice of at most maxSize bytes (no limit when maxSize is zero). The slice grows
// as output is produced, never past maxSize, so a small message that would
// inflate to gigabytes (a zip bomb) costs at most maxSize bytes before it is
// refused with CodeTooBig. Corrupt input is CodeInvalidData.
func Inflate(z []byte, maxSize int64) ([]byte, error) {
	in := io.MultiReader(bytes.NewReader(z), bytes.NewReader(inflateTail))
	zr, _ := readers.Get().(io.ReadCloser)
	if zr == nil {
		zr = flate.NewReader(in)
	} else if err := zr.(flate.Resetter).Reset(in, nil); err != nil {
		return nil, protocolErr(CodeInvalidData, "compressed message cannot be inflated")
	}
	defer readers.Put(zr)
	limit := maxSize
	if limit <= 0 {
		limit = math.MaxInt
	}
	out := make([]byte, 0, min(limit, max(512, 2*int64(len(z)))))
	for {
		if len(out) == cap(out) {
			if int64(len(out)) >= limit {
				// Full at the limit: one more byte makes it too big.
				var one [1]byte
				if n, err := io.ReadFull(zr, one[:]); n > 0 {
					return nil, protocolErr(CodeTooBig, "inflated message larger than the limit")
				} else if err != io.EOF {
					return nil, inflateErr(err)
				}
				return out, nil
			}
			grown := make([]byte, len(out), min(limit, 2*int64(cap(out))))
			copy(grown, out)
			out = grown
		}
		n, err := zr.Read(out[len(out):cap(out)])
		out = out[:len(out)+n]
		switch {
		case err == io.EOF:
			return out, nil
		case err != nil:
			return nil, inflateErr(err)
		}
	}
}

func inflateErr(err error) error {
	return protocolErr(CodeInvalidData, "compressed message cannot be inflated: "+err.Error())
}
