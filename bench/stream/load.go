package main

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/netip"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/switchback/switchback/bench/internal/loadkit"
	"github.com/switchback/switchback/bench/internal/procstat"
	"github.com/switchback/switchback/bench/internal/stamp"
	"github.com/switchback/switchback/internal/media"
)

// The load: N callers, each a UDP socket of this process on 127.0.0.1,
// with a call set up on the Switchback process, streamed to the echo agent
// or bridged to an RTP echo (-mode). Every 20 ms each caller sends a
// 160-byte PCMU packet, stamped with its send time, its caller and its
// index (bench/internal/stamp), and reads what comes back: its own audio
// after the round trip through Switchback and the agent, and, streamed,
// Switchback's silence in the slots where nothing was queued. The callers
// are spread evenly over the 20 ms by a few sender goroutines, as in the
// bridge benchmark. After a warm-up it counts, over a window, by send
// time:
//
//   - lost: frames sent that never came back;
//   - late: frames that came back more than 40 ms later, against the RTP
//     timestamp Switchback gave them, than the caller's earliest (what a
//     40 ms jitter buffer at the caller throws away), and, streamed, the
//     silence packets Switchback sent between two echoed frames: a frame
//     that missed its 20 ms slot, which the caller hears as a gap;
//   - added latency: the round trip (arrival less send time: both ends
//     are this process) less the agent's hold of the frame, as the agent
//     measured it: Switchback's time both ways, the kernel's loopback,
//     and this process's own scheduling;
//   - CPU of the Switchback process, of the agent's and of this one over
//     the window (from /proc), and Switchback's memory: its PSS, and its
//     live heap and goroutine stacks after a collection, against the same
//     before the calls were set up.

// Result is one load run in one mode.
type Result struct {
	Kind  string `json:"kind"` // "stream"
	Mode  string `json:"mode"` // "stream" or "bridge"
	Round int    `json:"round"`
	Calls int    `json:"calls"`

	SetupSeconds  float64 `json:"setup_s"`
	WindowSeconds float64 `json:"window_s"`
	Sent          int64   `json:"sent"`
	Echoed        int64   `json:"echoed"`
	Lost          int64   `json:"lost"`
	Late          int64   `json:"late"` // over 40 ms against the caller's earliest
	Gaps          int64   `json:"gaps"` // silence between echoed frames
	LateOrLostPct float64 `json:"late_or_lost_pct"`
	Silence       int64   `json:"silence"` // every silence packet, in and out of the echo
	Wrong         int64   `json:"wrong"`
	Duplicates    int64   `json:"duplicates"`
	NoHold        int64   `json:"no_hold"` // echoed frames the agent did not report

	AddedP50ms  float64 `json:"added_p50_ms"`
	AddedP99ms  float64 `json:"added_p99_ms"`
	AddedP999ms float64 `json:"added_p999_ms"`
	AddedMaxms  float64 `json:"added_max_ms"`
	RTTP50ms    float64 `json:"rtt_p50_ms"`
	RTTP99ms    float64 `json:"rtt_p99_ms"`
	HoldP50ms   float64 `json:"hold_p50_ms"`
	HoldP99ms   float64 `json:"hold_p99_ms"`

	// Switchback's process over the window.
	CPUPct        float64 `json:"cpu_pct"`          // of one core
	CPUPerCallPct float64 `json:"cpu_per_call_pct"` // of one core
	MemMB         float64 `json:"mem_mb"`           // PSS at the window's end
	MemPerCallKB  float64 `json:"mem_per_call_kb"`  // PSS, against before the calls
	HeapPerCallKB float64 `json:"heap_per_call_kb"` // live heap after a GC, against before
	StackPerCall  float64 `json:"stack_per_call_kb"`
	GoroutinesPer float64 `json:"goroutines_per_call"`
	// The rest of the machine over the window.
	AgentCPUPct   float64 `json:"agent_cpu_pct"`
	LoadgenCPUPct float64 `json:"loadgen_cpu_pct"`
	OtherCPUPct   float64 `json:"other_cpu_pct"`
	IdlePct       float64 `json:"idle_pct"`
	StealPct      float64 `json:"steal_pct"`
	SendLagP99ms  float64 `json:"send_lag_p99_ms"`
	UDPRcvbufErrs int64   `json:"udp_rcvbuf_errors"`
	// What Switchback's caller Sessions counted.
	Dropped  int64 `json:"dropped"`  // frames for the agent dropped
	Overflow int64 `json:"overflow"` // agent audio the playout queue had no room for
	SendLate int64 `json:"send_late"`
}

