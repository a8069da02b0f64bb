package main

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestPercentileIsNearestRank(t *testing.T) {
	var d []time.Duration
	for i := 1; i <= 100; i++ {
		d = append(d, time.Duration(i)*time.Millisecond)
	}
	for p, want := range map[float64]time.Duration{50: 50 * time.Millisecond, 99: 99 * time.Millisecond, 100: 100 * time.Millisecond} {
		if got := pct(d, p); got != want {
			t.Errorf("p%v = %v, want %v", p, got, want)
		}
	}
	if got := pct(d[:1], 99); got != time.Millisecond {
		t.Errorf("p99 of one = %v", got)
	}
}

// A server slower than the offered rate makes requests queue: the open loop
// must time them from their schedule, not from when a worker got to them.
func TestOpenLoopCountsQueueingAsLatency(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(50 * time.Millisecond)
	}))
	defer srv.Close()
	o := options{url: srv.URL, target: "ceiling", mode: "rate", conns: 1, rate: 50,
		duration: 400 * time.Millisecond, drain: 5 * time.Second, maxRequests: 1000, timeout: 5 * time.Second}
	c := newClient(o)
	tg, err := newTarget(o, c)
	if err != nil {
		t.Fatal(err)
	}
	r := openLoop(c, tg, o)
	if r.Requests != 20 || r.OK != 20 {
		t.Fatalf("%d requests, %d ok; want 20", r.Requests, r.OK)
	}
	// 20 requests of 50 ms through one worker end near 1 s; the last was
	// due at 380 ms.
	if r.MaxMS < 400 || r.P50MS < 150 {
		t.Errorf("p50 %v ms, max %v ms: queueing not counted", r.P50MS, r.MaxMS)
	}
	if r.RPS > 25 {
		t.Errorf("served %v req/s through one 50 ms worker", r.RPS)
	}
}

func TestClosedLoopCountsNon200(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusTooManyRequests)
	}))
	defer srv.Close()
	o := options{url: srv.URL, target: "ceiling", conns: 2, maxRequests: 50, timeout: time.Second}
	c := newClient(o)
	tg, _ := newTarget(o, c)
	r := closedLoop(c, tg, o.conns, time.Second, o.maxRequests, o.timeout)
	if r.OK != 0 || r.Non200 != 50 || r.Statuses["429"] != 50 || r.RPS != 0 {
		t.Fatalf("%+v", r)
	}
}

func TestReportChecksTargetsAgainstSameRoundCeiling(t *testing.T) {
	rows := []Result{
		{Server: "ceiling", Target: "ceiling", Mode: "sat", Round: 1, RPS: 10000},
		{Server: "sqlite", Target: "create", Mode: "sat", Round: 1, RPS: 3000},
		{Server: "sqlite", Target: "get", Mode: "sat", Round: 1, RPS: 4000},
		{Server: "ceiling", Target: "ceiling", Mode: "sat", Round: 2, RPS: 20000},
		{Server: "sqlite", Target: "create", Mode: "sat", Round: 2, RPS: 6000},
		{Server: "sqlite", Target: "get", Mode: "sat", Round: 2, RPS: 8000},
		{Server: "sqlite", Target: "create", Mode: "rate", OfferedRPS: 2000, RPS: 2000, P99MS: 25},
		{Server: "sqlite", Target: "get", Mode: "rate", OfferedRPS: 2000, RPS: 2000, P99MS: 5},
	}
	var b bytes.Buffer
	for _, r := range rows {
		line, _ := json.Marshal(r)
		b.Write(append(line, '\n'))
	}
	path := filepath.Join(t.TempDir(), "r.jsonl")
	os.WriteFile(path, b.Bytes(), 0o644)
	var out bytes.Buffer
	if err := runReport([]string{path}, &out); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"- PASS: create at saturation 3000 req/s = 30.0% of the ceiling",
		"- FAIL: GET at saturation 4000 req/s = 40.0% of the ceiling",
		"- FAIL: create p99 at half load (2000 req/s offered, 2000 served) 25.00 ms",
		"- PASS: every request of the sqlite runs answered 200",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("report lacks %q:\n%s", want, out.String())
		}
	}
	var rate bytes.Buffer
	if err := runRateOf([]string{"-server", "sqlite", "-target", "create", path}, &rate); err != nil || rate.String() != "1500\n" {
		t.Errorf("rate-of = %q, %v; want 1500", rate.String(), err)
	}
}
