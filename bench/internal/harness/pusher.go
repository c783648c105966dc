package harness

import (
	"fmt"
	"strings"
)

// pusherRows are the rows of the pusher scenario: one ws server process
// (serving both protocols, -pusher) per row, its subscribers speaking
// ws's native protocol or Pusher protocol 7.
var pusherRows = []struct{ row, proto string }{
	{"ws (native protocol)", "ws"},
	{"ws (Pusher protocol)", "pusher"},
}

// runPusher runs the pusher scenario: burst fan-out of one event to conns
// subscribers of one channel, native and Pusher clients alternated within
// each run. The server publishes with Hub.PublishWith and an event name
// in both rows, as a Pusher app does.
func runPusher(runs, conns, n, size int, prof profiler) ([]*burstSample, []string) {
	var specs []burstSpec
	for _, v := range pusherRows {
		specs = append(specs, burstSpec{row: v.row, server: "ws", serverArgs: []string{"-pusher"}, proto: v.proto, conns: conns, n: n, size: size})
	}
	return runBursts("pusher", runs, specs, prof)
}

func pusherMarkdown(b *strings.Builder, samples []*burstSample, runs, conns, n, size int) {
	fmt.Fprintf(b, "### Pusher protocol burst fan-out\n\n")
	fmt.Fprintf(b, "One ws server process per row serving both protocols (`pusher.New` beside `ws.ServeWS`); %d subscribers of one channel speaking ws's native protocol, "+
		"or Pusher protocol 7 as pusher-js does (`/app/{key}?protocol=7`, `pusher:subscribe`); %d events of %d B published with `Hub.PublishWith` and an event name as fast as possible. "+
		"Pusher clients get the payload as a JSON string in `data`, so their frames are longer. Medians of %d runs, rows alternated within each run.\n\n", conns, n, size, runs)
	native := burstMed(samples, pusherRows[0].row, bRate)
	b.WriteString("| clients | deliveries/s | vs native | p50 / p99 ms | wire bytes per delivery | idle RSS per conn (after GC) | missing / out-of-order / dup (all runs) |\n|---|---:|---:|---:|---:|---:|---:|\n")
	for _, v := range pusherRows {
		r := burstMed(samples, v.row, bRate)
		miss, ooo, dup := burstTotals(samples, v.row)
		fmt.Fprintf(b, "| %s | %s | %s | %s / %s | %.0f | %s | %d / %d / %d |\n", v.row, kdel(r), ratio(r, native),
			ms(burstMed(samples, v.row, bP50)), ms(burstMed(samples, v.row, bP99)), burstMed(samples, v.row, bWire),
			kb(burstMed(samples, v.row, bIdle)), miss, ooo, dup)
	}
	b.WriteString("\nPer run (deliveries/s [CPU share other processes took meanwhile]):\n\n")
	for _, v := range pusherRows {
		fmt.Fprintf(b, "- %s: %s\n", v.row, perRun(samples, v.row, func(s *burstSample) string {
			return fmt.Sprintf("%s [%s]", kdel(bRate(s)), pct(s.Burst))
		}))
	}
	b.WriteString("\n")
}
