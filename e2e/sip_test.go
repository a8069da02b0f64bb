package e2e

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// sipConfig is a gateway with three tenants: "acme" reachable from
// loopback by IP, with credentials for the INVITE hand-backs whose
// transfers bring none, "secure" that also needs digest credentials, and
// "strict" that only takes 127.0.0.2.
const sipConfig = `
store: {driver: sqlite, dsn: %s}
sip:
  listen: 127.0.0.1:0
  rtpPorts: {min: %d, max: %d}
  digestAlgorithms: [MD5, SHA-256]  # SIPp answers only the first challenge, and only MD5
  rtpTimeout: 2s     # SIPp sends no RTP unless told to: a call left alone ends after 2 s
  answerDelay: 300ms # ring before answering, so a CANCEL can come first
  referTimeout: 2s   # a REFER hand-back without a final NOTIFY falls back to BYE after 2 s
  returnTimeout: 2s  # an INVITE hand-back's return leg that rings longer is cancelled
tenants:
  - id: acme
    sip: {user: acme, allow: [127.0.0.0/8], returnAuth: {username: acme-desk, password: acme-desk-pass}}
    rateLimit: {requestsPerSecond: 10000, burst: 10000}
    agents:
      - task: instant
        menu: {digitTimeout: 0s, default: {transferType: SYSTEM, taskName: instant}}
      - menu:
          greeting: builtin:chime
          digitTimeout: 5s
          choices:
            "1": {transferType: AGENT, taskName: agent_escalation, referenceVariables: [accountNumber], set: {reason: pressed-1}}
          default: {transferType: SYSTEM, taskName: no_input}
  - id: secure
    sip:
      user: secure
      allow: [127.0.0.0/8]
      users: [{username: ivr, password: s3cret-pass}]
    agents:
      - menu: {digitTimeout: 0s, default: {transferType: SYSTEM, taskName: authenticated}}
  - id: solo
    sip: {user: solo, allow: [127.0.0.0/8], maxCalls: 1}
    agents:
      - menu: {digitTimeout: 10s, choices: {"9": {transferType: AGENT}}, default: {transferType: SYSTEM}}
  - id: bare   # no agents: its calls go straight back
    sip: {user: bare, allow: [127.0.0.0/8]}
  - id: strict
    sip: {user: strict, allow: [127.0.0.2/32]}
    agents:
      - menu: {digitTimeout: 0s, default: {transferType: SYSTEM}}
pool:
  numbers:
    - {country: US, numbers: ["+12025550100-0109"]}
log: {level: info}
`

// gateway is a running switchback with SIP, and a key of each tenant.
type gateway struct {
	*server
	dir  string
	sip  string // host:port
	keys map[string]credentials
}

var sipListening = regexp.MustCompile(`Switchback SIP on (\S+)`)

// sippMediaPort hands each SIPp run its own media ports: four in a row
// (audio and video RTP and RTCP), above the kernel's ephemeral range
// (32768-60999 by default) so no socket bound to port 0 takes them, and
// checked free, since other test processes may run SIPp at the same time.
var sippMediaPort atomic.Int64

func init() { sippMediaPort.Store(int64(61000 + (os.Getpid()%500)*8)) }

func freeMediaPorts(t *testing.T) int {
	t.Helper()
	for range 200 {
		base := int(sippMediaPort.Add(4))
		if base > 65000 {
			sippMediaPort.Store(61000)
			continue
		}
		var held []*net.UDPConn
		for p := base; p < base+4; p++ {
			c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: p})
			if err != nil {
				break
			}
			held = append(held, c)
		}
		for _, c := range held {
			c.Close()
		}
		if len(held) == 4 {
			return base
		}
	}
	t.Fatal("no four free UDP ports in a row for SIPp's media")
	return 0
}

// rtpBase spreads the RTP ports of the gateways started by one test run.
var rtpBase = 30000 + (os.Getpid()%50)*200

func startGateway(t *testing.T) *gateway {
	t.Helper()
	return startGatewayConfig(t, sipConfig, "acme", "secure", "solo", "strict", "bare")
}

