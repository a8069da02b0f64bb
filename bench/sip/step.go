package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/switchback/switchback/bench/internal/procstat"
)

// StepResult is one SIPp run at a fixed call rate against one server.
type StepResult struct {
	Kind     string `json:"kind"` // "step"
	Server   string `json:"server"`
	Round    int    `json:"round"`
	Rate     int    `json:"rate"`  // offered calls/s (SIPp -r)
	Calls    int    `json:"calls"` // SIPp -m
	Created  int    `json:"created"`
	OK       int    `json:"ok"`
	Failed   int    `json:"failed"`
	Retrans  int    `json:"retransmissions"`
	Unexpect int    `json:"unexpected"`
	Dead     int    `json:"dead_msgs"`
	OutOf    int    `json:"out_of_call_msgs"`
	// Achieved is the rate at which INVITEs were answered 200, between
	// the 1st and the 99th percentile of the answers' times.
	Achieved float64 `json:"achieved_cps"`
	// Sustained: every call complete, none failed, and Achieved within 3%
	// of Rate.
	Sustained bool `json:"sustained"`
	// INVITE to 200, in SIPp's whole milliseconds (0 is under 1 ms).
	P50ms  float64 `json:"invite_200_p50_ms"`
	P90ms  float64 `json:"invite_200_p90_ms"`
	P99ms  float64 `json:"invite_200_p99_ms"`
	Maxms  float64 `json:"invite_200_max_ms"`
	RTTs   int     `json:"rtts"`
	CallMs float64 `json:"call_length_avg_ms"` // SIPp's mean call length
	// Concurrency: SIPp's current calls, sampled each second.
	ConcMean float64 `json:"concurrent_mean"`
	ConcPeak int     `json:"concurrent_peak"`
	// The server's CPU per call, and per concurrent call.
	CPUPerCallUs  float64 `json:"server_cpu_us_per_call"`
	MemBaseMB     float64 `json:"server_mem_before_mb"`
	UDPRcvbufErrs int64   `json:"udp_rcvbuf_errors"` // machine-wide, during the run
	// Datagrams the kernel dropped at the server's SIP socket and at
	// SIPp's: a receive buffer full because its reader fell behind.
	ServerDrops int64          `json:"server_socket_drops"`
	SippDrops   int64          `json:"sipp_socket_drops"`
	OtherTop    string         `json:"other_top,omitempty"` // the busiest other processes
	Usage       procstat.Usage `json:"usage"`
	Dir         string         `json:"dir"`
	FirstError  string         `json:"first_error,omitempty"`
	// Parts splits the server's CPU by -part: each part's share.
	Parts []PartUsage `json:"parts,omitempty"`
	// The share of the step's time in which every task of the machine
	// waited for the disk, and some task for a CPU (Linux's pressure
	// stall information, in percent): a step a stalled disk or a busy
	// machine slowed.
	IOFullStallPct  float64 `json:"io_full_stall_pct"`
	CPUSomeStallPct float64 `json:"cpu_some_stall_pct"`
}

// PartUsage is the CPU of one part of the server during a step: a
// process (with its descendants) or a few, such as a proxy, the nodes
// behind it, or their database.
type PartUsage struct {
	Name         string  `json:"name"`
	CPUPct       float64 `json:"cpu_pct"` // of one core
	CPUPerCallUs float64 `json:"cpu_us_per_call"`
}

// parts is the -part flag, repeated: NAME=PID[,PID...].
type parts []struct {
	name string
	pids []int
}

func (p *parts) String() string { return fmt.Sprint(len(*p), " parts") }

func (p *parts) Set(v string) error {
	name, list, ok := strings.Cut(v, "=")
	if !ok || name == "" {
		return fmt.Errorf("%q: want NAME=PID[,PID...]", v)
	}
	pids, err := procstat.ParsePIDs(list)
	if err != nil {
		return err
	}
	if len(pids) == 0 {
		return fmt.Errorf("%q: no pid", v)
	}
	*p = append(*p, struct {
		name string
		pids []int
	}{name, pids})
	return nil
}

// partTicks is the CPU time, from a to b, of the processes of b.Server
// that are roots or descend from one, procs being the machine's processes
// at b.
func partTicks(a, b procstat.Sample, procs map[int]procstat.Proc, roots []int) int64 {
	var t int64
	for _, pid := range procstat.Descendants(procs, roots) {
		if n, ok := b.Server[pid]; ok {
			t += n - a.Server[pid]
		}
	}
	return t
}

