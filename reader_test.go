package ws_test

import (
	"encoding/binary"
	"encoding/json"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	ws "github.com/vortechron/go-ws"
)

// maskedFrame is text as one masked client text frame, with a mask that
// changes the bytes (so a payload unmasked at the wrong offset shows).
func maskedFrame(text string) []byte {
	mask := [4]byte{0x1f, 0x8b, 0x55, 0xa3}
	var f []byte
	switch n := len(text); {
	case n < 126:
		f = []byte{0x81, 0x80 | byte(n)}
	case n < 1<<16:
		f = binary.BigEndian.AppendUint16([]byte{0x81, 0x80 | 126}, uint16(n))
	default:
		f = binary.BigEndian.AppendUint64([]byte{0x81, 0x80 | 127}, uint64(n))
	}
	f = append(f, mask[:]...)
	for i := range len(text) {
		f = append(f, text[i]^mask[i%4])
	}
	return f
}

// object reads one server frame and decodes its JSON payload.
func (r *rawClient) object(t testing.TB) map[string]any {
	t.Helper()
	f := r.frame(t)
	hdr := 2
	switch f[1] & 0x7F {
	case 126:
		hdr = 4
	case 127:
		hdr = 10
	}
	var m map[string]any
	require.NoError(t, json.Unmarshal(f[hdr:], &m), "frame %q", f)
	return m
}

// TestFramesAreReadHoweverTCPCutsThem: a connection's frames are each
// handled once and in order whatever the reads return: several frames in
// one segment (a page subscribing to its channels at load), a frame
// split at every byte, the start of the next frame arriving with the
// end of the previous, and a frame larger than the buffer a connection
// borrows to read (Config.ReadBufferSize zero), as well as with a
// buffer of its own.
func TestFramesAreReadHoweverTCPCutsThem(t *testing.T) {
	for _, size := range []int{0, 64} {
		t.Run("ReadBufferSize "+strconv.Itoa(size), func(t *testing.T) {
			n := newNode(t, nil, nil, ws.Config{ReadBufferSize: size}, &ws.Options{})
			c := n.dialRaw(t, false)
			write := func(b []byte) {
				t.Helper()
				_, err := c.conn.Write(b)
				require.NoError(t, err)
			}
			expect := func(typ, channel string) {
				t.Helper()
				m := c.object(t)
				require.Equal(t, typ, m["type"], "frame %v", m)
				if channel != "" {
					require.Equal(t, channel, m["channel"], "frame %v", m)
				}
			}
			subscribe := func(ch string) []byte {
				return maskedFrame(`{"action":"subscribe","channel":"` + ch + `"}`)
			}

			var four []byte
			for _, ch := range []string{"a", "b", "c", "d"} {
				four = append(four, subscribe(ch)...)
			}
			write(four)
			for _, ch := range []string{"a", "b", "c", "d"} {
				expect("subscribed", ch)
			}

			for _, b := range maskedFrame(`{"action":"ping"}`) {
				write([]byte{b})
			}
			expect("pong", "")

			next := subscribe("e")
			write(append(maskedFrame(`{"action":"ping"}`), next[:3]...))
			expect("pong", "")
			write(next[3:])
			expect("subscribed", "e")

			big := maskedFrame(`{"action":"ping"` + strings.Repeat(" ", 5000) + `}`)
			write(big[:1500])
			write(append(big[1500:], subscribe("f")...))
			expect("pong", "")
			expect("subscribed", "f")
		})
	}
}

// BenchmarkInboundFrames: a client sends 64 small frames in one write
// (ping actions, as chatty clients send whispers) and reads the 64
// answers; ns/op is per frame, read, handled and answered.
func BenchmarkInboundFrames(b *testing.B) {
	n := newNode(b, nil, nil, ws.Config{}, &ws.Options{})
	c := n.dialRaw(b, false)
	var batch []byte
	for range 64 {
		batch = append(batch, maskedFrame(`{"action":"ping"}`)...)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i += 64 {
		if _, err := c.conn.Write(batch); err != nil {
			b.Fatal(err)
		}
		for range 64 {
			c.frame(b)
		}
	}
}
