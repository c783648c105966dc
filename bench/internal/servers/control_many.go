package servers

import (
	"context"
	"encoding/json"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vortechron/go-ws/bench/internal/proto"
)

// maxChannels bounds channels in one /publish-many or /presence-check.
const maxChannels = 100_000

// publishMany serves /publish-many (see Mux).
func publishMany(ctx context.Context, s Server, w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	prefix := q.Get("prefix")
	channels, err1 := strconv.Atoi(q.Get("channels"))
	per, err2 := strconv.Atoi(q.Get("per"))
	gor, err3 := strconv.Atoi(orDefault(q.Get("goroutines"), "16"))
	rate, err4 := strconv.ParseFloat(orDefault(q.Get("rate"), "0"), 64)
	size, err5 := strconv.Atoi(orDefault(q.Get("size"), "100"))
	start, err6 := strconv.ParseInt(orDefault(q.Get("start"), "0"), 10, 64)
	if prefix == "" || err1 != nil || err2 != nil || err3 != nil || err4 != nil || err5 != nil || err6 != nil ||
		channels < 1 || channels > maxChannels || per < 1 || int64(per)*int64(channels) > maxPublish ||
		gor < 1 || gor > 256 || rate < 0 {
		http.Error(w, "want prefix, channels in 1..1e5, per with per*channels <= 1e6, goroutines in 1..256, rate>=0, size, start", http.StatusBadRequest)
		return
	}
	names := make([]string, channels)
	for i := range names {
		names[i] = proto.Indexed(prefix, i)
	}
	var failed atomic.Int64
	var firstErr atomic.Value
	t0 := time.Now()
	var wg sync.WaitGroup
	for g := range gor {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var own []string
			for i := g; i < channels; i += gor {
				own = append(own, names[i])
			}
			// This goroutine's share of the total rate.
			share := rate * float64(len(own)) / float64(channels)
			n := 0
			for k := range per {
				for _, ch := range own {
					if share > 0 {
						due := t0.Add(time.Duration(float64(n) / share * float64(time.Second)))
						if d := time.Until(due); d > 0 {
							select {
							case <-time.After(d):
							case <-ctx.Done():
								return
							}
						}
					}
					n++
					if err := s.Publish(r.Context(), ch, proto.Payload(start+int64(k), time.Now().UnixNano(), size)); err != nil {
						failed.Add(1)
						firstErr.CompareAndSwap(nil, err.Error())
					}
				}
			}
		}()
	}
	wg.Wait()
	total := int64(per) * int64(channels)
	out := map[string]any{
		"published": total - failed.Load(), "failed": failed.Load(), "elapsed_ns": time.Since(t0).Nanoseconds(),
	}
	if e, ok := firstErr.Load().(string); ok {
		out["first_error"] = e
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(out)
}

// presenceCheck serves /presence-check (see Mux).
func presenceCheck(s Server, w http.ResponseWriter, r *http.Request) {
	pc, ok := s.(PresenceChecker)
	if !ok {
		http.Error(w, "this server keeps no presence", http.StatusNotImplemented)
		return
	}
	q := r.URL.Query()
	prefix := q.Get("prefix")
	channels, err1 := strconv.Atoi(q.Get("channels"))
	size, err2 := strconv.Atoi(q.Get("size"))
	total, err3 := strconv.Atoi(q.Get("total"))
	if prefix == "" || err1 != nil || err2 != nil || err3 != nil || channels < 1 || channels > maxChannels || size < 1 {
		http.Error(w, "want prefix, channels in 1..1e5, size, total", http.StatusBadRequest)
		return
	}
	names := make([]string, channels)
	want := make([]int, channels)
	for i := range names {
		names[i] = proto.Indexed(prefix, i)
		want[i] = max(min(size, total-i*size), 0)
	}
	ctx, cancel := context.WithTimeout(r.Context(), time.Minute)
	defer cancel()
	bad, first, err := pc.CheckPresence(ctx, names, want)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(map[string]any{"mismatched": bad, "first": first})
}
