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
	"strconv"
	"strings"
)

// SpreadResult is how many of a step's calls one node took (its
// hand-backs during the step), as bench/fleet.sh writes it.
type SpreadResult struct {
	Kind   string `json:"kind"` // "spread"
	Server string `json:"server"`
	Round  int    `json:"round"`
	Rate   int    `json:"rate"`
	Node   string `json:"node"`
	Calls  int    `json:"calls"`
}

// The servers of bench/fleet.sh: behind the dispatcher, and the call-slot
// comparison's (slots-LIMIT, "slots-none" claiming no slot).
const (
	serverCeiling  = "ceiling"
	serverOneNode  = "one-node"
	serverTwoNodes = "two-nodes"
	slotsPrefix    = "slots-"
	slotsNone      = slotsPrefix + "none"
)

// fleetRun is the results of one run of bench/fleet.sh.
type fleetRun struct {
	steps  []StepResult
	spread map[stepKey][]SpreadResult
}

type stepKey struct {
	server string
	round  int
	rate   int
}

// runFleetReport prints the markdown tables of bench/fleet.sh's results
// and the verdict of each target; with -strict it fails when a target
// does.
func runFleetReport(args []string, w io.Writer) error {
	fs := flag.NewFlagSet("fleet-report", flag.ContinueOnError)
	strict := fs.Bool("strict", false, "exit 1 when a target is not met")
	twoOverOne := fs.Float64("target-two-over-one", 0.9, "target: two nodes' highest rate over one node's, median over rounds, at least this")
	slotRate := fs.Float64("target-slot-rate", 0.9, "target: highest rate with a call limit over without, median over rounds, at least this")
	slotCPU := fs.Float64("target-slot-cpu", 1.1, "target: CPU per call with a call limit over without, median over rates and rounds, at most this")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return errors.New("usage: sipbench fleet-report RESULTS.jsonl")
	}
	run, err := readFleetRun(fs.Arg(0))
	if err != nil {
		return err
	}
	failed := false
	verdict := func(ok bool) string {
		if ok {
			return "PASS"
		}
		failed = true
		return "FAIL"
	}
	var targets []string

	dispatched := run.only(func(s string) bool { return s == serverCeiling || s == serverOneNode || s == serverTwoNodes })
	if len(dispatched) > 0 {
		fmt.Fprintln(w, "### Through Kamailio's dispatcher: complete calls at fixed rates")
		fmt.Fprintln(w)
		run.stepTable(w, dispatched)
		best := highest(dispatched)
		rounds := roundsOf(dispatched)
		fmt.Fprintln(w, "Highest rate with zero failed calls and the 200s at the offered rate, every lower step too (\"≥\": the server's steps stopped before it failed one):")
		fmt.Fprintln(w)
		fmt.Fprintln(w, "| round | ceiling cps | one node cps | two nodes cps | two / one | one / ceiling | two / ceiling |")
		fmt.Fprintln(w, "|--:|--:|--:|--:|--:|--:|--:|")
		var r21, r1c, r2c []float64
		bounds := false
		for _, r := range rounds {
			c, o, t := best[stepKey{serverCeiling, r, 0}], best[stepKey{serverOneNode, r, 0}], best[stepKey{serverTwoNodes, r, 0}]
			fmt.Fprintf(w, "| %d | %s | %s | %s | %s | %s | %s |\n", r, c, o, t, ratio(t, o, &r21), ratio(o, c, &r1c), ratio(t, c, &r2c))
			bounds = bounds || !c.capped || !o.capped || !t.capped
		}
		fmt.Fprintf(w, "| median | | | | %s | %s | %s |\n", fmtRatio(medianOf(r21)), fmtRatio(medianOf(r1c)), fmtRatio(medianOf(r2c)))
		fmt.Fprintln(w)
		if bounds {
			fmt.Fprintln(w, boundNote)
			fmt.Fprintln(w)
		}
		fmt.Fprintln(w, "CPU per complete call, µs (median over the rounds whose step had zero failures), by part: the dispatcher (Kamailio, all its processes), the nodes (Switchback), PostgreSQL (all its processes, the idle servers' heartbeats included), the ceiling's SIPp:")
		fmt.Fprintln(w)
		fmt.Fprintln(w, "| cps | ceiling: Kamailio + SIPp | one node: Kamailio + node + PostgreSQL | two nodes: Kamailio + nodes + PostgreSQL | one node's calls cost, of the ceiling's |")
		fmt.Fprintln(w, "|--:|--:|--:|--:|--:|")
		for _, rate := range ratesOf(dispatched) {
			c := cpuParts(dispatched, serverCeiling, rate)
			o := cpuParts(dispatched, serverOneNode, rate)
			t := cpuParts(dispatched, serverTwoNodes, rate)
			if c.total == 0 && o.total == 0 && t.total == 0 {
				continue
			}
			times := "—"
			if c.total > 0 && o.total > 0 {
				times = fmt.Sprintf("%.1f×", o.total/c.total)
			}
			fmt.Fprintf(w, "| %d | %s | %s | %s | %s |\n", rate, c, o, t, times)
		}
		fmt.Fprintln(w)
		if len(r21) > 0 {
			m := medianOf(r21)
			targets = append(targets, fmt.Sprintf("| two nodes / one node, highest rate with zero failures, ≥ %.2f (median of %d rounds) | %s | %s |",
				*twoOverOne, len(r21), fmtRatio(m), verdict(m >= *twoOverOne)))
		}
	}

	slotted := run.only(func(s string) bool { return strings.HasPrefix(s, slotsPrefix) })
	if len(slotted) > 0 {
		fmt.Fprintln(w, "### One node on PostgreSQL, by the tenant's limit of calls (none: no call slot claimed)")
		fmt.Fprintln(w)
		run.stepTable(w, slotted)
		best := highest(slotted)
		limits := serversOf(slotted)
		fmt.Fprintln(w, "Highest rate with zero failed calls and the 200s at the offered rate, every lower step too, and its ratio to the run without a limit of the same round:")
		fmt.Fprintln(w)
		fmt.Fprint(w, "| round |")
		for _, l := range limits {
			fmt.Fprintf(w, " %s cps |", strings.TrimPrefix(l, slotsPrefix))
		}
		for _, l := range limits {
			if l != slotsNone {
				fmt.Fprintf(w, " %s / none |", strings.TrimPrefix(l, slotsPrefix))
			}
		}
		fmt.Fprintln(w)
		fmt.Fprintln(w, "|--:|"+strings.Repeat("--:|", 2*len(limits)-1))
		rateRatios := map[string][]float64{}
		bounds := false
		for _, r := range roundsOf(slotted) {
			fmt.Fprintf(w, "| %d |", r)
			for _, l := range limits {
				fmt.Fprintf(w, " %s |", best[stepKey{l, r, 0}])
				bounds = bounds || !best[stepKey{l, r, 0}].capped
			}
			for _, l := range limits {
				if l != slotsNone {
					xs := rateRatios[l]
					fmt.Fprintf(w, " %s |", ratio(best[stepKey{l, r, 0}], best[stepKey{slotsNone, r, 0}], &xs))
					rateRatios[l] = xs
				}
			}
			fmt.Fprintln(w)
		}
		fmt.Fprint(w, "| median |"+strings.Repeat(" |", len(limits)))
		for _, l := range limits {
			if l != slotsNone {
				fmt.Fprintf(w, " %s |", fmtRatio(medianOf(rateRatios[l])))
			}
		}
		fmt.Fprintln(w)
		fmt.Fprintln(w)
		if bounds {
			fmt.Fprintln(w, boundNote)
			fmt.Fprintln(w)
		}
		fmt.Fprintln(w, "CPU per complete call, node + PostgreSQL, µs (median over the rounds whose step had zero failures), and its ratio to the run without a limit (median of the per-round ratios):")
		fmt.Fprintln(w)
		fmt.Fprint(w, "| cps |")
		for _, l := range limits {
			fmt.Fprintf(w, " %s |", strings.TrimPrefix(l, slotsPrefix))
		}
		for _, l := range limits {
			if l != slotsNone {
				fmt.Fprintf(w, " %s / none |", strings.TrimPrefix(l, slotsPrefix))
			}
		}
		fmt.Fprintln(w)
		fmt.Fprintln(w, "|--:|"+strings.Repeat("--:|", 2*len(limits)-1))
		cpuRatios := map[string][]float64{}
		for _, rate := range ratesOf(slotted) {
			measured := false
			for _, l := range limits {
				measured = measured || cpuParts(slotted, l, rate).total > 0
			}
			if !measured {
				continue
			}
			fmt.Fprintf(w, "| %d |", rate)
			for _, l := range limits {
				fmt.Fprintf(w, " %s |", cpuParts(slotted, l, rate).totalString())
			}
			for _, l := range limits {
				if l == slotsNone {
					continue
				}
				var per []float64
				for _, r := range roundsOf(slotted) {
					a, b := stepOf(slotted, l, r, rate), stepOf(slotted, slotsNone, r, rate)
					if a != nil && b != nil && a.Sustained && b.Sustained && a.CPUPerCallUs > 0 && b.CPUPerCallUs > 0 {
						per = append(per, a.CPUPerCallUs/b.CPUPerCallUs)
					}
				}
				cpuRatios[l] = append(cpuRatios[l], per...)
				fmt.Fprintf(w, " %s |", fmtRatio(medianOf(per)))
			}
			fmt.Fprintln(w)
		}
		fmt.Fprintln(w)
		for _, l := range limits {
			if l == slotsNone {
				continue
			}
			name := strings.TrimPrefix(l, slotsPrefix)
			if xs := rateRatios[l]; len(xs) > 0 {
				m := medianOf(xs)
				if n, err := strconv.Atoi(name); err == nil && n < largestLimit(limits) {
					// A limit the load reaches refuses calls with 486 by
					// design: its highest rate says where the calls in
					// progress reached it, not what counting them costs.
					targets = append(targets, fmt.Sprintf("| maxCalls %s / none, highest rate with zero failures (informative: past %s calls in progress the limit refuses calls, 486) | %s | — |",
						name, name, fmtRatio(m)))
				} else {
					targets = append(targets, fmt.Sprintf("| maxCalls %s / none, highest rate with zero failures, ≥ %.2f (median of %d rounds) | %s | %s |",
						name, *slotRate, len(xs), fmtRatio(m), verdict(m >= *slotRate)))
				}
			}
			if xs := cpuRatios[l]; len(xs) > 0 {
				m := medianOf(xs)
				targets = append(targets, fmt.Sprintf("| maxCalls %s / none, CPU per call (node + PostgreSQL), ≤ %.2f (median of %d steps) | %s | %s |",
					name, *slotCPU, len(xs), fmtRatio(m), verdict(m <= *slotCPU)))
			}
		}
	}

	if len(targets) > 0 {
		fmt.Fprintln(w, "### Targets")
		fmt.Fprintln(w)
		fmt.Fprintln(w, "| Target | Result | Verdict |")
		fmt.Fprintln(w, "|---|---|---|")
		for _, t := range targets {
			fmt.Fprintln(w, t)
		}
	}
	if *strict && failed {
		return errors.New("a target was not met")
	}
	return nil
}

