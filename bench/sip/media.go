package main

import (
	"context"
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
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/switchback/switchback/bench/internal/procstat"
	"github.com/switchback/switchback/internal/media"
	"github.com/switchback/switchback/internal/softphone"
)

// The media test: N calls at once, each hearing the agent's greeting, a
// long tone, as 20 ms G.711 packets. Each call has its own RTP socket and
// receive goroutine that stamps every packet on arrival. Counted over a
// window when every call is up:
//
//   - expected: the window's length / 20 ms, per call;
//   - lost: the larger of the gaps in the sequence numbers and the packets
//     missing against the wall clock (a sender that fell more than 200 ms
//     behind skips ahead rather than catching up: no sequence gap, but
//     packets that never came);
//   - late: packets whose transit (arrival less RTP timestamp) exceeds the
//     call's smallest transit by more than 40 ms: what a 40 ms jitter
//     buffer would have thrown away.
//
// media.Session.Stats counts sequence gaps and reordering, but not when a
// packet arrived, which lateness needs; this receiver counts both.

// MediaResult is one media test.
type MediaResult struct {
	Kind          string  `json:"kind"` // "media"
	Round         int     `json:"round"`
	Calls         int     `json:"calls"`
	Answered      int     `json:"answered"`
	Failed        int     `json:"failed"`
	FirstError    string  `json:"first_error,omitempty"`
	ClientSends   bool    `json:"client_sends"`
	SetupSeconds  float64 `json:"setup_s"`
	WindowSeconds float64 `json:"window_s"`
	Expected      int64   `json:"expected"`
	Received      int64   `json:"received"`
	Lost          int64   `json:"lost"`
	SeqLost       int64   `json:"seq_lost"`
	Late          int64   `json:"late"`
	LostPct       float64 `json:"lost_pct"`
	LatePct       float64 `json:"late_pct"`
	LateLostPct   float64 `json:"late_or_lost_pct"`
	CallsOver1Pct int     `json:"calls_over_1pct"`
	CallsSilent   int     `json:"calls_silent"`
	Resyncs       int64   `json:"sender_resyncs"` // timestamp jumps: the sender skipped ahead
	// Transit less the call's smallest, over the window's packets.
	JitterP50ms float64 `json:"delay_p50_ms"`
	JitterP99ms float64 `json:"delay_p99_ms"`
	JitterMaxms float64 `json:"delay_max_ms"`
	MaxGapms    float64 `json:"max_gap_ms"`
	// The server while the calls were up.
	Usage         procstat.Usage `json:"usage"`
	MemBaseMB     float64        `json:"server_mem_before_mb"`
	CPUPerCallPct float64        `json:"server_cpu_pct_per_call"` // of one core
	MemPerCallKB  float64        `json:"server_mem_kb_per_call"`
	UDPRcvbufErrs int64          `json:"udp_rcvbuf_errors"`
	// From the server's /metrics, before the calls and with them all up.
	Before, Held      goMetrics
	GoroutinesPerCall float64 `json:"goroutines_per_call"`
	FDsPerCall        float64 `json:"fds_per_call"`
	StackKBPerCall    float64 `json:"stack_kb_per_call"` // goroutine stacks in use
}

// goMetrics are the server's Go runtime figures.
type goMetrics struct {
	Goroutines float64 `json:"goroutines"`
	HeapInuse  float64 `json:"heap_inuse_bytes"`
	StackInuse float64 `json:"stack_inuse_bytes"`
	FDs        float64 `json:"open_fds"`
}

// scrape reads the server's /metrics.
func scrape(url string) goMetrics {
	var m goMetrics
	if url == "" {
		return m
	}
	client := &http.Client{Timeout: 5 * time.Second}
	res, err := client.Get(url)
	if err != nil {
		return m
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) != 2 {
			continue
		}
		v, err := strconv.ParseFloat(f[1], 64)
		if err != nil {
			continue
		}
		switch f[0] {
		case "go_goroutines":
			m.Goroutines = v
		case "go_memstats_heap_inuse_bytes":
			m.HeapInuse = v
		case "go_memstats_stack_inuse_bytes":
			m.StackInuse = v
		case "process_open_fds":
			m.FDs = v
		}
	}
	return m
}

type arrival struct {
	at  int64 // UnixNano
	seq uint16
	ts  uint32
}

