package e2e

import (
	"bytes"
	"context"
	wire "encoding/binary"
	"fmt"
	"math"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/switchback/switchback/internal/media"
)

// The peers and instruments of the agent tests: the pipecat example bot as
// a process, a capture of the loopback's UDP traffic (what the caller
// hears, and when each SIP request reaches its peer), caller audio written
// as a pcap for SIPp to play, and SIPp callers whose ports are known.

// pipecatBot is examples/pipecat/bot.py running on a loopback port.
type pipecatBot struct {
	url string
	out *lockedBuffer
}

// startPipecatBot runs the example bot from the repository's .venv on
// port, with token as its authToken and apiBase as the API its auto
// hang-up reaches, and returns once it answers. A bot that cannot start
// fails the test: scripts/python-deps.sh installs it.
func startPipecatBot(t *testing.T, port int, token, apiBase string) *pipecatBot {
	t.Helper()
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("bash", filepath.Join(root, "scripts", "python-deps.sh")).CombinedOutput(); err != nil {
		t.Fatalf("scripts/python-deps.sh: %v\n%s", err, out)
	}
	python := filepath.Join(root, ".venv", "bin", "python")
	b := &pipecatBot{url: fmt.Sprintf("ws://127.0.0.1:%d/media", port), out: &lockedBuffer{}}
	cmd := exec.Command(python, filepath.Join(root, "examples", "pipecat", "bot.py"),
		"--host", "127.0.0.1", "--port", strconv.Itoa(port), "--auth-token", token, "--api-base-url", apiBase)
	cmd.Stdout, cmd.Stderr = b.out, b.out
	if err := cmd.Start(); err != nil {
		t.Fatalf("start the pipecat bot: %v", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-exited
		if t.Failed() {
			t.Logf("pipecat bot output:\n%s", b.out)
		}
	})
	health := fmt.Sprintf("http://127.0.0.1:%d/healthz", port)
	for deadline := time.Now().Add(90 * time.Second); ; {
		if res, err := http.Get(health); err == nil {
			res.Body.Close()
			if res.StatusCode == http.StatusOK {
				return b
			}
		}
		select {
		case err := <-exited:
			t.Fatalf("the pipecat bot exited: %v\n%s", err, b.out)
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("the pipecat bot did not answer on %s:\n%s", health, b.out)
		}
	}
}

// freeLoopbackTCPPort returns a TCP port free on 127.0.0.1 at the time of
// the call.
func freeLoopbackTCPPort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// packet is one UDP datagram the capture saw, with the kernel's time of
// its arrival.
type packet struct {
	at       time.Time
	src, dst int // UDP ports
	payload  []byte
}

// sip reports whether p is a SIP message starting with prefix ("BYE ",
// "SIP/2.0 200").
func (p packet) sip(prefix string) bool { return bytes.HasPrefix(p.payload, []byte(prefix)) }

// rtpAudio returns the payload type and the decoded audio of an RTP
// packet of G.711, or ok false.
func (p packet) rtpAudio() (pt uint8, pcm []int16, ok bool) {
	b := p.payload
	if len(b) < 12 || b[0]>>6 != 2 {
		return 0, nil, false
	}
	pt = b[1] & 0x7f
	off := 12 + 4*int(b[0]&0x0f)
	if b[0]&0x10 != 0 && len(b) >= off+4 {
		off += 4 + 4*int(wire.BigEndian.Uint16(b[off+2:]))
	}
	if off > len(b) {
		return 0, nil, false
	}
	payload := b[off:]
	switch pt {
	case 0:
		pcm = make([]int16, len(payload))
		media.DecodeULaw(pcm, payload)
	case 8:
		pcm = make([]int16, len(payload))
		media.DecodeALaw(pcm, payload)
	default:
		return pt, nil, true
	}
	return pt, pcm, true
}

