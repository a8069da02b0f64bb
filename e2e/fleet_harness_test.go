package e2e

import (
	"bufio"
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
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/switchback/switchback/internal/pgtest"
)

// A fleet is two or more `switchback serve` on one throwaway PostgreSQL
// database, each on an address of its own (127.0.0.2, 127.0.0.3, ...) with
// RTP ports of its own, and, when asked for, Kamailio on 127.0.0.1 running
// deploy/kamailio/switchback.cfg in front of them. Leases are short (a 1 s
// heartbeat, a 3 s TTL) and the dispatcher probes every second, so the
// tests see failures handled within seconds.

// fleetConfig is a node's configuration: the store's DSN, the node id, its
// SIP listen address (twice: it is also the advertised address) and its
// RTP ports. Tenant acme's agents answer for a while by task: instant (no
// wait), brief (about 1 s: concurrent calls overlap, so the dispatcher's
// call load spreads them), long (5 s) and any other task (held: 20 s).
// Tenant capped may have 3 calls at once across the fleet.
const fleetConfig = `
store: {driver: postgres, dsn: %q}
node: {id: %s, heartbeat: 1s, ttl: 3s}
sip:
  listen: %s
  externalAddress: %s
  rtpPorts: {min: %d, max: %d}
  rtpTimeout: 30s
  referTimeout: 5s
  returnTimeout: 5s
expiry: {sweepInterval: 1s}
shutdown: {drainTimeout: 1m}
tenants:
  - id: acme
    sip: {user: acme, allow: [127.0.0.0/8], maxCalls: 1000, returnAuth: {username: acme-desk, password: acme-desk-pass}}
    rateLimit: {requestsPerSecond: 10000, burst: 10000}
    agents:
      - task: instant
        menu: {digitTimeout: 0s, default: {transferType: SYSTEM, taskName: instant}}
      - task: brief
        menu: {digitTimeout: 1s, choices: {"9": {transferType: AGENT}}, default: {transferType: SYSTEM, taskName: brief}}
      - task: long
        menu: {digitTimeout: 5s, choices: {"9": {transferType: AGENT}}, default: {transferType: SYSTEM, taskName: long}}
      - menu: {digitTimeout: 20s, choices: {"9": {transferType: AGENT}}, default: {transferType: SYSTEM, taskName: held}}
  - id: capped
    sip: {user: capped, allow: [127.0.0.0/8], maxCalls: 3}
    agents:
      - menu: {digitTimeout: 20s, choices: {"9": {transferType: AGENT}}, default: {transferType: SYSTEM, taskName: held}}
pool:
  numbers:
    - {country: US, numbers: ["+12025550100-0299"]}
log: {level: info}
`

// fleetRTP hands each node started by this process its own 400 RTP ports,
// below the kernel's ephemeral range.
var fleetRTP atomic.Int64

func init() { fleetRTP.Store(int64(21000 + (os.Getpid()%10)*1000)) }

func nextRTPRange() (int, int) {
	base := int(fleetRTP.Add(400))
	if base+400 > 32000 {
		fleetRTP.Store(21000)
		base = int(fleetRTP.Add(400))
	}
	return base - 400, base - 1
}

// fleetNode is one node of a fleet.
type fleetNode struct {
	*server
	f    *fleet
	id   string // node.id
	ip   string
	dir  string
	sip  string // ip:port
	port string // its SIP port, kept across restarts
}

// fleet is the nodes, their store, an API key per tenant, and Kamailio.
type fleet struct {
	dsn   string
	keys  map[string]credentials
	nodes []*fleetNode
	k     *kamailio
}

// startFleet starts n nodes (n ≤ 8) on a new database, and Kamailio's
// dispatcher in front of them if dispatcher is set.
func startFleet(t *testing.T, n int, dispatcher bool) *fleet {
	t.Helper()
	requireSIPp(t)
	f := &fleet{dsn: pgtest.NewDatabase(t), keys: map[string]credentials{}}
	for i := range n {
		nd := &fleetNode{f: f, id: fmt.Sprintf("node-%c", 'a'+i), ip: fmt.Sprintf("127.0.0.%d", i+2), dir: t.TempDir(), port: "0"}
		nd.writeConfig(t)
		f.nodes = append(f.nodes, nd)
	}
	// The keys live in the shared store: made once, good on every node.
	for _, tenant := range []string{"acme", "capped"} {
		out := cli(t, f.nodes[0].dir, "keys", "create", "--config", f.nodes[0].cfgPath(), "--tenant", tenant)
		m := keyLines.FindStringSubmatch(out)
		if m == nil {
			t.Fatalf("keys create printed no key: %s", out)
		}
		f.keys[tenant] = credentials{m[1], m[2]}
	}
	var wg sync.WaitGroup
	for _, nd := range f.nodes {
		wg.Add(1)
		go func() { defer wg.Done(); nd.start(t) }()
	}
	wg.Wait()
	for _, nd := range f.nodes {
		if nd.server == nil {
			t.FailNow() // start reported why
		}
	}
	if dispatcher {
		f.k = f.startDispatcher(t, 10)
	}
	return f
}