func runStep(args []string) error {
	fs := flag.NewFlagSet("step", flag.ContinueOnError)
	server := fs.String("server", "", "name of the server in the results (switchback, kamailio)")
	roundN := fs.Int("round", 1, "round number, for the results")
	rate := fs.Int("rate", 1000, "calls per second (SIPp -r)")
	dur := fs.Duration("duration", 10*time.Second, "how long calls are started for: SIPp -m is rate x duration")
	limit := fs.Int("limit", 10000, "most calls at once (SIPp -l)")
	inf := fs.String("inf", "", "SIPp injection CSV: a SEQUENTIAL line, then one transfer id a line, at least rate x duration of them")
	scenario := fs.String("scenario", "", "SIPp scenario XML")
	dest := fs.String("dest", "", "the server's SIP address, host:port (UDP)")
	pids := fs.String("pids", "", "the server's pids, comma-separated (their descendants count too)")
	var split parts
	fs.Var(&split, "part", "NAME=PID[,PID...]: a part of the server whose CPU is reported on its own (repeatable; its pids count as the server's too)")
	dir := fs.String("dir", "", "directory for SIPp's files (made if missing)")
	sippBin := fs.String("sipp", "sipp", "the SIPp binary")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *server == "" || *inf == "" || *scenario == "" || *dest == "" || *dir == "" || *rate < 1 {
		return errors.New("need -server, -inf, -scenario, -dest, -dir and -rate >= 1")
	}
	serverPids, err := procstat.ParsePIDs(*pids)
	if err != nil {
		return err
	}
	for _, p := range split {
		serverPids = append(serverPids, p.pids...)
	}
	calls := int(float64(*rate) * dur.Seconds())
	if err := os.MkdirAll(*dir, 0o755); err != nil {
		return err
	}
	scen, err := filepath.Abs(*scenario)
	if err != nil {
		return err
	}
	infAbs, err := filepath.Abs(*inf)
	if err != nil {
		return err
	}
	port, err := freeUDPPort()
	if err != nil {
		return err
	}
	timeout := *dur + 20*time.Second // BYEs come within 10 s of the last call
	cmd := exec.Command(*sippBin, *dest,
		"-sf", scen, "-inf", infAbs,
		"-r", strconv.Itoa(*rate), "-m", strconv.Itoa(calls), "-l", strconv.Itoa(*limit),
		"-i", "127.0.0.1", "-p", strconv.Itoa(port), "-mp", strconv.Itoa(port+2),
		"-buff_size", "4194304",
		"-nostdin", "-timeout", strconv.Itoa(int(timeout.Seconds()))+"s", "-timeout_error",
		"-trace_stat", "-stf", "stat.csv", "-fd", "1",
		"-trace_rtt", "-rtt_freq", "1",
		"-trace_err", "-error_file", "errors.log",
		"-trace_screen", "-screen_file", "screen.log",
	)
	cmd.Dir = *dir
	out, err := os.Create(filepath.Join(*dir, "sipp.out"))
	if err != nil {
		return err
	}
	defer out.Close()
	cmd.Stdout, cmd.Stderr = out, out

	_, destPort, _ := net.SplitHostPort(*dest)
	sport, _ := strconv.Atoi(destPort)
	rcv0, _ := procstat.UDPErrors()
	sd0, cd0 := procstat.SocketDrops(sport), procstat.SocketDrops(port)
	procs0 := procstat.Processes()
	_, io0, _ := procstat.Pressure("io")
	cpu0, _, _ := procstat.Pressure("cpu")
	smp := procstat.Start(procstat.Reader{Server: serverPids, Memory: true}, 250*time.Millisecond)
	if err := cmd.Start(); err != nil {
		smp.Finish()
		return fmt.Errorf("start sipp: %w", err)
	}
	var cd1 int64
	exited, watched := make(chan struct{}), make(chan struct{})
	go func() { // SIPp's socket is gone once it exits: read it while it runs
		defer close(watched)
		for {
			select {
			case <-exited:
				return
			case <-time.After(200 * time.Millisecond):
			}
			cd1 = max(cd1, procstat.SocketDrops(port))
		}
	}()
	waitErr := cmd.Wait()
	close(exited)
	<-watched
	samples := smp.Finish()
	rcv1, _ := procstat.UDPErrors()
	sd1 := procstat.SocketDrops(sport)
	procs1 := procstat.Processes()
	_, io1, _ := procstat.Pressure("io")
	cpu1, _, _ := procstat.Pressure("cpu")
	// SIPp's CPU, from its exit status: it is gone by the last sample.
	last := &samples[len(samples)-1]
	last.Client = int64((cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()).Seconds() * procstat.TicksPerSecond)

	r := StepResult{Kind: "step", Server: *server, Round: *roundN, Rate: *rate, Calls: calls, Dir: *dir,
		UDPRcvbufErrs: rcv1 - rcv0, ServerDrops: sd1 - sd0, SippDrops: max(cd1-cd0, 0)}
	r.Usage = procstat.UsageBetween(samples[0], samples[len(samples)-1], samples)
	if us := float64(samples[len(samples)-1].At.Sub(samples[0].At).Microseconds()); us > 0 {
		r.IOFullStallPct = round(100*float64(io1-io0)/us, 1)
		r.CPUSomeStallPct = round(100*float64(cpu1-cpu0)/us, 1)
	}
	r.MemBaseMB = round(float64(samples[0].ServerPSSKB)/1024, 1)
	skip := map[int]bool{cmd.Process.Pid: true, os.Getpid(): true}
	for _, p := range procstat.Tree(serverPids) {
		skip[p] = true
	}
	r.OtherTop = procstat.Busiest(procs0, procs1, skip, r.Usage.Seconds, 3)
	if err := readStat(filepath.Join(*dir, "stat.csv"), &r); err != nil {
		return fmt.Errorf("sipp (%v) left no statistics: %w; see %s", waitErr, err, filepath.Join(*dir, "sipp.out"))
	}
	rtts, err := filepath.Glob(filepath.Join(*dir, "*_rtt.csv"))
	if err == nil && len(rtts) > 0 {
		readRTT(rtts[0], &r)
	}
	if r.OK > 0 {
		r.CPUPerCallUs = round(r.Usage.ServerCPU*1e6/float64(r.OK), 1)
	}
	first, lastSample := samples[0], samples[len(samples)-1]
	for _, p := range split {
		secs := lastSample.At.Sub(first.At).Seconds()
		ticks := partTicks(first, lastSample, procs1, p.pids)
		pu := PartUsage{Name: p.name}
		if secs > 0 {
			pu.CPUPct = round(100*float64(ticks)/procstat.TicksPerSecond/secs, 1)
		}
		if r.OK > 0 {
			pu.CPUPerCallUs = round(float64(ticks)/procstat.TicksPerSecond*1e6/float64(r.OK), 1)
		}
		r.Parts = append(r.Parts, pu)
	}
	r.Sustained = r.Failed == 0 && r.OK == calls && r.Achieved >= 0.97*float64(*rate)
	if r.Failed > 0 || r.OK < calls {
		r.FirstError = firstError(*dir)
	}
	line, _ := json.Marshal(r)
	fmt.Println(string(line))
	verdict := "sustained"
	if !r.Sustained {
		verdict = "NOT sustained"
	}
	logf("%-10s %5d cps: %d/%d ok, %d failed, %d retrans, %.0f cps achieved, INVITE->200 p50 %.0f p99 %.0f max %.0f ms, server CPU %.0f%% (%.0f us/call), mem %.0f MB, drops server %d sipp %d, other CPU %.0f%% (steal %.0f%%; %s), stalled on IO %.0f%%: %s",
		*server, *rate, r.OK, calls, r.Failed, r.Retrans, r.Achieved, r.P50ms, r.P99ms, r.Maxms,
		r.Usage.ServerPct, r.CPUPerCallUs, r.Usage.MemMaxMB, r.ServerDrops, r.SippDrops, r.Usage.OtherPct, r.Usage.StealPct, r.OtherTop, r.IOFullStallPct, verdict)
	for _, p := range r.Parts {
		logf("  %s: CPU %.0f%% (%.0f us/call)", p.Name, p.CPUPct, p.CPUPerCallUs)
	}
	if r.FirstError != "" {
		logf("  first error: %s", r.FirstError)
	}
	return nil
}

