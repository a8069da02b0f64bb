package e2e

import (
	"bufio"
	bin "encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// baresipConfig is a gateway whose "secure" tenant takes digest calls from
// loopback and answers them with a menu: a chime, then 5 s for a digit,
// and "1" hands the call back to a human agent. A transfer with the task
// "instant" is handed back at once.
const baresipConfig = `
store: {driver: sqlite, dsn: %s}
sip:
  listen: 127.0.0.1:0
  rtpPorts: {min: %d, max: %d}
  # Debian bookworm's baresip 1.0.0 (libre 1.1.0) gives up on a 401 that
  # has any challenge other than MD5, even after an MD5 one: MD5 only.
  digestAlgorithms: [MD5]
tenants:
  - id: secure
    sip:
      user: secure
      allow: [127.0.0.0/8]
      users: [{username: ivr, password: s3cret-pass}]
    agents:
      - task: instant
        menu: {digitTimeout: 0s, default: {transferType: SYSTEM, taskName: instant}}
      - menu:
          greeting: builtin:chime
          digitTimeout: 5s
          choices:
            "1": {transferType: AGENT, taskName: agent_escalation, set: {reason: pressed-1}}
          default: {transferType: SYSTEM, taskName: no_input}
pool:
  numbers:
    - {country: US, numbers: ["+12025550100-0109"]}
log: {level: info}
`

// TestBaresipCallPressesOne places a call from a real softphone: baresip
// authenticates with digest, hears the greeting, presses 1 (RFC 4733), and
// is hung up on once the outcome is stored.
func TestBaresipCallPressesOne(t *testing.T) {
	modules := requireBaresip(t)
	g := startGatewayWith(t, baresipConfig, "secure")
	g.create(t, "secure", `{"id":"baresip-1","externalConversationId":"c","type":"SIP"}`)

	b := startBaresip(t, modules)
	// baresip's dial cannot add a header: the transfer id goes in the
	// Request-URI's headers, which Switchback reads too.
	b.command(t, "dial", "sip:secure@"+g.sip+"?X-ASAPP-CallTransferId=baresip-1")
	if ev := b.waitEvent(t, 15*time.Second, "CALL_ESTABLISHED"); ev == nil {
		t.Fatalf("the call was not established\nbaresip:\n%s\nswitchback:\n%s", b.log, g.stderr)
	}
	// Let the greeting (the 0.9 s chime) play out, then press 1.
	time.Sleep(1500 * time.Millisecond)
	b.command(t, "sndcode", "1")
	ev := b.waitEvent(t, 15*time.Second, "CALL_CLOSED")
	if ev == nil {
		t.Fatalf("the gateway did not hang up\nbaresip:\n%s\nswitchback:\n%s", b.log, g.stderr)
	}
	// libre reports a BYE from the far end as ECONNRESET.
	if reason, _ := ev["param"].(string); !strings.Contains(reason, "reset by peer") {
		t.Fatalf("the call ended without the gateway's BYE: %q\nbaresip:\n%s\nswitchback:\n%s", reason, b.log, g.stderr)
	}

	r := g.get(t, "secure", "baresip-1")
	oc, _ := r.body["outputContext"].(map[string]any)
	xfer, _ := oc["transferVariables"].(map[string]any)
	if r.str("status") != "COMPLETED" || oc["transferType"] != "AGENT" || oc["currentTaskName"] != "agent_escalation" ||
		xfer["reason"] != "pressed-1" {
		t.Fatalf("after pressing 1: %s\nswitchback:\n%s", r.raw, g.stderr)
	}

	// What baresip heard: its decoded audio, dumped by the sndfile module.
	rms, seconds := b.heard(t)
	t.Logf("baresip heard %.2f s of audio at RMS %.0f", seconds, rms)
	if seconds < 0.5 || rms < 1000 {
		t.Fatalf("the greeting did not arrive: %.2f s at RMS %.0f\nbaresip:\n%s", seconds, rms, b.log)
	}
}

// startGatewayWith is startGateway with a configuration of one's own (a
// format taking the SQLite file and the RTP port range, like sipConfig),
// and a key for each of tenants only. It starts the server again when the
// SIP port could not be bound (see serveSIP).
func startGatewayWith(t *testing.T, config string, tenants ...string) *gateway {
	t.Helper()
	dir := t.TempDir()
	cfg := filepath.Join(dir, "switchback.yaml")
	rtpBase += 200
	writeFile(t, cfg, fmt.Sprintf(config, filepath.Join(dir, "sb.db"), rtpBase, rtpBase+199))
	g := &gateway{dir: dir, keys: map[string]credentials{}}
	for _, tenant := range tenants {
		out := cli(t, dir, "keys", "create", "--config", cfg, "--tenant", tenant)
		m := keyLines.FindStringSubmatch(out)
		if m == nil {
			t.Fatalf("keys create printed no key: %s", out)
		}
		g.keys[tenant] = credentials{m[1], m[2]}
	}
	for attempt := 1; ; attempt++ {
		var err error
		g.server, g.sip, err = serveSIP(t, dir, cfg)
		if err == nil {
			return g
		}
		// With sip.listen on port 0 the edge binds UDP to a free port and
		// then TCP to the same one, which a TCP socket of another process
		// (a client port in TIME_WAIT will do) may hold.
		if attempt == 3 || !strings.Contains(err.Error(), "address already in use") {
			t.Fatal(err)
		}
		t.Logf("switchback serve again: %v", err)
	}
}

// serveSIP is startServer that also waits for the SIP address, and returns
// an error instead of failing the test when the server exits at start.
func serveSIP(t *testing.T, dir, cfg string) (*server, string, error) {
	s := &server{t: t, stdout: &lockedBuffer{}, stderr: &lockedBuffer{}, done: make(chan struct{})}
	s.cmd = exec.Command(binary, "serve", "--config", cfg)
	s.cmd.Dir = dir
	s.cmd.Env = append(os.Environ(), "SWITCHBACK_API_LISTEN=127.0.0.1:0", "SWITCHBACK_SIP_LISTEN=127.0.0.1:0")
	pr, pw := io.Pipe()
	s.cmd.Stdout = pw
	s.cmd.Stderr = s.stderr
	if err := s.cmd.Start(); err != nil {
		return nil, "", err
	}
	go func() { s.cmd.Wait(); pw.Close(); close(s.done) }()
	addrs := make(chan [2]string, 1)
	go func() {
		var api, sip string
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			line := sc.Text()
			s.stdout.Write([]byte(line + "\n"))
			if m := listening.FindStringSubmatch(line); m != nil {
				api = m[1]
			}
			if m := sipListening.FindStringSubmatch(line); m != nil {
				sip = m[1]
			}
			if api != "" && sip != "" {
				addrs <- [2]string{api, sip}
				api = ""
			}
		}
		io.Copy(io.Discard, pr)
	}()
	var sip string
	select {
	case a := <-addrs:
		s.URL, sip = a[0], a[1]
	case <-s.done:
		return nil, "", fmt.Errorf("switchback serve exited: %s", s.stderr)
	case <-time.After(60 * time.Second):
		s.kill()
		return nil, "", fmt.Errorf("switchback serve did not start: %s", s.stderr)
	}
	t.Cleanup(s.kill)
	for i := 0; ; i++ {
		res, err := http.Get(s.URL + "/healthz")
		if err == nil {
			res.Body.Close()
			if res.StatusCode == 200 {
				return s, sip, nil
			}
		}
		if i > 100 {
			t.Fatalf("healthz never answered: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// baresipModules are the modules the test loads: G.711, a sine as the
// microphone, a bridge as the speaker (nothing needs to hear it), the
// sndfile filter that dumps each call's audio to WAV files, accounts, and
// the menu commands (dial, sndcode) driven over ctrl_tcp.
var baresipModules = []string{"g711", "ausine", "aubridge", "sndfile", "account", "menu", "ctrl_tcp"}

// requireBaresip fails the test when baresip or a module it needs is
// missing (scripts/deps.sh installs Debian's baresip), and returns the
// modules' directory.
func requireBaresip(t *testing.T) string {
	t.Helper()
	if _, err := exec.LookPath("baresip"); err != nil {
		t.Fatal("baresip not found: run the tests with `make test`, which installs Debian's baresip (scripts/deps.sh)")
	}
	for _, dir := range []string{"/usr/lib/baresip/modules", "/usr/local/lib/baresip/modules", "/usr/lib/x86_64-linux-gnu/baresip/modules"} {
		missing := ""
		for _, m := range baresipModules {
			if _, err := os.Stat(filepath.Join(dir, m+".so")); err != nil {
				missing = m
				break
			}
		}
		if missing == "" {
			return dir
		}
	}
	t.Fatalf("baresip's modules %v not found in /usr/lib/baresip/modules", baresipModules)
	return ""
}

// baresip is a running baresip, headless, driven over its ctrl_tcp module.
type baresip struct {
	cmd       *exec.Cmd
	done      chan struct{}
	log       *lockedBuffer
	rec       string // where sndfile dumps the calls' audio
	conn      net.Conn
	responses chan map[string]any
	events    chan map[string]any
}

// startBaresip starts baresip with a fresh configuration and connects to
// its control socket. baresip binds its SIP port itself (port 0); the
// control port is picked free, and picked again if baresip cannot bind it.
func startBaresip(t *testing.T, modules string) *baresip {
	t.Helper()
	for attempt := 0; ; attempt++ {
		b, err := tryBaresip(t, modules)
		if err == nil {
			return b
		}
		if attempt == 2 {
			t.Fatalf("baresip did not start: %v", err)
		}
		t.Logf("baresip did not start, again: %v", err)
	}
}

func tryBaresip(t *testing.T, modules string) (*baresip, error) {
	dir := t.TempDir()
	rec := filepath.Join(dir, "rec")
	if err := os.Mkdir(rec, 0o755); err != nil {
		return nil, err
	}
	ctrl, err := freeTCPPort()
	if err != nil {
		return nil, err
	}
	var cfg strings.Builder
	for _, kv := range [][2]string{
		{"poll_method", "epoll"},
		{"net_interface", "127.0.0.1"}, // else it advertises the first non-loopback address
		{"sip_listen", "127.0.0.1:0"},
		{"audio_source", "ausine,440"}, // ausine makes 48 kHz stereo only; baresip resamples
		{"ausrc_srate", "48000"},
		{"ausrc_channels", "2"},
		{"audio_player", "aubridge,nil"},
		{"audio_alert", "aubridge,nil"},
		{"statmode_default", "off"},
		{"module_path", modules},
		{"snd_path", rec},
		{"ctrl_tcp_listen", "127.0.0.1:" + strconv.Itoa(ctrl)},
	} {
		fmt.Fprintf(&cfg, "%s\t%s\n", kv[0], kv[1])
	}
	for _, m := range baresipModules {
		kind := "module"
		if m == "account" || m == "menu" || m == "ctrl_tcp" {
			kind = "module_app"
		}
		fmt.Fprintf(&cfg, "%s\t%s.so\n", kind, m)
	}
	writeFile(t, filepath.Join(dir, "config"), cfg.String())
	// regint=0: call without registering. The digest username defaults
	// to the address's user, ivr.
	writeFile(t, filepath.Join(dir, "accounts"), "<sip:ivr@127.0.0.1>;auth_pass=s3cret-pass;regint=0\n")
	writeFile(t, filepath.Join(dir, "contacts"), "")

	b := &baresip{done: make(chan struct{}), log: &lockedBuffer{}, rec: rec,
		responses: make(chan map[string]any, 16), events: make(chan map[string]any, 64)}
	// -s traces SIP into the log; -t ends baresip by itself should the
	// test die without killing it.
	b.cmd = exec.Command("baresip", "-s", "-t", "120", "-f", dir)
	b.cmd.Stdout, b.cmd.Stderr = b.log, b.log
	b.cmd.Env = append(os.Environ(), "LC_ALL=C") // its reasons are strerror's
	if err := b.cmd.Start(); err != nil {
		return nil, err
	}
	go func() { b.cmd.Wait(); close(b.done) }()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if strings.Contains(b.log.String(), "ctrl_tcp: failed to listen") {
			b.stop()
			return nil, fmt.Errorf("control port %d taken:\n%s", ctrl, b.log)
		}
		conn, err := net.DialTimeout("tcp", "127.0.0.1:"+strconv.Itoa(ctrl), time.Second)
		if err == nil {
			b.conn = conn
			break
		}
		select {
		case <-b.done:
			return nil, fmt.Errorf("baresip exited: %s", b.log)
		default:
		}
		if time.Now().After(deadline) {
			b.stop()
			return nil, fmt.Errorf("no control socket on %d: %v\n%s", ctrl, err, b.log)
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Cleanup(b.stop)
	go b.read()
	return b, nil
}

// stop asks baresip to quit, and kills it if it has not within 2 s.
func (b *baresip) stop() {
	select {
	case <-b.done:
		return
	default:
	}
	if b.conn != nil {
		b.send("quit", "")
		select {
		case <-b.done:
		case <-time.After(2 * time.Second):
		}
		b.conn.Close()
	}
	b.cmd.Process.Kill()
	<-b.done
}

// send writes one command as a netstring of JSON.
func (b *baresip) send(command, params string) error {
	msg := map[string]string{"command": command, "token": command}
	if params != "" {
		msg["params"] = params
	}
	body, _ := json.Marshal(msg)
	b.conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
	_, err := fmt.Fprintf(b.conn, "%d:%s,", len(body), body)
	return err
}

// command runs a command and fails the test unless baresip says it is ok.
func (b *baresip) command(t *testing.T, command, params string) {
	t.Helper()
	if err := b.send(command, params); err != nil {
		t.Fatalf("baresip %s: %v", command, err)
	}
	select {
	case r := <-b.responses:
		if ok, _ := r["ok"].(bool); !ok {
			t.Fatalf("baresip %s %s: %v\n%s", command, params, r, b.log)
		}
	case <-time.After(5 * time.Second):
		t.Fatalf("baresip did not answer %s\n%s", command, b.log)
	}
}

// waitEvent returns the first event of type typ within timeout, or nil.
// A CALL_CLOSED while waiting for something else ends the wait too.
func (b *baresip) waitEvent(t *testing.T, timeout time.Duration, typ string) map[string]any {
	t.Helper()
	deadline := time.After(timeout)
	for {
		select {
		case ev, ok := <-b.events:
			if !ok {
				return nil
			}
			t.Logf("baresip event %v %v", ev["type"], ev["param"])
			if ev["type"] == typ {
				return ev
			}
			if ev["type"] == "CALL_CLOSED" {
				return nil
			}
		case <-deadline:
			return nil
		}
	}
}

// read sorts what the control socket says into responses and events until
// it closes.
func (b *baresip) read() {
	defer close(b.events)
	r := bufio.NewReader(b.conn)
	for {
		size, err := r.ReadString(':')
		if err != nil {
			return
		}
		n, err := strconv.Atoi(strings.TrimSpace(strings.TrimSuffix(size, ":")))
		if err != nil || n < 0 || n > 1<<20 {
			return
		}
		body := make([]byte, n+1) // and the closing comma
		if _, err := io.ReadFull(r, body); err != nil {
			return
		}
		var msg map[string]any
		if json.Unmarshal(body[:n], &msg) != nil {
			continue
		}
		switch {
		case msg["response"] == true:
			select {
			case b.responses <- msg:
			default:
			}
		case msg["event"] == true:
			select {
			case b.events <- msg:
			default:
			}
		}
	}
}

// heard returns the RMS and length of the audio baresip decoded in its
// call: the file sndfile wrote, 16-bit PCM.
func (b *baresip) heard(t *testing.T) (rms, seconds float64) {
	t.Helper()
	var files []string
	// sndfile closes the file as the call's audio stops, just after
	// CALL_CLOSED.
	for deadline := time.Now().Add(5 * time.Second); ; {
		files, _ = filepath.Glob(filepath.Join(b.rec, "*-dec.wav"))
		if len(files) == 1 || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if len(files) != 1 {
		t.Fatalf("want one recording of the call's audio in %s, have %v\n%s", b.rec, files, b.log)
	}
	var pcm []int16
	var rate int
	for deadline := time.Now().Add(5 * time.Second); ; {
		var err error
		pcm, rate, err = readWAV(files[0])
		if err == nil && len(pcm) > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("recording %s: %v", files[0], err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	var sum float64
	for _, s := range pcm {
		sum += float64(s) * float64(s)
	}
	return math.Sqrt(sum / float64(len(pcm))), float64(len(pcm)) / float64(rate)
}

// readWAV reads a mono 16-bit PCM WAV file. A data chunk whose size was
// never filled in (the writer did not close the file) runs to the end.
func readWAV(path string) (pcm []int16, rate int, err error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, 0, err
	}
	if len(data) < 12 || string(data[:4]) != "RIFF" || string(data[8:12]) != "WAVE" {
		return nil, 0, errors.New("not a WAV file")
	}
	var channels, bits int
	for p := 12; p+8 <= len(data); {
		id, size := string(data[p:p+4]), int(bin.LittleEndian.Uint32(data[p+4:p+8]))
		body := data[p+8:]
		switch id {
		case "fmt ":
			if len(body) < 16 {
				return nil, 0, errors.New("short fmt chunk")
			}
			if format := bin.LittleEndian.Uint16(body[0:2]); format != 1 {
				return nil, 0, fmt.Errorf("format %d, want PCM", format)
			}
			channels = int(bin.LittleEndian.Uint16(body[2:4]))
			rate = int(bin.LittleEndian.Uint32(body[4:8]))
			bits = int(bin.LittleEndian.Uint16(body[14:16]))
		case "data":
			if channels != 1 || bits != 16 {
				return nil, 0, fmt.Errorf("%d channels of %d bits, want mono 16-bit", channels, bits)
			}
			if size == 0 || size > len(body) {
				size = len(body)
			}
			pcm = make([]int16, size/2)
			for i := range pcm {
				pcm[i] = int16(bin.LittleEndian.Uint16(body[2*i:]))
			}
			return pcm, rate, nil
		}
		p += 8 + size + size%2
	}
	return nil, 0, errors.New("no data chunk")
}

// freeTCPPort returns a loopback TCP port nothing listens on right now.
func freeTCPPort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// TestBaresipFollowsTheREFER hands a call from a real softphone back by
// REFER: baresip accepts the REFER, calls the returnURI (a SIPp UAS on
// another loopback port) and reports the new call by NOTIFY. Debian's
// baresip 1.0.0 sends NOTIFY 100 as it accepts the REFER and NOTIFY 200
// (terminated) once the target answers, and puts no Referred-By on its
// INVITE; Switchback then hangs up the first call.
func TestBaresipFollowsTheREFER(t *testing.T) {
	modules := requireBaresip(t)
	requireSIPp(t)
	g := startGatewayWith(t, baresipConfig, "secure")
	// The target answers, and hangs up the transferred call 500 ms later.
	target := startSIPpServer(t, "refer_target.xml", map[string]string{"PAUSE_MS": "500"})
	uri := fmt.Sprintf("sip:return-desk@127.0.0.1:%d", target.port)
	g.create(t, "secure", `{"id":"baresip-refer","externalConversationId":"c","type":"SIP","sip":{"returnURI":"`+uri+
		`","returnTransferType":"REFER"},"inputContext":{"taskName":"instant"}}`)

	b := startBaresip(t, modules)
	b.command(t, "dial", "sip:secure@"+g.sip+"?X-ASAPP-CallTransferId=baresip-refer")
	if ev := b.waitEvent(t, 15*time.Second, "CALL_ESTABLISHED"); ev == nil {
		t.Fatalf("the call was not established\nbaresip:\n%s\nswitchback:\n%s", b.log, g.stderr)
	}
	// baresip reports the REFER with its Refer-To as received.
	ev := b.waitEvent(t, 10*time.Second, "TRANSFER")
	if ev == nil {
		t.Fatalf("baresip got no REFER\nbaresip:\n%s\nswitchback:\n%s", b.log, g.stderr)
	}
	if ev["param"] != "<"+uri+">" {
		t.Fatalf("baresip was referred to %v, want <%s>", ev["param"], uri)
	}
	// Switchback's BYE ends the first call once the final NOTIFY is in;
	// the transferred call ends with the target's BYE.
	closed := map[string]bool{}
	for len(closed) < 2 {
		ev := b.waitEvent(t, 10*time.Second, "CALL_CLOSED")
		if ev == nil {
			t.Fatalf("calls closed: %v\nbaresip:\n%s\nswitchback:\n%s", closed, b.log, g.stderr)
		}
		peer, _ := ev["peeruri"].(string)
		if strings.HasPrefix(peer, "sip:secure@") && !closed["switchback"] {
			closed["switchback"] = true
			// The instant the first call is hung up on, the transfer
			// shows how the hand-back went.
			r := g.get(t, "secure", "baresip-refer")
			oc, _ := r.body["outputContext"].(map[string]any)
			rr, _ := r.body["returnResult"].(map[string]any)
			if r.str("status") != "COMPLETED" || oc["transferType"] != "SYSTEM" || rr["method"] != "REFER" ||
				rr["sipStatus"] != 202.0 || rr["notifyStatus"] != 200.0 || rr["fallback"] != false || rr["reason"] != nil {
				t.Fatalf("after baresip's NOTIFY 200: %s\nbaresip:\n%s\nswitchback:\n%s", r.raw, b.log, g.stderr)
			}
		} else {
			closed[peer] = true
		}
	}
	if !closed["switchback"] || !closed[uri] {
		t.Fatalf("calls closed: %v, want Switchback's and %s", closed, uri)
	}
	ok, out := target.wait(10 * time.Second)
	if !ok {
		t.Fatalf("the target: %s\nbaresip:\n%s", out, b.log)
	}
	// baresip called the returnURI itself.
	if !strings.Contains(out, "TARGET-RURI "+uri+"\n") {
		t.Fatalf("the target's INVITE was not for %s:\n%s", uri, out)
	}
	if !strings.Contains(b.log.String(), "NOTIFY sip:") {
		t.Fatalf("baresip sent no NOTIFY:\n%s", b.log)
	}
}
