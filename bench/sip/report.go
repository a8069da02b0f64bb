package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
)

// runReport prints the markdown tables of a results file and the verdict
// of each target; with -strict it fails when a target does.
func runReport(args []string, w io.Writer) error {
	fs := flag.NewFlagSet("report", flag.ContinueOnError)
	strict := fs.Bool("strict", false, "exit 1 when a target is not met")
	targetCPS := fs.Int("target-cps", 2000, "target: complete calls/s with zero failures")
	latencyCPS := fs.Int("latency-cps", 1000, "the rate at which INVITE->200 p99 is judged")
	p99Max := fs.Float64("target-p99-ms", 50, "target: INVITE->200 p99 below this")
	mediaCalls := fs.Int("target-media-calls", 1000, "target: concurrent calls with audio")
	mediaPct := fs.Float64("target-media-pct", 1, "target: late or lost packets below this percentage")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return errors.New("usage: sipbench report RESULTS.jsonl")
	}
	f, err := os.Open(fs.Arg(0))
	if err != nil {
		return err
	}
	defer f.Close()
	var steps []StepResult
	var medias []MediaResult
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Bytes()
		var k struct{ Kind string }
		if json.Unmarshal(line, &k) != nil {
			continue
		}
		switch k.Kind {
		case "step":
			var s StepResult
			if json.Unmarshal(line, &s) == nil {
				steps = append(steps, s)
			}
		case "media":
			var m MediaResult
			if json.Unmarshal(line, &m) == nil {
				medias = append(medias, m)
			}
		}
	}
	sort.SliceStable(steps, func(i, j int) bool {
		a, b := steps[i], steps[j]
		if a.Round != b.Round {
			return a.Round < b.Round
		}
		if a.Rate != b.Rate {
			return a.Rate < b.Rate
		}
		return a.Server < b.Server
	})
	rounds := map[int]bool{}
	for _, s := range steps {
		rounds[s.Round] = true
	}

	fmt.Fprintln(w, "### Complete calls at fixed rates (SIPp)")
	fmt.Fprintln(w)
	roundCol := len(rounds) > 1
	hdr := "| cps offered | server | complete | failed | retrans | achieved cps | INVITE→200 p50 / p99 / max ms | concurrent mean / peak | server CPU % of a core | SIPp CPU | other CPU | server CPU µs a call | server memory MB | UDP drops server / SIPp | sustained |"
	sep := "|--:|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|---|"
	if roundCol {
		hdr = "| round " + hdr
		sep = "|--:" + sep
	}
	fmt.Fprintln(w, hdr)
	fmt.Fprintln(w, sep)
	for _, s := range steps {
		row := fmt.Sprintf("| %d | %s | %d | %d | %d | %.0f | %s / %s / %s | %.1f / %d | %.0f%% | %.0f%% | %.0f%% | %.0f | %.0f | %d / %d | %s |",
			s.Rate, s.Server, s.OK, s.Failed, s.Retrans, s.Achieved, msq(s.P50ms), msq(s.P99ms), msq(s.Maxms),
			s.ConcMean, s.ConcPeak, s.Usage.ServerPct, s.Usage.ClientPct, s.Usage.OtherPct, s.CPUPerCallUs, s.Usage.MemMaxMB, s.ServerDrops, s.SippDrops, yes(s.Sustained))
		if roundCol {
			row = fmt.Sprintf("| %d ", s.Round) + row
		}
		fmt.Fprintln(w, row)
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "INVITE→200 is SIPp's response time in whole milliseconds: \"<1\" is under one. CPU is in percent of one core (the machine has two); memory is the server's PSS, its peak during the run. UDP drops are datagrams the kernel dropped at the server's SIP socket and at SIPp's, their receive buffer full.")
	fmt.Fprintln(w)
	for _, s := range steps {
		if s.Usage.OtherPct >= 10 {
			top := s.OtherTop
			if top == "" {
				top = "no process alive at both ends of the run: short-lived ones, or the kernel"
			}
			fmt.Fprintf(w, "- other CPU during %s at %d cps: %.0f%% of a core, steal %.0f%%; busiest: %s\n", s.Server, s.Rate, s.Usage.OtherPct, s.Usage.StealPct, top)
		}
	}
	fmt.Fprintln(w)

	// Per round: the highest sustained rate of each server, with every
	// lower step sustained too; and the highest with p99 under the target
	// as well.
	type key struct {
		round  int
		server string
	}
	best, fast := map[key]int{}, map[key]int{}
	broken, slow := map[key]bool{}, map[key]bool{}
	cpu := map[string][]float64{}
	roundSet := map[int]bool{}
	for _, s := range steps {
		k := key{s.Round, s.Server}
		roundSet[s.Round] = true
		if !s.Sustained {
			broken[k] = true
		}
		if !broken[k] {
			best[k] = s.Rate
			if s.CPUPerCallUs > 0 {
				cpu[s.Server] = append(cpu[s.Server], s.CPUPerCallUs)
			}
		}
		if !s.Sustained || s.P99ms >= *p99Max {
			slow[k] = true
		}
		if !slow[k] {
			fast[k] = s.Rate
		}
	}
	var rs []int
	for r := range roundSet {
		rs = append(rs, r)
	}
	sort.Ints(rs)
	for _, r := range rs {
		sb, km := best[key{r, "switchback"}], best[key{r, "kamailio"}]
		ratio := "—"
		if km > 0 {
			ratio = fmt.Sprintf("%.0f%%", 100*float64(sb)/float64(km))
		}
		fmt.Fprintf(w, "- round %d: highest rate with zero failed calls (every lower step too): Switchback %s cps, Kamailio %s cps (Switchback / Kamailio: %s; Kamailio's steps stop at %d)\n",
			r, orNone(sb), orNone(km), ratio, maxRate(steps))
		fmt.Fprintf(w, "- round %d: highest rate with zero failed calls and INVITE→200 p99 under %.0f ms: Switchback %s cps, Kamailio %s cps\n",
			r, *p99Max, orNone(fast[key{r, "switchback"}]), orNone(fast[key{r, "kamailio"}]))
	}
	if k, s := median(cpu["kamailio"]), median(cpu["switchback"]); k > 0 && s > 0 {
		fmt.Fprintf(w, "- server CPU per complete call, median over the sustained steps: Switchback %.0f µs, Kamailio %.0f µs (%.1f×)\n", s, k, s/k)
	}
	fmt.Fprintln(w)

	if len(medias) > 0 {
		fmt.Fprintln(w, "### Concurrent calls receiving the agent's audio")
		fmt.Fprintln(w)
		fmt.Fprintln(w, "| calls | answered | failed | both directions | window s | packets expected | received | lost | late >40 ms | late or lost | calls over 1% | delay p50 / p99 / max ms | max gap ms | server CPU % of a core | per call | server memory MB before / held | KB a call | goroutine stacks KB a call | goroutines a call | fds a call |")
		fmt.Fprintln(w, "|--:|--:|--:|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|")
		for _, m := range medias {
			fmt.Fprintf(w, "| %d | %d | %d | %s | %.1f | %d | %d | %d (%.3f%%) | %d (%.3f%%) | %.3f%% | %d | %.1f / %.1f / %.1f | %.0f | %.0f%% | %.3f%% | %.0f / %.0f | %.0f | %.1f | %.1f | %.1f |\n",
				m.Calls, m.Answered, m.Failed, yes(m.ClientSends), m.WindowSeconds, m.Expected, m.Received, m.Lost, m.LostPct, m.Late, m.LatePct,
				m.LateLostPct, m.CallsOver1Pct, m.JitterP50ms, m.JitterP99ms, m.JitterMaxms, m.MaxGapms,
				m.Usage.ServerPct, m.CPUPerCallPct, m.MemBaseMB, m.Usage.MemMaxMB, m.MemPerCallKB, m.StackKBPerCall, m.GoroutinesPerCall, m.FDsPerCall)
		}
		fmt.Fprintln(w)
		fmt.Fprintln(w, "Delay is each packet's transit (arrival less its RTP timestamp) above the call's smallest; a packet more than 40 ms above is late. Lost is the larger of the sequence gaps and the packets missing against the wall clock.")
		fmt.Fprintln(w)
	}

	fmt.Fprintln(w, "### Targets")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| Target | Result | Verdict |")
	fmt.Fprintln(w, "|---|---|---|")
	failed := false
	verdict := func(ok bool) string {
		if ok {
			return "PASS"
		}
		failed = true
		return "FAIL"
	}
	for _, r := range rs {
		sb := best[key{r, "switchback"}]
		fmt.Fprintf(w, "| ≥ %d complete calls/s, zero failures (round %d) | %s cps sustained | %s |\n", *targetCPS, r, orNone(sb), verdict(sb >= *targetCPS))
	}
	for _, s := range steps {
		if s.Server == "switchback" && s.Rate == *latencyCPS {
			ok := s.RTTs > 0 && s.P99ms < *p99Max && s.Failed == 0
			fmt.Fprintf(w, "| INVITE→200 p99 < %.0f ms at %d calls/s (round %d) | p50 %s ms, p99 %s ms, %d failed | %s |\n",
				*p99Max, *latencyCPS, s.Round, msq(s.P50ms), msq(s.P99ms), s.Failed, verdict(ok))
		}
	}
	for _, m := range medias {
		if m.ClientSends {
			continue
		}
		ok := m.Calls >= *mediaCalls && m.Answered == m.Calls && m.LateLostPct < *mediaPct
		fmt.Fprintf(w, "| %d concurrent calls, 20 ms G.711 from the agent, < %.0f%% late or lost (round %d) | %d answered, %.3f%% late or lost | %s |\n",
			*mediaCalls, *mediaPct, m.Round, m.Answered, m.LateLostPct, verdict(ok))
	}
	if *strict && failed {
		return errors.New("a target was not met")
	}
	return nil
}

func msq(v float64) string {
	if v < 1 {
		return "<1"
	}
	return fmt.Sprintf("%.0f", v)
}

func yes(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

func orNone(n int) string {
	if n == 0 {
		return "none"
	}
	return fmt.Sprint(n)
}

func maxRate(steps []StepResult) int {
	m := 0
	for _, s := range steps {
		m = max(m, s.Rate)
	}
	return m
}

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	return s[len(s)/2]
}