// capture records the UDP datagrams sent to 127.0.0.1 from or to the
// ports it watches, as a packet capture would, through a raw socket (the
// privilege SIPp's play_pcap_audio needs too). It takes nothing from the
// sockets it watches: each datagram still reaches its port.
type capture struct {
	conn *net.IPConn
	done chan struct{}

	mu       sync.Mutex
	watched  map[int]bool
	packets  []packet
	triggers []*trigger
}

// trigger hands over the first packet a predicate matches.
type trigger struct {
	match func(packet) bool
	ch    chan packet
}

func startCapture(t *testing.T) *capture {
	t.Helper()
	pc, err := net.ListenPacket("ip4:udp", "127.0.0.1")
	if err != nil {
		t.Fatalf("the capture of what callers hear needs a raw socket (CAP_NET_RAW, as SIPp's play_pcap_audio does): %v", err)
	}
	c := &capture{conn: pc.(*net.IPConn), done: make(chan struct{}), watched: map[int]bool{}}
	c.conn.SetReadBuffer(8 << 20)
	raw, err := c.conn.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var serr error
	raw.Control(func(fd uintptr) {
		serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_TIMESTAMPNS, 1)
	})
	if serr != nil {
		t.Fatalf("SO_TIMESTAMPNS: %v", serr)
	}
	go c.read()
	t.Cleanup(func() { c.conn.Close(); <-c.done })
	return c
}

// watch adds ports to those whose traffic is kept.
func (c *capture) watch(ports ...int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, p := range ports {
		c.watched[p] = true
	}
}

// on returns a channel that gets the first packet, from now on, that match
// accepts.
func (c *capture) on(match func(packet) bool) <-chan packet {
	tr := &trigger{match: match, ch: make(chan packet, 1)}
	c.mu.Lock()
	c.triggers = append(c.triggers, tr)
	c.mu.Unlock()
	return tr.ch
}

func (c *capture) read() {
	defer close(c.done)
	buf := make([]byte, 65536)
	oob := make([]byte, 128)
	for {
		n, oobn, _, _, err := c.conn.ReadMsgIP(buf, oob)
		if err != nil {
			return
		}
		at := time.Now()
		if msgs, err := syscall.ParseSocketControlMessage(oob[:oobn]); err == nil {
			for _, m := range msgs {
				if m.Header.Level == syscall.SOL_SOCKET && m.Header.Type == syscall.SO_TIMESTAMPNS && len(m.Data) >= 16 {
					at = time.Unix(int64(wire.NativeEndian.Uint64(m.Data)), int64(wire.NativeEndian.Uint64(m.Data[8:])))
				}
			}
		}
		b := buf[:n]
		// The IPv4 header, when the read kept it.
		if len(b) >= 28 && b[0]>>4 == 4 && int(wire.BigEndian.Uint16(b[2:4])) == len(b) {
			b = b[int(b[0]&0x0f)*4:]
		}
		if len(b) < 8 {
			continue
		}
		p := packet{at: at, src: int(wire.BigEndian.Uint16(b)), dst: int(wire.BigEndian.Uint16(b[2:]))}
		c.mu.Lock()
		if c.watched[p.src] || c.watched[p.dst] {
			p.payload = bytes.Clone(b[8:])
			c.packets = append(c.packets, p)
			kept := c.triggers[:0]
			for _, tr := range c.triggers {
				if tr.match(p) {
					tr.ch <- p
				} else {
					kept = append(kept, tr)
				}
			}
			c.triggers = kept
		}
		c.mu.Unlock()
	}
}

// to returns the packets sent to port so far.
func (c *capture) to(port int) []packet {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []packet
	for _, p := range c.packets {
		if p.dst == port {
			out = append(out, p)
		}
	}
	return out
}

// heardFrame is one RTP packet of audio as the caller got it: when, and
// how loud (RMS of its samples).
type heardFrame struct {
	at  time.Time
	rms float64
}

// heard returns the audio packets sent to port (a caller's RTP), with
// their loudness.
func (c *capture) heard(port int) []heardFrame {
	var out []heardFrame
	for _, p := range c.to(port) {
		if _, pcm, ok := p.rtpAudio(); ok && pcm != nil {
			out = append(out, heardFrame{at: p.at, rms: rms(pcm)})
		}
	}
	return out
}