func (nd *fleetNode) cfgPath() string { return filepath.Join(nd.dir, "switchback.yaml") }

// writeConfig writes the node's configuration, listening on its SIP port
// (0 until it first started: a free one).
func (nd *fleetNode) writeConfig(t *testing.T) {
	t.Helper()
	lo, hi := nextRTPRange()
	writeFile(t, nd.cfgPath(), fmt.Sprintf(fleetConfig, nd.f.dsn, nd.id, net.JoinHostPort(nd.ip, nd.port), nd.ip, lo, hi))
}

// start runs the node and waits until it serves. On failure it reports
// with t.Error and leaves nd.server nil: it may run on another goroutine.
func (nd *fleetNode) start(t *testing.T) {
	t.Helper()
	s := startServerEnv(t, nd.dir, nd.cfgPath(), "SWITCHBACK_API_LISTEN="+nd.ip+":0")
	m := sipListening.FindStringSubmatch(s.stdout.String())
	if m == nil {
		t.Errorf("%s printed no SIP address:\n%s", nd.id, s.stdout)
		return
	}
	nd.sip = m[1]
	_, nd.port, _ = net.SplitHostPort(nd.sip)
	nd.server = s
}

// restart starts the node again, on the SIP address it had: the
// dispatcher's list names it.
func (nd *fleetNode) restart(t *testing.T) {
	t.Helper()
	nd.writeConfig(t)
	nd.server = nil
	nd.start(t)
	if nd.server == nil {
		t.FailNow()
	}
}

// dispatcherDown and dispatcherUp are what deploy/kamailio/switchback.cfg
// logs when a node changes state.
var (
	dispatcherDown = regexp.MustCompile(`Switchback node (sip:\S+) is down`)
	dispatcherUp   = regexp.MustCompile(`Switchback node (sip:\S+) is up`)
)

// startDispatcher runs deploy/kamailio/switchback.cfg, the reference
// configuration itself, with the fleet's nodes in its list and the
// defines a test wants: its address on 127.0.0.1, its control socket in
// its working directory, probes every second, a 1 s transaction timer,
// and the dispatching algorithm alg (10, call load, as shipped; 4, round
// robin, the documented alternative).
func (f *fleet) startDispatcher(t *testing.T, alg int) *kamailio {
	t.Helper()
	cfg, err := filepath.Abs(filepath.Join("..", "deploy", "kamailio", "switchback.cfg"))
	if err != nil {
		t.Fatal(err)
	}
	return runKamailio(t, cfg, func(addr, dir string) []string {
		var list strings.Builder
		for _, nd := range f.nodes {
			fmt.Fprintf(&list, "1 sip:%s 8 0 duid=%s;maxload=0\n", nd.sip, nd.id)
		}
		path := filepath.Join(dir, "dispatcher.list")
		writeFile(t, path, list.String())
		return []string{"-A", "LISTEN=udp:" + addr, "-A", `DISPATCHER_LIST="` + path + `"`,
			"-A", `CTL_SOCKET="unix:` + filepath.Join(dir, "ctl") + `"`,
			"-A", "DS_PING_INTERVAL=1", "-A", "FR_TIMER=1000", "-A", "LOG_LEVEL=1", "-A", "DS_ALG=" + strconv.Itoa(alg)}
	})
}

