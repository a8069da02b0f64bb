package main

import (
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// stream makes a call's arrivals: n packets 20 ms apart from t0, sequence
// numbers and timestamps wrapping on the way, with delay(i) added to the
// arrival of packet i and the packets for which skip(i) is true missing.
func stream(t0 time.Time, n int, delay func(int) time.Duration, skip func(int) bool) []arrival {
	var out []arrival
	seq, ts := uint16(65500), uint32(4294967000)
	for i := range n {
		if !skip(i) {
			at := t0.Add(time.Duration(i)*20*time.Millisecond + delay(i))
			out = append(out, arrival{at: at.UnixNano(), seq: seq, ts: ts})
		}
		seq++
		ts += 160
	}
	return out
}

func TestAnalyseCountsLateAndLost(t *testing.T) {
	t0 := time.Unix(1000, 0)
	none := func(int) bool { return false }
	zero := func(int) time.Duration { return 0 }
	clean := &mcall{arr: stream(t0, 500, zero, none)}
	// Packets 100-104 arrive 60 ms late (a stall), 200-209 never come.
	rough := &mcall{arr: stream(t0,
		500,
		func(i int) time.Duration {
			if i >= 100 && i < 105 {
				return 60 * time.Millisecond
			}
			return 0
		},
		func(i int) bool { return i >= 200 && i < 210 })}
	var r MediaResult
	// The window: packets 50 to 449, 400 of them per call.
	w0 := t0.Add(50*20*time.Millisecond - time.Millisecond)
	w1 := w0.Add(400 * 20 * time.Millisecond)
	analyse(&r, []*mcall{clean, rough}, w0, w1)
	if r.Expected != 800 {
		t.Errorf("expected %d, want 800", r.Expected)
	}
	if r.Received != 790 || r.Lost != 10 || r.SeqLost != 10 {
		t.Errorf("received %d, lost %d, seq lost %d; want 790, 10, 10", r.Received, r.Lost, r.SeqLost)
	}
	if r.Late != 5 {
		t.Errorf("late %d, want 5", r.Late)
	}
	if r.CallsOver1Pct != 1 {
		t.Errorf("calls over 1%%: %d, want 1", r.CallsOver1Pct)
	}
	if r.Resyncs != 0 {
		t.Errorf("resyncs %d, want 0", r.Resyncs)
	}
}

func TestAnalyseCountsASilentCallAsLost(t *testing.T) {
	t0 := time.Unix(1000, 0)
	var r MediaResult
	analyse(&r, []*mcall{{}}, t0, t0.Add(time.Second))
	if r.Expected != 50 || r.Lost != 50 || r.CallsSilent != 1 || r.LateLostPct != 100 {
		t.Errorf("got %+v", r)
	}
}

func TestReadSippFiles(t *testing.T) {
	dir := t.TempDir()
	stat := "CurrentCall;OutgoingCall(C);SuccessfulCall(C);FailedCall(C);Retransmissions(C);CallLength(C)\n" +
		"3;100;97;0;0;00:00:00:000000\n" +
		"5;200;198;1;4;00:00:00:012500\n"
	if err := os.WriteFile(filepath.Join(dir, "stat.csv"), []byte(stat), 0o644); err != nil {
		t.Fatal(err)
	}
	rtt := "Date_ms;response_time_ms;rtd_no\n"
	for i := range 100 {
		v := "0"
		if i == 99 {
			v = "30"
		}
		rtt += strconv.Itoa(1000+i*10) + ";" + v + ";1\n"
	}
	if err := os.WriteFile(filepath.Join(dir, "x_rtt.csv"), []byte(rtt), 0o644); err != nil {
		t.Fatal(err)
	}
	r := StepResult{Calls: 200}
	if err := readStat(filepath.Join(dir, "stat.csv"), &r); err != nil {
		t.Fatal(err)
	}
	if r.OK != 198 || r.Failed != 2 || r.Retrans != 4 || r.CallMs != 12.5 || r.ConcPeak != 5 || r.ConcMean != 4 {
		t.Errorf("stat: %+v", r)
	}
	readRTT(filepath.Join(dir, "x_rtt.csv"), &r)
	if r.RTTs != 100 || r.P50ms != 0 || r.P99ms != 30 || r.Achieved != 100 {
		t.Errorf("rtt: %d rtts, p50 %v, p99 %v, achieved %v", r.RTTs, r.P50ms, r.P99ms, r.Achieved)
	}
}
