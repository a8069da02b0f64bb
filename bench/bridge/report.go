package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"sort"
	"strings"

	"github.com/switchback/switchback/bench/internal/loadkit"
)

// runReport prints the markdown tables of a results file, the ratios of
// Switchback to rtpengine, and the verdict of each target; with -strict it
// fails when a target does.
func runReport(args []string, w io.Writer) error {
	fs := flag.NewFlagSet("report", flag.ContinueOnError)
	strict := fs.Bool("strict", false, "exit 1 when a target is not met")
	targetCalls := fs.Int("target-calls", 500, "target: concurrent bridged calls (PCMU both legs)")
	lossMax := fs.Float64("target-loss-pct", 1, "target: loss below this percentage")
	p99Max := fs.Float64("target-p99-ms", 5, "target: added latency p99 below this")
	ratioMin := fs.Float64("target-ratio", 0.5, "target: Switchback's packets per CPU-second at least this fraction of rtpengine's")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return errors.New("usage: bridgebench report RESULTS.jsonl")
	}
	results, err := loadkit.ReadJSONL(fs.Arg(0), func(r *LoadResult) bool { return r.Kind == "load" })
	if err != nil {
		return err
	}
	if len(results) == 0 {
		return errors.New("no results")
	}
	type key struct {
		round, calls int
		codecs       string
	}
	pairs := map[key]map[string]LoadResult{}
	var keys []key
	for _, r := range results {
		k := key{r.Round, r.Calls, r.Codecs}
		if pairs[k] == nil {
			pairs[k] = map[string]LoadResult{}
			keys = append(keys, k)
		}
		pairs[k][r.Relay] = r
	}
	sort.Slice(keys, func(i, j int) bool {
		a, b := keys[i], keys[j]
		if sa, sb := sameCodec(a.codecs), sameCodec(b.codecs); sa != sb {
			return sa // no transcoding first
		}
		if a.codecs != b.codecs {
			return a.codecs < b.codecs
		}
		if a.calls != b.calls {
			return a.calls < b.calls
		}
		return a.round < b.round
	})

	fmt.Fprintln(w, "### Side by side")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| calls | codecs | round | relay | packets/s relayed | lost | latency p50 / p99 / p99.9 / max ms | relay CPU, % of a core | packets per CPU-second | relay memory MB | loadgen CPU | other CPU | idle | send lag p99 ms |")
	fmt.Fprintln(w, "|--:|---|--:|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|")
	for _, k := range keys {
		for _, name := range []string{"rtpengine", "switchback"} {
			r, ok := pairs[k][name]
			if !ok {
				continue
			}
			fmt.Fprintf(w, "| %d | %s | %d | %s | %.0f | %d (%.3f%%) | %.2f / %.2f / %.2f / %.2f | %.1f%% | %.0f | %.1f | %.1f%% | %.1f%% | %.0f%% | %.2f |\n",
				r.Calls, r.Codecs, r.Round, name, r.PPS, r.Lost, r.LossPct,
				r.LatP50ms, r.LatP99ms, r.LatP999ms, r.LatMaxms,
				r.RelayCPUPct, r.PPSPerCPUSecond, r.RelayMemMB,
				r.LoadgenCPUPct, r.OtherCPUPct, r.IdlePct, r.SendLagP99ms)
		}
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "### Switchback against rtpengine")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| calls | codecs | round | packets per CPU-second, Switchback / rtpengine | ratio | relay CPU, Switchback / rtpengine | latency p99 ms, Switchback / rtpengine |")
	fmt.Fprintln(w, "|--:|---|--:|--:|--:|--:|--:|")
	for _, k := range keys {
		sb, ok1 := pairs[k]["switchback"]
		re, ok2 := pairs[k]["rtpengine"]
		if !ok1 || !ok2 {
			continue
		}
		fmt.Fprintf(w, "| %d | %s | %d | %.0f / %.0f | %s | %.1f%% / %.1f%% | %.2f / %.2f |\n",
			k.calls, k.codecs, k.round, sb.PPSPerCPUSecond, re.PPSPerCPUSecond, loadkit.Ratio(sb.PPSPerCPUSecond, re.PPSPerCPUSecond),
			sb.RelayCPUPct, re.RelayCPUPct, sb.LatP99ms, re.LatP99ms)
	}

	fmt.Fprintln(w)
	fmt.Fprintf(w, "### Targets (%d calls, PCMU/PCMU)\n\n", *targetCalls)
	fmt.Fprintln(w, "| round | target | Switchback | rtpengine, same round | other CPU, Switchback's run | verdict |")
	fmt.Fprintln(w, "|---|---|--:|--:|--:|---|")
	var loss, p99, ratios []float64
	for _, k := range keys {
		if k.calls != *targetCalls || k.codecs != "PCMU/PCMU" {
			continue
		}
		sb, ok := pairs[k]["switchback"]
		if !ok || sb.Sent == 0 {
			continue
		}
		re := pairs[k]["rtpengine"]
		loss, p99 = append(loss, sb.LossPct), append(p99, sb.LatP99ms)
		fmt.Fprintf(w, "| %d | loss < %g%% | %.3f%% | %.3f%% | %.0f%% | %s |\n", k.round, *lossMax, sb.LossPct, re.LossPct, sb.OtherCPUPct, loadkit.PassFail(sb.LossPct < *lossMax))
		fmt.Fprintf(w, "| %d | added latency p99 < %g ms | %.2f ms | %.2f ms | %.0f%% | %s |\n", k.round, *p99Max, sb.LatP99ms, re.LatP99ms, sb.OtherCPUPct, loadkit.PassFail(sb.LatP99ms < *p99Max))
		if re.PPSPerCPUSecond > 0 {
			x := sb.PPSPerCPUSecond / re.PPSPerCPUSecond
			ratios = append(ratios, x)
			fmt.Fprintf(w, "| %d | packets per CPU-second ≥ %g × rtpengine's | %.0f | %.0f | %.0f%% | %.2f: %s |\n", k.round, *ratioMin, sb.PPSPerCPUSecond, re.PPSPerCPUSecond, sb.OtherCPUPct, x, loadkit.PassFail(x >= *ratioMin))
		}
	}
	if len(loss) == 0 {
		fmt.Fprintln(w, "| — | no run at the target | — | — | — | — |")
		return nil
	}
	// One round decides alone; several, by their median, as the machine
	// is noisy.
	failed := loadkit.Median(loss) >= *lossMax || loadkit.Median(p99) >= *p99Max || len(ratios) > 0 && loadkit.Median(ratios) < *ratioMin
	if len(loss) > 1 {
		fmt.Fprintf(w, "| median | loss < %g%% | %.3f%% | | | %s |\n", *lossMax, loadkit.Median(loss), loadkit.PassFail(loadkit.Median(loss) < *lossMax))
		fmt.Fprintf(w, "| median | added latency p99 < %g ms | %.2f ms | | | %s |\n", *p99Max, loadkit.Median(p99), loadkit.PassFail(loadkit.Median(p99) < *p99Max))
		if len(ratios) > 0 {
			fmt.Fprintf(w, "| median | packets per CPU-second ≥ %g × rtpengine's | %.2f | | | %s |\n", *ratioMin, loadkit.Median(ratios), loadkit.PassFail(loadkit.Median(ratios) >= *ratioMin))
		}
	}
	if failed && *strict {
		return errors.New("a target failed")
	}
	return nil
}

// sameCodec reports whether codecs, "PCMU/PCMA", names one codec twice.
func sameCodec(codecs string) bool {
	a, b, _ := strings.Cut(codecs, "/")
	return a == b
}
