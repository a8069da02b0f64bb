package main

import (
	"bytes"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
)

// Where the machine's CPU went during a run, read from /proc (Linux): the
// load generator's, the server's (the -server-pids and their descendants,
// e.g. PostgreSQL's backends) and everything else's, which on a shared
// machine is the noise. Elsewhere the figures are left out.

// cpuSample is CPU time in clock ticks (USER_HZ, 100 a second on Linux).
type cpuSample struct {
	ok      bool
	busy    int64         // every CPU's, but idle and iowait
	self    int64         // this process's user + system
	servers map[int]int64 // per process of the server
	pids    []int         // -server-pids
}

const ticksPerSecond = 100

func sampleCPU(pids []int) cpuSample {
	s := cpuSample{servers: map[int]int64{}, pids: pids}
	stat, err := os.ReadFile("/proc/stat")
	if err != nil {
		return s
	}
	line, _, _ := bytes.Cut(stat, []byte("\n"))
	f := strings.Fields(string(line))
	if len(f) < 5 || f[0] != "cpu" {
		return s
	}
	for i, v := range f[1:] {
		n, _ := strconv.ParseInt(v, 10, 64)
		if i == 3 || i == 4 || i >= 8 { // idle, iowait; guest time is already in user
			continue
		}
		s.busy += n
	}
	self, _, ok := procTicks("/proc/self/stat")
	if !ok {
		return s
	}
	s.self = self
	if len(pids) > 0 {
		for pid, t := range treeTicks(pids) {
			s.servers[pid] = t
		}
	}
	s.ok = true
	return s
}

// procTicks returns a process's utime+stime and its parent.
func procTicks(path string) (ticks int64, ppid int, ok bool) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, 0, false
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, 0, false
	}
	f := strings.Fields(string(b[i+1:]))
	// f[0] is field 3 (state): ppid is field 4, utime 14, stime 15.
	if len(f) < 13 {
		return 0, 0, false
	}
	ppid, _ = strconv.Atoi(f[1])
	u, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return u + st, ppid, true
}

// treeTicks returns the ticks of pids and of all their descendants.
func treeTicks(pids []int) map[int]int64 {
	paths, _ := filepath.Glob("/proc/[0-9]*/stat")
	ticks := map[int]int64{}
	parent := map[int]int{}
	for _, p := range paths {
		pid, err := strconv.Atoi(filepath.Base(filepath.Dir(p)))
		if err != nil {
			continue
		}
		t, ppid, ok := procTicks(p)
		if !ok {
			continue
		}
		ticks[pid], parent[pid] = t, ppid
	}
	roots := map[int]bool{}
	for _, p := range pids {
		roots[p] = true
	}
	out := map[int]int64{}
	for pid, t := range ticks {
		for p, hops := pid, 0; p > 1 && hops < 64; p, hops = parent[p], hops+1 {
			if roots[p] {
				out[pid] = t
				break
			}
		}
	}
	return out
}

// cpuShares returns the load generator's, the server's and the rest's
// share of the machine between a and b, in percent of all its cores.
func cpuShares(a, b cpuSample, seconds float64) (self, server, other float64, ok bool) {
	if !a.ok || !b.ok || seconds <= 0 {
		return 0, 0, 0, false
	}
	capacity := seconds * ticksPerSecond * float64(runtime.NumCPU())
	var srv int64
	for pid, t := range b.servers {
		srv += t - a.servers[pid] // a process born during the run had 0
	}
	busy, mine := b.busy-a.busy, b.self-a.self
	rest := max(busy-mine-srv, 0)
	pct := func(t int64) float64 { return round(100*float64(t)/capacity, 1) }
	return pct(mine), pct(srv), pct(rest), true
}
