package ws

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/vortechron/go-ws/internal/frame"
)

// tcpPair returns both ends of a loopback TCP connection, closed at the
// end of the test.
func tcpPair(t *testing.T) (server, client *net.TCPConn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		accepted <- c
	}()
	cc, err := net.Dial("tcp", ln.Addr().String())
	require.NoError(t, err)
	sc := <-accepted
	require.NotNil(t, sc)
	t.Cleanup(func() { sc.Close(); cc.Close() })
	return sc.(*net.TCPConn), cc.(*net.TCPConn)
}

// testSender is a sender on a hub that is not running: its shards are
// not started, so frames go to the blocking writer unless a test starts
// a shard itself.
func testSender(t *testing.T, cfg Config, conn net.Conn) (*Hub, *sender) {
	t.Helper()
	h := NewHub(context.Background(), nil, nil, cfg)
	t.Cleanup(h.finish)
	s := &sender{}
	s.init(h, "1.1", conn, h.shards[0])
	return h, s
}

// frames returns n distinct text frames of about size bytes each.
func frames(n, size int) [][]byte {
	out := make([][]byte, n)
	for i := range out {
		body := []byte(strconv.Itoa(i) + ":" + string(bytes.Repeat([]byte{'x'}, size)))
		out[i] = frame.Text(body)
	}
	return out
}

func TestTrimWritten(t *testing.T) {
	bufs := [][]byte{[]byte("abc"), []byte("de"), []byte("fghi")}
	for _, tc := range []struct {
		n    int
		want []string
	}{
		{0, []string{"abc", "de", "fghi"}},
		{1, []string{"bc", "de", "fghi"}},
		{3, []string{"de", "fghi"}},
		{4, []string{"e", "fghi"}},
		{5, []string{"fghi"}},
		{8, []string{"i"}},
		{9, []string{}},
	} {
		got := trimWritten(bufs, tc.n)
		strs := make([]string, len(got))
		for i, b := range got {
			strs[i] = string(b)
		}
		require.Equal(t, tc.want, strs, "trimWritten(%d): got %q, want %q", tc.n, strs, tc.want)
	}
	require.Equal(t, "abc", string(bufs[0]), "trimWritten must not modify its argument")
}

// TestWriteAllPartial fills a socket nobody reads: the non-blocking writev
// stops with EAGAIN and returns exactly the bytes it did not write, so that
// what was written plus what is left is the whole batch, in order.
func TestWriteAllPartial(t *testing.T) {
	if !haveWritev {
		t.Skip("no non-blocking writev on this platform; every connection writes from its own goroutine")
	}
	server, client := tcpPair(t)
	require.NoError(t, server.SetWriteBuffer(4096))
	raw := rawConn(server)
	require.NotNil(t, raw)
	batch := frames(2000, 500) // about 1 MB: more than the socket takes
	var want bytes.Buffer
	for _, f := range batch {
		want.Write(f)
	}
	var w vecWriter
	rest, written, err := w.writeAll(raw, batch)
	require.True(t, err == nil || isEAGAIN(err), "got error %v, want none or EAGAIN", err)
	require.NotEmpty(t, rest, "the socket took everything; the test needs a full socket")
	require.Equal(t, int64(want.Len()), written+int64(lenAll(rest)), "written + left = the batch")

	got := make(chan []byte, 1)
	go func() {
		b, _ := io.ReadAll(io.LimitReader(client, int64(want.Len())))
		got <- b
	}()
	require.NoError(t, server.SetWriteDeadline(time.Now().Add(5*time.Second)))
	_, err = (*net.Buffers)(&rest).WriteTo(server)
	require.NoError(t, err)
	require.True(t, bytes.Equal(want.Bytes(), <-got), "bytes arrived out of order or changed")
}

// TestFlushHandsTheRestToTheBlockingWriter: when the shard's flush finds
// the socket full, the blocking writer finishes the queue, in order,
// before frames queued meanwhile.
func TestFlushHandsTheRestToTheBlockingWriter(t *testing.T) {
	if !haveWritev {
		t.Skip("no non-blocking writev on this platform")
	}
	server, client := tcpPair(t)
	require.NoError(t, server.SetWriteBuffer(4096))
	_, s := testSender(t, Config{SendQueueSize: 10000, SendQueueBytes: 8 << 20}, server)
	batch := frames(2000, 500)
	var want bytes.Buffer
	s.mu.Lock()
	for _, f := range batch[:1000] {
		s.pushLocked(f)
		want.Write(f)
	}
	s.state = sendShard // as if the shard had taken it from its ready list
	s.mu.Unlock()
	s.flush(&vecWriter{})
	s.mu.Lock()
	require.Equal(t, sendBlocking, s.state, "a full socket hands the connection to the blocking writer")
	s.mu.Unlock()
	for _, f := range batch[1000:] {
		require.True(t, s.enqueue(f))
		want.Write(f)
	}
	got, err := io.ReadAll(io.LimitReader(client, int64(want.Len())))
	require.NoError(t, err)
	require.True(t, bytes.Equal(want.Bytes(), got), "bytes arrived out of order or changed")
}

