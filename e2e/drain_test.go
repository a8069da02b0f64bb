package e2e

import (
	"net"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"
)

// drainConfig is a gateway whose calls take a few seconds on their own:
// the menu plays its chime, waits 3 s for a digit nobody presses, and
// hands the call back as SYSTEM by BYE.
const drainConfig = `
store: {driver: sqlite, dsn: %s}
sip:
  listen: 127.0.0.1:0
  rtpPorts: {min: %d, max: %d}
  rtpTimeout: 30s
tenants:
  - id: acme
    sip: {user: acme, allow: [127.0.0.0/8]}
    agents:
      - menu:
          greeting: builtin:chime
          digitTimeout: 3s
          choices: {"1": {transferType: AGENT}}
          default: {transferType: SYSTEM, taskName: drained_normally}
shutdown: {drainTimeout: 1m}
log: {level: info}
`

// optionsStatus sends an OPTIONS to addr and returns the status line of
// the answer.
func optionsStatus(t *testing.T, addr, callID string) string {
	t.Helper()
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	to, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	local := c.LocalAddr().String()
	msg := "OPTIONS sip:acme@" + addr + " SIP/2.0\r\n" +
		"Via: SIP/2.0/UDP " + local + ";branch=z9hG4bK-" + callID + "\r\n" +
		"From: <sip:probe@" + local + ">;tag=1\r\nTo: <sip:acme@" + addr + ">\r\n" +
		"Call-ID: " + callID + "\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
	c.WriteTo([]byte(msg), to)
	c.SetReadDeadline(time.Now().Add(3 * time.Second))
	buf := make([]byte, 4096)
	n, _, err := c.ReadFrom(buf)
	if err != nil {
		return ""
	}
	line, _, _ := strings.Cut(string(buf[:n]), "\r\n")
	return line
}

func readyzStatus(t *testing.T, url string) int {
	t.Helper()
	res, err := http.Get(url + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	return res.StatusCode
}

// waitOngoing waits until the transfer's call is in progress.
func waitOngoing(t *testing.T, g *gateway, tenant, id string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for g.get(t, tenant, id).str("status") != "ONGOING" {
		if time.Now().After(deadline) {
			t.Fatalf("the call of %s never got going", id)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// exitCode waits for the server to exit and returns its exit code.
func exitCode(t *testing.T, s *server, within time.Duration) int {
	t.Helper()
	select {
	case <-s.done:
		return s.cmd.ProcessState.ExitCode()
	case <-time.After(within):
		t.Fatalf("switchback did not exit within %v: %s", within, s.stderr)
		return -1
	}
}

func TestSIGTERMDrains(t *testing.T) {
	requireSIPp(t)
	g := startGatewayConfig(t, drainConfig, "acme")
	if got := optionsStatus(t, g.sip, "before-drain"); got != "SIP/2.0 200 OK" {
		t.Fatalf("OPTIONS before the drain: %q", got)
	}
	g.create(t, "acme", `{"id":"long-1","externalConversationId":"c1","type":"SIP"}`)
	g.create(t, "acme", `{"id":"late-1","externalConversationId":"c2","type":"SIP"}`)
	call := make(chan string, 1)
	go func() {
		ok, out := g.sipp(t, "transfer_bye.xml", nil, "X-ASAPP-CallTransferId: long-1", "acme")
		if !ok {
			call <- out
		}
		close(call)
	}()
	waitOngoing(t, g, "acme", "long-1")

	g.cmd.Process.Signal(syscall.SIGTERM)
	deadline := time.Now().Add(5 * time.Second)
	for optionsStatus(t, g.sip, "during-drain") != "SIP/2.0 503 Service Unavailable" {
		if time.Now().After(deadline) {
			t.Fatal("a draining node still answers OPTIONS with 200")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if ok, out := g.sipp(t, "invite_refused.xml", map[string]string{"EXPECTED_STATUS": "503"}, "X-ASAPP-CallTransferId: late-1", "acme"); !ok {
		t.Fatalf("a new call while draining was not refused with 503: %s", out)
	}
	if s := readyzStatus(t, g.URL); s != 503 {
		t.Errorf("/readyz while draining = %d, want 503", s)
	}
	// The API keeps serving, and the refused call left its transfer for
	// another node.
	if r := g.get(t, "acme", "late-1"); r.status != 200 || r.str("status") != "ACTIVE" {
		t.Fatalf("GET while draining: %d %s", r.status, r.raw)
	}

	// The call in progress ends normally, handed back by its agent.
	if out, bad := <-call; bad {
		t.Fatalf("the call in progress: %s\n%s", out, g.stderr)
	}
	if code := exitCode(t, g.server, 30*time.Second); code != 0 {
		t.Fatalf("exit code %d after the drain: %s", code, g.stderr)
	}
	// Read the outcome from the store with a new server on the same file.
	g2 := restartGateway(t, g)
	r := g2.get(t, "acme", "long-1")
	oc, _ := r.body["outputContext"].(map[string]any)
	rr, _ := r.body["returnResult"].(map[string]any)
	if r.str("status") != "COMPLETED" || oc["transferType"] != "SYSTEM" || oc["currentTaskName"] != "drained_normally" || rr["method"] != "BYE" {
		t.Fatalf("the drained call: %s", r.raw)
	}
}

func TestSecondSIGTERMStopsAtOnce(t *testing.T) {
	requireSIPp(t)
	g := startGatewayConfig(t, strings.Replace(drainConfig, "digitTimeout: 3s", "digitTimeout: 60s", 1), "acme")
	g.create(t, "acme", `{"id":"cut-1","externalConversationId":"c1","type":"SIP"}`)
	call := make(chan string, 1)
	go func() {
		ok, out := g.sipp(t, "transfer_bye.xml", nil, "X-ASAPP-CallTransferId: cut-1", "acme")
		if !ok {
			call <- out
		}
		close(call)
	}()
	waitOngoing(t, g, "acme", "cut-1")
	start := time.Now()
	g.cmd.Process.Signal(syscall.SIGTERM)
	time.Sleep(300 * time.Millisecond)
	g.cmd.Process.Signal(syscall.SIGTERM)
	if out, bad := <-call; bad {
		t.Fatalf("the call was not hung up: %s\n%s", out, g.stderr)
	}
	if el := time.Since(start); el > 8*time.Second {
		t.Errorf("the call was hung up %v after the second SIGTERM; its menu would have waited 60 s", el)
	}
	if code := exitCode(t, g.server, 30*time.Second); code != 0 {
		t.Fatalf("exit code %d: %s", code, g.stderr)
	}
	g2 := restartGateway(t, g)
	r := g2.get(t, "acme", "cut-1")
	if oc, _ := r.body["outputContext"].(map[string]any); r.str("status") != "COMPLETED" || oc["transferType"] != "CALLER_DISCONNECT" {
		t.Fatalf("the call stopped at once: %s", r.raw)
	}
	if !strings.Contains(g.stderr.String(), `"by":"shutdown"`) {
		t.Errorf("the log does not say the call ended by shutdown:\n%s", g.stderr)
	}
}

// restartGateway starts a new server on the directory and store of g,
// with the same keys.
func restartGateway(t *testing.T, g *gateway) *gateway {
	t.Helper()
	g2 := &gateway{dir: g.dir, keys: g.keys}
	g2.server = startServer(t, g.dir, g.dir+"/switchback.yaml")
	m := sipListening.FindStringSubmatch(g2.stdout.String())
	if m == nil {
		t.Fatalf("no SIP address printed:\n%s", g2.stdout)
	}
	g2.sip = m[1]
	return g2
}
