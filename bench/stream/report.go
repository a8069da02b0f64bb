package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"sort"

	"github.com/switchback/switchback/bench/internal/loadkit"
)

// runReport prints the markdown tables of a results file, the ratio of a
// streamed call's CPU to a bridged one's, and the verdict of each target;
// with -strict it fails when a target does.
func runReport(args []string, w io.Writer) error {
	fs := flag.NewFlagSet("report", flag.ContinueOnError)
	strict := fs.Bool("strict", false, "exit 1 when a target is not met")
	targetCalls := fs.Int("target-calls", 1000, "target: concurrent streamed calls")
	lateMax := fs.Float64("target-late-pct", 1, "target: late or lost frames below this percentage")
	p99Max := fs.Float64("target-p99-ms", 10, "target: added latency p99 below this")
	ratioMax := fs.Float64("target-ratio", 2, "target: a streamed call's CPU at most this many times a bridged one's")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return errors.New("usage: streambench report RESULTS.jsonl")
	}
	results, err := loadkit.ReadJSONL(fs.Arg(0), func(r *Result) bool { return r.Kind == "stream" })
	if err != nil {
		return err
	}
	if len(results) == 0 {
		return errors.New("no results")
	}
	type key struct{ calls, round int }
	pairs := map[key]map[string]Result{}
	var keys []key
	for _, r := range results {
		k := key{r.Calls, r.Round}
		if pairs[k] == nil {
			pairs[k] = map[string]Result{}
			keys = append(keys, k)
		}
		pairs[k][r.Mode] = r
	}
	sort.Slice(keys, func(i, j int) bool {
		if keys[i].calls != keys[j].calls {
			return keys[i].calls < keys[j].calls
		}
		return keys[i].round < keys[j].round
	})

	fmt.Fprintln(w, "### Side by side")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| calls | round | mode | frames sent | lost | late / gaps | late or lost | added latency p50 / p99 / p99.9 / max ms | agent's hold p99 ms | Switchback CPU, % of a core | a call | agent CPU | loadgen CPU | other CPU | idle | memory a call, PSS / heap+stacks KB | goroutines a call |")
	fmt.Fprintln(w, "|--:|--:|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|")
	for _, k := range keys {
		for _, mode := range []string{"bridge", "stream"} {
			r, ok := pairs[k][mode]
			if !ok {
				continue
			}
			fmt.Fprintf(w, "| %d | %d | %s | %d | %d | %d / %d | %.3f%% | %.2f / %.2f / %.2f / %.2f | %.2f | %.1f%% | %.3f%% | %.1f%% | %.1f%% | %.1f%% | %.0f%% | %.1f / %.1f | %.2f |\n",
				r.Calls, r.Round, mode, r.Sent, r.Lost, r.Late, r.Gaps, r.LateOrLostPct,
				r.AddedP50ms, r.AddedP99ms, r.AddedP999ms, r.AddedMaxms, r.HoldP99ms,
				r.CPUPct, r.CPUPerCallPct, r.AgentCPUPct, r.LoadgenCPUPct, r.OtherCPUPct, r.IdlePct,
				r.MemPerCallKB, r.HeapPerCallKB+r.StackPerCall, r.GoroutinesPer)
		}
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "### Streamed against bridged")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| calls | round | CPU a call, % of a core, streamed / bridged | ratio | added latency p99 ms, streamed / bridged | agent CPU, WebSocket / RTP echo |")
	fmt.Fprintln(w, "|--:|--:|--:|--:|--:|--:|")
	for _, k := range keys {
		st, ok1 := pairs[k]["stream"]
		br, ok2 := pairs[k]["bridge"]
		if !ok1 || !ok2 {
			continue
		}
		fmt.Fprintf(w, "| %d | %d | %.3f%% / %.3f%% | %s | %.2f / %.2f | %.1f%% / %.1f%% |\n",
			k.calls, k.round, st.CPUPerCallPct, br.CPUPerCallPct, loadkit.Ratio(st.CPUPerCallPct, br.CPUPerCallPct),
			st.AddedP99ms, br.AddedP99ms, st.AgentCPUPct, br.AgentCPUPct)
	}

	fmt.Fprintln(w)
	fmt.Fprintf(w, "### Targets (%d streamed calls)\n\n", *targetCalls)
	fmt.Fprintln(w, "| round | target | streamed | bridged, same round | other CPU, streamed run | verdict |")
	fmt.Fprintln(w, "|---|---|--:|--:|--:|---|")
	var late, p99, ratios []float64
	for _, k := range keys {
		if k.calls != *targetCalls {
			continue
		}
		st, ok := pairs[k]["stream"]
		if !ok || st.Sent == 0 {
			continue
		}
		br := pairs[k]["bridge"]
		late, p99 = append(late, st.LateOrLostPct), append(p99, st.AddedP99ms)
		fmt.Fprintf(w, "| %d | late or lost < %g%% | %.3f%% | %.3f%% | %.0f%% | %s |\n", k.round, *lateMax, st.LateOrLostPct, br.LateOrLostPct, st.OtherCPUPct, loadkit.PassFail(st.LateOrLostPct < *lateMax))
		fmt.Fprintf(w, "| %d | added latency p99 < %g ms | %.2f ms | %.2f ms | %.0f%% | %s |\n", k.round, *p99Max, st.AddedP99ms, br.AddedP99ms, st.OtherCPUPct, loadkit.PassFail(st.AddedP99ms < *p99Max))
		if br.CPUPerCallPct > 0 {
			x := st.CPUPerCallPct / br.CPUPerCallPct
			ratios = append(ratios, x)
			fmt.Fprintf(w, "| %d | CPU a call ≤ %g × bridged | %.3f%% | %.3f%% | %.0f%% | %.2f: %s |\n", k.round, *ratioMax, st.CPUPerCallPct, br.CPUPerCallPct, st.OtherCPUPct, x, loadkit.PassFail(x <= *ratioMax))
		}
	}
	if len(late) == 0 {
		fmt.Fprintln(w, "| — | no run at the target | — | — | — | — |")
		return nil
	}
	// One round decides alone; several, by their median, as the machine
	// is noisy.
	failed := loadkit.Median(late) >= *lateMax || loadkit.Median(p99) >= *p99Max || len(ratios) > 0 && loadkit.Median(ratios) > *ratioMax
	if len(late) > 1 {
		fmt.Fprintf(w, "| median | late or lost < %g%% | %.3f%% | | | %s |\n", *lateMax, loadkit.Median(late), loadkit.PassFail(loadkit.Median(late) < *lateMax))
		fmt.Fprintf(w, "| median | added latency p99 < %g ms | %.2f ms | | | %s |\n", *p99Max, loadkit.Median(p99), loadkit.PassFail(loadkit.Median(p99) < *p99Max))
		if len(ratios) > 0 {
			fmt.Fprintf(w, "| median | CPU a call ≤ %g × bridged | %.2f | | | %s |\n", *ratioMax, loadkit.Median(ratios), loadkit.PassFail(loadkit.Median(ratios) <= *ratioMax))
		}
	}
	if failed && *strict {
		return errors.New("a target failed")
	}
	return nil
}
