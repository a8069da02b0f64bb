package e2e

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	digestclient "github.com/icholy/digest"

	"github.com/switchback/switchback/internal/pgtest"
)

// openConfig is a gateway whose one tenant, "open", takes digest
// credentials from any address and no address without them.
const openConfig = `
store: {driver: %s, dsn: %q}
sip:
  listen: 127.0.0.1:0
  rtpPorts: {min: %d, max: %d}
  digestAlgorithms: [MD5, SHA-256]  # SIPp answers only the first challenge, and only MD5
  trunks: []  # no trunk: the default one takes all of loopback
tenants:
  - id: open
    sip: {user: open, users: [{username: ivr, password: s3cret-pass}]}
    agents:
      - menu: {digitTimeout: 0s, default: {transferType: SYSTEM, taskName: through-the-gate}}
log: {level: info}
`

// startOpenGateway runs a gateway on openConfig, on SQLite unless dsn is a
// PostgreSQL one, in dir.
func startOpenGateway(t *testing.T, dir, driver, dsn string) (*server, string) {
	t.Helper()
	cfg := filepath.Join(dir, "switchback.yaml")
	rtpBase += 200
	writeFile(t, cfg, fmt.Sprintf(openConfig, driver, dsn, rtpBase, rtpBase+199))
	s := startServer(t, dir, cfg)
	m := sipListening.FindStringSubmatch(s.stdout.String())
	if m == nil {
		t.Fatalf("no SIP address printed:\n%s", s.stdout)
	}
	return s, m[1]
}

// metric reads one sample of the server's /metrics.
func metric(t *testing.T, s *server, sample string) string {
	t.Helper()
	res, err := http.Get(s.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	body, _ := io.ReadAll(res.Body)
	m := regexp.MustCompile("(?m)^" + regexp.QuoteMeta(sample) + " (\\S+)$").FindStringSubmatch(string(body))
	if m == nil {
		return ""
	}
	return m[1]
}

// rawInvite is an INVITE from LOCAL over UDP to the open tenant.
func rawInvite(callID string, cseq int, extra ...string) string {
	return "INVITE sip:open@127.0.0.1 SIP/2.0\r\n" +
		fmt.Sprintf("Via: SIP/2.0/UDP LOCAL;branch=z9hG4bK-%s-%d\r\n", callID, cseq) +
		"From: <sip:ivr@127.0.0.1>;tag=" + callID + "\r\nTo: <sip:open@127.0.0.1>\r\n" +
		fmt.Sprintf("Call-ID: %s\r\nCSeq: %d INVITE\r\nMax-Forwards: 70\r\n", callID, cseq) +
		"Contact: <sip:ivr@LOCAL>\r\nX-ASAPP-CallTransferId: " + callID + "\r\n" +
		strings.Join(append(extra, ""), "\r\n") + "Content-Length: 0\r\n\r\n"
}

// exchangeAll sends msg from c to addr and returns every datagram that
// comes back within d.
func exchangeAll(t *testing.T, c *net.UDPConn, addr, msg string, d time.Duration) []string {
	t.Helper()
	to, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		t.Error(err)
		return nil
	}
	if _, err := c.WriteTo([]byte(strings.ReplaceAll(msg, "LOCAL", c.LocalAddr().String())), to); err != nil {
		t.Error(err)
		return nil
	}
	var got []string
	buf := make([]byte, 65536)
	for deadline := time.Now().Add(d); ; {
		c.SetReadDeadline(deadline)
		n, _, err := c.ReadFrom(buf)
		if err != nil {
			return got
		}
		got = append(got, string(buf[:n]))
	}
}

// statusOf is the status lines of msgs, joined by "|".
func statusOf(msgs []string) string {
	var lines []string
	for _, m := range msgs {
		line, _, _ := strings.Cut(m, "\r\n")
		lines = append(lines, line)
	}
	return strings.Join(lines, "|")
}

// answerChallenge is the Authorization header answering the first
// challenge of a 401 as ivr.
func answerChallenge(t *testing.T, res string) string {
	t.Helper()
	for _, line := range strings.Split(res, "\r\n") {
		if v, ok := strings.CutPrefix(line, "WWW-Authenticate: "); ok {
			c, err := digestclient.ParseChallenge(v)
			if err != nil {
				t.Fatal(err)
			}
			cred, err := digestclient.Digest(c, digestclient.Options{Method: "INVITE", URI: "sip:open@127.0.0.1", Username: "ivr", Password: "s3cret-pass"})
			if err != nil {
				t.Fatal(err)
			}
			return "Authorization: " + cred.String()
		}
	}
	t.Fatalf("no challenge in %q", res)
	return ""
}

