package harness

import (
	"fmt"
	"math"
	"strings"

	"github.com/vortechron/go-ws/bench/internal/proto"
	"github.com/vortechron/go-ws/bench/internal/servers"
)

// compVariant is one row of the compression scenario.
type compVariant struct {
	row      string
	server   string
	compress bool
}

// compVariants are the compression scenario's rows: centrifuge with and
// without its compression, ws (with compression once the library has it:
// servers.WSCompression), and the ceiling both ways.
func compVariants(level int) []compVariant {
	v := []compVariant{
		{"centrifuge", "centrifuge", false},
		{"centrifuge (deflate)", "centrifuge", true},
		{"ws", "ws", false},
	}
	if servers.WSCompression {
		v = append(v, compVariant{"ws (deflate)", "ws", true})
	}
	return append(v, compVariant{"ceiling", "ceiling", false}, compVariant{"ceiling (deflate)", "ceiling", true})
}

// runCompression runs the compression scenario: a realistic 1 KB chat
// message published n times to conns subscribers whose clients offer
// permessage-deflate (as browsers do), each variant runs times,
// alternated within each run.
func runCompression(runs, conns, n, level int, inflateOnce bool, prof profiler) ([]*burstSample, []string) {
	workerArgs := []string{"-compress"}
	if inflateOnce {
		workerArgs = append(workerArgs, "-inflate-once")
	}
	var specs []burstSpec
	for _, v := range compVariants(level) {
		sp := burstSpec{row: v.row, server: v.server, workerArgs: workerArgs, conns: conns, n: n, kind: "chat"}
		if v.compress {
			sp.serverArgs = []string{"-compress", "-compress-level", fmt.Sprint(level)}
		}
		specs = append(specs, sp)
	}
	return runBursts("compression", runs, specs, prof)
}

// chatFrames are the WebSocket payloads ws sends for n chat messages.
func chatFrames(n int) [][]byte {
	var frames [][]byte
	for i := range n {
		frames = append(frames, proto.Envelope("C", proto.ChatPayload(int64(i), 1764105484512000000+int64(i)*1e6)))
	}
	return frames
}

func compressionMarkdown(b *strings.Builder, samples []*burstSample, runs, conns, n, level int, inflateOnce bool) {
	frames := chatFrames(n)
	total := 0
	for _, f := range frames {
		total += len(f)
	}
	fmt.Fprintf(b, "### Compression\n\n")
	fmt.Fprintf(b, "A realistic chat message (`proto.ChatPayload`: ids, author, text with a mention, reply excerpt, reactions, timestamps; %d B on average, "+
		"%d B as ws frames it) published %d times as fast as possible to %d subscribers whose clients offer permessage-deflate "+
		"(gorilla's client: `server_no_context_takeover; client_no_context_takeover`). Level %d where compression is on. "+
		"Wire bytes: what the clients read from their TCP sockets per delivered message. Medians of %d runs, variants alternated within each run.\n\n",
		total/len(frames)-len(`{"type":"message","channel":"C","message":}`), total/len(frames), n, conns, level, runs)
	if inflateOnce {
		b.WriteString("The load generator inflates each distinct compressed message once per worker process and hands the text to every client that " +
			"receives those bytes (`-compress-inflate-once`): with server_no_context_takeover a message's bytes alone decide its text, so this is exact, " +
			"and it keeps the clients' inflating, which real clients do on their own devices, from setting the rate on the server's two cores. " +
			"Every delivery is still read, parsed and checked.\n\n")
	}
	b.WriteString("Each message compressed on its own (no context takeover), the best any server can do while keeping one message per frame:\n\n| level | 1 | 2 | 3 | 4 | 5 | 6 | 7 | 8 | 9 |\n|---|")
	b.WriteString(strings.Repeat("---:|", 9) + "\n| bytes saved |")
	for l := 1; l <= 9; l++ {
		fmt.Fprintf(b, " %.1f%% |", 100*proto.DeflateSaving(frames, l))
	}
	b.WriteString("\n\n")
	plainOf := func(row string) string { return strings.TrimSuffix(row, " (deflate)") }
	ceilOf := func(row string) string {
		if strings.HasSuffix(row, " (deflate)") {
			return "ceiling (deflate)"
		}
		return "ceiling"
	}
	b.WriteString("| server | negotiated | deliveries/s | vs same server uncompressed | vs ceiling (same mode) | wire bytes per delivery | bytes saved vs same server uncompressed | p50 / p99 ms | missing / out-of-order / dup (all runs) |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, row := range burstRows(samples) {
		r := burstMed(samples, row, bRate)
		wire := burstMed(samples, row, bWire)
		plainWire := burstMed(samples, plainOf(row), bWire)
		saved := "–"
		if row != plainOf(row) && !math.IsNaN(plainWire) {
			saved = fmt.Sprintf("%.1f%%", 100*(1-wire/plainWire))
		}
		neg := burstMed(samples, row, func(s *burstSample) float64 { return float64(s.Deflate) })
		miss, ooo, dup := burstTotals(samples, row)
		fmt.Fprintf(b, "| %s | %.0f of %d | %s | %s | %s | %.0f | %s | %s / %s | %d / %d / %d |\n", row, neg, conns, kdel(r),
			ratio(r, burstMed(samples, plainOf(row), bRate)), ratio(r, burstMed(samples, ceilOf(row), bRate)),
			wire, saved, ms(burstMed(samples, row, bP50)), ms(burstMed(samples, row, bP99)), miss, ooo, dup)
	}
	b.WriteString("\nPer run (deliveries/s [CPU share other processes took meanwhile]; wire bytes per delivery):\n\n")
	for _, row := range burstRows(samples) {
		fmt.Fprintf(b, "- %s: %s\n", row, perRun(samples, row, func(s *burstSample) string {
			return fmt.Sprintf("%s [%s]; %.0f", kdel(bRate(s)), pct(s.Burst), s.wirePerDelivery())
		}))
	}
	if !servers.WSCompression {
		b.WriteString("\nws has no compression in this version: it declines permessage-deflate, so its row is uncompressed " +
			"(switch: `bench/internal/servers/ws_compression.go`).\n")
	}
	b.WriteString("\n")
}
