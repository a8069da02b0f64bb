package main

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Where the CPU went and how much memory the server held, read from /proc
// (Linux). The server is a set of root pids and their descendants (Kamailio
// forks its workers). Its memory is the sum of their PSS, so memory shared
// between Kamailio's processes counts once; for Switchback, one process,
// PSS is its RSS less shared library pages.

const ticksPerSecond = 100 // USER_HZ

// procTicks returns a process's utime+stime and its parent.
func procTicks(pid int) (ticks int64, ppid int, ok bool) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, 0, false
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, 0, false
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0, 0, false
	}
	ppid, _ = strconv.Atoi(f[1])
	u, _ := strconv.ParseInt(f[11], 10, 64)
	s, _ := strconv.ParseInt(f[12], 10, 64)
	return u + s, ppid, true
}

// tree returns roots and all their descendants.
func tree(roots []int) []int {
	if len(roots) == 0 {
		return nil
	}
	paths, _ := filepath.Glob("/proc/[0-9]*/stat")
	parent := map[int]int{}
	for _, p := range paths {
		pid, err := strconv.Atoi(filepath.Base(filepath.Dir(p)))
		if err != nil {
			continue
		}
		if _, ppid, ok := procTicks(pid); ok {
			parent[pid] = ppid
		}
	}
	isRoot := map[int]bool{}
	for _, r := range roots {
		isRoot[r] = true
	}
	var out []int
	for pid := range parent {
		for p, hops := pid, 0; p > 1 && hops < 64; p, hops = parent[p], hops+1 {
			if isRoot[p] {
				out = append(out, pid)
				break
			}
		}
	}
	return out
}

// pssKB returns a process's proportional set size in KiB.
func pssKB(pid int) int64 {
	f, err := os.Open("/proc/" + strconv.Itoa(pid) + "/smaps_rollup")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "Pss:"); ok {
			n, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return n
		}
	}
	return 0
}

// machineBusy returns the ticks every CPU spent neither idle nor in
// iowait (steal included: the hypervisor gave the time to another guest),
// and the steal ticks alone.
func machineBusy() (busy, steal int64) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0
	}
	line, _, _ := bytes.Cut(b, []byte("\n"))
	f := strings.Fields(string(line))
	for i, v := range f[1:] {
		if i == 3 || i == 4 || i >= 8 {
			continue
		}
		n, _ := strconv.ParseInt(v, 10, 64)
		busy += n
		if i == 7 {
			steal = n
		}
	}
	return busy, steal
}

// udpErrors returns the machine's UDP receive-buffer and in errors
// (/proc/net/snmp): datagrams the kernel dropped because a socket's buffer
// was full.
func udpErrors() (rcvbuf, in int64) {
	b, err := os.ReadFile("/proc/net/snmp")
	if err != nil {
		return 0, 0
	}
	var names []string
	for _, line := range strings.Split(string(b), "\n") {
		rest, ok := strings.CutPrefix(line, "Udp: ")
		if !ok {
			continue
		}
		f := strings.Fields(rest)
		if names == nil {
			names = f
			continue
		}
		for i, n := range names {
			if i >= len(f) {
				break
			}
			v, _ := strconv.ParseInt(f[i], 10, 64)
			switch n {
			case "RcvbufErrors":
				rcvbuf = v
			case "InErrors":
				in = v
			}
		}
	}
	return rcvbuf, in
}

// sample is one reading of the server's and a client's ticks, the server's
// memory and the machine's busy ticks.
type sample struct {
	at     time.Time
	server int64 // ticks of the server's processes
	client int64 // ticks of the client's processes (SIPp, or this process)
	busy   int64
	steal  int64
	memKB  int64 // server PSS
}

// sampler reads a sample every interval until stopped.
type sampler struct {
	server, client []int // root pids; client nil means this process, empty none
	mu             sync.Mutex
	samples        []sample
	stop           chan struct{}
	done           chan struct{}
	// dead ticks of server processes that exited during the run are lost;
	// Kamailio's and Switchback's live for the whole run.
}

func (s *sampler) read() sample {
	out := sample{at: time.Now()}
	out.busy, out.steal = machineBusy()
	for _, pid := range tree(s.server) {
		t, _, _ := procTicks(pid)
		out.server += t
		out.memKB += pssKB(pid)
	}
	if s.client == nil {
		t, _, _ := procTicks(os.Getpid())
		out.client = t
	} else {
		for _, pid := range tree(s.client) {
			t, _, _ := procTicks(pid)
			out.client += t
		}
	}
	return out
}

func startSampler(server, client []int, every time.Duration) *sampler {
	s := &sampler{server: server, client: client, stop: make(chan struct{}), done: make(chan struct{})}
	s.samples = append(s.samples, s.read())
	go func() {
		defer close(s.done)
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-s.stop:
				return
			case <-t.C:
				r := s.read()
				s.mu.Lock()
				s.samples = append(s.samples, r)
				s.mu.Unlock()
			}
		}
	}()
	return s
}

