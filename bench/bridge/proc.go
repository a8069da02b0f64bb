package main

import (
	"bufio"
	"bytes"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"
)

// CPU and memory from /proc (Linux): a process's utime+stime covers all
// its threads (rtpengine's workers, Go's Ms).

const ticksPerSecond = 100 // USER_HZ

// cpuSample is one reading of the relay's, this process's and the
// machine's CPU ticks.
type cpuSample struct {
	at         time.Time
	relay      int64
	self       int64
	busy       int64 // every CPU, neither idle nor iowait (steal included)
	steal      int64
	cpus       int
	relayPSSKB int64
}

func readCPU(relay int) cpuSample {
	s := cpuSample{at: time.Now(), cpus: runtime.NumCPU()}
	s.relay = procTicks(relay)
	s.self = procTicks(os.Getpid())
	s.busy, s.steal = machineBusy()
	s.relayPSSKB = pssKB(relay)
	return s
}

// procTicks returns a process's utime+stime.
func procTicks(pid int) int64 {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0
	}
	u, _ := strconv.ParseInt(f[11], 10, 64)
	s, _ := strconv.ParseInt(f[12], 10, 64)
	return u + s
}

// machineBusy returns the ticks every CPU spent neither idle nor in
// iowait, and the steal ticks alone.
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

// udpErrors returns the machine's UDP RcvbufErrors and InErrors
// (/proc/net/snmp): datagrams dropped because a socket's buffer was full.
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
