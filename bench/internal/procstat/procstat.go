// Package procstat reads where the CPU went and how much memory a process
// holds, from Linux's /proc, for the benchmarks' reports: a process's CPU
// time (utime+stime, all its threads), its descendants (PostgreSQL's
// backends, Kamailio's workers), its proportional set size, the machine's
// busy and steal time, and the datagrams the kernel dropped at UDP
// sockets. Elsewhere every reading is zero, and Sample.OK false.
package procstat

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// TicksPerSecond is the unit of CPU times in /proc: USER_HZ, 100 on Linux.
const TicksPerSecond = 100

// Proc is one process, from /proc/PID/stat.
type Proc struct {
	Name  string // the command, as in (comm)
	PPID  int
	Ticks int64 // utime + stime
}

// Stat reads one process; false if it is gone (or this is not Linux).
func Stat(pid int) (Proc, bool) {
	return readStat("/proc/" + strconv.Itoa(pid) + "/stat")
}

func readStat(path string) (Proc, bool) {
	b, err := os.ReadFile(path)
	if err != nil {
		return Proc{}, false
	}
	// The command may hold spaces and parentheses: the fields start after
	// the last ')'.
	i, j := bytes.IndexByte(b, '('), bytes.LastIndexByte(b, ')')
	if i < 0 || j < i {
		return Proc{}, false
	}
	f := strings.Fields(string(b[j+1:]))
	// f[0] is field 3 (state): ppid is field 4, utime 14, stime 15.
	if len(f) < 13 {
		return Proc{}, false
	}
	ppid, _ := strconv.Atoi(f[1])
	u, _ := strconv.ParseInt(f[11], 10, 64)
	s, _ := strconv.ParseInt(f[12], 10, 64)
	return Proc{Name: string(b[i+1 : j]), PPID: ppid, Ticks: u + s}, true
}

// Processes reads every process of the machine, by pid.
func Processes() map[int]Proc {
	paths, _ := filepath.Glob("/proc/[0-9]*/stat")
	out := make(map[int]Proc, len(paths))
	for _, p := range paths {
		pid, err := strconv.Atoi(filepath.Base(filepath.Dir(p)))
		if err != nil {
			continue
		}
		if pr, ok := readStat(p); ok {
			out[pid] = pr
		}
	}
	return out
}

// Descendants returns those of procs that are roots or descend from one.
func Descendants(procs map[int]Proc, roots []int) []int {
	if len(roots) == 0 {
		return nil
	}
	isRoot := make(map[int]bool, len(roots))
	for _, r := range roots {
		isRoot[r] = true
	}
	var out []int
	for pid := range procs {
		for p, hops := pid, 0; p > 1 && hops < 64; p, hops = procs[p].PPID, hops+1 {
			if isRoot[p] {
				out = append(out, pid)
				break
			}
		}
	}
	return out
}

// Tree returns roots and all their descendants that are running.
func Tree(roots []int) []int {
	if len(roots) == 0 {
		return nil
	}
	return Descendants(Processes(), roots)
}

// Machine returns the ticks every CPU spent neither idle nor in iowait
// (steal included: the hypervisor gave the time to another guest; guest
// time is already in user), and the steal ticks alone, from /proc/stat.
func Machine() (busy, steal int64, ok bool) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0, false
	}
	line, _, _ := bytes.Cut(b, []byte("\n"))
	f := strings.Fields(string(line))
	if len(f) < 5 || f[0] != "cpu" {
		return 0, 0, false
	}
	for i, v := range f[1:] {
		if i == 3 || i == 4 || i >= 8 { // idle, iowait; guest, guest_nice
			continue
		}
		n, _ := strconv.ParseInt(v, 10, 64)
		busy += n
		if i == 7 {
			steal = n
		}
	}
	return busy, steal, true
}

// PSSKB returns a process's proportional set size in KiB: its resident
// memory, with the pages it shares divided among their sharers (so the
// memory Kamailio's processes share counts once over all of them).
func PSSKB(pid int) int64 {
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

// UDPErrors returns the machine's UDP RcvbufErrors and InErrors
// (/proc/net/snmp): datagrams dropped because a socket's buffer was full.
func UDPErrors() (rcvbuf, in int64) {
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

// Pressure returns the total time, in microseconds since boot, that some
// task and that all tasks stalled waiting for resource ("cpu", "io" or
// "memory"), from Linux's pressure stall information (/proc/pressure/*);
// false where the kernel has none.
func Pressure(resource string) (some, full int64, ok bool) {
	b, err := os.ReadFile("/proc/pressure/" + resource)
	if err != nil {
		return 0, 0, false
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		for _, kv := range f[1:] {
			if v, found := strings.CutPrefix(kv, "total="); found {
				n, _ := strconv.ParseInt(v, 10, 64)
				switch f[0] {
				case "some":
					some, ok = n, true
				case "full":
					full = n
				}
			}
		}
	}
	return some, full, ok
}

// SocketDrops returns the datagrams the kernel dropped at the UDP sockets
// bound to port (/proc/net/udp, last column): a full receive buffer, the
// reader not keeping up.
func SocketDrops(port int) int64 {
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

// Busiest names the processes of b, but those in skip, that used the most
// CPU since a (two readings of Processes, secs apart), by command, as
// "name 12%" (of one core), at most n of them and none under 1%.
func Busiest(a, b map[int]Proc, skip map[int]bool, secs float64, n int) string {
	type use struct {
		name  string
		ticks int64
	}
	byName := map[string]int64{}
	for pid, pb := range b {
		if skip[pid] {
			continue
		}
		byName[pb.Name] += pb.Ticks - a[pid].Ticks // a process born meanwhile had 0
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
		pct := 100 * float64(us[i].ticks) / TicksPerSecond / secs
		if pct < 1 {
			break
		}
		out = append(out, fmt.Sprintf("%s %.0f%%", us[i].name, pct))
	}
	return strings.Join(out, ", ")
}

// ParsePIDs reads a list of pids separated by commas or spaces.
func ParsePIDs(s string) ([]int, error) {
	var out []int
	for _, f := range strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == ' ' }) {
		p, err := strconv.Atoi(f)
		if err != nil || p <= 0 {
			return nil, fmt.Errorf("%q is not a pid", f)
		}
		out = append(out, p)
	}
	return out, nil
}