// startGatewayConfig starts a gateway on config, a template taking the
// SQLite file and the RTP port range, with a key for each tenant named.
func startGatewayConfig(t *testing.T, config string, tenants ...string) *gateway {
	t.Helper()
	dir := t.TempDir()
	cfg := filepath.Join(dir, "switchback.yaml")
	rtpBase += 200
	writeFile(t, cfg, fmt.Sprintf(config, filepath.Join(dir, "sb.db"), rtpBase, rtpBase+199))
	g := &gateway{dir: dir, keys: map[string]credentials{}}
	for _, tenant := range tenants {
		out := cli(t, dir, "keys", "create", "--config", cfg, "--tenant", tenant)
		m := keyLines.FindStringSubmatch(out)
		g.keys[tenant] = credentials{m[1], m[2]}
	}
	g.server = startServer(t, dir, cfg)
	m := sipListening.FindStringSubmatch(g.stdout.String())
	if m == nil {
		t.Fatalf("no SIP address printed:\n%s", g.stdout)
	}
	g.sip = m[1]
	return g
}

// create makes a transfer over the API as tenant and fails the test unless it is ACTIVE.
func (g *gateway) create(t *testing.T, tenant, body string) *apiResponse {
	t.Helper()
	r, err := newClient(g.keys[tenant]).do(context.Background(), "POST", g.URL+"/generativeagent/v1/call-transfers", body)
	if err != nil || r.status != 200 {
		t.Fatalf("create: %v %d %s", err, r.status, r.raw)
	}
	return r
}

