package harness

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strconv"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"
)

// redisProc is a redis-server the harness started for itself on a spare
// loopback port: no persistence, stopped when the harness is done with
// it (and with the harness, by Pdeathsig).
type redisProc struct {
	addr string
	cmd  *exec.Cmd
	rc   *redis.Client
}

// startRedis runs bin (redis-server) on a free 127.0.0.1 port.
func startRedis(bin string) (*redisProc, error) {
	addr := newAddr()
	_, port, _ := net.SplitHostPort(addr)
	cmd := exec.Command(bin, "--port", port, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
		"--daemonize", "no", "--loglevel", "warning", "--maxclients", "10000")
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	cmd.Stdout = nil // its log; a failed start shows as no answer to PING
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", bin, err)
	}
	r := &redisProc{addr: addr, cmd: cmd, rc: redis.NewClient(&redis.Options{Addr: addr})}
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		err := r.rc.Ping(ctx).Err()
		cancel()
		if err == nil {
			return r, nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	r.stop()
	return nil, fmt.Errorf("%s on %s did not answer PING", bin, addr)
}

// flush empties the server between sessions.
func (r *redisProc) flush() error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return r.rc.FlushAll(ctx).Err()
}

func (r *redisProc) stop() {
	r.rc.Close()
	r.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { r.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		r.cmd.Process.Kill()
		<-done
	}
}

// rawSub is one Redis connection subscribed to many channels that counts
// the messages it receives, reading RESP directly so that the reader is
// not what limits Redis.
type rawSub struct {
	conn net.Conn
	n    atomic.Int64 // messages received
	last atomic.Int64 // Unix ns of the last message
	done chan struct{}
}

// subscribeRaw connects to addr and subscribes to channels, returning
// once Redis confirmed every one.
func subscribeRaw(addr string, channels []string) (*rawSub, error) {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return nil, err
	}
	s := &rawSub{conn: c, done: make(chan struct{})}
	w := bufio.NewWriter(c)
	for i := 0; i < len(channels); i += 1000 {
		batch := channels[i:min(i+1000, len(channels))]
		fmt.Fprintf(w, "*%d\r\n$9\r\nSUBSCRIBE\r\n", len(batch)+1)
		for _, ch := range batch {
			fmt.Fprintf(w, "$%d\r\n%s\r\n", len(ch), ch)
		}
	}
	if err := w.Flush(); err != nil {
		c.Close()
		return nil, err
	}
	r := bufio.NewReaderSize(c, 64<<10)
	c.SetReadDeadline(time.Now().Add(30 * time.Second))
	for range channels {
		kind, err := readPush(r)
		if err != nil || kind != "subscribe" {
			c.Close()
			return nil, fmt.Errorf("redis SUBSCRIBE: got %q, %v", kind, err)
		}
	}
	c.SetReadDeadline(time.Time{})
	go func() {
		defer close(s.done)
		for {
			kind, err := readPush(r)
			if err != nil {
				return
			}
			if kind == "message" {
				s.n.Add(1)
				s.last.Store(time.Now().UnixNano())
			}
		}
	}()
	return s, nil
}

// readPush reads one RESP array of bulk strings and integers and returns
// its first element.
func readPush(r *bufio.Reader) (string, error) {
	line, err := r.ReadSlice('\n')
	if err != nil {
		return "", err
	}
	if len(line) < 3 || line[0] != '*' {
		return "", fmt.Errorf("unexpected reply %q", bytes.TrimSpace(line))
	}
	n, err := strconv.Atoi(string(line[1 : len(line)-2]))
	if err != nil {
		return "", err
	}
	var first string
	for i := range n {
		line, err := r.ReadSlice('\n')
		if err != nil {
			return "", err
		}
		switch line[0] {
		case ':':
		case '$':
			size, err := strconv.Atoi(string(line[1 : len(line)-2]))
			if err != nil {
				return "", err
			}
			if i == 0 {
				b := make([]byte, size+2)
				if _, err := io.ReadFull(r, b); err != nil {
					return "", err
				}
				first = string(b[:size])
			} else if _, err := r.Discard(size + 2); err != nil {
				return "", err
			}
		default:
			return "", fmt.Errorf("unexpected element %q", bytes.TrimSpace(line))
		}
	}
	return first, nil
}

func (s *rawSub) close() {
	s.conn.Close()
	<-s.done
}
