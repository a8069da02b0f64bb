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

// The load: N calls, each a caller and a callee, two UDP sockets of this
// process on 127.0.0.1, bridged by the relay under test. Every 20 ms each
// sends the other, through the relay, a G.711 packet: 2N streams, 100N
// packets a second. The streams are spread evenly over the 20 ms, as
// calls that started at random times are, by a few sender goroutines that
// each send the streams of one 1 ms slot after another, against absolute
// deadlines.
//
// Each payload carries the time it was sent, its stream and its index in
// the stream (bench/internal/stamp: 16 G.711 codes that survive transcoding
// PCMU <-> PCMA unchanged), so the receiver reads them whatever the relay
// did to the codec. A receiver goroutine per socket stamps each packet on
// arrival. Counted over a window after a warm-up, by send time: packets
// sent, received (each index once), lost, and the added latency (arrival
// less send time: both ends are this process, so it is the relay's time
// plus the kernel's loopback and this process's own scheduling), and the
// relay's CPU time from /proc over the same window.

// LoadResult is one load run against one relay.
type LoadResult struct {
	Kind    string `json:"kind"` // "load"
	Relay   string `json:"relay"`
	Round   int    `json:"round"`
	Calls   int    `json:"calls"`
	Codecs  string `json:"codecs"` // caller/callee, "PCMU/PCMA"
	Streams int    `json:"streams"`

	SetupSeconds  float64 `json:"setup_s"`
	WindowSeconds float64 `json:"window_s"`
	Sent          int64   `json:"sent"`
	Received      int64   `json:"received"`
	Lost          int64   `json:"lost"`
	LossPct       float64 `json:"loss_pct"`
	Wrong         int64   `json:"wrong"` // wrong payload type or an unreadable stamp
	Duplicates    int64   `json:"duplicates"`
	SSRCChanges   int64   `json:"ssrc_changes"`
	// Arrival less send time of the window's packets.
	LatP50ms  float64 `json:"lat_p50_ms"`
	LatP99ms  float64 `json:"lat_p99_ms"`
	LatP999ms float64 `json:"lat_p999_ms"`
	LatMaxms  float64 `json:"lat_max_ms"`
	// The relay over the window.
	RelayCPUSeconds float64 `json:"relay_cpu_s"`
	RelayCPUPct     float64 `json:"relay_cpu_pct"` // of one core
	RelayMemMB      float64 `json:"relay_mem_mb"`  // PSS at the window's end
	PPS             float64 `json:"pps"`           // packets relayed (received) per second
	PPSPerCPUSecond float64 `json:"pps_per_cpu_s"` // packets relayed per CPU-second of the relay
	// The rest of the machine over the window.
	LoadgenCPUPct float64 `json:"loadgen_cpu_pct"`
	OtherCPUPct   float64 `json:"other_cpu_pct"`
	IdlePct       float64 `json:"idle_pct"`
	StealPct      float64 `json:"steal_pct"`
	SendLagP99ms  float64 `json:"send_lag_p99_ms"`
	SendLagMaxms  float64 `json:"send_lag_max_ms"`
	UDPRcvbufErrs int64   `json:"udp_rcvbuf_errors"`
	// What the relay said of itself (Switchback only).
	RelayDropped    int64 `json:"relay_dropped"`
	RelayTranscoded int64 `json:"relay_transcoded"`
}

// flow is one direction of a call: packets from one peer socket to the
// relay, and from the relay to the other peer socket.
type flow struct {
	id        uint32 // the stream, in its stamps
	from      *net.UDPConn
	dst       netip.AddrPort // the relay's port for this flow
	to        *net.UDPConn
	sendCodec media.Codec
	recvPT    uint8
	slot      int

	// The sender's, read once it is done.
	ssrc uint32
	seq  uint16
	ts   uint32
	idx  uint32
	sent int64 // in the window

	// The receiver's, read once it is done.
	seen     []uint64 // bitset of indexes
	lat      []int32  // µs, the window's packets
	received int64    // in the window
	wrong    int64
	dups     int64
	ssrcs    int64
	lastSSRC uint32
}