// get fetches a transfer as tenant.
func (g *gateway) get(t *testing.T, tenant, id string) *apiResponse {
	t.Helper()
	r, err := newClient(g.keys[tenant]).do(context.Background(), "GET", g.URL+"/generativeagent/v1/call-transfers/"+id, "")
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// sipp runs one call of scenario against the gateway, with the CSV fields
// given, and returns whether SIPp saw the call through as scripted.
func (g *gateway) sipp(t *testing.T, scenario string, replace map[string]string, fields ...string) (bool, string) {
	t.Helper()
	return sippTo(t, g.sip, scenario, replace, fields...)
}

// sippTo is sipp with the calls sent to target (host:port), a proxy in
// front of the gateway, say.
func sippTo(t *testing.T, target, scenario string, replace map[string]string, fields ...string) (bool, string) {
	t.Helper()
	dir := t.TempDir()
	sf := writeScenario(t, dir, scenario, replace)
	inf := filepath.Join(dir, "fields.csv")
	writeFile(t, inf, "SEQUENTIAL\n"+strings.Join(fields, ";")+";\n")
	var out []byte
	var err error
	for attempt := 1; ; attempt++ {
		ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
		cmd := exec.CommandContext(ctx, "sipp", append([]string{"-sf", sf, "-inf", inf, "-l", "1", "-p", "0"},
			append(sippCommon(t, dir), target)...)...)
		cmd.Dir = dir
		out, err = cmd.CombinedOutput()
		cancel()
		// Another process may hold the media ports picked for this run
		// (SIPp then places no call): take the next ones.
		if err == nil || attempt == 3 || !bytes.Contains(out, []byte("Unable to bind")) {
			break
		}
		t.Logf("sipp again: its media ports were taken")
	}
	return err == nil, sippReport(dir, out)
}

// writeScenario writes testdata/sipp/scenario to dir with its placeholders
// replaced, and returns its path.
func writeScenario(t *testing.T, dir, scenario string, replace map[string]string) string {
	t.Helper()
	body, err := os.ReadFile(filepath.Join("testdata", "sipp", scenario))
	if err != nil {
		t.Fatal(err)
	}
	text := string(body)
	defaults := map[string]string{"EXTRA_HEADER": "X-Test: 1", "PAUSE_MS": "800", "TRANSFER_ID": `[A-Za-z0-9._~-]+`}
	for k, v := range replace {
		text = strings.ReplaceAll(text, k, v)
	}
	for k, v := range defaults {
		text = strings.ReplaceAll(text, k, v)
	}
	sf := filepath.Join(dir, scenario)
	writeFile(t, sf, text)
	return sf
}

// sippCommon are the arguments of every SIPp run: one call on loopback,
// media ports of its own, bounded in time, and traces in dir.
func sippCommon(t *testing.T, dir string) []string {
	return []string{"-m", "1", "-i", "127.0.0.1", "-mp", fmt.Sprint(freeMediaPorts(t)), "-timeout", "30s", "-timeout_error",
		"-trace_err", "-error_file", filepath.Join(dir, "errors.log"),
		"-trace_msg", "-message_file", filepath.Join(dir, "messages.log"),
		"-trace_logs", "-log_file", filepath.Join(dir, "logs.log"), "-nostdin"}
}

// sippReport is what a SIPp run in dir said: the scenario's <log> lines
// first, then its output, its errors, and the last SIP messages.
func sippReport(dir string, out []byte) string {
	logs, _ := os.ReadFile(filepath.Join(dir, "logs.log"))
	errs, _ := os.ReadFile(filepath.Join(dir, "errors.log"))
	msgs, _ := os.ReadFile(filepath.Join(dir, "messages.log"))
	if len(msgs) > 6000 {
		msgs = msgs[len(msgs)-6000:]
	}
	return string(logs) + string(out) + string(errs) + "\n--- last SIP messages ---\n" + string(msgs)
}

// sippServer is SIPp waiting, as a UAS, for one call on a loopback UDP port.
type sippServer struct {
	port int
	dir  string
	cmd  *exec.Cmd
	out  lockedBuffer
	err  error
	done chan struct{}
}

// startSIPpServer runs scenario (one that starts by receiving a request)
// on a free loopback UDP port, and returns once SIPp holds the port. SIPp
// gives up after 30 s, and is killed at the end of the test.
func startSIPpServer(t *testing.T, scenario string, replace map[string]string) *sippServer {
	t.Helper()
	for attempt := 1; ; attempt++ {
		dir := t.TempDir()
		sf := writeScenario(t, dir, scenario, replace)
		port, err := freeUDPPort()
		if err != nil {
			t.Fatal(err)
		}
		s := &sippServer{port: port, dir: dir, done: make(chan struct{})}
		s.cmd = exec.Command("sipp", append([]string{"-sf", sf, "-p", strconv.Itoa(port)}, sippCommon(t, dir)...)...)
		s.cmd.Dir = dir
		s.cmd.Stdout, s.cmd.Stderr = &s.out, &s.out
		if err := s.cmd.Start(); err != nil {
			t.Fatal(err)
		}
		go func() { s.err = s.cmd.Wait(); close(s.done) }()
		t.Cleanup(func() { s.cmd.Process.Kill(); <-s.done })
		if s.holdsPort(5 * time.Second) {
			return s
		}
		// The port, or the media ports, were taken in the meantime.
		s.cmd.Process.Kill()
		<-s.done
		if attempt == 3 {
			t.Fatalf("sipp did not start: %s", sippReport(dir, []byte(s.out.String())))
		}
		t.Logf("sipp server again: %s", s.out.String())
	}
}

// holdsPort waits until SIPp's UDP socket shows in /proc/net/udp (probing
// by binding the port could take it from SIPp), and returns false if SIPp
// exits or timeout passes first.
func (s *sippServer) holdsPort(timeout time.Duration) bool {
	local := fmt.Sprintf(" 0100007F:%04X ", s.port) // 127.0.0.1, as Linux writes it
	for deadline := time.Now().Add(timeout); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		select {
		case <-s.done:
			return false
		default:
		}
		if table, err := os.ReadFile("/proc/net/udp"); err == nil && strings.Contains(string(table), local) {
			return true
		}
	}
	return false
}

// wait returns whether SIPp saw its call through as scripted, and what it
// said, once it has exited or timeout has passed.
func (s *sippServer) wait(timeout time.Duration) (bool, string) {
	select {
	case <-s.done:
	case <-time.After(timeout):
		s.cmd.Process.Kill()
		<-s.done
	}
	return s.err == nil, sippReport(s.dir, []byte(s.out.String()))
}

