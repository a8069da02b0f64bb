package e2e

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// boundsConfig is a gateway whose hand-backs give up after 2 s, and whose
// calls are not ended for want of RTP before that.
const boundsConfig = `
store: {driver: sqlite, dsn: %s}
sip:
  listen: 127.0.0.1:0
  rtpPorts: {min: %d, max: %d}
  rtpTimeout: 30s
  referTimeout: 2s
  returnTimeout: 2s
tenants:
  - id: acme
    sip: {user: acme, allow: [127.0.0.0/8]}
    agents:
      - menu: {digitTimeout: 0s, default: {transferType: SYSTEM, taskName: back}}
log: {level: info}
`

// silentPeer is a UDP socket that reads what comes and never answers.
type silentPeer struct {
	conn *net.UDPConn
	mu   sync.Mutex
	seen []time.Time
	msgs []string
}

func newSilentPeer(t *testing.T) *silentPeer {
	t.Helper()
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	p := &silentPeer{conn: c}
	go func() {
		buf := make([]byte, 65536)
		for {
			n, _, err := c.ReadFrom(buf)
			if err != nil {
				return
			}
			p.mu.Lock()
			p.seen = append(p.seen, time.Now())
			p.msgs = append(p.msgs, string(buf[:n]))
			p.mu.Unlock()
		}
	}()
	t.Cleanup(func() { c.Close() })
	return p
}

func (p *silentPeer) port() int { return p.conn.LocalAddr().(*net.UDPAddr).Port }

func (p *silentPeer) last() (time.Time, int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.seen) == 0 {
		return time.Time{}, 0
	}
	return p.seen[len(p.seen)-1], len(p.seen)
}

// TestINVITEReturnToASilentPeerGivesUpOnTime: sip.returnTimeout bounds the
// whole INVITE hand-back even when the far end never answers at all: the
// caller gets the fallback BYE after it, not after the 32 s of the INVITE
// transaction, and the INVITE's retransmissions stop with it.
func TestINVITEReturnToASilentPeerGivesUpOnTime(t *testing.T) {
	requireSIPp(t)
	g := startGatewayConfig(t, boundsConfig, "acme")
	peer := newSilentPeer(t)
	g.create(t, "acme", fmt.Sprintf(`{"id":"silent-1","externalConversationId":"c","type":"SIP",
		"sip":{"returnURI":"sip:desk@127.0.0.1:%d","returnTransferType":"INVITE"}}`, peer.port()))
	start := time.Now()
	if ok, out := g.sipp(t, "transfer_bye.xml", nil, "X-ASAPP-CallTransferId: silent-1", "acme"); !ok {
		t.Fatalf("caller: %s\n%s", out, g.stderr)
	}
	if el := time.Since(start); el > 6*time.Second {
		t.Errorf("the fallback BYE came %v after the call, with returnTimeout 2s", el)
	}
	r := g.get(t, "acme", "silent-1")
	rr, _ := r.body["returnResult"].(map[string]any)
	if rr["fallback"] != true || !strings.Contains(fmt.Sprint(rr["reason"]), "within 2s") {
		t.Fatalf("returnResult: %s", r.raw)
	}
	if _, n := peer.last(); n == 0 {
		t.Fatal("the silent peer got no INVITE")
	}
	// No retransmission once Switchback gave up.
	time.Sleep(2500 * time.Millisecond)
	if last, n := peer.last(); time.Since(last) < 2*time.Second {
		t.Errorf("the INVITE still went out %v ago (%d datagrams in all)", time.Since(last), n)
	}
	checkSockets(t, g)
}

// TestREFERToASilentCallerGivesUpOnTime: sip.referTimeout bounds a REFER
// the caller never answers.
func TestREFERToASilentCallerGivesUpOnTime(t *testing.T) {
	g := startGatewayConfig(t, boundsConfig, "acme")
	g.create(t, "acme", `{"id":"mute-1","externalConversationId":"c","type":"SIP",
		"sip":{"returnURI":"sip:desk@192.0.2.10","returnTransferType":"REFER"}}`)
	uac := dialRaw(t, g.sip, "mute-1")
	refer := uac.wait(t, "REFER", 5*time.Second)
	bye := uac.wait(t, "BYE", 8*time.Second)
	if d := bye.at.Sub(refer.at); d < 1500*time.Millisecond || d > 4*time.Second {
		t.Errorf("the fallback BYE came %v after the unanswered REFER, with referTimeout 2s", d)
	}
	if !strings.Contains(refer.text, "X-ASAPP-CallTransferId: mute-1\r\n") {
		t.Errorf("the REFER does not name its transfer:\n%s", refer.text)
	}
	r := g.get(t, "acme", "mute-1")
	rr, _ := r.body["returnResult"].(map[string]any)
	if rr["method"] != "REFER" || rr["fallback"] != true || !strings.Contains(fmt.Sprint(rr["reason"]), "within 2s") {
		t.Fatalf("returnResult: %s", r.raw)
	}
	checkSockets(t, g)
}

// rawUAC is a caller written by hand: it places one call and records the
// requests it gets, answering BYE with 200 and nothing else.
type rawUAC struct {
	conn *net.UDPConn
	mu   sync.Mutex
	got  []rawMsg
	news chan struct{}
}