// caller is one call's caller.
type caller struct {
	id   uint32
	conn *net.UDPConn
	dst  netip.AddrPort // Switchback's port
	slot int

	// The sender's, read once it is done.
	ssrc uint32
	seq  uint16
	ts   uint32
	idx  uint32
	sent int64 // in the window

	// The receiver's, read once it is done.
	rtt     []int32 // by index: µs + 1; 0 until it came back
	transit []int32 // by index: arrival less the RTP timestamp, µs from the first packet's
	silence int64
	gaps    int64 // silence between two echoed frames of the window
	pending int64 // silence since the last echoed frame
	wrong   int64
	dups    int64
}

func runLoad(args []string, w io.Writer) error {
	fs := flag.NewFlagSet("load", flag.ContinueOnError)
	mode := fs.String("mode", "stream", "stream (to the echo agent over a WebSocket) or bridge (media.Bridge to an RTP echo)")
	control := fs.String("control", "", "the Switchback process's line protocol address")
	agentURL := fs.String("agent", "", "the agent process's http:// URL")
	pidFlag := fs.String("pids", "", "the Switchback process's pid")
	agentPid := fs.Int("agent-pid", 0, "the agent process's pid")
	calls := fs.Int("calls", 100, "concurrent calls")
	warmup := fs.Duration("warmup", 2*time.Second, "load before the window, not counted")
	duration := fs.Duration("duration", 10*time.Second, "the measured window")
	drain := fs.Duration("drain", 500*time.Millisecond, "wait for frames in flight after the last is sent")
	senders := fs.Int("senders", 2, "sender goroutines")
	roundN := fs.Int("round", 1, "round number, for the results")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *mode != "stream" && *mode != "bridge" {
		return fmt.Errorf("-mode %q: want stream or bridge", *mode)
	}
	if *calls < 1 || *calls > 10000 || *senders < 1 || *duration <= 0 || *duration > time.Minute || *warmup > time.Minute {
		return errors.New("need 1 <= -calls <= 10000, -senders >= 1, 0 < -duration <= 1m, -warmup <= 1m")
	}
	pid, err := strconv.Atoi(*pidFlag)
	if err != nil || pid <= 0 || *agentPid <= 0 {
		return fmt.Errorf("-pids %q, -agent-pid %d: want the Switchback and agent processes' pids", *pidFlag, *agentPid)
	}
	sb, err := loadkit.Dial("switchback", *control)
	if err != nil {
		return err
	}
	defer sb.Close()
	ag := &agentClient{base: strings.TrimSuffix(*agentURL, "/"), http: &http.Client{Timeout: 30 * time.Second}}
	if err := ag.post(fmt.Sprintf("/reset?streams=%d", *calls)); err != nil {
		return fmt.Errorf("agent: %w", err)
	}

	res := Result{Kind: "stream", Mode: *mode, Round: *roundN, Calls: *calls}
	maxFrames := int((*warmup+*duration)/(20*time.Millisecond)) + 50
	sbProcs := procstat.Reader{Server: []int{pid}, Self: true, Memory: true}
	mem0, err := settled(sb)
	if err != nil {
		return err
	}
	pss0 := sbProcs.Read().ServerPSSKB

	// Set up: a socket a caller, a call on Switchback for each.
	setupStart := time.Now()
	callers := make([]*caller, 0, *calls)
	set := 0
	defer func() {
		for _, c := range callers {
			c.conn.Close()
		}
		for i := range set {
			if _, err := sb.Request(fmt.Sprintf("end %d", i)); err != nil {
				logf("end call %d: %v", i, err)
			}
		}
	}()
	for i := range *calls {
		conn, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(loopback, 0)))
		if err != nil {
			return err
		}
		c := &caller{id: uint32(i), conn: conn, slot: i % loadkit.Slots,
			ssrc: rand.Uint32(), seq: uint16(rand.Uint32()), ts: rand.Uint32(),
			rtt: make([]int32, maxFrames), transit: make([]int32, maxFrames)}
		callers = append(callers, c)
		port := conn.LocalAddr().(*net.UDPAddr).Port
		var req string
		if *mode == "stream" {
			req = fmt.Sprintf("stream %d %d", i, port)
		} else {
			echoPort, err := ag.rtpEcho(i)
			if err != nil {
				return fmt.Errorf("agent: RTP echo for call %d: %w", i, err)
			}
			req = fmt.Sprintf("bridge %d %d %d", i, port, echoPort)
		}
		f, err := sb.Request(req)
		if err != nil {
			return fmt.Errorf("set up call %d: %w", i, err)
		}
		set++
		to, err := strconv.ParseUint(f[0], 10, 16)
		if err != nil {
			return fmt.Errorf("set up call %d: answered %v", i, f)
		}
		c.dst = netip.AddrPortFrom(loopback, uint16(to))
	}
	res.SetupSeconds = round(time.Since(setupStart).Seconds(), 2)

	start := time.Now().Add(100 * time.Millisecond)
	w0 := start.Add(*warmup)
	w1 := w0.Add(*duration)

	var receivers sync.WaitGroup
	for _, c := range callers {
		receivers.Go(func() { c.receive(w0.UnixNano(), w1.UnixNano()) })
	}

	// CPU at the window's edges, and Switchback's memory at its end.
	var at0, at1 procstat.Sample
	var ag0, ag1 procstat.Proc
	var sampled sync.WaitGroup
	sampled.Go(func() {
		time.Sleep(time.Until(w0))
		at0 = sbProcs.Read()
		ag0, _ = procstat.Stat(*agentPid)
		time.Sleep(time.Until(w1))
		at1 = sbProcs.Read()
		ag1, _ = procstat.Stat(*agentPid)
	})
	rcv0, _ := procstat.UDPErrors()

	lags := make([][]time.Duration, *senders)
	var sending sync.WaitGroup
	for s := range *senders {
		var mine [loadkit.Slots][]*caller
		for k, c := range callers {
			if k%*senders == s {
				mine[c.slot] = append(mine[c.slot], c)
			}
		}
		sending.Go(func() { lags[s] = loadkit.SendEvery20ms(&mine, 12+media.FrameSamples, start, w0, w1) })
	}
	sending.Wait()
	sampled.Wait()
	// Memory with every call up, after the CPU's window.
	mem1, err := mem(sb)
	if err != nil {
		return err
	}
	time.Sleep(*drain)
	rcv1, _ := procstat.UDPErrors()
	for _, c := range callers {
		c.conn.Close()
	}
	receivers.Wait()

	// Tear down now, so Switchback's own counts come with the result.
	for i := range set {
		f, err := sb.Request(fmt.Sprintf("end %d", i))
		if err != nil {
			logf("end call %d: %v", i, err)
			continue
		}
		if len(f) == 3 {
			d, _ := strconv.ParseInt(f[0], 10, 64)
			o, _ := strconv.ParseInt(f[1], 10, 64)
			l, _ := strconv.ParseInt(f[2], 10, 64)
			res.Dropped, res.Overflow, res.SendLate = res.Dropped+d, res.Overflow+o, res.SendLate+l
		}
	}
	set = 0
	holds, err := ag.holds()
	if err != nil {
		return fmt.Errorf("agent: holds: %w", err)
	}

	// Each frame sent in the window: back or lost, and how late.
	var added, rtts, held []int32
	for _, c := range callers {
		res.Sent += c.sent
		res.Silence += c.silence
		res.Gaps += c.gaps
		res.Wrong += c.wrong
		res.Duplicates += c.dups
		var h []int32
		if int(c.id) < len(holds) {
			h = holds[c.id]
		}
		minTransit := int32(1 << 30)
		for idx, r := range c.rtt {
			if r != 0 && c.transit[idx] < minTransit {
				minTransit = c.transit[idx]
			}
		}
		for idx, r := range c.rtt {
			if r == 0 {
				continue
			}
			res.Echoed++
			rtt := r - 1
			hold := int32(0)
			if idx < len(h) && h[idx] > 0 {
				hold = h[idx] - 1
			} else {
				res.NoHold++
			}
			rtts = append(rtts, rtt)
			held = append(held, hold)
			added = append(added, max(rtt-hold, 0))
			if c.transit[idx]-minTransit > 40000 {
				res.Late++
			}
		}
	}
	res.Lost = max(res.Sent-res.Echoed, 0)
	if res.Sent > 0 {
		res.LateOrLostPct = round(100*float64(res.Lost+res.Late+res.Gaps)/float64(res.Sent), 3)
	}
	res.AddedP50ms, res.AddedP99ms, res.AddedP999ms, res.AddedMaxms = quantiles(added)
	res.RTTP50ms, res.RTTP99ms, _, _ = quantiles(rtts)
	res.HoldP50ms, res.HoldP99ms, _, _ = quantiles(held)
	var allLags []time.Duration
	for _, l := range lags {
		allLags = append(allLags, l...)
	}
	slices.Sort(allLags)
	if n := len(allLags); n > 0 {
		res.SendLagP99ms = round(allLags[min(n*99/100, n-1)].Seconds()*1000, 3)
	}

	secs := at1.At.Sub(at0.At).Seconds()
	res.WindowSeconds = round(secs, 3)
	if secs > 0 {
		pct := func(ticks int64) float64 { return 100 * float64(ticks) / procstat.TicksPerSecond / secs }
		sbTicks := procstat.ServerTicks(at0, at1)
		agTicks := ag1.Ticks - ag0.Ticks
		self := at1.Client - at0.Client
		busy := at1.Busy - at0.Busy
		res.CPUPct = round(pct(sbTicks), 1)
		res.CPUPerCallPct = round(pct(sbTicks)/float64(*calls), 4)
		res.AgentCPUPct = round(pct(agTicks), 1)
		res.LoadgenCPUPct = round(pct(self), 1)
		res.OtherCPUPct = round(max(pct(busy-sbTicks-agTicks-self), 0), 1)
		res.StealPct = round(pct(at1.Steal-at0.Steal), 1)
		res.IdlePct = round(float64(runtime.NumCPU())*100-pct(busy), 1)
	}
	n := float64(*calls)
	res.MemMB = round(float64(at1.ServerPSSKB)/1024, 1)
	res.MemPerCallKB = round(float64(at1.ServerPSSKB-pss0)/n, 1)
	res.HeapPerCallKB = round(float64(mem1.heap-mem0.heap)/1024/n, 1)
	res.StackPerCall = round(float64(mem1.stack-mem0.stack)/1024/n, 1)
	res.GoroutinesPer = round(float64(mem1.goroutines-mem0.goroutines)/n, 2)
	res.UDPRcvbufErrs = rcv1 - rcv0

	logf("%s %d calls: sent %d, lost %d, late %d, gaps %d (%.3f%%), added latency p50 %.2f p99 %.2f max %.2f ms (agent's hold p99 %.2f), Switchback CPU %.1f%% (%.3f%% a call), agent %.1f%%, loadgen %.1f%%, idle %.0f%%",
		res.Mode, res.Calls, res.Sent, res.Lost, res.Late, res.Gaps, res.LateOrLostPct, res.AddedP50ms, res.AddedP99ms, res.AddedMaxms,
		res.HoldP99ms, res.CPUPct, res.CPUPerCallPct, res.AgentCPUPct, res.LoadgenCPUPct, res.IdlePct)
	return json.NewEncoder(w).Encode(res)
}