func rms(pcm []int16) float64 {
	var sum float64
	for _, s := range pcm {
		sum += float64(s) * float64(s)
	}
	return math.Sqrt(sum / float64(max(1, len(pcm))))
}

// Loudness thresholds of what a caller hears: G.711 silence decodes to
// almost nothing, the bot's chime and the menu's to thousands.
const (
	silentRMS = 50
	loudRMS   = 500
)

// callerAudio builds what a SIPp caller plays: 20 ms RTP packets of PCMU
// (payload type 0) and RFC 4733 telephone-events (payload type 101), with
// one SSRC, written as a pcap for play_pcap_audio.
type callerAudio struct {
	frames []callerPacket
	seq    uint16
	ts     uint32
	at     time.Duration
}

type callerPacket struct {
	at      time.Duration
	payload []byte // RTP
}

func (a *callerAudio) rtp(pt uint8, marker bool, ts uint32, payload []byte) {
	h := make([]byte, 12, 12+len(payload))
	h[0] = 0x80
	h[1] = pt
	if marker {
		h[1] |= 0x80
	}
	wire.BigEndian.PutUint16(h[2:], a.seq)
	wire.BigEndian.PutUint32(h[4:], ts)
	wire.BigEndian.PutUint32(h[8:], 0x5b0a7e11)
	a.seq++
	a.frames = append(a.frames, callerPacket{at: a.at, payload: append(h, payload...)})
}

// audio appends pcm, cut into 20 ms packets (the last one padded).
func (a *callerAudio) audio(pcm []int16) *callerAudio {
	for off := 0; off < len(pcm); off += media.FrameSamples {
		frame := make([]int16, media.FrameSamples)
		copy(frame, pcm[off:min(off+media.FrameSamples, len(pcm))])
		ulaw := make([]byte, media.FrameSamples)
		media.EncodeULaw(ulaw, frame)
		a.rtp(0, false, a.ts, ulaw)
		a.ts += media.FrameSamples
		a.at += 20 * time.Millisecond
	}
	return a
}

// silence appends d of silence.
func (a *callerAudio) silence(d time.Duration) *callerAudio {
	return a.audio(make([]int16, int(d.Milliseconds())*8))
}

// digit appends a 160 ms press of digit (RFC 4733 §2.3: the event's
// packets share its start's timestamp, the last three mark its end).
func (a *callerAudio) digit(digit rune) *callerAudio {
	code := map[rune]byte{'*': 10, '#': 11}[digit]
	if '0' <= digit && digit <= '9' {
		code = byte(digit - '0')
	}
	const packets = 8
	start := a.ts
	for i := 1; i <= packets+2; i++ {
		end := i >= packets
		dur := uint16(min(i, packets) * media.FrameSamples)
		flags := byte(10) // volume -10 dBm0
		if end {
			flags |= 0x80
		}
		a.rtp(101, i == 1, start, []byte{code, flags, byte(dur >> 8), byte(dur)})
		if i < packets {
			a.at += 20 * time.Millisecond
		}
	}
	a.ts += packets * media.FrameSamples
	a.at += 20 * time.Millisecond
	return a
}