// TestDigestCallThroughTheGate: with a tenant that takes digest from
// anywhere, a burst of unauthenticated INVITEs from many addresses gets
// one stateless answer each and no transaction, while a caller with the
// password (SIPp) completes its call.
func TestDigestCallThroughTheGate(t *testing.T) {
	requireSIPp(t)
	dir := t.TempDir()
	s, sipAddr := startOpenGateway(t, dir, "sqlite", filepath.Join(dir, "sb.db"))
	m := keyLines.FindStringSubmatch(cli(t, dir, "keys", "create", "--config", filepath.Join(dir, "switchback.yaml"), "--tenant", "open"))
	if m == nil {
		t.Fatal("keys create printed no key")
	}
	key := credentials{m[1], m[2]}
	r, err := newClient(key).do(context.Background(), "POST", s.URL+"/generativeagent/v1/call-transfers",
		`{"id":"gate-1","externalConversationId":"c","type":"SIP"}`)
	if err != nil || r.status != 200 {
		t.Fatalf("create: %v %s", err, r.raw)
	}

	const flood = 200
	var wg sync.WaitGroup
	answers := make([][]string, flood)
	for i := range flood {
		c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 2, byte(i/200), byte(1+i%200))})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		wg.Add(1)
		go func() {
			defer wg.Done()
			answers[i] = exchangeAll(t, c, sipAddr, rawInvite(fmt.Sprintf("flood-%d", i), 1), 1500*time.Millisecond)
		}()
	}
	ok, out := sippTo(t, sipAddr, "digest.xml", map[string]string{"AUTH_USER": "ivr", "AUTH_PASS": "s3cret-pass"}, "X-ASAPP-CallTransferId: gate-1", "open")
	wg.Wait()
	if !ok {
		t.Fatalf("the digest call: %s\n%s", out, s.stderr)
	}
	for i, a := range answers {
		if got := statusOf(a); got != "SIP/2.0 401 Unauthorized" {
			t.Fatalf("flood INVITE %d got %q, want one 401", i, got)
		}
	}
	if r, _ := newClient(key).do(context.Background(), "GET", s.URL+"/generativeagent/v1/call-transfers/gate-1", ""); r.str("status") != "COMPLETED" {
		t.Fatalf("after the call: %s", r.raw)
	}
	// SIPp's first INVITE was challenged too; its second one, and the
	// requests of the call, were the only ones given transactions.
	if got := metric(t, s, `switchback_sip_requests_refused_total{reason="challenged"}`); got != fmt.Sprint(flood+1) {
		t.Fatalf("refused{challenged} = %q, want %d", got, flood+1)
	}
	if got := metric(t, s, "switchback_sip_server_transactions_total"); got == "" || got == "0" || len(got) > 2 {
		t.Fatalf("server transactions = %q, want the call's few", got)
	}
}

// TestNoncesAcrossTwoNodes: two nodes on one PostgreSQL. A nonce one node
// issues, without storing anything, is good on the other; once used there,
// the first node finds it stale.
func TestNoncesAcrossTwoNodes(t *testing.T) {
	dsn := pgtest.NewDatabase(t)
	_, a := startOpenGateway(t, t.TempDir(), "postgres", dsn)
	_, b := startOpenGateway(t, t.TempDir(), "postgres", dsn)
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	got := exchangeAll(t, c, a, rawInvite("two-1", 1), time.Second)
	if statusOf(got) != "SIP/2.0 401 Unauthorized" {
		t.Fatalf("node A: %q, want one stateless 401", statusOf(got))
	}
	authz := answerChallenge(t, got[0])
	// No transfer two-1: past authentication, the call is refused 404.
	if got := statusOf(exchangeAll(t, c, b, rawInvite("two-1", 2, authz), time.Second)); !strings.HasPrefix(got, "SIP/2.0 100 Trying|SIP/2.0 404 Not Found") {
		t.Fatalf("node B with A's nonce: %q, want 100 Trying and 404", got)
	}
	got = exchangeAll(t, c, a, rawInvite("two-2", 1, authz), time.Second)
	if !strings.HasPrefix(statusOf(got), "SIP/2.0 100 Trying|SIP/2.0 401 Unauthorized") || !strings.Contains(got[1], "stale=true") {
		t.Fatalf("node A, the nonce used on B: %q, want 401 stale=true", statusOf(got))
	}
}