// TestStoppingShardHandsOffReadyClients: a client on the ready list of a
// shard that stops still gets its frames written (by its blocking
// writer), instead of waiting forever for a flush that never comes.
func TestStoppingShardHandsOffReadyClients(t *testing.T) {
	server, client := tcpPair(t)
	h, s := testSender(t, Config{}, server)
	if s.raw == nil {
		t.Skip("no fast path on this platform: nothing is ever on a ready list")
	}
	h.shards[0].start() // live, but its run loop never runs
	f := frame.Text([]byte(`{"type":"message","channel":"c","message":1}`))
	require.True(t, s.enqueue(f))
	s.mu.Lock()
	require.Equal(t, sendShard, s.state, "queued for the shard")
	s.mu.Unlock()
	h.shards[0].stop()
	got := make([]byte, len(f))
	require.NoError(t, client.SetReadDeadline(time.Now().Add(5*time.Second)))
	_, err := io.ReadFull(client, got)
	require.NoError(t, err, "the frame never arrived")
	require.Equal(t, f, got)
}

// TestBackpressure: a queue over SendQueueSize frames or SendQueueBytes
// bytes closes the connection as a slow consumer and drops the queue;
// control frames never count and never pile up. The defaults are the
// README's (Limits and security): 1,024 frames / 4 MiB.
func TestBackpressure(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  Config
		n    int // frames of 100 bytes that fit
	}{
		{"frames", Config{SendQueueSize: 10, SendQueueBytes: 1 << 20}, 10},
		{"bytes", Config{SendQueueSize: 1000, SendQueueBytes: 1000}, 10},
		{"default frames", Config{}, 1024},
		{"default bytes", Config{SendQueueSize: 1 << 20}, (4 << 20) / 100},
	} {
		t.Run(tc.name, func(t *testing.T) {
			server, _ := tcpPair(t)
			h, s := testSender(t, tc.cfg, server)
			s.mu.Lock() // hold the writer off: everything stays queued
			f := make([]byte, 100)
			for i := range tc.n {
				require.True(t, s.addLocked(f), "frame %d of %d should fit", i+1, tc.n)
			}
			for range 1000 {
				s.pong = frame.Pong([]byte("p")) // what control does, under the same lock
			}
			require.False(t, s.addLocked(f), "frame over the bound: got accepted, want refused")
			require.True(t, s.closing)
			require.Nil(t, s.queue, "the queue is dropped")
			require.True(t, errors.Is(s.reason, ErrSlowConsumer), "reason: got %v, want ErrSlowConsumer", s.reason)
			s.mu.Unlock()
			require.Equal(t, int64(1), h.stats.slowConsumers.Load(), "Stats.SlowConsumers")
			<-s.done
		})
	}
}

// TestControlKeepsTheLatestPong: however many pings a client sends, the
// server owes it one pong, for the latest, kept outside the queue's
// bounds and written before queued data.
func TestControlKeepsTheLatestPong(t *testing.T) {
	server, client := tcpPair(t)
	_, s := testSender(t, Config{SendQueueSize: 4}, server)
	s.mu.Lock()
	s.state = sendBlocking // as if a writer were busy: nothing is written yet
	s.mu.Unlock()
	for i := range 1000 {
		s.control(false, []byte(strconv.Itoa(i)))
	}
	f := frame.Text([]byte(`{}`))
	require.True(t, s.enqueue(f), "data still fits: pongs do not count against the queue")
	s.mu.Lock()
	require.Equal(t, frame.Pong([]byte("999")), s.pong, "the pending pong answers the latest ping")
	require.Len(t, s.queue, 1, "pongs are not queued")
	s.mu.Unlock()

	s.handOff()
	want := append(frame.Pong([]byte("999")), f...)
	got := make([]byte, len(want))
	require.NoError(t, client.SetReadDeadline(time.Now().Add(5*time.Second)))
	_, err := io.ReadFull(client, got)
	require.NoError(t, err)
	require.Equal(t, want, got, "the pong, then the data")
}
