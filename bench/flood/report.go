package main

import (
	"fmt"
	"slices"
	"strings"
	"time"
)

// The targets.
const (
	maxHeapGrowthMiB = 20 // live heap at the end of the flood, over the baseline
	// backToBaselineMiB is how near the baseline the live heap must be
	// once the flood has been over for -after.
	backToBaselineMiB = 2
)

// report is a run's figures, as results.json holds them.
type report struct {
	Label      string        `json:"label"`
	Sources    int           `json:"sources"`
	Rate       int           `json:"rate"`
	Duration   time.Duration `json:"duration"`
	After      time.Duration `json:"after"`
	Baseline   sample        `json:"baseline"`
	End        sample        `json:"end"`
	Later      sample        `json:"later"`
	Peak       sample        `json:"peak"`
	Flood      floodTotals   `json:"flood"`
	OutPerIn   float64       `json:"bytesOutPerByteIn"`
	During     callStats     `json:"callsDuringFlood"`
	AfterFlood callStats     `json:"callsAfterFlood"`
	Missed     []string      `json:"missed,omitempty"`
	ServerLogs string        `json:"serverLog"`
}

// callStats sums up a set of calls.
type callStats struct {
	Calls     int           `json:"calls"`
	Answered  int           `json:"answered"`
	Failures  []string      `json:"failures,omitempty"`
	AnswerP50 time.Duration `json:"inviteTo200P50"`
	AnswerP99 time.Duration `json:"inviteTo200P99"`
	AnswerMax time.Duration `json:"inviteTo200Max"`
}

func statsOf(rs []callResult) callStats {
	st := callStats{Calls: len(rs)}
	var lat []time.Duration
	for _, c := range rs {
		if c.ok {
			st.Answered++
			lat = append(lat, c.answer)
		} else {
			st.Failures = append(st.Failures, c.id+": "+c.err)
		}
	}
	slices.Sort(lat)
	if len(lat) > 0 {
		st.AnswerP50 = lat[len(lat)/2]
		st.AnswerP99 = lat[min(len(lat)-1, len(lat)*99/100)]
		st.AnswerMax = lat[len(lat)-1]
	}
	return st
}

func (st callStats) String() string {
	s := fmt.Sprintf("%d of %d answered; INVITE->200 p50 %s, p99 %s, max %s", st.Answered, st.Calls,
		st.AnswerP50.Round(100*time.Microsecond), st.AnswerP99.Round(100*time.Microsecond), st.AnswerMax.Round(100*time.Microsecond))
	if len(st.Failures) > 0 {
		s += "; failed (first 5): " + strings.Join(st.Failures[:min(5, len(st.Failures))], "; ")
	}
	return s
}

func newReport(s settings, base, end, later, peak sample, ft floodTotals, during, after []callResult, srv *server) *report {
	r := &report{Label: s.label, Sources: s.sources, Rate: s.rate, Duration: s.duration, After: s.after,
		Baseline: base, End: end, Later: later, Peak: peak, Flood: ft, During: statsOf(during), AfterFlood: statsOf(after),
		ServerLogs: srv.dir}
	if ft.SentBytes > 0 {
		r.OutPerIn = float64(ft.ReceivedBytes) / float64(ft.SentBytes)
	}
	if r.OutPerIn > 1 {
		r.Missed = append(r.Missed, fmt.Sprintf("bytes out per byte in %.2f > 1", r.OutPerIn))
	}
	if g := end.LiveHeapMiB - base.LiveHeapMiB; g >= maxHeapGrowthMiB {
		r.Missed = append(r.Missed, fmt.Sprintf("live heap grew %.0f MiB by the end of the flood (target < %d)", g, maxHeapGrowthMiB))
	}
	if g := later.LiveHeapMiB - base.LiveHeapMiB; g > backToBaselineMiB {
		r.Missed = append(r.Missed, fmt.Sprintf("live heap %.0f MiB over the baseline %s after the flood (target <= %d)", g, s.after, backToBaselineMiB))
	}
	if r.During.Calls == 0 || r.During.Answered < r.During.Calls {
		r.Missed = append(r.Missed, fmt.Sprintf("%d of %d calls answered during the flood", r.During.Answered, r.During.Calls))
	}
	if later.At.Add(-later.LastGCAgo).Before(end.At) {
		r.Missed = append(r.Missed, "no collection after the flood: the live heap after it is not measured")
	}
	return r
}