// quantiles returns the p50, p99, p99.9 and max of µs values, in ms.
func quantiles(us []int32) (p50, p99, p999, maxMs float64) {
	if len(us) == 0 {
		return 0, 0, 0, 0
	}
	slices.Sort(us)
	q := func(p float64) float64 {
		return round(float64(us[min(int(p*float64(len(us))), len(us)-1)])/1000, 3)
	}
	return q(0.50), q(0.99), q(0.999), round(float64(us[len(us)-1])/1000, 3)
}

// Send sends the caller's next packet, stamped with the time.
func (c *caller) Send(buf []byte, w0, w1 time.Time) {
	buf[0] = 2 << 6
	buf[1] = media.PCMU.PayloadType()
	binary.BigEndian.PutUint16(buf[2:4], c.seq)
	binary.BigEndian.PutUint32(buf[4:8], c.ts)
	binary.BigEndian.PutUint32(buf[8:12], c.ssrc)
	now := time.Now()
	stamp.Write(buf[12:], media.PCMU, now.UnixNano(), c.id, c.idx)
	if _, err := c.conn.WriteToUDPAddrPort(buf, c.dst); err == nil && !now.Before(w0) && now.Before(w1) {
		c.sent++
	}
	c.seq++
	c.ts += media.FrameSamples
	c.idx++
}