func TestSIPTransferHandedBackByBYE(t *testing.T) {
	requireSIPp(t)
	g := startGateway(t)
	g.create(t, "acme", `{"id":"bye-1","externalConversationId":"c","type":"SIP","inputContext":{"taskName":"instant","inputVariables":{"accountNumber":"3434"}}}`)
	ok, out := g.sipp(t, "transfer_bye.xml", nil, "X-ASAPP-CallTransferId: bye-1", "acme")
	if !ok {
		t.Fatalf("sipp: %s\n%s", out, g.stderr)
	}
	// Invariant 3: the instant SIPp sees the BYE, the outcome is stored.
	r := g.get(t, "acme", "bye-1")
	oc, _ := r.body["outputContext"].(map[string]any)
	if r.str("status") != "COMPLETED" || oc["transferType"] != "SYSTEM" || oc["currentTaskName"] != "instant" ||
		r.str("callReceivedAt") == "" || r.str("completedAt") == "" {
		t.Fatalf("after the BYE: %s", r.raw)
	}
	// A transfer without a returnURI goes back by BYE.
	g.handedBack(t, "acme", "bye-1", map[string]any{"method": "BYE", "sipStatus": nil, "notifyStatus": nil, "fallback": false})
	// The id is used: calling it again is refused with 410.
	ok, out = g.sipp(t, "invite_refused.xml", map[string]string{"EXPECTED_STATUS": "410"}, "X-ASAPP-CallTransferId: bye-1", "acme")
	if !ok {
		t.Fatalf("reused id not refused with 410: %s", out)
	}
}

func TestPSTNCallToALeasedNumber(t *testing.T) {
	requireSIPp(t)
	g := startGateway(t)
	r := g.create(t, "acme", `{"id":"pstn-1","externalConversationId":"c","type":"PHONE_NUMBER","phoneNumber":{"country":"US"},"inputContext":{"taskName":"instant"}}`)
	number := r.body["phoneNumber"].(map[string]any)["transferNumber"].(string)
	ok, out := g.sipp(t, "transfer_bye.xml", nil, "X-Carrier: pstn", number)
	if !ok {
		t.Fatalf("sipp: %s\n%s", out, g.stderr)
	}
	// A PSTN call always goes back by BYE.
	g.handedBack(t, "acme", "pstn-1", map[string]any{"method": "BYE", "sipStatus": nil, "notifyStatus": nil, "fallback": false})
	// The number was released on the match: dialling it again reaches nothing.
	ok, out = g.sipp(t, "invite_refused.xml", map[string]string{"EXPECTED_STATUS": "404"}, "X-Carrier: pstn", number)
	if !ok {
		t.Fatalf("a released number still answered: %s", out)
	}
}