func readFleetRun(path string) (*fleetRun, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	run := &fleetRun{spread: map[stepKey][]SpreadResult{}}
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
				run.steps = append(run.steps, s)
			}
		case "spread":
			var s SpreadResult
			if json.Unmarshal(line, &s) == nil {
				key := stepKey{s.Server, s.Round, s.Rate}
				run.spread[key] = append(run.spread[key], s)
			}
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	sort.SliceStable(run.steps, func(i, j int) bool {
		a, b := run.steps[i], run.steps[j]
		if a.Round != b.Round {
			return a.Round < b.Round
		}
		if a.Rate != b.Rate {
			return a.Rate < b.Rate
		}
		return a.Server < b.Server
	})
	return run, nil
}

// only returns the steps of the servers keep accepts.
func (run *fleetRun) only(keep func(server string) bool) []StepResult {
	var out []StepResult
	for _, s := range run.steps {
		if keep(s.Server) {
			out = append(out, s)
		}
	}
	return out
}

// stepTable prints one row a step.
func (run *fleetRun) stepTable(w io.Writer, steps []StepResult) {
	fmt.Fprintln(w, "| round | cps offered | server | complete | failed | retrans | 200s a second | INVITE→200 p50 / p99 / max ms | CPU, % of a core: all (by part) | CPU µs a call: all (by part) | SIPp CPU | other CPU / all tasks stalled on IO | calls by node | sustained |")
	fmt.Fprintln(w, "|--:|--:|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|---|")
	for _, s := range steps {
		var pct, per []string
		for _, p := range s.Parts {
			pct = append(pct, fmt.Sprintf("%s %.0f", p.Name, p.CPUPct))
			per = append(per, fmt.Sprintf("%s %.0f", p.Name, p.CPUPerCallUs))
		}
		var spread []string
		for _, sp := range run.spread[stepKey{s.Server, s.Round, s.Rate}] {
			spread = append(spread, fmt.Sprintf("%s %d", sp.Node, sp.Calls))
		}
		fmt.Fprintf(w, "| %d | %d | %s | %d | %d | %d | %.0f | %s / %s / %s | %.0f%% (%s) | %.0f (%s) | %.0f%% | %.0f%% / %.0f%% | %s | %s |\n",
			s.Round, s.Rate, s.Server, s.OK, s.Failed, s.Retrans, s.Achieved, msq(s.P50ms), msq(s.P99ms), msq(s.Maxms),
			s.Usage.ServerPct, strings.Join(pct, ", "), s.CPUPerCallUs, strings.Join(per, ", "),
			s.Usage.ClientPct, s.Usage.OtherPct, s.IOFullStallPct, orDash(strings.Join(spread, ", ")), yes(s.Sustained))
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "CPU is in percent of one core (the machine has two). INVITE→200 is SIPp's response time in whole milliseconds (\"<1\": under one). \"Stalled on IO\" is the share of the step in which every task of the machine waited for the disk (Linux's pressure stall information): PostgreSQL's commits wait for it. Calls by node are the hand-backs each node counted during the step.")
	fmt.Fprintln(w)
	for _, s := range steps {
		if s.Usage.OtherPct >= 10 {
			top := s.OtherTop
			if top == "" {
				top = "no process alive at both ends of the run: short-lived ones, or the kernel"
			}
			fmt.Fprintf(w, "- other CPU during %s at %d cps (round %d): %.0f%% of a core, steal %.0f%%; busiest: %s\n", s.Server, s.Rate, s.Round, s.Usage.OtherPct, s.Usage.StealPct, top)
		}
		if s.FirstError != "" && !s.Sustained {
			fmt.Fprintf(w, "- %s at %d cps (round %d), first error: %s\n", s.Server, s.Rate, s.Round, strings.Join(strings.Fields(s.FirstError), " "))
		}
	}
	fmt.Fprintln(w)
}

