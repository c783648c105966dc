// Command testserver is the ws server the JavaScript client's tests run
// against: one in-memory hub on a WebSocket port, and a control port
// through which a test publishes, reads the presence truth and makes the
// connections fail in the ways a client must survive.
//
//	go run ./clients/js/testserver
//	ws=127.0.0.1:41234 control=127.0.0.1:41235
//
// With -static DIR it also serves DIR at / on the WebSocket port, so a
// page in a browser reaches /ws on its own origin.
//
// It prints that line once both ports listen and runs until its standard
// input closes (the test that started it exited) or it gets SIGINT/SIGTERM.
//
// WebSocket endpoint: /ws. The user is ?user=NAME, or "token:"+T for
// ?token=T; without either the connection is anonymous. Every identified
// user may join every private and presence channel; whispers are on.
//
// Control routes (all answer 204 unless they return JSON):
//
//	POST /publish?channel=C     body: a JSON value, published on C
//	GET  /presence?channel=C    the hub's member list, [{"id","info"}]
//	GET  /stats                 hub.Stats() as JSON
//	GET  /clients               the open connections' user IDs
//	POST /close?code=N&reason=R[&user=U]  Client.Close(N, R): a clean close frame
//	POST /drop[?user=U]         close the TCP sockets without a close frame
//	POST /stall[?user=U]        hold every write to the sockets: the server goes silent
//	POST /release[?user=U]      let held writes go
//	POST /slow?user=U           make U a slow consumer: hold its writes, queue
//	                            frames until the queue overflows, release (4008)
//	POST /stop                  hub.Shutdown (1001 to everyone), stop listening
//	POST /start                 a new hub, listening on the same address again
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	ws "github.com/vortechron/go-ws"
)

func main() {
	wsAddr := flag.String("ws", "127.0.0.1:0", "WebSocket listen address")
	controlAddr := flag.String("control", "127.0.0.1:0", "control listen address")
	queue := flag.Int("queue", 64, "Config.SendQueueSize")
	static := flag.String("static", "", "a directory served at / on the WebSocket port (for pages in a browser)")
	flag.Parse()
	log.SetFlags(log.Lmicroseconds)

	s := &server{
		cfg: ws.Config{
			SendQueueSize: *queue,
			// A held socket must not keep a closed client around for long.
			WriteTimeout: 2 * time.Second,
			// test/recovery.test.js: history on history-small-* channels
			// (10 publications) and on the other history-* channels (1000).
			History: func(channel string) ws.HistoryOptions {
				switch {
				case strings.HasPrefix(channel, "history-small-"):
					return ws.HistoryOptions{Size: 10, TTL: time.Minute}
				case strings.HasPrefix(channel, "history-"):
					return ws.HistoryOptions{Size: 1000, TTL: time.Minute}
				}
				return ws.HistoryOptions{}
			},
		},
		static:  *static,
		clients: make(map[*ws.Client]struct{}),
	}
	s.options = &ws.Options{
		GetUserID: func(r *http.Request) string {
			if u := r.URL.Query().Get("user"); u != "" {
				return u
			}
			if t := r.URL.Query().Get("token"); t != "" {
				return "token:" + t
			}
			return ""
		},
		GetUserInfo:    func(r *http.Request, userID string) any { return map[string]string{"name": userID} },
		AuthHandler:    func(userID, channel string) bool { return true },
		EnableWhispers: true,
		OnConnect:      s.connected,
		OnDisconnect:   s.disconnected,
	}
	if err := s.start(*wsAddr); err != nil {
		log.Fatal(err)
	}

	control, err := net.Listen("tcp", *controlAddr)
	if err != nil {
		log.Fatal(err)
	}
	csrv := &http.Server{Handler: s.routes(), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = csrv.Serve(control) }()
	fmt.Printf("ws=%s control=%s\n", s.addr, control.Addr())

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	stdinClosed := make(chan struct{})
	go func() {
		_, _ = io.Copy(io.Discard, bufio.NewReader(os.Stdin))
		close(stdinClosed)
	}()
	select {
	case <-sig:
	case <-stdinClosed:
	}
	s.stop()
	_ = csrv.Close()
}