// readStat reads SIPp's -trace_stat file: the periodic rows (every -fd)
// and the final cumulative one.
func readStat(path string, r *StepResult) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) < 2 {
		return errors.New("no rows")
	}
	head := strings.Split(lines[0], ";")
	col := map[string]int{}
	for i, h := range head {
		col[h] = i
	}
	get := func(row []string, name string) int {
		i, ok := col[name]
		if !ok || i >= len(row) {
			return 0
		}
		n, _ := strconv.Atoi(strings.TrimSpace(row[i]))
		return n
	}
	var conc []int
	for _, l := range lines[1:] {
		row := strings.Split(l, ";")
		conc = append(conc, get(row, "CurrentCall"))
	}
	last := strings.Split(lines[len(lines)-1], ";")
	r.Created = get(last, "OutgoingCall(C)")
	r.OK = get(last, "SuccessfulCall(C)")
	r.Failed = get(last, "FailedCall(C)")
	r.Retrans = get(last, "Retransmissions(C)")
	r.Unexpect = get(last, "FailedUnexpectedMessage(C)")
	r.Dead = get(last, "DeadCallMsgs(C)")
	r.OutOf = get(last, "OutOfCallMsgs(C)")
	if i, ok := col["CallLength(C)"]; ok && i < len(last) {
		r.CallMs = parseSippDuration(last[i])
	}
	// Calls still up when SIPp stopped never finished: failures too.
	if missing := r.Calls - r.OK - r.Failed; missing > 0 && r.Created >= r.Calls {
		r.Failed += missing
	}
	// Mean and peak over the rows while calls were being started (the
	// first rows until the last call started).
	sum, n := 0, 0
	for _, c := range conc {
		r.ConcPeak = max(r.ConcPeak, c)
		sum += c
		n++
	}
	if n > 0 {
		r.ConcMean = round(float64(sum)/float64(n), 1)
	}
	return nil
}