// receive reads what comes back to the caller until its socket is
// closed: its echoed frames, by index, and silence.
func (c *caller) receive(w0, w1 int64) {
	buf := make([]byte, 1500)
	var ts0 uint32
	first := true
	for {
		n, err := c.conn.Read(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		now := time.Now().UnixNano()
		b := buf[:n]
		hl := rtpHeaderLen(b)
		if hl == 0 || b[1]&0x7F != media.PCMU.PayloadType() {
			c.wrong++
			continue
		}
		ts := binary.BigEndian.Uint32(b[4:8])
		if first {
			ts0, first = ts, false
		}
		sent, stream, idx, ok := stamp.Read(b[hl:], media.PCMU)
		if !ok {
			if isSilence(b[hl:]) {
				c.silence++
				c.pending++
			} else {
				c.wrong++
			}
			continue
		}
		if stream != c.id || int(idx) >= len(c.rtt) {
			c.wrong++
			continue
		}
		if c.rtt[idx] != 0 {
			c.dups++
			continue
		}
		if sent >= w0 && sent < w1 {
			// A frame that came after silence since the last echoed one
			// came a slot (or more) late: those slots were gaps.
			if idx > 0 && c.rtt[idx-1] != 0 {
				c.gaps += c.pending
			}
			c.rtt[idx] = int32(min((now-sent)/1000, 1<<30)) + 1
			// Arrival less the RTP timestamp, on the caller's clock from
			// the first packet (the wall clock's 8 kHz): how late the
			// frame is against the stream it came in.
			c.transit[idx] = int32((now - int64(int32(ts-ts0))*125000) / 1000 % (1 << 30))
		}
		c.pending = 0
	}
}

// isSilence reports whether p is a frame of PCMU silence.
func isSilence(p []byte) bool {
	for _, b := range p {
		if b != 0xFF && b != 0x7F {
			return false
		}
	}
	return len(p) > 0
}

// memStats is what the mem request answers.
type memStats struct {
	goroutines, heap, stack, calls int64
}

func mem(c *loadkit.Client) (memStats, error) {
	f, err := c.Request("mem")
	if err != nil {
		return memStats{}, err
	}
	if len(f) != 4 {
		return memStats{}, fmt.Errorf("switchback: mem answered %v", f)
	}
	var v [4]int64
	for i := range v {
		v[i], _ = strconv.ParseInt(f[i], 10, 64)
	}
	return memStats{v[0], v[1], v[2], v[3]}, nil
}

// settled answers the mem request once the calls of an earlier step are
// gone: none left, and as many goroutines as 200 ms before (their agents'
// connections and the runtime's calls end after the end request is
// answered). It gives up waiting after 30 s and answers what it has.
func settled(c *loadkit.Client) (memStats, error) {
	m, err := mem(c)
	for deadline := time.Now().Add(30 * time.Second); err == nil && time.Now().Before(deadline); {
		time.Sleep(200 * time.Millisecond)
		var next memStats
		if next, err = mem(c); err == nil && m.calls == 0 && next.calls == 0 && next.goroutines == m.goroutines {
			return next, nil
		}
		m = next
	}
	return m, err
}

// agentClient speaks to the agent's process.
type agentClient struct {
	base string
	http *http.Client
}

func (a *agentClient) post(path string) error {
	resp, err := a.http.Post(a.base+path, "text/plain", nil)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		return fmt.Errorf("%s: %s: %s", path, resp.Status, strings.TrimSpace(string(b)))
	}
	return nil
}

func (a *agentClient) rtpEcho(stream int) (int, error) {
	resp, err := a.http.Post(fmt.Sprintf("%s/rtp?stream=%d", a.base, stream), "text/plain", nil)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("%s: %s", resp.Status, strings.TrimSpace(string(b)))
	}
	return strconv.Atoi(strings.TrimSpace(string(b)))
}

func (a *agentClient) holds() ([][]int32, error) {
	resp, err := a.http.Get(a.base + "/holds")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var out struct {
		Holds [][]int32 `json:"holds"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		return nil, err
	}
	return out.Holds, nil
}