// writePcap writes the packets as a pcap of Ethernet frames from port
// 10000 to 20000 (SIPp replaces both), and returns its path.
func (a *callerAudio) writePcap(t *testing.T, dir, name string) string {
	t.Helper()
	var b bytes.Buffer
	le := wire.LittleEndian
	hdr := make([]byte, 24)
	le.PutUint32(hdr, 0xa1b2c3d4)
	le.PutUint16(hdr[4:], 2)
	le.PutUint16(hdr[6:], 4)
	le.PutUint32(hdr[16:], 65535)
	le.PutUint32(hdr[20:], 1) // Ethernet
	b.Write(hdr)
	epoch := time.Unix(1_700_000_000, 0)
	for _, f := range a.frames {
		udpLen := 8 + len(f.payload)
		ipLen := 20 + udpLen
		frame := make([]byte, 14+ipLen)
		copy(frame[0:6], []byte{2, 0, 0, 0, 0, 2})
		copy(frame[6:12], []byte{2, 0, 0, 0, 0, 1})
		wire.BigEndian.PutUint16(frame[12:], 0x0800)
		ip := frame[14:]
		ip[0], ip[8], ip[9] = 0x45, 64, 17
		wire.BigEndian.PutUint16(ip[2:], uint16(ipLen))
		copy(ip[12:16], []byte{127, 0, 0, 1})
		copy(ip[16:20], []byte{127, 0, 0, 1})
		var sum uint32
		for i := 0; i < 20; i += 2 {
			sum += uint32(wire.BigEndian.Uint16(ip[i:]))
		}
		for sum > 0xffff {
			sum = sum&0xffff + sum>>16
		}
		wire.BigEndian.PutUint16(ip[10:], ^uint16(sum))
		udp := ip[20:]
		wire.BigEndian.PutUint16(udp[0:], 10000)
		wire.BigEndian.PutUint16(udp[2:], 20000)
		wire.BigEndian.PutUint16(udp[4:], uint16(udpLen))
		copy(udp[8:], f.payload)
		rec := make([]byte, 16)
		at := epoch.Add(f.at)
		le.PutUint32(rec, uint32(at.Unix()))
		le.PutUint32(rec[4:], uint32(at.Nanosecond()/1000))
		le.PutUint32(rec[8:], uint32(len(frame)))
		le.PutUint32(rec[12:], uint32(len(frame)))
		b.Write(rec)
		b.Write(frame)
	}
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// speech is the recorded speech the agent tests' callers say: a sentence
// of espeak-ng, 8 kHz.
func speech(t *testing.T) []int16 {
	t.Helper()
	f, err := os.Open(filepath.Join("..", "internal", "agent", "websocket", "testdata", "speech.wav"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	pcm, err := media.LoadWAV(f)
	if err != nil {
		t.Fatal(err)
	}
	return pcm
}

// sippCall is a SIPp caller running in the background, its SIP and RTP
// ports known so a capture can watch them.
type sippCall struct {
	sipPort, mediaPort int
	dir                string
	args               []string
	out                lockedBuffer
	err                error
	done               chan struct{}
}

// newSIPpCall prepares one call of scenario against target, with the CSV
// fields given: its ports are chosen, so a capture can watch them and wait
// for what reaches them, and start runs it.
func newSIPpCall(t *testing.T, target, scenario string, replace map[string]string, fields ...string) *sippCall {
	t.Helper()
	dir := t.TempDir()
	sf := writeScenario(t, dir, scenario, replace)
	inf := filepath.Join(dir, "fields.csv")
	writeFile(t, inf, "SEQUENTIAL\n"+strings.Join(fields, ";")+";\n")
	port, err := freeUDPPort()
	if err != nil {
		t.Fatal(err)
	}
	common := sippCommon(t, dir)
	c := &sippCall{sipPort: port, dir: dir, done: make(chan struct{})}
	for i, a := range common {
		if a == "-mp" {
			c.mediaPort, _ = strconv.Atoi(common[i+1])
		}
	}
	c.args = append([]string{"-sf", sf, "-inf", inf, "-l", "1", "-p", strconv.Itoa(port)}, append(common, target)...)
	return c
}

// start runs the call in the background.
func (c *sippCall) start(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	cmd := exec.CommandContext(ctx, "sipp", c.args...)
	cmd.Dir = c.dir
	cmd.Stdout, cmd.Stderr = &c.out, &c.out
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatal(err)
	}
	go func() { c.err = cmd.Wait(); cancel(); close(c.done) }()
	t.Cleanup(func() { cancel(); <-c.done })
}

// wait returns whether SIPp saw its call through as scripted, and its
// report, once it has exited.
func (c *sippCall) wait(t *testing.T) (bool, string) {
	t.Helper()
	<-c.done
	return c.err == nil, sippReport(c.dir, []byte(c.out.String()))
}