// mcall is one call of the media test.
type mcall struct {
	id     string
	conn   *net.UDPConn
	call   *softphone.Call
	remote netip.AddrPort // where the answer's SDP says to send
	pt     uint8
	arr    []arrival
	over   atomic.Int64 // packets beyond arr's capacity
	err    error
}

func (c *mcall) receive(wg *sync.WaitGroup) {
	defer wg.Done()
	buf := make([]byte, 1500)
	for {
		n, err := c.conn.Read(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		now := time.Now().UnixNano()
		if n < 12 || buf[0]>>6 != 2 {
			continue
		}
		if len(c.arr) == cap(c.arr) {
			c.over.Add(1)
			continue
		}
		c.arr = append(c.arr, arrival{at: now, seq: binary.BigEndian.Uint16(buf[2:4]), ts: binary.BigEndian.Uint32(buf[4:8])})
	}
}

func runMedia(args []string) error {
	fs := flag.NewFlagSet("media", flag.ContinueOnError)
	dest := fs.String("dest", "", "Switchback's SIP address, host:port (UDP)")
	user := fs.String("user", "bench", "the tenant's SIP user: the Request-URI's user part")
	idsFile := fs.String("ids", "", "file of ACTIVE transfer ids, one a line, whose task plays a long greeting")
	n := fs.Int("n", 1000, "calls at once")
	cps := fs.Int("cps", 200, "calls started per second while setting up")
	settle := fs.Duration("settle", time.Second, "wait after the last answer before the window")
	hold := fs.Duration("hold", 15*time.Second, "the measured window, with every call up")
	send := fs.Bool("send", false, "also send 20 ms PCMU to the server on every call (both directions)")
	pids := fs.String("pids", "", "the server's pids, for its CPU and memory")
	metricsURL := fs.String("metrics", "", "the server's Prometheus /metrics URL, for goroutines, heap and fds")
	roundN := fs.Int("round", 1, "round number, for the results")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *dest == "" || *idsFile == "" || *n < 1 || *cps < 1 {
		return errors.New("need -dest, -ids, -n >= 1 and -cps >= 1")
	}
	serverPids, err := procstat.ParsePIDs(*pids)
	if err != nil {
		return err
	}
	b, err := os.ReadFile(*idsFile)
	if err != nil {
		return err
	}
	ids := strings.Fields(string(b))
	if len(ids) < *n {
		return fmt.Errorf("%s has %d ids, want %d", *idsFile, len(ids), *n)
	}
	if _, _, err := net.SplitHostPort(*dest); err != nil {
		return fmt.Errorf("-dest: %w", err)
	}
	target := "sip:" + *user + "@" + *dest

	// One SIP socket for every call, with room for their bursts.
	phone, err := softphone.New(softphone.Options{Name: "sipbench", SocketBuffer: 4 << 20})
	if err != nil {
		return err
	}
	defer phone.Close()

	base := procstat.Reader{Server: serverPids, Memory: true}.Read()
	r := MediaResult{Kind: "media", Round: *roundN, Calls: *n, ClientSends: *send}
	r.Before = scrape(*metricsURL)
	rcv0, _ := procstat.UDPErrors()

	// Set up: -cps calls a second, each in its own goroutine.
	capacity := int((time.Duration(*n/(*cps)+3)*time.Second+*settle+*hold+5*time.Second)/(20*time.Millisecond)) + 200
	calls := make([]*mcall, *n)
	var recv, setup sync.WaitGroup
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	start := time.Now()
	tick := time.NewTicker(time.Second / time.Duration(*cps))
	for i := range *n {
		<-tick.C
		c := &mcall{id: ids[i], arr: make([]arrival, 0, capacity)}
		calls[i] = c
		setup.Go(func() {
			c.err = dial(ctx, phone, c, target, &recv)
		})
	}
	tick.Stop()
	setup.Wait()
	r.SetupSeconds = round(time.Since(start).Seconds(), 2)
	var up []*mcall
	for _, c := range calls {
		if c.err != nil {
			r.Failed++
			if r.FirstError == "" {
				r.FirstError = c.err.Error()
			}
			continue
		}
		up = append(up, c)
	}
	r.Answered = len(up)
	logf("media: %d of %d calls answered in %.1f s", r.Answered, *n, r.SetupSeconds)

	var sending sync.WaitGroup
	stopSend := make(chan struct{})
	if *send {
		sending.Go(func() { sendAll(up, stopSend) })
	}

	sleepCtx(ctx, *settle)
	w0 := time.Now()
	smp := procstat.Start(procstat.Reader{Server: serverPids, Self: true, Memory: true}, 500*time.Millisecond)
	sleepCtx(ctx, *hold/2)
	r.Held = scrape(*metricsURL)
	sleepCtx(ctx, *hold-*hold/2)
	w1 := time.Now()
	samples := smp.Finish()
	rcv1, _ := procstat.UDPErrors()
	close(stopSend)
	sending.Wait()

	// Hang up, 64 at a time.
	sem := make(chan struct{}, 64)
	var bye sync.WaitGroup
	for _, c := range up {
		select {
		case <-c.call.Ended():
			continue // the server hung up
		default:
		}
		sem <- struct{}{}
		bye.Go(func() {
			defer func() { <-sem }()
			bctx, done := context.WithTimeout(context.Background(), 5*time.Second)
			defer done()
			c.call.Hangup(bctx)
		})
	}
	bye.Wait()
	for _, c := range calls {
		if c.conn != nil {
			c.conn.Close()
		}
		if c.call != nil {
			c.call.Close()
		}
	}
	recv.Wait()

	r.Usage = procstat.UsageBetween(samples[0], samples[len(samples)-1], samples)
	r.MemBaseMB = round(float64(base.ServerPSSKB)/1024, 1)
	r.UDPRcvbufErrs = rcv1 - rcv0
	if r.Answered > 0 {
		r.CPUPerCallPct = round(r.Usage.ServerPct/float64(r.Answered), 4)
		r.MemPerCallKB = round((r.Usage.MemMaxMB-r.MemBaseMB)*1024/float64(r.Answered), 1)
		if r.Before.Goroutines > 0 && r.Held.Goroutines > 0 {
			a := float64(r.Answered)
			r.GoroutinesPerCall = round((r.Held.Goroutines-r.Before.Goroutines)/a, 2)
			r.FDsPerCall = round((r.Held.FDs-r.Before.FDs)/a, 2)
			r.StackKBPerCall = round((r.Held.StackInuse-r.Before.StackInuse)/1024/a, 1)
		}
	}
	analyse(&r, up, w0, w1)
	line, _ := json.Marshal(r)
	fmt.Println(string(line))
	logf("media: %d calls over %.1f s: %d packets expected, %d received, %d lost (%.3f%%), %d late >40 ms (%.3f%%); delay p99 %.1f ms, max gap %.0f ms; server CPU %.0f%% of a core (%.3f%% a call), mem %.0f MB (%.0f KB a call; stacks %.1f KB, %.1f goroutines, %.1f fds a call)",
		r.Answered, r.WindowSeconds, r.Expected, r.Received, r.Lost, r.LostPct, r.Late, r.LatePct,
		r.JitterP99ms, r.MaxGapms, r.Usage.ServerPct, r.CPUPerCallPct, r.Usage.MemMaxMB, r.MemPerCallKB, r.StackKBPerCall, r.GoroutinesPerCall, r.FDsPerCall)
	return nil
}

// analyse counts, over the window [w0, w1), what each call received.
func analyse(r *MediaResult, calls []*mcall, w0, w1 time.Time) {
	const frame = int64(20 * time.Millisecond)
	win := w1.Sub(w0)
	r.WindowSeconds = round(win.Seconds(), 2)
	expected := int64(win) / frame
	lateAfter := int64(40 * time.Millisecond)
	var delays []float64
	var maxGap int64
	for _, c := range calls {
		a := c.arr
		if len(a) == 0 {
			r.CallsSilent++
			r.Expected += expected
			r.Lost += expected
			continue
		}
		// Unwrap sequence numbers and timestamps; the smallest transit.
		seqU := make([]int64, len(a))
		tsU := make([]int64, len(a))
		minTransit := int64(1 << 62)
		for i := range a {
			if i == 0 {
				seqU[i], tsU[i] = int64(a[i].seq), int64(a[i].ts)
			} else {
				seqU[i] = seqU[i-1] + int64(int16(a[i].seq-a[i-1].seq))
				tsU[i] = tsU[i-1] + int64(int32(a[i].ts-a[i-1].ts))
				if d := seqU[i] - seqU[i-1]; d > 0 && tsU[i]-tsU[i-1] != 160*d {
					r.Resyncs++
				}
			}
			transit := a[i].at - tsU[i]*int64(time.Second)/media.SampleRate
			minTransit = min(minTransit, transit)
		}
		var got, late int64
		lo, hi := int64(1<<62), int64(-1<<62)
		prev := int64(0)
		for i := range a {
			if a[i].at < w0.UnixNano() || a[i].at >= w1.UnixNano() {
				continue
			}
			got++
			lo, hi = min(lo, seqU[i]), max(hi, seqU[i])
			d := a[i].at - tsU[i]*int64(time.Second)/media.SampleRate - minTransit
			if d > lateAfter {
				late++
			}
			delays = append(delays, float64(d)/1e6)
			if prev != 0 {
				maxGap = max(maxGap, a[i].at-prev)
			}
			prev = a[i].at
		}
		var seqLost int64
		if got > 0 {
			seqLost = max(hi-lo+1-got, 0)
		}
		lost := max(seqLost, expected-got, 0)
		r.Expected += expected
		r.Received += got
		r.SeqLost += seqLost
		r.Lost += lost
		r.Late += late
		if float64(lost+late) > 0.01*float64(expected) {
			r.CallsOver1Pct++
		}
	}
	if r.Expected > 0 {
		r.LostPct = round(100*float64(r.Lost)/float64(r.Expected), 3)
		r.LatePct = round(100*float64(r.Late)/float64(r.Expected), 3)
		r.LateLostPct = round(100*float64(r.Lost+r.Late)/float64(r.Expected), 3)
	}
	if len(delays) > 0 {
		sort.Float64s(delays)
		q := func(p float64) float64 { return round(delays[min(len(delays)-1, int(p*float64(len(delays))))], 2) }
		r.JitterP50ms, r.JitterP99ms, r.JitterMaxms = q(0.5), q(0.99), round(delays[len(delays)-1], 2)
	}
	r.MaxGapms = round(float64(maxGap)/1e6, 1)
}

// sendAll sends a 20 ms PCMU packet of silence on every call every 20 ms,
// from each call's RTP socket (so symmetric RTP latches to it).
func sendAll(calls []*mcall, stop <-chan struct{}) {
	type state struct {
		seq  uint16
		ts   uint32
		ssrc uint32
	}
	st := make([]state, len(calls))
	for i := range st {
		st[i] = state{seq: uint16(rand.Uint32()), ts: rand.Uint32(), ssrc: rand.Uint32()}
	}
	pkt := make([]byte, 12+160)
	for i := 12; i < len(pkt); i++ {
		pkt[i] = 0xFF // µ-law silence
	}
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
		}
		for i, c := range calls {
			if !c.remote.IsValid() {
				continue
			}
			s := &st[i]
			pkt[0], pkt[1] = 0x80, c.pt
			binary.BigEndian.PutUint16(pkt[2:], s.seq)
			binary.BigEndian.PutUint32(pkt[4:], s.ts)
			binary.BigEndian.PutUint32(pkt[8:], s.ssrc)
			c.conn.WriteToUDPAddrPort(pkt, c.remote)
			s.seq++
			s.ts += 160
		}
	}
}

// dial places c with phone: its RTP socket and receiver first, then
// INVITE with a PCMU offer naming that socket and the transfer id, 200,
// ACK. The socket stays the receiver's: the phone does not touch it.
func dial(ctx context.Context, phone *softphone.Phone, c *mcall, target string, recv *sync.WaitGroup) error {
	conn, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.MustParseAddrPort("127.0.0.1:0")))
	if err != nil {
		return err
	}
	c.conn = conn
	recv.Add(1)
	go c.receive(recv)
	cctx, done := context.WithTimeout(ctx, 30*time.Second)
	defer done()
	call, err := phone.Dial(cctx, target, softphone.DialOptions{TransferID: c.id, RTP: conn, Codecs: []media.Codec{media.PCMU}})
	if err != nil {
		var refused *softphone.RefusedError
		if errors.As(err, &refused) {
			return fmt.Errorf("refused: %d %s", refused.Response.StatusCode, refused.Response.Reason)
		}
		return fmt.Errorf("INVITE: %w", err)
	}
	c.call = call
	params := call.Params()
	c.remote, c.pt = params.Remote, params.PayloadType
	return nil
}