// server holds the current hub and its listener; /stop and /start
// replace them.
type server struct {
	cfg     ws.Config
	options *ws.Options
	static  string // served at / when set

	mu      sync.Mutex
	addr    string                  // guarded by mu; the WebSocket address, kept across restarts
	hub     *ws.Hub                 // guarded by mu; nil while stopped
	httpSrv *http.Server            // guarded by mu
	ln      *listener               // guarded by mu
	clients map[*ws.Client]struct{} // guarded by mu; open connections
}

// start runs a new hub listening on addr.
func (s *server) start(addr string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.hub != nil {
		return errors.New("already running")
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	ln := &listener{Listener: l, conns: make(map[string]*conn)}
	hub := ws.NewHub(context.Background(), nil, nil, s.cfg)
	go func() { _ = hub.Run() }()
	mux := http.NewServeMux()
	mux.HandleFunc("/ws", func(w http.ResponseWriter, r *http.Request) {
		_ = ws.ServeWS(hub, w, r, s.options)
	})
	if s.static != "" {
		mux.Handle("/", http.FileServer(http.Dir(s.static)))
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	s.addr, s.hub, s.httpSrv, s.ln = l.Addr().String(), hub, srv, ln
	return nil
}

// stop shuts the hub down gracefully (every client gets 1001) and then
// stops listening.
func (s *server) stop() {
	s.mu.Lock()
	hub, srv := s.hub, s.httpSrv
	s.hub, s.httpSrv, s.ln = nil, nil, nil
	s.mu.Unlock()
	if hub == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := hub.Shutdown(ctx); err != nil {
		log.Printf("shutdown: %v", err)
	}
	_ = srv.Close()
}

func (s *server) connected(c *ws.Client) {
	s.mu.Lock()
	s.clients[c] = struct{}{}
	s.mu.Unlock()
}

func (s *server) disconnected(c *ws.Client) {
	s.mu.Lock()
	delete(s.clients, c)
	s.mu.Unlock()
}

// matching returns the open clients of user, or all of them when user is
// empty, each with its socket.
func (s *server) matching(user string) (clients []*ws.Client, conns []*conn) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for c := range s.clients {
		if user != "" && c.UserID != user {
			continue
		}
		clients = append(clients, c)
		if s.ln != nil {
			if nc := s.ln.get(c.RemoteAddr); nc != nil {
				conns = append(conns, nc)
			}
		}
	}
	return clients, conns
}

func (s *server) currentHub() *ws.Hub {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.hub
}

func (s *server) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /publish", func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		if err != nil || !json.Valid(body) {
			http.Error(w, "body must be JSON", http.StatusBadRequest)
			return
		}
		hub := s.currentHub()
		if hub == nil {
			http.Error(w, "stopped", http.StatusServiceUnavailable)
			return
		}
		if err := hub.Publish(r.Context(), r.URL.Query().Get("channel"), json.RawMessage(body)); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("GET /presence", func(w http.ResponseWriter, r *http.Request) {
		hub := s.currentHub()
		if hub == nil {
			http.Error(w, "stopped", http.StatusServiceUnavailable)
			return
		}
		members, err := hub.PresenceMembers(r.Context(), r.URL.Query().Get("channel"))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		if members == nil {
			members = []ws.PresenceMember{}
		}
		writeJSON(w, members)
	})
	mux.HandleFunc("GET /stats", func(w http.ResponseWriter, r *http.Request) {
		hub := s.currentHub()
		if hub == nil {
			http.Error(w, "stopped", http.StatusServiceUnavailable)
			return
		}
		writeJSON(w, hub.Stats())
	})
	mux.HandleFunc("GET /clients", func(w http.ResponseWriter, r *http.Request) {
		clients, _ := s.matching("")
		users := []string{}
		for _, c := range clients {
			users = append(users, c.UserID)
		}
		writeJSON(w, users)
	})
	mux.HandleFunc("POST /close", func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		code, err := strconv.Atoi(q.Get("code"))
		if err != nil {
			http.Error(w, "code must be a number", http.StatusBadRequest)
			return
		}
		clients, _ := s.matching(q.Get("user"))
		for _, c := range clients {
			c.Close(code, q.Get("reason"))
		}
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("POST /drop", func(w http.ResponseWriter, r *http.Request) {
		_, conns := s.matching(r.URL.Query().Get("user"))
		for _, nc := range conns {
			_ = nc.Close()
		}
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("POST /stall", func(w http.ResponseWriter, r *http.Request) {
		_, conns := s.matching(r.URL.Query().Get("user"))
		for _, nc := range conns {
			nc.hold()
		}
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("POST /release", func(w http.ResponseWriter, r *http.Request) {
		_, conns := s.matching(r.URL.Query().Get("user"))
		for _, nc := range conns {
			nc.release()
		}
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("POST /slow", func(w http.ResponseWriter, r *http.Request) {
		user := r.URL.Query().Get("user")
		if user == "" {
			http.Error(w, "user is required", http.StatusBadRequest)
			return
		}
		clients, conns := s.matching(user)
		for _, nc := range conns {
			nc.hold()
		}
		// With its writes held, the client's queue fills and overflows:
		// Send reports false once the hub has begun closing it with 4008.
		for _, c := range clients {
			for i := 0; i < 1_000_000 && c.Send(map[string]any{"type": "filler", "n": i}); i++ {
			}
		}
		for _, nc := range conns {
			nc.release()
		}
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("POST /stop", func(w http.ResponseWriter, r *http.Request) {
		s.stop()
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("POST /start", func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		addr := s.addr
		s.mu.Unlock()
		if err := s.start(addr); err != nil {
			http.Error(w, err.Error(), http.StatusConflict)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
	return mux
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

// listener keeps every accepted connection by remote address, so the
// control routes can reach the socket behind a *ws.Client.
type listener struct {
	net.Listener

	mu    sync.Mutex
	conns map[string]*conn // guarded by mu
}

func (l *listener) Accept() (net.Conn, error) {
	nc, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	c := &conn{Conn: nc, l: l, closed: make(chan struct{})}
	l.mu.Lock()
	l.conns[nc.RemoteAddr().String()] = c
	l.mu.Unlock()
	return c, nil
}

func (l *listener) get(remote string) *conn {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.conns[remote]
}

// conn is an accepted socket whose writes can be held. It hides the
// descriptor (no SyscallConn), so the hub writes through Write.
type conn struct {
	net.Conn
	l *listener

	mu        sync.Mutex
	gate      chan struct{} // guarded by mu; non-nil while writes are held, closed to release them
	deadline  time.Time     // guarded by mu; the write deadline
	closed    chan struct{} // closed by Close
	closeOnce sync.Once
}

func (c *conn) hold() {
	c.mu.Lock()
	if c.gate == nil {
		c.gate = make(chan struct{})
	}
	c.mu.Unlock()
}

func (c *conn) release() {
	c.mu.Lock()
	if c.gate != nil {
		close(c.gate)
		c.gate = nil
	}
	c.mu.Unlock()
}

func (c *conn) SetWriteDeadline(t time.Time) error {
	c.mu.Lock()
	c.deadline = t
	c.mu.Unlock()
	return c.Conn.SetWriteDeadline(t)
}

func (c *conn) SetDeadline(t time.Time) error {
	c.mu.Lock()
	c.deadline = t
	c.mu.Unlock()
	return c.Conn.SetDeadline(t)
}

// Write waits while writes are held, as a socket whose peer stopped
// reading would, honouring the write deadline.
func (c *conn) Write(p []byte) (int, error) {
	c.mu.Lock()
	gate, deadline := c.gate, c.deadline
	c.mu.Unlock()
	if gate != nil {
		var expired <-chan time.Time
		if !deadline.IsZero() {
			t := time.NewTimer(time.Until(deadline))
			defer t.Stop()
			expired = t.C
		}
		select {
		case <-gate:
		case <-c.closed:
			return 0, net.ErrClosed
		case <-expired:
			return 0, os.ErrDeadlineExceeded
		}
	}
	return c.Conn.Write(p)
}

// CloseWrite half-closes the socket after the close frame, as the hub
// does on a plain TCP connection.
func (c *conn) CloseWrite() error {
	if tc, ok := c.Conn.(*net.TCPConn); ok {
		return tc.CloseWrite()
	}
	return errors.New("testserver: no half-close")
}

func (c *conn) Close() error {
	c.closeOnce.Do(func() {
		close(c.closed)
		c.l.mu.Lock()
		delete(c.l.conns, c.Conn.RemoteAddr().String())
		c.l.mu.Unlock()
	})
	return c.Conn.Close()
}