func (s *sampler) finish() []sample {
	close(s.stop)
	<-s.done
	s.samples = append(s.samples, s.read())
	return s.samples
}

// usage is the CPU of a span between two samples, in percent of one core,
// and the server's memory.
type usage struct {
	Seconds   float64 `json:"seconds"`
	ServerPct float64 `json:"server_cpu_pct"` // of one core
	ClientPct float64 `json:"client_cpu_pct"` // of one core
	OtherPct  float64 `json:"other_cpu_pct"`  // of one core: everything else on the machine, steal included
	StealPct  float64 `json:"steal_pct"`      // of one core: time the hypervisor gave elsewhere
	IdlePct   float64 `json:"idle_pct"`       // of one core
	ServerCPU float64 `json:"server_cpu_s"`
	MemMaxMB  float64 `json:"server_mem_max_mb"`
}

func usageBetween(a, b sample, span []sample) usage {
	secs := b.at.Sub(a.at).Seconds()
	if secs <= 0 {
		return usage{}
	}
	pct := func(t int64) float64 { return round(100*float64(t)/ticksPerSecond/secs, 1) }
	u := usage{Seconds: round(secs, 2), ServerPct: pct(b.server - a.server), ServerCPU: round(float64(b.server-a.server)/ticksPerSecond, 2)}
	c0 := a.client
	u.ClientPct = pct(max(b.client-c0, 0))
	busy := b.busy - a.busy
	u.OtherPct = pct(max(busy-(b.server-a.server)-(b.client-c0), 0))
	u.StealPct = pct(b.steal - a.steal)
	u.IdlePct = round(float64(runtime.NumCPU())*100-100*float64(busy)/ticksPerSecond/secs, 1)
	for _, s := range span {
		u.MemMaxMB = max(u.MemMaxMB, round(float64(s.memKB)/1024, 1))
	}
	return u
}

// socketDrops returns the datagrams the kernel dropped at the UDP sockets
// bound to port on 127.0.0.1 (/proc/net/udp, last column): a full receive
// buffer, the reader not keeping up.
func socketDrops(port int) int64 {
	b, err := os.ReadFile("/proc/net/udp")
	if err != nil {
		return 0
	}
	want := fmt.Sprintf(":%04X", port)
	var drops int64
	for _, line := range strings.Split(string(b), "\n")[1:] {
		f := strings.Fields(line)
		if len(f) < 13 || !strings.HasSuffix(f[1], want) {
			continue
		}
		n, _ := strconv.ParseInt(f[len(f)-1], 10, 64)
		drops += n
	}
	return drops
}

// topOthers returns the processes, other than skip and their descendants,
// that used the most CPU between two readings of allTicks, as "name 12%"
// (of one core).
func topOthers(a, b map[int]procInfo, skip map[int]bool, secs float64, n int) string {
	type use struct {
		name  string
		ticks int64
	}
	byName := map[string]int64{}
	for pid, pb := range b {
		if skip[pid] {
			continue
		}
		byName[pb.name] += pb.ticks - a[pid].ticks // a process born meanwhile had 0
	}
	var us []use
	for name, t := range byName {
		if t > 0 {
			us = append(us, use{name, t})
		}
	}
	sort.Slice(us, func(i, j int) bool { return us[i].ticks > us[j].ticks })
	var out []string
	for i := 0; i < len(us) && i < n; i++ {
		pct := 100 * float64(us[i].ticks) / ticksPerSecond / secs
		if pct < 1 {
			break
		}
		out = append(out, fmt.Sprintf("%s %.0f%%", us[i].name, pct))
	}
	return strings.Join(out, ", ")
}

type procInfo struct {
	name  string
	ticks int64
}

// allProcs reads every process's name and CPU ticks.
func allProcs() map[int]procInfo {
	paths, _ := filepath.Glob("/proc/[0-9]*/stat")
	out := make(map[int]procInfo, len(paths))
	for _, p := range paths {
		pid, err := strconv.Atoi(filepath.Base(filepath.Dir(p)))
		if err != nil {
			continue
		}
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		i, j := bytes.IndexByte(b, '('), bytes.LastIndexByte(b, ')')
		if i < 0 || j < i {
			continue
		}
		f := strings.Fields(string(b[j+1:]))
		if len(f) < 13 {
			continue
		}
		u, _ := strconv.ParseInt(f[11], 10, 64)
		s, _ := strconv.ParseInt(f[12], 10, 64)
		out[pid] = procInfo{name: string(b[i+1 : j]), ticks: u + s}
	}
	return out
}
