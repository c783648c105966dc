package harness

import (
	"fmt"
	"math"
	"slices"
	"strings"
	"time"
)

// burstSample is one session of the TLS or compression scenario: one
// server process, one fleet, idle memory and one burst.
type burstSample struct {
	Row     string // the table row: the server, and its mode
	Server  string
	Conns   int
	Deflate int     // connections that negotiated permessage-deflate
	IdleGC  float64 // RSS per subscribed connection after GC, bytes
	Burst   *Round
}

// wirePerDelivery is the bytes the clients read per delivered message.
func (s *burstSample) wirePerDelivery() float64 {
	if s.Burst == nil || s.Burst.Delivered == 0 {
		return math.NaN()
	}
	return float64(s.Burst.WireBytes) / float64(s.Burst.Delivered)
}

// burstSpec says how one burst session runs.
type burstSpec struct {
	row        string
	server     string
	serverArgs []string // e.g. -tls, -compress
	workerArgs []string // e.g. -compress
	conns, n   int
	size       int
	kind       string // payload kind ("" or "chat")
	proto      string // the clients' protocol; "" means the server's own
}

// burstSession starts the server, subscribes conns clients, measures idle
// memory after GC and one burst of n publications.
func burstSession(sp burstSpec, cpuprofile string) (*burstSample, error) {
	s := &burstSample{Row: sp.row, Server: sp.server}
	args := sp.serverArgs
	if cpuprofile != "" {
		args = append(append([]string(nil), args...), "-cpuprofile", cpuprofile)
	}
	srv, err := startServer(sp.server, newAddr(), args...)
	if err != nil {
		return nil, err
	}
	defer srv.stop()
	time.Sleep(300 * time.Millisecond)
	rss0, _ := srv.rss(true)
	p := sp.proto
	if p == "" {
		p = protoOf(sp.server)
	}
	f, err := startFleetArgs(p, "C", 0, sp.workerArgs, target{srv.wsURL(), sp.conns})
	if err != nil {
		return nil, err
	}
	defer f.stop()
	s.Conns, s.Deflate = f.conns, f.deflate
	if f.conns == 0 {
		return nil, fmt.Errorf("no connection subscribed")
	}
	time.Sleep(2 * time.Second)
	rss1, _ := srv.rss(true)
	s.IdleGC = float64(rss1-rss0) / float64(max(f.conns, 1))
	if s.Burst, err = publishRoundKind(f, srv, "C", sp.n, sp.size, sp.kind, 0, 5*time.Second); err != nil {
		return s, fmt.Errorf("burst: %w", err)
	}
	logf("  %s: %d subscribed (%d deflate), %.1f KB/conn after GC; burst %s; %.0f wire bytes per delivery",
		sp.row, f.conns, f.deflate, s.IdleGC/1024, s.Burst, s.wirePerDelivery())
	return s, nil
}

// tlsServers are the servers of the TLS scenario, in table order.
var tlsServers = []string{"melody", "centrifuge", "gorilla", "ws", "ceiling"}

// runTLS runs the TLS burst fan-out: every server over wss, runs times,
// alternating servers within each run.
func runTLS(names []string, runs, conns, n, size int, prof profiler) ([]*burstSample, []string) {
	var specs []burstSpec
	for _, name := range names {
		specs = append(specs, burstSpec{row: name, server: name, serverArgs: []string{"-tls"}, conns: conns, n: n, size: size})
	}
	return runBursts("tls", runs, specs, prof)
}

// runBursts runs a burst session of every spec, runs times, alternating
// the specs within each run; scenario names it in the log, the errors
// and the CPU profiles' file names.
func runBursts(scenario string, runs int, specs []burstSpec, prof profiler) ([]*burstSample, []string) {
	var out []*burstSample
	var errs []string
	for run := 1; run <= runs; run++ {
		for _, sp := range specs {
			logf("%s run %d/%d: %s", scenario, run, runs, sp.row)
			profName := scenario
			if sp.row != sp.server {
				profName += "-" + slug(sp.row) // rows of one server get a file each
			}
			s, err := burstSession(sp, prof.path(profName, sp.server, run))
			if err != nil {
				logf("  %s: %v", sp.row, err)
				errs = append(errs, fmt.Sprintf("%s run %d, %s: %v", scenario, run, sp.row, err))
			}
			if s != nil {
				out = append(out, s)
			}
		}
	}
	return out, errs
}