// relayClient sets calls up on a relay and tears them down.
type relayClient interface {
	// setup bridges call i between the peers on ports a and b, with the
	// codecs given, and returns the relay's ports the peers send to.
	setup(i, a, b int, codecA, codecB string) (toA, toB int, err error)
	teardown(i int) error
	Close() error
}

func runLoad(args []string, w io.Writer) error {
	fs := flag.NewFlagSet("load", flag.ContinueOnError)
	relay := fs.String("relay", "", "switchback or rtpengine")
	control := fs.String("control", "", "the relay's control address: the relay's TCP line protocol, or rtpengine's ng UDP port")
	pids := fs.String("pids", "", "the relay's pid")
	calls := fs.Int("calls", 500, "bridged calls")
	codecs := fs.String("codecs", "PCMU/PCMU", "caller/callee codecs")
	warmup := fs.Duration("warmup", 2*time.Second, "load before the window, not counted")
	duration := fs.Duration("duration", 10*time.Second, "the measured window")
	drain := fs.Duration("drain", 500*time.Millisecond, "wait for packets in flight after the last is sent")
	senders := fs.Int("senders", 2, "sender goroutines")
	roundN := fs.Int("round", 1, "round number, for the results")
	if err := fs.Parse(args); err != nil {
		return err
	}
	codecA, codecB, ok := strings.Cut(*codecs, "/")
	if !ok {
		return fmt.Errorf("-codecs %q: want CALLER/CALLEE", *codecs)
	}
	ca, err := parseCodec(codecA)
	if err != nil {
		return err
	}
	cb, err := parseCodec(codecB)
	if err != nil {
		return err
	}
	if *calls < 1 || *senders < 1 || *duration <= 0 || *duration > time.Minute || *warmup > time.Minute {
		return errors.New("need -calls >= 1, -senders >= 1, 0 < -duration <= 1m, -warmup <= 1m")
	}
	pid, err := strconv.Atoi(*pids)
	if err != nil || pid <= 0 {
		return fmt.Errorf("-pids %q: want the relay's pid", *pids)
	}
	var rc relayClient
	switch *relay {
	case "switchback":
		var c *loadkit.Client
		c, err = loadkit.Dial("relay", *control)
		rc = switchbackClient{c}
	case "rtpengine":
		rc, err = dialRTPEngine(*control)
	default:
		return fmt.Errorf("-relay %q: want switchback or rtpengine", *relay)
	}
	if err != nil {
		return err
	}
	defer rc.Close()

	res := LoadResult{Kind: "load", Relay: *relay, Round: *roundN, Calls: *calls, Codecs: ca.String() + "/" + cb.String(), Streams: 2 * *calls}
	maxPackets := int((*warmup+*duration)/(20*time.Millisecond)) + 10
	windowPackets := int(*duration/(20*time.Millisecond)) + 10

	// Set up: two sockets a call, bridged by the relay.
	setupStart := time.Now()
	var socks []*net.UDPConn
	defer func() {
		for _, c := range socks {
			c.Close()
		}
	}()
	listen := func() (*net.UDPConn, error) {
		c, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(loopback, 0)))
		if err == nil {
			socks = append(socks, c)
		}
		return c, err
	}
	flows := make([]*flow, 0, 2**calls)
	set := 0
	defer func() {
		for i := range set {
			if err := rc.teardown(i); err != nil {
				logf("%s: teardown of call %d: %v", *relay, i, err)
			}
		}
	}()
	for i := range *calls {
		a, err := listen()
		if err != nil {
			return err
		}
		b, err := listen()
		if err != nil {
			return err
		}
		pa, pb := a.LocalAddr().(*net.UDPAddr).Port, b.LocalAddr().(*net.UDPAddr).Port
		toA, toB, err := rc.setup(i, pa, pb, ca.String(), cb.String())
		if err != nil {
			return fmt.Errorf("%s: set up call %d: %w", *relay, i, err)
		}
		set++
		for _, f := range []*flow{
			{from: a, dst: netip.AddrPortFrom(loopback, uint16(toA)), to: b, sendCodec: ca, recvPT: cb.PayloadType()},
			{from: b, dst: netip.AddrPortFrom(loopback, uint16(toB)), to: a, sendCodec: cb, recvPT: ca.PayloadType()},
		} {
			f.ssrc, f.seq, f.ts = rand.Uint32(), uint16(rand.Uint32()), rand.Uint32()
			f.seen = make([]uint64, (maxPackets+63)/64)
			f.lat = make([]int32, 0, windowPackets)
			f.id = uint32(len(flows))
			f.slot = len(flows) % loadkit.Slots
			flows = append(flows, f)
		}
	}
	res.SetupSeconds = round(time.Since(setupStart).Seconds(), 2)

	start := time.Now().Add(100 * time.Millisecond)
	w0 := start.Add(*warmup)
	w1 := w0.Add(*duration)

	var receivers sync.WaitGroup
	for _, f := range flows {
		receivers.Go(func() { f.receive(w0.UnixNano(), w1.UnixNano()) })
	}

	// CPU at the window's edges.
	relayProcs := procstat.Reader{Server: []int{pid}, Self: true, Memory: true}
	var at0, at1 procstat.Sample
	var sampled sync.WaitGroup
	sampled.Go(func() {
		time.Sleep(time.Until(w0))
		at0 = relayProcs.Read()
		time.Sleep(time.Until(w1))
		at1 = relayProcs.Read()
	})
	rcv0, _ := procstat.UDPErrors()

	// Send: each sender goroutine takes every senders-th flow.
	lags := make([][]time.Duration, *senders)
	var sending sync.WaitGroup
	for s := range *senders {
		var mine [loadkit.Slots][]*flow
		for k, f := range flows {
			if k%*senders == s {
				mine[f.slot] = append(mine[f.slot], f)
			}
		}
		sending.Go(func() { lags[s] = loadkit.SendEvery20ms(&mine, 12+media.FrameSamples, start, w0, w1) })
	}
	sending.Wait()
	sampled.Wait()
	time.Sleep(*drain)
	rcv1, _ := procstat.UDPErrors()
	for _, c := range socks {
		c.Close()
	}
	receivers.Wait()

	// Tear down now, so the relay's own counts come with the result.
	for i := range set {
		if sb, ok := rc.(switchbackClient); ok {
			d, t, err := sb.unbridge(i)
			if err != nil {
				logf("switchback: teardown of call %d: %v", i, err)
			}
			res.RelayDropped += d
			res.RelayTranscoded += t
			continue
		}
		if err := rc.teardown(i); err != nil {
			logf("%s: teardown of call %d: %v", *relay, i, err)
		}
	}
	set = 0

	var all []int32
	for _, f := range flows {
		res.Sent += f.sent
		res.Received += f.received
		res.Wrong += f.wrong
		res.Duplicates += f.dups
		res.SSRCChanges += f.ssrcs
		all = append(all, f.lat...)
	}
	res.Lost = max(res.Sent-res.Received, 0)
	if res.Sent > 0 {
		res.LossPct = round(100*float64(res.Lost)/float64(res.Sent), 3)
	}
	slices.Sort(all)
	q := func(p float64) float64 {
		if len(all) == 0 {
			return 0
		}
		return round(float64(all[min(int(p*float64(len(all))), len(all)-1)])/1000, 3)
	}
	res.LatP50ms, res.LatP99ms, res.LatP999ms = q(0.50), q(0.99), q(0.999)
	if len(all) > 0 {
		res.LatMaxms = round(float64(all[len(all)-1])/1000, 3)
	}
	var allLags []time.Duration
	for _, l := range lags {
		allLags = append(allLags, l...)
	}
	slices.Sort(allLags)
	if n := len(allLags); n > 0 {
		res.SendLagP99ms = round(allLags[min(n*99/100, n-1)].Seconds()*1000, 3)
		res.SendLagMaxms = round(allLags[n-1].Seconds()*1000, 3)
	}
	secs := at1.At.Sub(at0.At).Seconds()
	res.WindowSeconds = round(secs, 3)
	if secs > 0 {
		relayTicks := procstat.ServerTicks(at0, at1)
		res.RelayCPUSeconds = round(float64(relayTicks)/procstat.TicksPerSecond, 2)
		res.RelayCPUPct = round(100*res.RelayCPUSeconds/secs, 1)
		res.PPS = round(float64(res.Received)/secs, 0)
		if res.RelayCPUSeconds > 0 {
			res.PPSPerCPUSecond = round(float64(res.Received)/res.RelayCPUSeconds, 0)
		}
		self := at1.Client - at0.Client
		res.LoadgenCPUPct = round(100*float64(self)/procstat.TicksPerSecond/secs, 1)
		busy := at1.Busy - at0.Busy
		res.OtherCPUPct = round(max(100*float64(busy-relayTicks-self)/procstat.TicksPerSecond/secs, 0), 1)
		res.StealPct = round(100*float64(at1.Steal-at0.Steal)/procstat.TicksPerSecond/secs, 1)
		res.IdlePct = round(float64(runtime.NumCPU())*100-100*float64(busy)/procstat.TicksPerSecond/secs, 1)
	}
	res.RelayMemMB = round(float64(at1.ServerPSSKB)/1024, 1)
	res.UDPRcvbufErrs = rcv1 - rcv0

	logf("%s %d calls %s: sent %d, lost %d (%.3f%%), latency p50 %.2f p99 %.2f max %.2f ms, relay CPU %.1f%% (%.0f packets/CPU-s), loadgen %.1f%%, idle %.0f%%",
		res.Relay, res.Calls, res.Codecs, res.Sent, res.Lost, res.LossPct, res.LatP50ms, res.LatP99ms, res.LatMaxms,
		res.RelayCPUPct, res.PPSPerCPUSecond, res.LoadgenCPUPct, res.IdlePct)
	return json.NewEncoder(w).Encode(res)
}

