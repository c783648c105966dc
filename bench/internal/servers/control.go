package servers

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/pprof"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"time"

	"github.com/vortechron/go-ws/bench/internal/proto"
)

// maxPublish bounds n in one /publish request.
const maxPublish = 1_000_000

// Mux serves s on /ws and the control API beside it:
//
//	POST /publish?channel=C&n=200&size=100&rate=0&start=0&kind=pad
//	     publishes n payloads of size bytes, sequence numbers start..start+n-1,
//	     as fast as possible (rate=0) or rate per second; answers when all
//	     were handed to Publish, with {"published":n,"elapsed_ns":...}.
//	     kind=chat publishes proto.ChatPayload (about 1 KB) instead.
//	POST /publish-many?prefix=room-&channels=5000&per=20&goroutines=16&rate=0&size=100&start=0
//	     publishes per payloads to each of channels channels named
//	     proto.Indexed(prefix, i) from goroutines goroutines (goroutine g
//	     owns the channels i with i%goroutines == g, so every channel is
//	     published in order), in rounds: payload start+k to every owned
//	     channel, then start+k+1. rate is the total per second (0: as fast
//	     as possible). Answers like /publish.
//	POST /presence-check?prefix=presence-room-&channels=1800&size=10&total=18000
//	     servers with presence (PresenceChecker): channel i should hold
//	     min(size, total-i*size) members; answers {"mismatched":n,"first":"..."}.
//	GET  /rss      this process's VmRSS in bytes (from /proc/self/status).
//	POST /gc       runtime.GC + debug.FreeOSMemory.
//	GET  /healthz  200 once serving.
//	/debug/pprof/  net/http/pprof.
func Mux(ctx context.Context, s Server) *http.ServeMux {
	mux := http.NewServeMux()
	mux.Handle("/ws", s)
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) { fmt.Fprintln(w, "ok") })
	mux.HandleFunc("/rss", func(w http.ResponseWriter, r *http.Request) {
		rss, err := RSS(os.Getpid())
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		fmt.Fprintln(w, rss)
	})
	mux.HandleFunc("/gc", func(w http.ResponseWriter, r *http.Request) {
		runtime.GC()
		debug.FreeOSMemory()
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("/publish", func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		channel := q.Get("channel")
		n, err1 := strconv.Atoi(q.Get("n"))
		size, err2 := strconv.Atoi(q.Get("size"))
		rate, err3 := strconv.ParseFloat(orDefault(q.Get("rate"), "0"), 64)
		start, err4 := strconv.ParseInt(orDefault(q.Get("start"), "0"), 10, 64)
		if channel == "" || err1 != nil || err2 != nil || err3 != nil || err4 != nil || n < 1 || n > maxPublish || rate < 0 {
			http.Error(w, "want channel, n in 1..1e6, size, rate>=0, start", http.StatusBadRequest)
			return
		}
		t0 := time.Now()
		failed := 0
		for i := range n {
			if rate > 0 {
				due := t0.Add(time.Duration(float64(i) / rate * float64(time.Second)))
				if d := time.Until(due); d > 0 {
					select {
					case <-time.After(d):
					case <-ctx.Done():
						http.Error(w, "server stopping", http.StatusServiceUnavailable)
						return
					}
				}
			}
			p := payload(q.Get("kind"), start+int64(i), size)
			if err := s.Publish(r.Context(), channel, p); err != nil {
				failed++
			}
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]any{
			"published": n - failed, "failed": failed, "elapsed_ns": time.Since(t0).Nanoseconds(),
		})
	})
	mux.HandleFunc("/publish-many", func(w http.ResponseWriter, r *http.Request) {
		publishMany(ctx, s, w, r)
	})
	mux.HandleFunc("/presence-check", func(w http.ResponseWriter, r *http.Request) {
		presenceCheck(s, w, r)
	})
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	return mux
}

// payload builds publication seq of the given kind: "chat" is
// proto.ChatPayload, anything else proto.Payload of size bytes.
func payload(kind string, seq int64, size int) []byte {
	if kind == "chat" {
		return proto.ChatPayload(seq, time.Now().UnixNano())
	}
	return proto.Payload(seq, time.Now().UnixNano(), size)
}

func orDefault(s, d string) string {
	if s == "" {
		return d
	}
	return s
}

// RSS returns the resident set size of process pid in bytes, read from
// VmRSS in /proc/pid/status.
func RSS(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			f := strings.Fields(rest)
			if len(f) < 1 {
				break
			}
			kb, err := strconv.ParseInt(f[0], 10, 64)
			if err != nil {
				return 0, err
			}
			return kb * 1024, nil
		}
	}
	return 0, fmt.Errorf("no VmRSS in /proc/%d/status", pid)
}
