package harness

import (
	"fmt"
	"math"
	"runtime"
	"slices"
	"strings"
	"time"
)

type report struct {
	cfg      Config
	runs     int
	slowRuns int
	args     []string
	core     []*Sample
	scale    []*Sample
	cluster  *Sample
	cross    *crossResult
	prod     *prodResults
	errors   []string
}

// metric reads one number off a sample (NaN when absent).
type metric func(*Sample) float64

func burstRate(s *Sample) float64 {
	return roundField(s.Burst, func(r *Round) float64 { return r.Rate })
}
func burstP50(s *Sample) float64 { return roundField(s.Burst, func(r *Round) float64 { return r.P50 }) }
func burstP99(s *Sample) float64 { return roundField(s.Burst, func(r *Round) float64 { return r.P99 }) }
func steadyP50(s *Sample) float64 {
	return roundField(s.Steady, func(r *Round) float64 { return r.P50 })
}
func steadyP99(s *Sample) float64 {
	return roundField(s.Steady, func(r *Round) float64 { return r.P99 })
}
func slowP99(s *Sample) float64 { return roundField(s.Slow, func(r *Round) float64 { return r.P99 }) }
func idleGC(s *Sample) float64  { return s.IdleRSSGC }
func idleRaw(s *Sample) float64 { return s.IdleRSS }

func roundField(r *Round, f func(*Round) float64) float64 {
	if r == nil {
		return math.NaN()
	}
	return f(r)
}

// med is the median of m over the samples of server.
func (rep *report) med(server string, m metric) float64 {
	var xs []float64
	for _, s := range rep.core {
		if s.Server == server {
			xs = append(xs, m(s))
		}
	}
	return median(xs)
}

// sum adds f over every round of server (all runs).
func (rep *report) sum(server string, pick func(*Sample) *Round, f func(*Round) int64) int64 {
	var n int64
	for _, s := range rep.core {
		if s.Server == server {
			if r := pick(s); r != nil {
				n += f(r)
			}
		}
	}
	return n
}

// best is the best peer median of m: the largest when higher is better.
func (rep *report) best(m metric, higher bool) (float64, string) {
	bv, bn := math.NaN(), ""
	for _, p := range peers {
		v := rep.med(p, m)
		if math.IsNaN(v) {
			continue
		}
		if math.IsNaN(bv) || (higher && v > bv) || (!higher && v < bv) {
			bv, bn = v, p
		}
	}
	return bv, bn
}

func ratio(a, b float64) string {
	if math.IsNaN(a) || math.IsNaN(b) || b == 0 {
		return "–"
	}
	return fmt.Sprintf("%.2f×", a/b)
}

func kdel(v float64) string {
	switch {
	case math.IsNaN(v):
		return "–"
	case v >= 1e6:
		return fmt.Sprintf("%.2fM", v/1e6)
	default:
		return fmt.Sprintf("%.0fk", v/1e3)
	}
}

func ms(v float64) string {
	if math.IsNaN(v) {
		return "–"
	}
	return fmt.Sprintf("%.1f", v/1000)
}

func kb(v float64) string {
	if math.IsNaN(v) {
		return "–"
	}
	return fmt.Sprintf("%.1f KB", v/1024)
}

func (rep *report) servers() []string {
	var names []string
	for _, s := range rep.core {
		if !slices.Contains(names, s.Server) {
			names = append(names, s.Server)
		}
	}
	return order(names)
}