func mib(v float64) string { return fmt.Sprintf("%.1f MiB", v) }

// markdown is the report as docs/benchmarks.md shows it.
func (r *report) markdown() string {
	var b strings.Builder
	fmt.Fprintf(&b, "\n### %s\n\n", r.Label)
	fmt.Fprintf(&b, "%d unauthenticated INVITEs/s from %d addresses for %s; authenticated calls during it and for %s after.\n\n",
		r.Rate, r.Sources, r.Duration, r.After)
	fmt.Fprintf(&b, "| | baseline | end of flood | %s after | peak RSS |\n|---|---|---|---|---|\n", r.After)
	fmt.Fprintf(&b, "| live heap (last GC) | %s | %s | %s | %s |\n", mib(r.Baseline.LiveHeapMiB), mib(r.End.LiveHeapMiB), mib(r.Later.LiveHeapMiB), mib(r.Peak.LiveHeapMiB))
	fmt.Fprintf(&b, "| last GC before the sample | %s | %s | %s | %s |\n", r.Baseline.LastGCAgo.Round(time.Second), r.End.LastGCAgo.Round(time.Second), r.Later.LastGCAgo.Round(time.Second), r.Peak.LastGCAgo.Round(time.Second))
	fmt.Fprintf(&b, "| heap in use | %s | %s | %s | %s |\n", mib(r.Baseline.HeapAllocMiB), mib(r.End.HeapAllocMiB), mib(r.Later.HeapAllocMiB), mib(r.Peak.HeapAllocMiB))
	fmt.Fprintf(&b, "| RSS | %s | %s | %s | %s |\n", mib(r.Baseline.RSSMiB), mib(r.End.RSSMiB), mib(r.Later.RSSMiB), mib(r.Peak.RSSMiB))
	fmt.Fprintf(&b, "| server CPU, %% of a core since the previous column | | %.0f%% | %.0f%% | |\n",
		100*(r.End.CPUSeconds-r.Baseline.CPUSeconds)/r.End.At.Sub(r.Baseline.At).Seconds(),
		100*(r.Later.CPUSeconds-r.End.CPUSeconds)/r.Later.At.Sub(r.End.At).Seconds())
	fmt.Fprintf(&b, "| goroutines | %.0f | %.0f | %.0f | %.0f |\n", r.Baseline.Goroutines, r.End.Goroutines, r.Later.Goroutines, r.Peak.Goroutines)
	pool := "switchback_sip_udp_pool_entries"
	fmt.Fprintf(&b, "| UDP pool entries | %s | %s | %s | %s |\n", metricOr(r.Baseline, pool), metricOr(r.End, pool), metricOr(r.Later, pool), metricOr(r.Peak, pool))
	fmt.Fprintf(&b, "\nFlood: %d INVITEs sent (%d bytes); %d datagrams back (%d bytes: %d 100 Trying, %d final answers and their retransmissions): %.2f bytes out per byte in, %.2f answers per INVITE.\n",
		r.Flood.Sent, r.Flood.SentBytes, r.Flood.Received, r.Flood.ReceivedBytes, r.Flood.Trying, r.Flood.Final, r.OutPerIn, float64(r.Flood.Received)/float64(max(r.Flood.Sent, 1)))
	fmt.Fprintf(&b, "\nCalls (INVITE->200: from the first INVITE to the 200 OK, the challenge included): during the flood %s; after it %s.\n",
		r.During, r.AfterFlood)
	if sample := r.Later.Metrics; len(sample) > 0 {
		var ms []string
		for k, v := range sample {
			if strings.HasPrefix(k, "switchback_sip_requests_refused_total") && v > 0 || k == "switchback_sip_server_transactions_total" {
				ms = append(ms, fmt.Sprintf("`%s` %.0f", k, v))
			}
		}
		slices.Sort(ms)
		if len(ms) > 0 {
			fmt.Fprintf(&b, "\nCounters at the end: %s.\n", strings.Join(ms, ", "))
		}
	}
	if len(r.Missed) == 0 {
		b.WriteString("\nTargets: all met.\n")
	} else {
		fmt.Fprintf(&b, "\nTargets missed: %s.\n", strings.Join(r.Missed, "; "))
	}
	return b.String()
}

func metricOr(s sample, name string) string {
	if v, ok := s.Metrics[name]; ok {
		return fmt.Sprintf("%.0f", v)
	}
	return "-"
}
