package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"
)

// sample is the server's memory and counters at one moment.
type sample struct {
	At time.Time `json:"at"`
	// LiveHeapMiB is the heap the last collection found live (gctrace),
	// and LastGCAgo how long before this sample that collection ended.
	LiveHeapMiB float64       `json:"liveHeapMiB"`
	LastGCAgo   time.Duration `json:"lastGCAgo"`
	GCs         int           `json:"gcs"`
	// HeapAllocMiB is the heap in use, garbage not yet collected included.
	HeapAllocMiB float64 `json:"heapAllocMiB"`
	RSSMiB       float64 `json:"rssMiB"`
	// CPUSeconds is the user and system time the server has used so far.
	CPUSeconds float64 `json:"cpuSeconds"`
	Goroutines float64 `json:"goroutines"`
	// Metrics are the switchback_sip_* samples of /metrics.
	Metrics map[string]float64 `json:"metrics"`
}

func (s sample) String() string {
	return fmt.Sprintf("live heap %.1f MiB (GC %s before), heap in use %.1f MiB, RSS %.1f MiB, %0.f goroutines, UDP pool %.0f",
		s.LiveHeapMiB, s.LastGCAgo.Round(100*time.Millisecond), s.HeapAllocMiB, s.RSSMiB, s.Goroutines, s.Metrics["switchback_sip_udp_pool_entries"])
}

// sample reads the server's /metrics, its RSS and its last collection.
func (s *server) sample() sample {
	out := sample{At: time.Now(), Metrics: map[string]float64{}}
	if res, err := s.http.Get(s.api + "/metrics"); err == nil {
		sc := bufio.NewScanner(res.Body)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			if strings.HasPrefix(line, "#") {
				continue
			}
			name, value, ok := strings.Cut(line, " ")
			if !ok {
				continue
			}
			v, err := strconv.ParseFloat(value, 64)
			if err != nil {
				continue
			}
			switch {
			case name == "go_memstats_heap_alloc_bytes":
				out.HeapAllocMiB = v / (1 << 20)
			case name == "go_goroutines":
				out.Goroutines = v
			case strings.HasPrefix(name, "switchback_sip_"):
				out.Metrics[name] = v
			}
		}
		res.Body.Close()
	}
	out.RSSMiB = rssMiB(s.cmd.Process.Pid)
	out.CPUSeconds = cpuSeconds(s.cmd.Process.Pid)
	live, at, n := s.gc.last()
	out.LiveHeapMiB, out.GCs = live, n
	if !at.IsZero() {
		out.LastGCAgo = out.At.Sub(at)
	}
	return out
}

// watch samples the server every second until ctx ends, and returns the
// sample with the largest RSS.
func (s *server) watch(ctx context.Context) sample {
	var peak sample
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return peak
		case <-t.C:
			if smp := s.sample(); smp.RSSMiB > peak.RSSMiB {
				peak = smp
			}
		}
	}
}

// rssMiB is a process's resident set, from /proc (Linux).
func rssMiB(pid int) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			f := strings.Fields(v)
			if len(f) > 0 {
				kb, _ := strconv.ParseFloat(f[0], 64)
				return kb / 1024
			}
		}
	}
	return 0
}

// cpuSeconds is a process's user and system time, from /proc (Linux,
// USER_HZ = 100).
func cpuSeconds(pid int) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0
	}
	u, _ := strconv.ParseFloat(f[11], 64)
	st, _ := strconv.ParseFloat(f[12], 64)
	return (u + st) / 100
}

// gcTrace reads the runtime's GODEBUG=gctrace=1 lines from the server's
// stderr: "gc 12 @3.456s 1%: ... 4->5->2 MB, 8 MB goal, ...", where the
// third heap size is what the collection found live.
type gcTrace struct {
	mu   sync.Mutex
	live float64
	at   time.Time
	n    int
}

var gcLine = regexp.MustCompile(`^gc (\d+) @[\d.]+s .*?(\d+)->(\d+)->(\d+) MB`)

func (g *gcTrace) read(r io.Reader) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		m := gcLine.FindStringSubmatch(sc.Text())
		if m == nil {
			continue
		}
		live, _ := strconv.ParseFloat(m[4], 64)
		n, _ := strconv.Atoi(m[1])
		g.mu.Lock()
		g.live, g.at, g.n = live, time.Now(), n
		g.mu.Unlock()
	}
}

// count returns how many collections there were.
func (g *gcTrace) count() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.n
}

func (g *gcTrace) last() (live float64, at time.Time, n int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.live, g.at, g.n
}