type rawMsg struct {
	at   time.Time
	text string
}

func dialRaw(t *testing.T, target, transferID string) *rawUAC {
	t.Helper()
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	to, _ := net.ResolveUDPAddr("udp", target)
	local := c.LocalAddr().String()
	media := freeMediaPorts(t)
	sdp := fmt.Sprintf("v=0\r\no=raw 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio %d RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n", media)
	invite := fmt.Sprintf("INVITE sip:acme@%s SIP/2.0\r\nVia: SIP/2.0/UDP %s;branch=z9hG4bK-raw1\r\n"+
		"From: <sip:ivr@%s>;tag=raw\r\nTo: <sip:acme@%s>\r\nCall-ID: raw-%s\r\nCSeq: 1 INVITE\r\n"+
		"Contact: <sip:ivr@%s>\r\nMax-Forwards: 70\r\nX-ASAPP-CallTransferId: %s\r\n"+
		"Content-Type: application/sdp\r\nContent-Length: %d\r\n\r\n%s",
		target, local, local, target, transferID, local, transferID, len(sdp), sdp)
	u := &rawUAC{conn: c, news: make(chan struct{}, 64)}
	go u.read(to)
	c.WriteTo([]byte(invite), to)
	ok := u.wait(t, "SIP/2.0 200", 5*time.Second)
	toTag := headerValue(ok.text, "To")
	ack := fmt.Sprintf("ACK sip:acme@%s SIP/2.0\r\nVia: SIP/2.0/UDP %s;branch=z9hG4bK-raw2\r\n"+
		"From: <sip:ivr@%s>;tag=raw\r\nTo: %s\r\nCall-ID: raw-%s\r\nCSeq: 1 ACK\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
		target, local, local, toTag, transferID)
	c.WriteTo([]byte(ack), to)
	return u
}

func (u *rawUAC) read(to *net.UDPAddr) {
	buf := make([]byte, 65536)
	for {
		n, _, err := u.conn.ReadFrom(buf)
		if err != nil {
			return
		}
		text := string(buf[:n])
		u.mu.Lock()
		u.got = append(u.got, rawMsg{time.Now(), text})
		u.mu.Unlock()
		if strings.HasPrefix(text, "BYE ") {
			res := "SIP/2.0 200 OK\r\n"
			for _, h := range []string{"Via", "From", "To", "Call-ID", "CSeq"} {
				res += h + ": " + headerValue(text, h) + "\r\n"
			}
			u.conn.WriteTo([]byte(res+"Content-Length: 0\r\n\r\n"), to)
		}
		select {
		case u.news <- struct{}{}:
		default:
		}
	}
}

// wait returns the first message received that starts with prefix.
func (u *rawUAC) wait(t *testing.T, prefix string, within time.Duration) rawMsg {
	t.Helper()
	deadline := time.After(within)
	for {
		u.mu.Lock()
		for _, m := range u.got {
			if strings.HasPrefix(m.text, prefix) {
				u.mu.Unlock()
				return m
			}
		}
		u.mu.Unlock()
		select {
		case <-u.news:
		case <-deadline:
			t.Fatalf("no %s within %v", prefix, within)
		}
	}
}

func headerValue(msg, name string) string {
	sc := bufio.NewScanner(strings.NewReader(msg))
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), ":"); ok && strings.EqualFold(strings.TrimSpace(k), name) {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// checkSockets fails the test if the gateway holds a UDP socket beyond its
// configured addresses: every one on 127.0.0.1, on the SIP port or in its
// RTP range, and no socket left for a return leg once the calls are over.
func checkSockets(t *testing.T, g *gateway) {
	t.Helper()
	deadline := time.Now().Add(3 * time.Second)
	for {
		bad, n := strayUDPSockets(t, g)
		if n == 0 {
			t.Fatal("no UDP socket found for the gateway: the check reads nothing")
		}
		if len(bad) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("UDP sockets beyond the SIP socket %s with no call up: %v", g.sip, bad)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// strayUDPSockets lists the gateway's UDP sockets other than its SIP
// socket, and counts them all.
func strayUDPSockets(t *testing.T, g *gateway) (bad []string, n int) {
	t.Helper()
	_, sipPort, _ := net.SplitHostPort(g.sip)
	pid := g.cmd.Process.Pid
	inodes := map[string]bool{}
	fds, _ := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	for _, fd := range fds {
		link, err := os.Readlink(filepath.Join(fmt.Sprintf("/proc/%d/fd", pid), fd.Name()))
		if err == nil && strings.HasPrefix(link, "socket:[") {
			inodes[strings.TrimSuffix(strings.TrimPrefix(link, "socket:["), "]")] = true
		}
	}
	for _, table := range []string{"udp", "udp6"} {
		f, err := os.Open(fmt.Sprintf("/proc/%d/net/%s", pid, table))
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			fields := strings.Fields(sc.Text())
			if len(fields) < 10 || !inodes[fields[9]] {
				continue
			}
			host, port, _ := strings.Cut(fields[1], ":")
			p, _ := strconv.ParseUint(port, 16, 16)
			n++
			if host != "0100007F" || strconv.FormatUint(p, 10) != sipPort {
				bad = append(bad, fmt.Sprintf("%s:%d", host, p))
			}
		}
		f.Close()
	}
	return bad, n
}