// Send sends the flow's next packet, stamped with the time.
func (f *flow) Send(buf []byte, w0, w1 time.Time) {
	buf[0] = 2 << 6
	buf[1] = f.sendCodec.PayloadType()
	binary.BigEndian.PutUint16(buf[2:4], f.seq)
	binary.BigEndian.PutUint32(buf[4:8], f.ts)
	binary.BigEndian.PutUint32(buf[8:12], f.ssrc)
	now := time.Now()
	stamp.Write(buf[12:], f.sendCodec, now.UnixNano(), f.id, f.idx)
	if _, err := f.from.WriteToUDPAddrPort(buf, f.dst); err == nil && !now.Before(w0) && now.Before(w1) {
		f.sent++
	}
	f.seq++
	f.ts += media.FrameSamples
	f.idx++
}

// receive reads the flow's packets until its socket is closed.
func (f *flow) receive(w0, w1 int64) {
	buf := make([]byte, 1500)
	for {
		n, err := f.to.Read(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		now := time.Now().UnixNano()
		b := buf[:n]
		if n < 12 || b[0]>>6 != 2 || b[1]&0x7F != f.recvPT {
			f.wrong++
			continue
		}
		if ssrc := binary.BigEndian.Uint32(b[8:12]); ssrc != f.lastSSRC {
			if f.lastSSRC != 0 {
				f.ssrcs++
			}
			f.lastSSRC = ssrc
		}
		hl := 12 + 4*int(b[0]&0x0F)
		if b[0]&0x10 != 0 && n >= hl+4 {
			hl += 4 + 4*int(binary.BigEndian.Uint16(b[hl+2:hl+4]))
		}
		if hl > n {
			f.wrong++
			continue
		}
		codec := media.PCMU
		if f.recvPT == media.PCMA.PayloadType() {
			codec = media.PCMA
		}
		sent, stream, idx, ok := stamp.Read(b[hl:], codec)
		if !ok || stream != f.id || int(idx/64) >= len(f.seen) {
			f.wrong++
			continue
		}
		bit := uint64(1) << (idx % 64)
		if f.seen[idx/64]&bit != 0 {
			f.dups++
			continue
		}
		f.seen[idx/64] |= bit
		if sent >= w0 && sent < w1 {
			f.received++
			if len(f.lat) < cap(f.lat) {
				f.lat = append(f.lat, int32(min((now-sent)/1000, 1<<31-1)))
			}
		}
	}
}

// switchbackClient drives bridgebench relay over its line protocol.
type switchbackClient struct{ *loadkit.Client }

func (c switchbackClient) setup(i, a, b int, codecA, codecB string) (int, int, error) {
	f, err := c.Request(fmt.Sprintf("bridge %d %s %s %d %d", i, codecA, codecB, a, b))
	if err != nil {
		return 0, 0, err
	}
	if len(f) != 2 {
		return 0, 0, fmt.Errorf("relay answered %v", f)
	}
	toA, err1 := strconv.Atoi(f[0])
	toB, err2 := strconv.Atoi(f[1])
	if err1 != nil || err2 != nil {
		return 0, 0, fmt.Errorf("relay answered %v", f)
	}
	return toA, toB, nil
}

func (c switchbackClient) teardown(i int) error {
	_, _, err := c.unbridge(i)
	return err
}

// unbridge tears call i down and returns the packets the relay dropped and
// transcoded on it.
func (c switchbackClient) unbridge(i int) (dropped, transcoded int64, err error) {
	f, err := c.Request(fmt.Sprintf("unbridge %d", i))
	if err != nil {
		return 0, 0, err
	}
	if len(f) == 4 {
		dropped, _ = strconv.ParseInt(f[2], 10, 64)
		transcoded, _ = strconv.ParseInt(f[3], 10, 64)
	}
	return dropped, transcoded, nil
}

// rtpengineClient drives rtpengine over ng: an offer from the caller, an
// answer from the callee, a delete at the end.
type rtpengineClient struct {
	ng     *ngClient
	prefix string
}

func dialRTPEngine(addr string) (*rtpengineClient, error) {
	ng, err := dialNG(addr)
	if err != nil {
		return nil, err
	}
	if _, err := ng.call(map[string]any{"command": "ping"}); err != nil {
		ng.Close()
		return nil, err
	}
	return &rtpengineClient{ng: ng, prefix: "bench-" + strconv.FormatInt(time.Now().UnixNano(), 36) + "-"}, nil
}

func (c *rtpengineClient) Close() error { return c.ng.Close() }

func (c *rtpengineClient) setup(i, a, b int, codecA, codecB string) (int, int, error) {
	id := c.prefix + strconv.Itoa(i)
	offer := map[string]any{
		"command": "offer", "call-id": id, "from-tag": "caller",
		"sdp": peerSDP(a, codecA),
	}
	if codecA != codecB {
		// Offer the callee only its codec, and transcode.
		offer["codec"] = map[string]any{"mask": []string{codecA}, "transcode": []string{codecB}}
	}
	o, err := c.ng.call(offer)
	if err != nil {
		return 0, 0, err
	}
	sdp, _ := o["sdp"].(string)
	toB, err := sdpPort(sdp) // where the callee sends
	if err != nil {
		return 0, 0, err
	}
	ans, err := c.ng.call(map[string]any{
		"command": "answer", "call-id": id, "from-tag": "caller", "to-tag": "callee",
		"sdp": peerSDP(b, codecB),
	})
	if err != nil {
		return 0, 0, err
	}
	sdp, _ = ans["sdp"].(string)
	toA, err := sdpPort(sdp) // where the caller sends
	if err != nil {
		return 0, 0, err
	}
	return toA, toB, nil
}

func (c *rtpengineClient) teardown(i int) error {
	_, err := c.ng.call(map[string]any{"command": "delete", "call-id": c.prefix + strconv.Itoa(i), "from-tag": "caller"})
	return err
}