// slug turns a table row such as "ws (deflate)" into "ws-deflate".
func slug(row string) string {
	return strings.Join(strings.FieldsFunc(strings.ToLower(row), func(r rune) bool {
		return !('a' <= r && r <= 'z' || '0' <= r && r <= '9')
	}), "-")
}

// burstMed is the median of f over the samples of row.
func burstMed(samples []*burstSample, row string, f func(*burstSample) float64) float64 {
	var xs []float64
	for _, s := range samples {
		if s.Row == row {
			xs = append(xs, f(s))
		}
	}
	return median(xs)
}

func bRate(s *burstSample) float64 {
	return roundField(s.Burst, func(r *Round) float64 { return r.Rate })
}
func bP50(s *burstSample) float64 {
	return roundField(s.Burst, func(r *Round) float64 { return r.P50 })
}
func bP99(s *burstSample) float64 {
	return roundField(s.Burst, func(r *Round) float64 { return r.P99 })
}
func bIdle(s *burstSample) float64 { return s.IdleGC }
func bWire(s *burstSample) float64 { return s.wirePerDelivery() }

// burstRows lists the rows of samples in first-seen order.
func burstRows(samples []*burstSample) []string {
	var rows []string
	for _, s := range samples {
		if !slices.Contains(rows, s.Row) {
			rows = append(rows, s.Row)
		}
	}
	return rows
}

// burstTotals sums missing, out-of-order and duplicates over row's runs.
func burstTotals(samples []*burstSample, row string) (miss, ooo, dup int64) {
	for _, s := range samples {
		if s.Row == row && s.Burst != nil {
			miss += s.Burst.Missing
			ooo += s.Burst.OutOfOrder
			dup += s.Burst.Dup
		}
	}
	return
}

// perRun lists f of row's runs with the other processes' CPU share.
func perRun(samples []*burstSample, row string, f func(*burstSample) string) string {
	var parts []string
	for _, s := range samples {
		if s.Row == row {
			parts = append(parts, f(s))
		}
	}
	return strings.Join(parts, " | ")
}

func tlsMarkdown(b *strings.Builder, samples []*burstSample, runs, conns, n, size int) {
	fmt.Fprintf(b, "### TLS burst fan-out\n\n")
	fmt.Fprintf(b, "Every server over wss (http.Server.ServeTLS with a self-signed ECDSA P-256 certificate made at start; TLS 1.3; the load generator does not verify it). "+
		"%d subscribers on one channel, %d messages of %d B published as fast as possible. Medians of %d runs, servers alternated within each run. "+
		"Wire bytes: what the clients read from their TCP sockets (TLS records and WebSocket headers included) per delivered message.\n\n", conns, n, size, runs)
	bestRate, bestName := math.NaN(), ""
	for _, p := range peers {
		if v := burstMed(samples, p, bRate); !math.IsNaN(v) && (math.IsNaN(bestRate) || v > bestRate) {
			bestRate, bestName = v, p
		}
	}
	ceil := burstMed(samples, "ceiling", bRate)
	b.WriteString("| server | deliveries/s | vs best peer | vs ceiling | p50 / p99 ms | wire bytes per delivery | idle RSS per conn (after GC) | missing / out-of-order / dup (all runs) |\n|---|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, row := range order(burstRows(samples)) {
		r := burstMed(samples, row, bRate)
		miss, ooo, dup := burstTotals(samples, row)
		fmt.Fprintf(b, "| %s | %s | %s | %s | %s / %s | %.0f | %s | %d / %d / %d |\n", row, kdel(r), ratio(r, bestRate), ratio(r, ceil),
			ms(burstMed(samples, row, bP50)), ms(burstMed(samples, row, bP99)), burstMed(samples, row, bWire),
			kb(burstMed(samples, row, bIdle)), miss, ooo, dup)
	}
	fmt.Fprintf(b, "\nBest peer: %s. Per run (deliveries/s [CPU share other processes took meanwhile]):\n\n", bestName)
	for _, row := range order(burstRows(samples)) {
		fmt.Fprintf(b, "- %s: %s\n", row, perRun(samples, row, func(s *burstSample) string {
			return fmt.Sprintf("%s [%s]", kdel(bRate(s)), pct(s.Burst))
		}))
	}
	b.WriteString("\n")
}

// profiler names CPU profile files for the ws server processes, when
// -cpuprofile-dir is set.
type profiler struct{ dir string }

func (p profiler) path(scenario, server string, run int) string {
	if p.dir == "" || (server != "ws" && !strings.HasPrefix(server, "ws-")) {
		return ""
	}
	return fmt.Sprintf("%s/%s-%s-run%d.pprof", p.dir, scenario, server, run)
}