// bestRate is a server's highest rate with zero failures in a round, and
// whether it failed a higher one (otherwise it may go higher).
type bestRate struct {
	rate   int
	capped bool
}

func (b bestRate) String() string {
	switch {
	case b.rate == 0:
		return "none"
	case !b.capped:
		return fmt.Sprintf("≥ %d", b.rate)
	}
	return fmt.Sprint(b.rate)
}

// highest returns each server's bestRate by round (key rate 0).
func highest(steps []StepResult) map[stepKey]bestRate {
	out := map[stepKey]bestRate{}
	for _, s := range steps { // by round, then rate
		k := stepKey{s.Server, s.Round, 0}
		b := out[k]
		if b.capped {
			continue
		}
		if s.Sustained {
			b.rate = s.Rate
		} else {
			b.capped = true
		}
		out[k] = b
	}
	return out
}

const boundNote = "¹ One of the two never failed a step: the ratio is a bound, not a measure."

// ratio formats a/b and adds it to xs, when both are known.
func ratio(a, b bestRate, xs *[]float64) string {
	if a.rate == 0 || b.rate == 0 {
		return "—"
	}
	x := float64(a.rate) / float64(b.rate)
	*xs = append(*xs, x)
	s := fmtRatio(x)
	if !a.capped || !b.capped {
		s += " ¹"
	}
	return s
}