func (rep *report) markdown() string {
	var b strings.Builder
	c := rep.cfg
	fmt.Fprintf(&b, "## ws benchmark harness\n\n")
	fmt.Fprintf(&b, "`go run ./cmd/harness %s` — %s, %s, GOMAXPROCS %d, %s\n\n",
		strings.Join(rep.args, " "), time.Now().UTC().Format("2006-01-02 15:04 MST"), runtime.Version(), runtime.GOMAXPROCS(0), runtime.GOOS+"/"+runtime.GOARCH)
	if len(rep.core) > 0 {
		fmt.Fprintf(&b, "Core: %d subscribers on one channel; burst = %d messages of %d B as fast as possible; steady = %d messages at %.0f/s; "+
			"slow = %d subscribers, %d messages at %.0f/s while %.0f%% of them do not read (in the first %d run(s)). Medians of %d runs; ratios are to the best peer (%s) and to the ceiling; "+
			"for latency and memory lower is better.\n\n",
			c.Conns, c.BurstN, c.Size, c.SteadyN, c.SteadyRate, c.SlowConns, c.SlowN, c.SlowRate, c.SlowFrac*100, rep.slowRuns, rep.runs, strings.Join(peers, ", "))
		bestRate, bestRateName := rep.best(burstRate, true)
		bestP99, bestP99Name := rep.best(steadyP99, false)
		bestMem, bestMemName := rep.best(idleGC, false)
		ceilRate := rep.med("ceiling", burstRate)
		ceilP99 := rep.med("ceiling", steadyP99)
		ceilMem := rep.med("ceiling", idleGC)
		fmt.Fprintf(&b, "| server | burst deliveries/s | vs best peer | vs ceiling | burst p50 / p99 ms | steady p50 / p99 ms | steady p99 vs best peer / ceiling | idle RSS per conn (after GC) | as left by runtime | RSS vs best peer / ceiling | missing / out-of-order / dup (all runs) | slow run: readers p99 ms, missing | non-readers closed / delivered of expected |\n")
		fmt.Fprintf(&b, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
		for _, n := range rep.servers() {
			r := rep.med(n, burstRate)
			miss := rep.sum(n, func(s *Sample) *Round { return s.Burst }, func(r *Round) int64 { return r.Missing }) +
				rep.sum(n, func(s *Sample) *Round { return s.Steady }, func(r *Round) int64 { return r.Missing })
			ooo := rep.sum(n, func(s *Sample) *Round { return s.Burst }, func(r *Round) int64 { return r.OutOfOrder }) +
				rep.sum(n, func(s *Sample) *Round { return s.Steady }, func(r *Round) int64 { return r.OutOfOrder })
			dup := rep.sum(n, func(s *Sample) *Round { return s.Burst }, func(r *Round) int64 { return r.Dup }) +
				rep.sum(n, func(s *Sample) *Round { return s.Steady }, func(r *Round) int64 { return r.Dup })
			closed := rep.sum(n, func(s *Sample) *Round { return s.SlowOf }, func(r *Round) int64 { return r.Closed })
			slowConns := rep.sum(n, func(s *Sample) *Round { return s.SlowOf }, func(r *Round) int64 { return r.Conns })
			slowGot := rep.sum(n, func(s *Sample) *Round { return s.SlowOf }, func(r *Round) int64 { return r.Delivered })
			slowWant := rep.sum(n, func(s *Sample) *Round { return s.SlowOf }, func(r *Round) int64 { return r.Expected })
			slowMiss := rep.sum(n, func(s *Sample) *Round { return s.Slow }, func(r *Round) int64 { return r.Missing })
			fmt.Fprintf(&b, "| %s | %s | %s | %s | %s / %s | %s / %s | %s / %s | %s | %s | %s / %s | %d / %d / %d | %s, %d | %d of %d / %d of %d |\n",
				n, kdel(r), ratio(r, bestRate), ratio(r, ceilRate),
				ms(rep.med(n, burstP50)), ms(rep.med(n, burstP99)),
				ms(rep.med(n, steadyP50)), ms(rep.med(n, steadyP99)),
				ratio(rep.med(n, steadyP99), bestP99), ratio(rep.med(n, steadyP99), ceilP99),
				kb(rep.med(n, idleGC)), kb(rep.med(n, idleRaw)),
				ratio(rep.med(n, idleGC), bestMem), ratio(rep.med(n, idleGC), ceilMem),
				miss, ooo, dup,
				ms(rep.med(n, slowP99)), slowMiss, closed, slowConns, slowGot, slowWant)
		}
		fmt.Fprintf(&b, "\nBest peer: burst %s, steady p99 %s, memory %s.\n", bestRateName, bestP99Name, bestMemName)
		fmt.Fprintf(&b, "\nPer run (burst deliveries/s [CPU share other processes took meanwhile]; steady p99 ms [other CPU]; idle KB/conn after GC):\n\n")
		for _, n := range rep.servers() {
			var parts []string
			for _, s := range rep.core {
				if s.Server == n {
					parts = append(parts, fmt.Sprintf("%s [%s]; %s [%s]; %s", kdel(burstRate(s)), pct(s.Burst), ms(steadyP99(s)), pct(s.Steady), kb(idleGC(s))))
				}
			}
			fmt.Fprintf(&b, "- %s: %s\n", n, strings.Join(parts, " | "))
		}
		b.WriteString("\n")
	}
	if len(rep.scale) > 0 {
		fmt.Fprintf(&b, "Scale (one run): subscribers on one node, load from several worker processes over 127.0.0.x; burst of %d × %d B.\n\n", c.ScaleN, c.Size)
		b.WriteString("| server | subscribers | burst deliveries/s | p50 / p99 ms | missing / out-of-order | idle RSS per conn (after GC) |\n|---|---:|---:|---:|---:|---:|\n")
		for _, s := range rep.scale {
			fmt.Fprintf(&b, "| %s | %d | %s | %s / %s | %d / %d | %s |\n", s.Server, s.Conns, kdel(burstRate(s)), ms(burstP50(s)), ms(burstP99(s)),
				s.Burst.missing(), s.Burst.ooo(), kb(s.IdleRSSGC))
		}
		b.WriteString("\n")
	}
	if s := rep.cluster; s != nil {
		fmt.Fprintf(&b, "Cluster (one run): three ws nodes sharing Redis, subscribers spread evenly, every publication made on node 1.\n\n")
		b.WriteString("| scenario | subscribers | deliveries/s | p50 / p99 ms | missing / out-of-order | idle RSS per conn (after GC, node mean) |\n|---|---:|---:|---:|---:|---:|\n")
		fmt.Fprintf(&b, "| burst %d × %d B | %d | %s | %s / %s | %d / %d | %s |\n", c.ScaleN, c.Size, s.Conns, kdel(burstRate(s)), ms(burstP50(s)), ms(burstP99(s)), s.Burst.missing(), s.Burst.ooo(), kb(s.IdleRSSGC))
		if s.Steady != nil {
			fmt.Fprintf(&b, "| steady %d at %.0f/s | %d | – | %s / %s | %d / %d | |\n", c.SteadyN, c.SteadyRate, s.Conns, ms(steadyP50(s)), ms(steadyP99(s)), s.Steady.missing(), s.Steady.ooo())
		}
		b.WriteString("\n")
	}
	if rep.cross != nil {
		rep.cross.markdown(&b, c.Size)
	}
	if rep.prod != nil {
		rep.prod.markdown(&b, rep.runs)
	}
	if len(rep.errors) > 0 {
		b.WriteString("Errors:\n\n")
		for _, e := range rep.errors {
			fmt.Fprintf(&b, "- %s\n", e)
		}
		b.WriteString("\n")
	}
	return b.String()
}

func (r *Round) missing() int64 {
	if r == nil {
		return 0
	}
	return r.Missing
}

func (r *Round) ooo() int64 {
	if r == nil {
		return 0
	}
	return r.OutOfOrder
}

func pct(r *Round) string {
	if r == nil {
		return "–"
	}
	return fmt.Sprintf("%.0f%%", r.Foreign*100)
}