// waitDispatcher waits until the fleet's dispatcher has logged that node
// went down (or up, with up set) more times than seen before, and returns
// when.
func (f *fleet) waitDispatcher(t *testing.T, nd *fleetNode, up bool, seen int, within time.Duration) time.Time {
	t.Helper()
	re := dispatcherDown
	if up {
		re = dispatcherUp
	}
	for deadline := time.Now().Add(within); ; time.Sleep(20 * time.Millisecond) {
		if f.dispatcherEvents(re, nd) > seen {
			return time.Now()
		}
		if time.Now().After(deadline) {
			t.Fatalf("the dispatcher did not mark %s %s within %v:\n%s", nd.sip, map[bool]string{true: "up", false: "down"}[up], within, f.k.log)
		}
	}
}

// dispatcherEvents counts the times the fleet's dispatcher logged re for
// nd.
func (f *fleet) dispatcherEvents(re *regexp.Regexp, nd *fleetNode) int {
	n := 0
	for _, m := range re.FindAllStringSubmatch(f.k.log.String(), -1) {
		if m[1] == "sip:"+nd.sip {
			n++
		}
	}
	return n
}

// do sends an API request to node as tenant.
func (f *fleet) do(t *testing.T, nd *fleetNode, tenant, method, path, body string) *apiResponse {
	t.Helper()
	r, err := newClient(f.keys[tenant]).do(context.Background(), method, nd.URL+path, body)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// create makes a transfer through node's API and fails unless it is ACTIVE.
func (f *fleet) create(t *testing.T, nd *fleetNode, tenant, body string) *apiResponse {
	t.Helper()
	r := f.do(t, nd, tenant, "POST", "/generativeagent/v1/call-transfers", body)
	if r.status != 200 || r.str("status") != "ACTIVE" {
		t.Fatalf("create on %s: %d %s", nd.id, r.status, r.raw)
	}
	return r
}

// get fetches a transfer through node's API.
func (f *fleet) get(t *testing.T, nd *fleetNode, tenant, id string) *apiResponse {
	t.Helper()
	return f.do(t, nd, tenant, "GET", "/generativeagent/v1/call-transfers/"+id, "")
}

// waitTransfer polls through node until check accepts the transfer, and
// returns it; it fails the test after within.
func (f *fleet) waitTransfer(t *testing.T, nd *fleetNode, tenant, id string, within time.Duration, check func(*apiResponse) bool) *apiResponse {
	t.Helper()
	for deadline := time.Now().Add(within); ; time.Sleep(50 * time.Millisecond) {
		r := f.get(t, nd, tenant, id)
		if check(r) {
			return r
		}
		if time.Now().After(deadline) {
			t.Fatalf("transfer %s after %v: %s", id, within, r.raw)
		}
	}
}

// metrics returns the node's /metrics.
func (nd *fleetNode) metrics(t *testing.T) string {
	t.Helper()
	res, err := http.Get(nd.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(body)
}

// metric sums the samples of the node's /metrics whose series (name and
// labels, as written) begins with prefix.
func (nd *fleetNode) metric(t *testing.T, prefix string) float64 {
	t.Helper()
	return sumSeries(nd.metrics(t), prefix)
}

func sumSeries(text, prefix string) float64 {
	sum := 0.0
	sc := bufio.NewScanner(strings.NewReader(text))
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, prefix) {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if v, err := strconv.ParseFloat(line[i+1:], 64); err == nil {
			sum += v
		}
	}
	return sum
}

// answered is how many calls a node has answered and handed back, by any
// method: its share of the calls.
func (nd *fleetNode) answered(t *testing.T) int {
	return int(nd.metric(t, "switchback_handbacks_total{"))
}

// sippStats is how a SIPp run of many calls went.
type sippStats struct {
	ok, failed int
	report     string
}

// sippCalls places len(rows) calls of scenario to target with one SIPp,
// rate a second and at most limit at once, each taking the CSV fields of
// its row ("field0;field1;"), and returns how many succeeded and failed.
// It gives up after within.
func sippCalls(t *testing.T, target, scenario string, replace map[string]string, rows []string, rate, limit int, within time.Duration) sippStats {
	t.Helper()
	dir := t.TempDir()
	sf := writeScenario(t, dir, scenario, replace)
	inf := filepath.Join(dir, "fields.csv")
	writeFile(t, inf, "SEQUENTIAL\n"+strings.Join(rows, "\n")+"\n")
	stat := filepath.Join(dir, "stat.csv")
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	cmd := exec.CommandContext(ctx, "sipp", "-sf", sf, "-inf", inf, "-m", strconv.Itoa(len(rows)),
		"-r", strconv.Itoa(rate), "-l", strconv.Itoa(limit), "-i", "127.0.0.1", "-p", "0", "-mp", strconv.Itoa(freeMediaPorts(t)),
		"-timeout", strconv.Itoa(int(within/time.Second))+"s", "-trace_stat", "-stf", stat,
		"-trace_err", "-error_file", filepath.Join(dir, "errors.log"), "-nostdin", target)
	cmd.Dir = dir
	out, _ := cmd.CombinedOutput()
	errs, _ := os.ReadFile(filepath.Join(dir, "errors.log"))
	if len(errs) > 6000 {
		errs = errs[len(errs)-6000:]
	}
	s := sippStats{report: string(out) + "\n--- errors ---\n" + string(errs)}
	data, err := os.ReadFile(stat)
	if err != nil {
		t.Fatalf("sipp wrote no statistics: %v\n%s", err, s.report)
	}
	lines := strings.Split(strings.TrimSpace(string(data)), "\n")
	head, last := strings.Split(lines[0], ";"), strings.Split(lines[len(lines)-1], ";")
	for i, h := range head {
		if i >= len(last) {
			break
		}
		switch h {
		case "SuccessfulCall(C)":
			s.ok, _ = strconv.Atoi(last[i])
		case "FailedCall(C)":
			s.failed, _ = strconv.Atoi(last[i])
		}
	}
	return s
}

// inviteStatus sends one INVITE for a transfer of tenant acme, without SDP,
// to addr and returns the status line of its final answer, or "" when
// nothing answers within wait. It acknowledges a refusal.
func inviteStatus(t *testing.T, addr, transferID string, wait time.Duration) string {
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
	callID := "inv-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	head := func(method string) string {
		return method + " sip:acme@" + addr + " SIP/2.0\r\n" +
			"Via: SIP/2.0/UDP " + local + ";branch=z9hG4bK-" + callID + "\r\n" +
			"From: <sip:ivr@" + local + ">;tag=1\r\nTo: <sip:acme@" + addr + ">\r\n" +
			"Call-ID: " + callID + "\r\nCSeq: 1 " + method + "\r\nMax-Forwards: 70\r\n"
	}
	c.WriteTo([]byte(head("INVITE")+"Contact: <sip:ivr@"+local+">\r\nX-ASAPP-CallTransferId: "+transferID+"\r\nContent-Length: 0\r\n\r\n"), to)
	buf := make([]byte, 8192)
	for deadline := time.Now().Add(wait); ; {
		c.SetReadDeadline(deadline)
		n, _, err := c.ReadFrom(buf)
		if err != nil {
			return ""
		}
		line, _, _ := strings.Cut(string(buf[:n]), "\r\n")
		f := strings.Fields(line)
		if len(f) < 2 || f[1] < "200" {
			continue
		}
		if f[1] >= "300" {
			c.WriteTo([]byte(head("ACK")+"Content-Length: 0\r\n\r\n"), to)
		}
		return line
	}
}