// parseSippDuration reads SIPp's "HH:MM:SS:uuuuuu" as milliseconds.
func parseSippDuration(s string) float64 {
	f := strings.Split(strings.TrimSpace(s), ":")
	if len(f) != 4 {
		return 0
	}
	h, _ := strconv.Atoi(f[0])
	m, _ := strconv.Atoi(f[1])
	sec, _ := strconv.Atoi(f[2])
	us, _ := strconv.Atoi(f[3])
	return round(float64(h*3600+m*60+sec)*1000+float64(us)/1000, 3)
}

// readRTT reads SIPp's -trace_rtt file: when each 200 came (milliseconds
// since SIPp started) and its INVITE->200 time in milliseconds.
func readRTT(path string, r *StepResult) {
	f, err := os.Open(path)
	if err != nil {
		return
	}
	defer f.Close()
	var rtt, at []float64
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Split(sc.Text(), ";")
		if len(fields) < 2 {
			continue
		}
		t, err1 := strconv.ParseFloat(fields[0], 64)
		v, err2 := strconv.ParseFloat(fields[1], 64)
		if err1 != nil || err2 != nil {
			continue // the header
		}
		at = append(at, t)
		rtt = append(rtt, v)
	}
	if len(rtt) == 0 {
		return
	}
	sort.Float64s(rtt)
	q := func(p float64) float64 { return rtt[min(len(rtt)-1, int(p*float64(len(rtt))))] }
	r.RTTs = len(rtt)
	r.P50ms, r.P90ms, r.P99ms, r.Maxms = q(0.50), q(0.90), q(0.99), rtt[len(rtt)-1]
	// The answer rate between the 1st and the 99th percentile of answer
	// times (Date_ms is in ms): a few answers late by a retransmission at
	// the end do not make a rate kept up look lower.
	sort.Float64s(at)
	lo, hi := len(at)/100, len(at)-1-len(at)/100
	if hi > lo && at[hi] > at[lo] {
		r.Achieved = round(float64(hi-lo)/((at[hi]-at[lo])/1000), 1)
	}
}

// firstError returns the first message of SIPp's error file.
func firstError(dir string) string {
	b, err := os.ReadFile(filepath.Join(dir, "errors.log"))
	if err != nil {
		return ""
	}
	for _, l := range strings.Split(string(b), "\n") {
		if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "sipp:") {
			if len(l) > 300 {
				l = l[:300]
			}
			return l
		}
	}
	return ""
}
