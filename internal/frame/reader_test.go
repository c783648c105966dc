package frame

import (
	"bytes"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// dialRaw returns a gorilla client and the server side's raw net.Conn.
func dialRaw(t *testing.T, writeBuf int) (*websocket.Conn, net.Conn) {
	t.Helper()
	conns := make(chan net.Conn, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		up := websocket.Upgrader{}
		c, err := up.Upgrade(w, r, nil)
		if err != nil {
			t.Error(err)
			return
		}
		conns <- c.NetConn()
	}))
	t.Cleanup(srv.Close)
	d := websocket.Dialer{WriteBufferSize: writeBuf}
	c, _, err := d.Dial("ws"+strings.TrimPrefix(srv.URL, "http"), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	nc := <-conns
	t.Cleanup(func() { nc.Close() })
	_ = nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	return c, nc
}

func TestReaderMessagesFragmentsAndControl(t *testing.T) {
	client, nc := dialRaw(t, 64) // small buffer: long messages fragment
	var pings []string
	r := &Reader{R: nc, MaxSize: 1 << 20, Control: func(op byte, p []byte) {
		if op == OpPing {
			pings = append(pings, string(p))
		}
	}}
	long := strings.Repeat("é", 5000)
	go func() {
		client.WriteMessage(websocket.TextMessage, []byte("hi"))
		client.WriteControl(websocket.PingMessage, []byte("p1"), time.Now().Add(time.Second))
		client.WriteMessage(websocket.TextMessage, []byte(long))
		client.WriteMessage(websocket.BinaryMessage, []byte{1, 2, 3})
		client.WriteMessage(websocket.TextMessage, bytes.Repeat([]byte("x"), 70000))
		client.WriteMessage(websocket.CloseMessage, websocket.FormatCloseMessage(4001, "bye"))
	}()
	var buf []byte
	want := []struct {
		op   byte
		data string
	}{{OpText, "hi"}, {OpText, long}, {OpBinary, "\x01\x02\x03"}, {OpText, strings.Repeat("x", 70000)}}
	for i, w := range want {
		op, p, err := r.Next(buf)
		if err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
		if op != w.op || string(p) != w.data {
			t.Fatalf("message %d: got op %d len %d, want op %d len %d", i, op, len(p), w.op, len(w.data))
		}
		buf = p
	}
	_, _, err := r.Next(buf)
	var ce *CloseError
	if !errors.As(err, &ce) || ce.Code != 4001 || ce.Text != "bye" {
		t.Fatalf("got %v, want close 4001 bye", err)
	}
	if len(pings) != 1 || pings[0] != "p1" {
		t.Fatalf("got pings %q, want [p1]", pings)
	}
}

func TestReaderLimitAndFaults(t *testing.T) {
	cases := []struct {
		name string
		raw  []byte
		code int
	}{
		{"unmasked", []byte{0x81, 0x02, 'h', 'i'}, CodeProtocolError},
		{"reserved bits", []byte{0xC1, 0x80, 0, 0, 0, 0}, CodeProtocolError},
		{"reserved opcode", []byte{0x83, 0x80, 0, 0, 0, 0}, CodeProtocolError},
		{"stray continuation", []byte{0x80, 0x80, 0, 0, 0, 0}, CodeProtocolError},
		{"too big", []byte{0x81, 0xFE, 0x10, 0x00, 0, 0, 0, 0}, CodeTooBig},
		{"bad utf8", []byte{0x81, 0x82, 0, 0, 0, 0, 0xC3, 0x28}, CodeInvalidData},
		{"long ping", append([]byte{0x89, 0xFE, 0x00, 0x80, 0, 0, 0, 0}, make([]byte, 128)...), CodeProtocolError},
		{"bad close code", []byte{0x88, 0x82, 0, 0, 0, 0, 0x03, 0xE7}, CodeProtocolError},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := &Reader{R: bytes.NewReader(tc.raw), MaxSize: 1024}
			_, _, err := r.Next(nil)
			var pe *ProtocolError
			if !errors.As(err, &pe) || pe.Code != tc.code {
				t.Fatalf("got %v, want protocol error %d", err, tc.code)
			}
		})
	}
}

// TestHeaderAloneCostsNoPayloadBuffer: a frame header declaring a 64 KiB
// message, with none of the payload behind it, makes the reader allocate
// what it reads as it arrives, not what the header claims (docs/security.md,
// After the upgrade). 100 such headers allocated 6.5 MB when the buffer
// was sized from the header.
func TestHeaderAloneCostsNoPayloadBuffer(t *testing.T) {
	const headers, declared = 100, 64 << 10
	full := clientFrame(0x80|OpText, make([]byte, declared))
	hdr := full[:HeaderLen(declared)+4] // the header and the mask key only
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for range headers {
		r := &Reader{R: bytes.NewReader(hdr), MaxSize: 1 << 20}
		if _, _, err := r.Next(nil); !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
			t.Fatalf("got %v, want the payload missing", err)
		}
	}
	runtime.ReadMemStats(&after)
	got := after.TotalAlloc - before.TotalAlloc
	// The first 4 KiB step per header, and the readers themselves.
	if limit := uint64(headers * 8 << 10); got > limit {
		t.Fatalf("%d headers declaring %d bytes each allocated %d bytes, want at most %d", headers, declared, got, limit)
	}
	t.Logf("%d headers declaring %d bytes each allocated %d bytes", headers, declared, got)
}