func fmtRatio(x float64) string {
	if x == 0 {
		return "—"
	}
	return fmt.Sprintf("%.2f", x)
}

// partsCPU is a server's CPU per call at one rate, by part.
type partsCPU struct {
	total                                float64
	kamailio, switchback, postgres, sipp float64
}

func (p partsCPU) String() string {
	if p.total == 0 {
		return "—"
	}
	var xs []string
	for _, v := range []float64{p.kamailio, p.switchback, p.postgres, p.sipp} {
		if v > 0 {
			xs = append(xs, fmt.Sprintf("%.0f", v))
		}
	}
	return fmt.Sprintf("%.0f (%s)", p.total, strings.Join(xs, " + "))
}

func (p partsCPU) totalString() string {
	if p.total == 0 {
		return "—"
	}
	return fmt.Sprintf("%.0f", p.total)
}

// cpuParts is the median over the rounds of a server's sustained steps
// at rate of its CPU per call, all and by part.
func cpuParts(steps []StepResult, server string, rate int) partsCPU {
	var all, k, sb, pg, sp []float64
	for _, s := range steps {
		if s.Server != server || s.Rate != rate || !s.Sustained || s.CPUPerCallUs == 0 {
			continue
		}
		all = append(all, s.CPUPerCallUs)
		var pk, psb, ppg, psp float64
		for _, p := range s.Parts {
			switch {
			case p.Name == "kamailio":
				pk += p.CPUPerCallUs
			case p.Name == "postgres":
				ppg += p.CPUPerCallUs
			case strings.HasPrefix(p.Name, "sipp"):
				psp += p.CPUPerCallUs
			default: // the nodes
				psb += p.CPUPerCallUs
			}
		}
		k, sb, pg, sp = append(k, pk), append(sb, psb), append(pg, ppg), append(sp, psp)
	}
	return partsCPU{total: medianOf(all), kamailio: medianOf(k), switchback: medianOf(sb), postgres: medianOf(pg), sipp: medianOf(sp)}
}

