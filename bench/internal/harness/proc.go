package harness

import (
	"bufio"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/vortechron/go-ws/bench/internal/loadgen"
	"github.com/vortechron/go-ws/bench/internal/servers"
)

// httpc talks to the servers' control API; every call is bounded. The
// servers' TLS certificates are self-signed and made at start, so they
// are not verified (loopback only).
var httpc = &http.Client{
	Timeout:   200 * time.Second,
	Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}},
}

// serverProc is one server process started by the harness.
type serverProc struct {
	name   string
	addr   string
	scheme string // http, or https with -tls
	cmd    *exec.Cmd
}

// base is the server's control API URL.
func (s *serverProc) base() string { return s.scheme + "://" + s.addr }

// wsURL is the server's WebSocket endpoint.
func (s *serverProc) wsURL() string {
	if s.scheme == "https" {
		return "wss://" + s.addr + "/ws"
	}
	return "ws://" + s.addr + "/ws"
}

// startServer runs `self server -server name -addr addr extra...` and
// waits until its control API answers.
func startServer(name, addr string, extra ...string) (*serverProc, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	args := append([]string{"server", "-server", name, "-addr", addr}, extra...)
	cmd := exec.Command(self, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM} // never outlive the harness
	cmd.Stdout = os.Stderr
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	s := &serverProc{name: name, addr: addr, scheme: "http", cmd: cmd}
	if slices.Contains(extra, "-tls") {
		s.scheme = "https"
	}
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := httpc.Get(s.base() + "/healthz")
		if err == nil {
			resp.Body.Close()
			return s, nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	s.stop()
	return nil, fmt.Errorf("server %s on %s did not start", name, addr)
}

// rss returns the server's VmRSS in bytes, optionally after asking it to
// collect garbage and return memory to the OS.
func (s *serverProc) rss(gc bool) (int64, error) {
	if gc {
		resp, err := httpc.Post(s.base()+"/gc", "", nil)
		if err != nil {
			return 0, err
		}
		resp.Body.Close()
		time.Sleep(100 * time.Millisecond)
	}
	return servers.RSS(s.cmd.Process.Pid)
}

// publish asks the server to publish n payloads of size bytes (of kind,
// "" or "chat") from sequence number start, at rate per second (0: as
// fast as possible).
func (s *serverProc) publish(channel string, n, size int, kind string, rate float64, start int64) error {
	q := url.Values{
		"channel": {channel}, "n": {strconv.Itoa(n)}, "size": {strconv.Itoa(size)}, "kind": {kind},
		"rate": {strconv.FormatFloat(rate, 'f', -1, 64)}, "start": {strconv.FormatInt(start, 10)},
	}
	_, err := s.control("/publish", q)
	return err
}

// publishAnswer is what /publish and /publish-many answer.
type publishAnswer struct {
	Published  int64  `json:"published"`
	Failed     int64  `json:"failed"`
	ElapsedNs  int64  `json:"elapsed_ns"`
	FirstError string `json:"first_error"`
	Mismatched int    `json:"mismatched"` // /presence-check
	First      string `json:"first"`      // /presence-check
}

// control POSTs to the control API and decodes its JSON answer.
func (s *serverProc) control(path string, q url.Values) (*publishAnswer, error) {
	resp, err := httpc.Post(s.base()+path+"?"+q.Encode(), "", nil)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s: %s: %s", path, resp.Status, strings.TrimSpace(string(body)))
	}
	var a publishAnswer
	if err := json.Unmarshal(body, &a); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &a, nil
}

// stop ends the server with SIGTERM, then SIGKILL after 5s.
func (s *serverProc) stop() {
	s.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { s.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		s.cmd.Process.Kill()
		<-done
	}
}

// workerProc is one load-generator process.
type workerProc struct {
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	events chan loadgen.Event
}

// startWorker runs `self worker args...`.
func startWorker(args ...string) (*workerProc, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(self, append([]string{"worker"}, args...)...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	w := &workerProc{cmd: cmd, stdin: stdin, events: make(chan loadgen.Event, 4)}
	go func() {
		defer close(w.events)
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 1<<20), 64<<20)
		for sc.Scan() {
			var ev loadgen.Event
			if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
				ev = loadgen.Event{Event: "error", Error: "bad worker line: " + err.Error()}
			}
			w.events <- ev
		}
	}()
	return w, nil
}

// send writes one command.
func (w *workerProc) send(cmd loadgen.Command) error {
	b, _ := json.Marshal(cmd)
	_, err := w.stdin.Write(append(b, '\n'))
	return err
}

// next waits up to timeout for the worker's next event of kind want.
func (w *workerProc) next(want string, timeout time.Duration) (loadgen.Event, error) {
	t := time.NewTimer(timeout)
	defer t.Stop()
	for {
		select {
		case ev, ok := <-w.events:
			if !ok {
				return ev, fmt.Errorf("worker exited waiting for %q", want)
			}
			if ev.Event == "error" {
				return ev, fmt.Errorf("worker: %s", ev.Error)
			}
			if ev.Event == want {
				return ev, nil
			}
		case <-t.C:
			return loadgen.Event{}, fmt.Errorf("worker: no %q within %v", want, timeout)
		}
	}
}

// stop closes the worker's connections and waits for it, killing it
// after 10s.
func (w *workerProc) stop() {
	w.send(loadgen.Command{Cmd: "close"})
	w.stdin.Close()
	done := make(chan struct{})
	go func() { w.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		w.cmd.Process.Kill()
		<-done
	}
}