// grepLines returns the lines of text that hold s.
func grepLines(text, s string) string {
	var out []string
	for _, line := range strings.Split(text, "\n") {
		if strings.Contains(line, s) {
			out = append(out, line)
		}
	}
	return strings.Join(out, "\n")
}

// failedOver counts the calls a dispatcher logged as refused by node nd
// (503) or unanswered, and sent to the next node.
func failedOver(k *kamailio, nd *fleetNode) int {
	return strings.Count(k.log.String(), "Switchback node sip:"+nd.sip+" refused or dropped call")
}

// sippSplit places the calls of rows through two dispatchers at once,
// every other row through each, at rate calls a second in all, and adds
// up how they went.
func sippSplit(t *testing.T, k1, k2 *kamailio, scenario string, replace map[string]string, rows []string, rate int, within time.Duration) sippStats {
	t.Helper()
	var halves [2][]string
	for i, r := range rows {
		halves[i%2] = append(halves[i%2], r)
	}
	var st [2]sippStats
	var wg sync.WaitGroup
	for i, k := range []*kamailio{k1, k2} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			st[i] = sippCalls(t, k.addr, scenario, replace, halves[i], max(rate/2, 1), len(halves[i]), within)
		}()
	}
	wg.Wait()
	return sippStats{ok: st[0].ok + st[1].ok, failed: st[0].failed + st[1].failed, report: st[0].report + "\n" + st[1].report}
}