func TestTenantWithoutAgentGetsItsCallsBackAtOnce(t *testing.T) {
	requireSIPp(t)
	g := startGateway(t)
	g.create(t, "bare", `{"id":"bare-1","externalConversationId":"c","type":"SIP","inputContext":{"taskName":"billing"}}`)
	if ok, out := g.sipp(t, "transfer_bye.xml", nil, "X-ASAPP-CallTransferId: bare-1", "bare"); !ok {
		t.Fatalf("sipp: %s\n%s", out, g.stderr)
	}
	r := g.get(t, "bare", "bare-1")
	oc, _ := r.body["outputContext"].(map[string]any)
	if r.str("status") != "COMPLETED" || oc["transferType"] != "SYSTEM" || oc["currentTaskName"] != "billing" {
		t.Fatalf("a call to a tenant without agents: %s", r.raw)
	}
	// The SIP edge's gauges are scraped with the API's; the call is gone
	// from them once its hand-back is recorded.
	want := []string{"switchback_sip_calls 0\n", "switchback_sip_pending_invites 0\n", "switchback_sip_invites_shed_total 0\n"}
	deadline := time.Now().Add(3 * time.Second)
	for {
		res, err := http.Get(g.URL + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(res.Body)
		res.Body.Close()
		missing := ""
		for _, w := range want {
			if !strings.Contains(string(body), w) {
				missing = w
			}
		}
		if missing == "" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("/metrics lacks %q", missing)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestCallerHangsUpFirst(t *testing.T) {
	requireSIPp(t)
	g := startGateway(t)
	g.create(t, "acme", `{"id":"gone-1","externalConversationId":"c","type":"SIP","inputContext":{"taskName":"menu","inputVariables":{"accountNumber":"3434"}}}`)
	ok, out := g.sipp(t, "caller_hangup.xml", nil, "X-ASAPP-CallTransferId: gone-1", "acme")
	if !ok {
		t.Fatalf("sipp: %s\n%s", out, g.stderr)
	}
	deadline := time.Now().Add(2 * time.Second)
	for {
		r := g.get(t, "acme", "gone-1")
		oc, _ := r.body["outputContext"].(map[string]any)
		if r.str("status") == "COMPLETED" {
			if oc["transferType"] != "CALLER_DISCONNECT" || oc["referenceVariables"] != nil || oc["transferVariables"] != nil {
				t.Fatalf("caller hang-up: %s", r.raw)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("not completed after the caller's BYE: %s", r.raw)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestDTMFFromPcapChoosesTheOutcome(t *testing.T) {
	requireSIPp(t)
	g := startGateway(t)
	g.create(t, "acme", `{"id":"dtmf-1","externalConversationId":"c","type":"SIP","inputContext":{"taskName":"menu","inputVariables":{"accountNumber":"3434"}}}`)
	ok, out := g.sipp(t, "dtmf.xml", map[string]string{"PCAP_FILE": "/usr/share/sip-tester/dtmf_2833_1.pcap"}, "X-ASAPP-CallTransferId: dtmf-1", "acme")
	if !ok {
		t.Fatalf("sipp: %s\n%s", out, g.stderr)
	}
	r := g.get(t, "acme", "dtmf-1")
	oc, _ := r.body["outputContext"].(map[string]any)
	ref, _ := oc["referenceVariables"].(map[string]any)
	xfer, _ := oc["transferVariables"].(map[string]any)
	if r.str("status") != "COMPLETED" || oc["transferType"] != "AGENT" || oc["currentTaskName"] != "agent_escalation" ||
		ref["accountNumber"] != "3434" || xfer["reason"] != "pressed-1" {
		t.Fatalf("after pressing 1: %s", r.raw)
	}
}

func TestDigestAuthentication(t *testing.T) {
	requireSIPp(t)
	g := startGateway(t)
	g.create(t, "secure", `{"id":"auth-1","externalConversationId":"c","type":"SIP"}`)
	ok, out := g.sipp(t, "digest_wrong.xml", map[string]string{"AUTH_USER": "ivr", "AUTH_PASS": "wrong-pass"}, "X-ASAPP-CallTransferId: auth-1", "secure")
	if !ok {
		t.Fatalf("wrong password not challenged again: %s", out)
	}
	if r := g.get(t, "secure", "auth-1"); r.str("status") != "ACTIVE" {
		t.Fatalf("an unauthenticated call touched the transfer: %s", r.raw)
	}
	ok, out = g.sipp(t, "digest.xml", map[string]string{"AUTH_USER": "ivr", "AUTH_PASS": "s3cret-pass"}, "X-ASAPP-CallTransferId: auth-1", "secure")
	if !ok {
		t.Fatalf("digest call: %s\n%s", out, g.stderr)
	}
	r := g.get(t, "secure", "auth-1")
	if r.str("status") != "COMPLETED" || r.body["outputContext"].(map[string]any)["currentTaskName"] != "authenticated" {
		t.Fatalf("after the authenticated call: %s", r.raw)
	}
}

func TestINVITERefusals(t *testing.T) {
	requireSIPp(t)
	g := startGateway(t)
	g.create(t, "acme", `{"id":"mine","externalConversationId":"c","type":"SIP"}`)
	g.create(t, "strict", `{"id":"strict-1","externalConversationId":"c","type":"SIP"}`)
	cases := []struct {
		name, status, header, user string
	}{
		{"missing transfer id", "400", "X-Other: 1", "acme"},
		{"malformed transfer id", "400", "X-ASAPP-CallTransferId: a/b", "acme"},
		{"unknown transfer id", "404", "X-ASAPP-CallTransferId: nope", "acme"},
		{"another tenant's transfer", "404", "X-ASAPP-CallTransferId: strict-1", "acme"},
		{"source not allowlisted", "403", "X-ASAPP-CallTransferId: strict-1", "strict"},
		{"unknown SIP user", "404", "X-ASAPP-CallTransferId: mine", "nobody"},
		{"not a leased number", "404", "X-Carrier: pstn", "+12025550109"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ok, out := g.sipp(t, "invite_refused.xml", map[string]string{"EXPECTED_STATUS": tc.status}, tc.header, tc.user)
			if !ok {
				t.Fatalf("want %s: %s", tc.status, out)
			}
		})
	}
	if r := g.get(t, "acme", "mine"); r.str("status") != "ACTIVE" {
		t.Fatalf("refused calls changed a transfer: %s", r.raw)
	}
}

func TestLateOffer(t *testing.T) {
	requireSIPp(t)
	g := startGateway(t)
	g.create(t, "acme", `{"id":"late-1","externalConversationId":"c","type":"SIP","inputContext":{"taskName":"instant"}}`)
	if ok, out := g.sipp(t, "late_offer.xml", nil, "X-ASAPP-CallTransferId: late-1", "acme"); !ok {
		t.Fatalf("sipp: %s\n%s", out, g.stderr)
	}
	if r := g.get(t, "acme", "late-1"); r.str("status") != "COMPLETED" {
		t.Fatalf("after a late-offer call: %s", r.raw)
	}
}

func TestInDialogRequestsAndINFODigits(t *testing.T) {
	requireSIPp(t)
	g := startGateway(t)
	g.create(t, "acme", `{"id":"dlg-1","externalConversationId":"c","type":"SIP","inputContext":{"taskName":"menu","inputVariables":{"accountNumber":"77"}}}`)
	if ok, out := g.sipp(t, "in_dialog.xml", nil, "X-ASAPP-CallTransferId: dlg-1", "acme"); !ok {
		t.Fatalf("sipp: %s\n%s", out, g.stderr)
	}
	r := g.get(t, "acme", "dlg-1")
	oc, _ := r.body["outputContext"].(map[string]any)
	if r.str("status") != "COMPLETED" || oc["transferType"] != "AGENT" {
		t.Fatalf("after pressing 1 by INFO: %s", r.raw)
	}
}

func TestOPTIONSAndSessionInterval(t *testing.T) {
	requireSIPp(t)
	g := startGateway(t)
	if ok, out := g.sipp(t, "options.xml", nil, "-", "acme"); !ok {
		t.Fatalf("OPTIONS: %s", out)
	}
	g.create(t, "acme", `{"id":"se-1","externalConversationId":"c","type":"SIP"}`)
	if ok, out := g.sipp(t, "invite_refused.xml", map[string]string{"EXPECTED_STATUS": "422", "EXTRA_HEADER": "Session-Expires: 30"},
		"X-ASAPP-CallTransferId: se-1", "acme"); !ok {
		t.Fatalf("Session-Expires 30 not refused with 422: %s", out)
	}
	if r := g.get(t, "acme", "se-1"); r.str("status") != "ACTIVE" {
		t.Fatalf("a refused call used the transfer: %s", r.raw)
	}
}

func TestNoRTPEndsTheCall(t *testing.T) {
	requireSIPp(t)
	g := startGateway(t)
	g.create(t, "acme", `{"id":"quiet-1","externalConversationId":"c","type":"SIP","inputContext":{"taskName":"menu"}}`)
	start := time.Now()
	if ok, out := g.sipp(t, "transfer_bye.xml", nil, "X-ASAPP-CallTransferId: quiet-1", "acme"); !ok {
		t.Fatalf("sipp: %s\n%s", out, g.stderr)
	}
	if el := time.Since(start); el < 2*time.Second {
		t.Fatalf("BYE after %v, before the 2 s RTP timeout", el)
	}
	r := g.get(t, "acme", "quiet-1")
	if oc, _ := r.body["outputContext"].(map[string]any); r.str("status") != "COMPLETED" || oc["transferType"] != "CALLER_DISCONNECT" {
		t.Fatalf("after the RTP timeout: %s", r.raw)
	}
}

func TestCANCELWhileRingingLeavesTheTransferActive(t *testing.T) {
	requireSIPp(t)
	g := startGateway(t)
	g.create(t, "acme", `{"id":"cxl-1","externalConversationId":"c","type":"SIP","inputContext":{"taskName":"instant"}}`)
	if ok, out := g.sipp(t, "cancel.xml", nil, "X-ASAPP-CallTransferId: cxl-1", "acme"); !ok {
		t.Fatalf("sipp: %s\n%s", out, g.stderr)
	}
	time.Sleep(500 * time.Millisecond) // past the ring time: a late match would show now
	if r := g.get(t, "acme", "cxl-1"); r.str("status") != "ACTIVE" {
		t.Fatalf("after CANCEL: %s", r.raw)
	}
	// The transfer is still good for the next attempt.
	if ok, out := g.sipp(t, "transfer_bye.xml", nil, "X-ASAPP-CallTransferId: cxl-1", "acme"); !ok {
		t.Fatalf("call after the CANCEL: %s", out)
	}
	if r := g.get(t, "acme", "cxl-1"); r.str("status") != "COMPLETED" {
		t.Fatalf("after the second attempt: %s", r.raw)
	}
}

func TestConcurrentCallLimit(t *testing.T) {
	requireSIPp(t)
	g := startGateway(t)
	// Each its own conversation: a second leg of one conversation would be
	// refused for being a second live leg, not for the limit.
	g.create(t, "solo", `{"id":"one","externalConversationId":"c1","type":"SIP"}`)
	g.create(t, "solo", `{"id":"two","externalConversationId":"c2","type":"SIP"}`)
	r := g.create(t, "solo", `{"id":"three","externalConversationId":"c3","type":"PHONE_NUMBER","phoneNumber":{"country":"US"}}`)
	number := r.body["phoneNumber"].(map[string]any)["transferNumber"].(string)
	first := make(chan string, 1)
	go func() {
		ok, out := g.sipp(t, "caller_hangup.xml", map[string]string{"PAUSE_MS": "1500"}, "X-ASAPP-CallTransferId: one", "solo")
		if !ok {
			first <- out
		}
		close(first)
	}()
	deadline := time.Now().Add(5 * time.Second)
	for g.get(t, "solo", "one").str("status") != "ONGOING" {
		if time.Now().After(deadline) {
			t.Fatal("the first call never got going")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if ok, out := g.sipp(t, "invite_refused.xml", map[string]string{"EXPECTED_STATUS": "486"}, "X-ASAPP-CallTransferId: two", "solo"); !ok {
		t.Fatalf("second call over the limit not refused with 486: %s", out)
	}
	// A PSTN call counts against the same limit: its tenant is known from
	// the number before the transfer is used.
	if ok, out := g.sipp(t, "invite_refused.xml", map[string]string{"EXPECTED_STATUS": "486"}, "X-Carrier: pstn", number); !ok {
		t.Fatalf("PSTN call over the limit not refused with 486: %s", out)
	}
	if out, bad := <-first; bad {
		t.Fatalf("first call: %s", out)
	}
	for _, id := range []string{"two", "three"} {
		if r := g.get(t, "solo", id); r.str("status") != "ACTIVE" {
			t.Fatalf("the refused call used its transfer: %s", r.raw)
		}
	}
	// Once the first call is over, the number answers.
	if ok, out := g.sipp(t, "transfer_bye.xml", nil, "X-Carrier: pstn", number); !ok {
		t.Fatalf("PSTN call under the limit: %s", out)
	}
	if r := g.get(t, "solo", "three"); r.str("status") != "COMPLETED" {
		t.Fatalf("PSTN call under the limit: %s", r.raw)
	}
}

// requireSIPp fails the test when SIPp is missing: `make test` installs it.
func requireSIPp(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("sipp"); err != nil {
		t.Fatal("sipp not found: run the tests with `make test`, which installs Debian's sip-tester")
	}
}