func stepOf(steps []StepResult, server string, round, rate int) *StepResult {
	for i := range steps {
		if s := &steps[i]; s.Server == server && s.Round == round && s.Rate == rate {
			return s
		}
	}
	return nil
}

func roundsOf(steps []StepResult) []int {
	seen := map[int]bool{}
	var out []int
	for _, s := range steps {
		if !seen[s.Round] {
			seen[s.Round] = true
			out = append(out, s.Round)
		}
	}
	sort.Ints(out)
	return out
}

func ratesOf(steps []StepResult) []int {
	seen := map[int]bool{}
	var out []int
	for _, s := range steps {
		if !seen[s.Rate] {
			seen[s.Rate] = true
			out = append(out, s.Rate)
		}
	}
	sort.Ints(out)
	return out
}

// serversOf lists the servers of steps, the slot comparison's "none"
// first, then by name.
func serversOf(steps []StepResult) []string {
	seen := map[string]bool{}
	var out []string
	for _, s := range steps {
		if !seen[s.Server] {
			seen[s.Server] = true
			out = append(out, s.Server)
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if (out[i] == slotsNone) != (out[j] == slotsNone) {
			return out[i] == slotsNone
		}
		return out[i] < out[j]
	})
	return out
}

// medianOf is the median of xs (the mean of the middle two for an even
// count), 0 for none.
func medianOf(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	if n := len(s); n%2 == 0 {
		return (s[n/2-1] + s[n/2]) / 2
	}
	return s[len(s)/2]
}

func orDash(s string) string {
	if s == "" {
		return "—"
	}
	return s
}

// largestLimit is the largest numeric tenant limit of limits, the one the
// load cannot reach; 0 when there is none.
func largestLimit(limits []string) int {
	largest := 0
	for _, l := range limits {
		if n, err := strconv.Atoi(strings.TrimPrefix(l, slotsPrefix)); err == nil && n > largest {
			largest = n
		}
	}
	return largest
}
