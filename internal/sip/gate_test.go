package sip

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	client "github.com/icholy/digest"

	"github.com/switchback/switchback/internal/config"
	"github.com/switchback/switchback/internal/sqlite"
	"github.com/switchback/switchback/internal/transfer"
)

// edgeSetup is what startEdgeWith builds an edge from.
type edgeSetup struct {
	mutate func(*config.Config)
	log    *slog.Logger
	db     *sqlite.DB  // a store to share with another edge; a new one if nil
	tune   func(*Edge) // runs after Listen, before Serve
}

// startEdgeWith runs an edge whose only tenant, "demo", takes calls from
// 127.0.0.2 unless s.mutate says otherwise.
func startEdgeWith(t *testing.T, s edgeSetup) *Edge {
	t.Helper()
	cfg := config.Default()
	cfg.SIP.Listen = "127.0.0.1:0"
	cfg.SIP.Trunks = nil
	cfg.Tenants[0].SIP.Allow = []string{"127.0.0.2/32"}
	if s.mutate != nil {
		s.mutate(&cfg)
	}
	db := s.db
	if db == nil {
		var err error
		if db, err = sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "e.db"), sqlite.Options{}); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
	}
	svc := transfer.New(transfer.Options{Store: db, Policy: func(string) (transfer.Policy, bool) { return transfer.Policy{}, true }})
	e, err := New(Options{Config: cfg, Transfers: svc, Nonces: db, Log: s.log})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Listen(); err != nil {
		t.Fatal(err)
	}
	if s.tune != nil {
		s.tune(e)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { e.Serve(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return e
}

// digestAnywhere makes the demo tenant take digest credentials from any
// address, and no address without them.
func digestAnywhere(c *config.Config) {
	c.Tenants[0].SIP.Allow = nil
	c.Tenants[0].SIP.Users = []config.SIPUser{{Username: "ivr", Password: "s3cret"}}
}

// udpPeer is a raw UDP socket that sends requests and collects whatever
// comes back.
type udpPeer struct {
	t *testing.T
	c *net.UDPConn
}

func newUDPPeer(t *testing.T, ip string) *udpPeer {
	t.Helper()
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.ParseIP(ip)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &udpPeer{t: t, c: c}
}

// send sends msg with LOCAL replaced by the peer's address, and returns
// its length.
func (p *udpPeer) send(to net.Addr, msg string) int {
	p.t.Helper()
	msg = strings.ReplaceAll(msg, "LOCAL", p.c.LocalAddr().String())
	if _, err := p.c.WriteTo([]byte(msg), to); err != nil {
		p.t.Fatal(err)
	}
	return len(msg)
}

// collect returns every datagram that arrives within d.
func (p *udpPeer) collect(d time.Duration) []string {
	var got []string
	buf := make([]byte, 65536)
	deadline := time.Now().Add(d)
	for {
		p.c.SetReadDeadline(deadline)
		n, _, err := p.c.ReadFrom(buf)
		if err != nil {
			return got
		}
		got = append(got, string(buf[:n]))
	}
}

// next returns the next datagram within d, or "".
func (p *udpPeer) next(d time.Duration) string {
	buf := make([]byte, 65536)
	p.c.SetReadDeadline(time.Now().Add(d))
	n, _, err := p.c.ReadFrom(buf)
	if err != nil {
		return ""
	}
	return string(buf[:n])
}

func statusLines(msgs []string) []string {
	var out []string
	for _, m := range msgs {
		line, _, _ := strings.Cut(m, "\r\n")
		out = append(out, line)
	}
	return out
}

const sdpOffer = "v=0\r\no=ivr 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n" +
	"m=audio 40000 RTP/AVP 0 8 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n" +
	"a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\na=ptime:20\r\n"

// request builds a request over UDP from LOCAL. user is the Request-URI
// user; toTag, if set, puts it in a dialog; extra are header lines.
func request(method, user, callID string, cseq int, toTag, body string, extra ...string) string {
	to := "<sip:" + user + "@127.0.0.1>"
	if toTag != "" {
		to += ";tag=" + toTag
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s sip:%s@127.0.0.1 SIP/2.0\r\n", method, user)
	fmt.Fprintf(&b, "Via: SIP/2.0/UDP LOCAL;branch=z9hG4bK-%s-%d\r\n", callID, cseq)
	fmt.Fprintf(&b, "From: <sip:ivr@127.0.0.9>;tag=f-%s\r\nTo: %s\r\n", callID, to)
	fmt.Fprintf(&b, "Call-ID: %s\r\nCSeq: %d %s\r\nMax-Forwards: 70\r\n", callID, cseq, method)
	fmt.Fprintf(&b, "Contact: <sip:ivr@LOCAL>\r\n")
	for _, h := range extra {
		b.WriteString(h + "\r\n")
	}
	if body != "" {
		b.WriteString("Content-Type: application/sdp\r\n")
	}
	fmt.Fprintf(&b, "Content-Length: %d\r\n\r\n%s", len(body), body)
	return b.String()
}

func inviteFrom(user, callID string, cseq int, extra ...string) string {
	return request("INVITE", user, callID, cseq, "", sdpOffer, append([]string{"X-ASAPP-CallTransferId: t-" + callID}, extra...)...)
}

// authorization answers the first challenge of a 401 as user ivr.
func authorization(t *testing.T, res, password string) string {
	t.Helper()
	for _, line := range strings.Split(res, "\r\n") {
		name, value, ok := strings.Cut(line, ":")
		if !ok || !strings.EqualFold(name, "WWW-Authenticate") {
			continue
		}
		c, err := client.ParseChallenge(strings.TrimSpace(value))
		if err != nil {
			t.Fatal(err)
		}
		cred, err := client.Digest(c, client.Options{Method: "INVITE", URI: "sip:demo@127.0.0.1", Username: "ivr", Password: password})
		if err != nil {
			t.Fatal(err)
		}
		return "Authorization: " + cred.String()
	}
	t.Fatalf("no challenge in %q", res)
	return ""
}

// T1 is RFC 3261's round-trip estimate: an INVITE server transaction
// retransmits a final answer T1 after sending it, then 2*T1 later.
const t1 = 500 * time.Millisecond

func TestUnauthenticatedINVITEIsChallengedStatelessly(t *testing.T) {
	e := startEdgeWith(t, edgeSetup{mutate: digestAnywhere})
	to := net.UDPAddrFromAddrPort(e.Addr())
	p := newUDPPeer(t, "127.0.0.1")
	in := p.send(to, inviteFrom("demo", "flood-1", 1))
	got := p.collect(3 * t1)
	lines := statusLines(got)
	if len(got) != 1 || lines[0] != "SIP/2.0 401 Unauthorized" {
		t.Fatalf("got %q, want one 401 and nothing more (no 100 Trying, no retransmission)", lines)
	}
	if !strings.Contains(got[0], "WWW-Authenticate: Digest ") {
		t.Fatalf("401 without a challenge:\n%s", got[0])
	}
	if out := len(got[0]); out > in {
		t.Fatalf("answered %d bytes to a %d-byte request", out, in)
	}
	if n := e.Transactions(); n != 0 {
		t.Fatalf("%d server transactions for an unauthenticated INVITE", n)
	}
	if n := e.Refused(ReasonChallenged); n != 1 {
		t.Fatalf("refused{challenged} = %d, want 1", n)
	}
	// The same request again (a retransmission) gets the same To tag.
	p.send(to, inviteFrom("demo", "flood-1", 1))
	again := p.collect(t1)
	if len(again) != 1 || toTag(again[0]) != toTag(got[0]) || toTag(got[0]) == "" {
		t.Fatalf("retransmitted INVITE: To tag %q then %q", toTag(got[0]), toTag(strings.Join(again, "")))
	}
}

func toTag(msg string) string {
	for _, line := range strings.Split(msg, "\r\n") {
		if strings.HasPrefix(line, "To:") {
			if _, tag, ok := strings.Cut(line, ";tag="); ok {
				return tag
			}
		}
	}
	return ""
}

// TestUnknownSourcesAreAnsweredStatelessly: whatever a source no allowlist
// has sends, it gets at most one answer, never a 100 Trying, never a
// retransmission, and no transaction is made for it.
func TestUnknownSourcesAreAnsweredStatelessly(t *testing.T) {
	e := startEdgeWith(t, edgeSetup{mutate: digestAnywhere})
	to := net.UDPAddrFromAddrPort(e.Addr())
	forged := `Authorization: Digest username="ivr", realm="switchback", nonce="` + strings.Repeat("A", 48) +
		`", uri="sip:demo@127.0.0.1", response="` + strings.Repeat("0", 32) + `", algorithm=MD5`
	cases := []struct {
		name, msg, want string // want: the status line, or "" for no answer
	}{
		{"INVITE without credentials", inviteFrom("demo", "c1", 1), "SIP/2.0 401 Unauthorized"},
		{"INVITE with a forged nonce", inviteFrom("demo", "c2", 1, forged), "SIP/2.0 401 Unauthorized"},
		{"INVITE with credentials that do not parse", inviteFrom("demo", "c3", 1, `Authorization: Digest username="ivr"`), "SIP/2.0 400 Bad Request"},
		{"INVITE to nobody", inviteFrom("nobody", "c4", 1), "SIP/2.0 404 Not Found"},
		{"INVITE without Max-Forwards", strings.Replace(inviteFrom("demo", "c5", 1), "Max-Forwards: 70\r\n", "", 1), "SIP/2.0 400 Missing Max-Forwards"},
		{"re-INVITE in no dialog", request("INVITE", "demo", "c6", 2, "x", sdpOffer), "SIP/2.0 481 Call/Transaction Does Not Exist"},
		{"BYE in no dialog", request("BYE", "demo", "c7", 2, "x", ""), "SIP/2.0 481 Call/Transaction Does Not Exist"},
		{"BYE outside a dialog", request("BYE", "demo", "c8", 2, "", ""), "SIP/2.0 481 Call/Transaction Does Not Exist"},
		{"OPTIONS", request("OPTIONS", "demo", "c9", 1, "", ""), "SIP/2.0 200 OK"},
		{"MESSAGE", request("MESSAGE", "demo", "c10", 1, "", ""), "SIP/2.0 403 Forbidden"},
		{"REGISTER", request("REGISTER", "demo", "c11", 1, "", ""), "SIP/2.0 403 Forbidden"},
		{"stray ACK", request("ACK", "demo", "c12", 1, "x", ""), ""},
		{"stray CANCEL", request("CANCEL", "demo", "c13", 1, "", ""), ""},
		{"keep-alive", "\r\n\r\n", ""},
	}
	// Every case at once, each from its own socket: the wait for
	// retransmissions is the same for all.
	peers := make([]*udpPeer, len(cases))
	sizes := make([]int, len(cases))
	answers := make([][]string, len(cases))
	var wg sync.WaitGroup
	for i, tc := range cases {
		peers[i] = newUDPPeer(t, "127.0.0.1")
		sizes[i] = peers[i].send(to, tc.msg)
		wg.Add(1)
		go func() { defer wg.Done(); answers[i] = peers[i].collect(3 * t1) }()
	}
	wg.Wait()
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := answers[i]
			var want []string
			if tc.want != "" {
				want = []string{tc.want}
			}
			if lines := statusLines(got); strings.Join(lines, "|") != strings.Join(want, "|") {
				t.Fatalf("got %q, want %q", lines, want)
			}
			if len(got) == 1 && len(got[0]) > sizes[i] {
				t.Errorf("answered %d bytes to a %d-byte request:\n%s", len(got[0]), sizes[i], got[0])
			}
		})
	}
	if n := e.Transactions(); n != 0 {
		t.Fatalf("%d server transactions for requests from an unknown source", n)
	}
	if n := e.Refused(ReasonUnparsable); n != 0 {
		t.Fatalf("a keep-alive counted as unparsable")
	}
}

// TestAuthenticatedINVITEKeepsItsTransaction: credentials that prove the
// password get what RFC 3261 gives a UAS's caller, a transaction: 100
// Trying, a final answer retransmitted until the ACK. The nonce is still
// good once only.
func TestAuthenticatedINVITEKeepsItsTransaction(t *testing.T) {
	e := startEdgeWith(t, edgeSetup{mutate: digestAnywhere})
	to := net.UDPAddrFromAddrPort(e.Addr())
	p := newUDPPeer(t, "127.0.0.1")
	p.send(to, inviteFrom("demo", "auth-1", 1))
	challenge := p.next(time.Second)
	authz := authorization(t, challenge, "s3cret")
	p.send(to, inviteFrom("demo", "auth-1", 2, authz))
	got := statusLines(p.collect(3 * t1))
	if len(got) < 3 || got[0] != "SIP/2.0 100 Trying" || got[1] != "SIP/2.0 404 Not Found" || got[2] != "SIP/2.0 404 Not Found" {
		t.Fatalf("authenticated INVITE for an unknown transfer: %q, want 100 Trying then a retransmitted 404", got)
	}
	if e.Transactions() == 0 {
		t.Fatal("no transaction for an authenticated INVITE")
	}
	// The same credentials again, in a new request: the nonce is used.
	p.send(to, inviteFrom("demo", "auth-2", 1, authz))
	replay := p.collect(2 * t1)
	lines := statusLines(replay)
	if len(lines) < 2 || lines[1] != "SIP/2.0 401 Unauthorized" || !strings.Contains(replay[1], "stale=true") {
		t.Fatalf("replayed credentials: %q, want 401 stale=true", lines)
	}
}

// TestTwoEdgesShareNonces: a nonce one node issues is good on another node
// of the same store, once.
func TestTwoEdgesShareNonces(t *testing.T) {
	db, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "shared.db"), sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	a := startEdgeWith(t, edgeSetup{mutate: digestAnywhere, db: db})
	b := startEdgeWith(t, edgeSetup{mutate: digestAnywhere, db: db})
	toA, toB := net.UDPAddrFromAddrPort(a.Addr()), net.UDPAddrFromAddrPort(b.Addr())
	p := newUDPPeer(t, "127.0.0.1")
	p.send(toA, inviteFrom("demo", "two-1", 1))
	authz := authorization(t, p.next(time.Second), "s3cret")
	p.send(toB, inviteFrom("demo", "two-1", 2, authz))
	if got := statusLines(p.collect(2 * t1)); len(got) < 2 || got[1] != "SIP/2.0 404 Not Found" {
		t.Fatalf("A's nonce on B: %q, want 100 Trying and 404 (authenticated, no such transfer)", got)
	}
	p.send(toA, inviteFrom("demo", "two-2", 1, authz))
	replay := p.collect(2 * t1)
	if lines := statusLines(replay); len(lines) < 2 || lines[1] != "SIP/2.0 401 Unauthorized" || !strings.Contains(replay[1], "stale=true") {
		t.Fatalf("replay on A of the nonce used on B: %q, want 401 stale=true", lines)
	}
}

// TestUnauthenticatedINVITEOverTCPIsChallengedStatelessly: a connection
// gets the gate a datagram gets.
func TestUnauthenticatedINVITEOverTCPIsChallengedStatelessly(t *testing.T) {
	e := startEdgeWith(t, edgeSetup{mutate: digestAnywhere})
	conn, err := net.Dial("tcp", e.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	tcp := func(msg string) string {
		msg = strings.ReplaceAll(strings.ReplaceAll(msg, "SIP/2.0/UDP", "SIP/2.0/TCP"), "LOCAL", conn.LocalAddr().String())
		return strings.Replace(msg, "Contact: <sip:ivr@"+conn.LocalAddr().String()+">", "Contact: <sip:ivr@"+conn.LocalAddr().String()+";transport=tcp>", 1)
	}
	read := func(d time.Duration) []string {
		var all []byte
		buf := make([]byte, 65536)
		for deadline := time.Now().Add(d); ; {
			conn.SetReadDeadline(deadline)
			n, err := conn.Read(buf)
			all = append(all, buf[:n]...)
			if err != nil {
				break
			}
		}
		var lines []string
		for _, line := range strings.Split(string(all), "\r\n") {
			if strings.HasPrefix(line, "SIP/2.0 ") {
				lines = append(lines, line)
			}
		}
		return lines
	}
	// Two requests in one write: the stream is cut where sipgo cuts it.
	first := tcp(inviteFrom("demo", "tcp-1", 1))
	if _, err := conn.Write([]byte(first + "\r\n\r\n" + tcp(request("OPTIONS", "demo", "tcp-2", 1, "", "")))); err != nil {
		t.Fatal(err)
	}
	got := read(3 * t1)
	if strings.Join(got, "|") != "SIP/2.0 401 Unauthorized|SIP/2.0 200 OK" {
		t.Fatalf("over TCP: %q, want 401 then 200, nothing else", got)
	}
	if n := e.Transactions(); n != 0 {
		t.Fatalf("%d transactions for unauthenticated requests over TCP", n)
	}
}

// udpPoolEntries waits up to d for sipgo's UDP pool to hold at most max
// entries, and returns how many it holds.
func udpPoolEntries(e *Edge, max int, d time.Duration) int {
	deadline := time.Now().Add(d)
	for {
		n := e.ua.TransportLayer().Pool("udp").Size()
		if n <= max || time.Now().After(deadline) {
			return n
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestManySourcesLeaveThePoolBounded: sipgo keeps every address it reads
// a message from; thousands of unauthenticated sources must leave nothing
// there, and addresses that were let through must be forgotten once quiet.
func TestManySourcesLeaveThePoolBounded(t *testing.T) {
	e := startEdgeWith(t, edgeSetup{
		mutate: func(c *config.Config) {
			digestAnywhere(c)
			c.Tenants = append(c.Tenants, config.Tenant{ID: "known", SIP: config.TenantSIP{User: "known", Allow: []string{"127.0.0.2/32"}}})
		},
		tune: func(e *Edge) { e.peers.window = 200 * time.Millisecond },
	})
	to := net.UDPAddrFromAddrPort(e.Addr())
	const sources = 2000
	for i := range sources {
		// Each address its own, as in a flood: one address alone would
		// soon use up its answers.
		p := newUDPPeer(t, fmt.Sprintf("127.1.%d.%d", i/250, 1+i%250))
		p.send(to, inviteFrom("demo", fmt.Sprintf("many-%d", i), 1))
		if got := p.next(time.Second); got == "" {
			t.Fatalf("source %d: no answer", i)
		}
		p.c.Close()
	}
	if n := udpPoolEntries(e, 2, 0); n > 2 {
		t.Fatalf("sipgo's UDP pool holds %d entries after %d unauthenticated sources", n, sources)
	}
	// Allowlisted sources go through sipgo, and their entries go once quiet.
	for i := range 500 {
		p := newUDPPeer(t, "127.0.0.2")
		p.send(to, request("OPTIONS", "known", fmt.Sprintf("known-%d", i), 1, "", ""))
		if got := p.next(time.Second); !strings.HasPrefix(got, "SIP/2.0 200") {
			t.Fatalf("allowlisted OPTIONS %d: %q", i, got)
		}
		p.c.Close()
	}
	if n := udpPoolEntries(e, 3, 3*time.Second); n > 3 {
		t.Fatalf("sipgo's UDP pool holds %d entries 3 s after 500 quiet sources", n)
	}
}

// logCapture is a JSON log in memory, set as the Edge's log and as slog's
// default for the test.
type logCapture struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logCapture) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logCapture) lines() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Split(strings.TrimSpace(l.buf.String()), "\n")
}

func captureLog(t *testing.T) (*logCapture, *slog.Logger) {
	c := &logCapture{}
	log := slog.New(slog.NewJSONHandler(c, &slog.HandlerOptions{Level: slog.LevelInfo}))
	old := slog.Default()
	slog.SetDefault(log)
	t.Cleanup(func() { slog.SetDefault(old) })
	return c, log
}

func TestGarbageDatagramIsLoggedShortAndEscaped(t *testing.T) {
	c, log := captureLog(t)
	e := startEdgeWith(t, edgeSetup{log: log})
	to := net.UDPAddrFromAddrPort(e.Addr())
	garbage := make([]byte, 65000)
	for i := range garbage {
		garbage[i] = byte(i*7 + i/251) // every byte value: NUL, CR, LF, invalid UTF-8
	}
	copy(garbage, "INVITE ")
	p := newUDPPeer(t, "127.0.0.2") // allowlisted: nothing stops it before the parser
	p.send(to, string(garbage))
	time.Sleep(300 * time.Millisecond)
	var found bool
	for _, line := range c.lines() {
		if len(line) > 2048 {
			t.Fatalf("a %d-byte log line: %.300s...", len(line), line)
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("not a JSON line: %.300s", line)
		}
		if data, ok := m["data"].(string); ok {
			found = true
			if !strings.HasPrefix(data, "INVITE ") || !strings.Contains(data, `\x`) || !strings.Contains(data, "more bytes") || strings.ContainsRune(data, '\uFFFD') {
				t.Fatalf("data not escaped and cut: %q", data)
			}
		}
	}
	if !found {
		t.Fatalf("the garbage was not logged:\n%s", strings.Join(c.lines(), "\n"))
	}
	if e.Refused(ReasonUnparsable) != 1 {
		t.Fatalf("refused{unparsable} = %d", e.Refused(ReasonUnparsable))
	}
}

func TestParseErrorsAreLoggedOncePerSource(t *testing.T) {
	c, log := captureLog(t)
	e := startEdgeWith(t, edgeSetup{log: log})
	to := net.UDPAddrFromAddrPort(e.Addr())
	p := newUDPPeer(t, "127.0.0.2")
	for i := range 50 {
		p.send(to, fmt.Sprintf("NOT SIP %d\r\n\r\n", i))
	}
	other := newUDPPeer(t, "127.0.0.3")
	other.send(to, "NOT SIP either\r\n\r\n")
	time.Sleep(300 * time.Millisecond)
	var lines []string
	for _, line := range c.lines() {
		if strings.Contains(line, "NOT SIP") {
			lines = append(lines, line)
		}
	}
	if len(lines) != 2 {
		t.Fatalf("%d log lines for 51 unparsable datagrams from two sources, want one each:\n%s", len(lines), strings.Join(lines, "\n"))
	}
	if e.Refused(ReasonUnparsable) != 51 {
		t.Fatalf("refused{unparsable} = %d, want 51", e.Refused(ReasonUnparsable))
	}
}

// TestAnswersPerSourceAreLimited: one address gets at most the burst of
// answers at once; another address is answered all the same.
func TestAnswersPerSourceAreLimited(t *testing.T) {
	e := startEdgeWith(t, edgeSetup{mutate: digestAnywhere, tune: func(e *Edge) { e.answers = newSourceLimiter(1, 10) }})
	to := net.UDPAddrFromAddrPort(e.Addr())
	p := newUDPPeer(t, "127.0.0.1")
	for i := range 100 {
		p.send(to, inviteFrom("demo", fmt.Sprintf("burst-%d", i), 1))
	}
	if got := p.collect(3 * t1); len(got) < 10 || len(got) > 13 {
		t.Fatalf("%d answers to 100 INVITEs from one source, want the burst of 10 (and one a second)", len(got))
	}
	if e.Refused(ReasonRateLimited) < 80 {
		t.Fatalf("refused{rate_limited} = %d", e.Refused(ReasonRateLimited))
	}
	other := newUDPPeer(t, "127.0.0.4")
	other.send(to, inviteFrom("demo", "other", 1))
	if got := other.next(time.Second); !strings.HasPrefix(got, "SIP/2.0 401") {
		t.Fatalf("another source: %q", got)
	}
}

// TestRequestsInACallPassFromAnywhere: the other end of a call may send
// from an address no allowlist has (a return leg's target, a caller behind
// another proxy); its requests in the dialog go on to the call.
func TestRequestsInACallPassFromAnywhere(t *testing.T) {
	e := startEdgeWith(t, edgeSetup{}) // allowlist only: 127.0.0.2
	// A dialog the node holds, as Switchback (To tag "ours") sees it.
	e.dialogs.Store(sip.DialogIDMake("held-1", "ours", "f-held-1"), (*leg)(nil))
	to := net.UDPAddrFromAddrPort(e.Addr())
	p := newUDPPeer(t, "127.0.0.1")
	p.send(to, request("BYE", "demo", "held-1", 2, "ours", ""))
	// Through the gate to the handler, which finds no leg there: 481.
	if got := statusLines(p.collect(2 * t1)); strings.Join(got, "|") != "SIP/2.0 481 Call/Transaction Does Not Exist" {
		t.Fatalf("BYE in a held dialog from an unknown source: %q", got)
	}
	if e.Transactions() != 1 {
		t.Fatalf("%d transactions, want the BYE's", e.Transactions())
	}
	p.send(to, request("BYE", "demo", "other", 2, "ours", ""))
	if got := statusLines(p.collect(t1)); strings.Join(got, "|") != "SIP/2.0 403 Forbidden" {
		t.Fatalf("BYE in another dialog: %q, want 403", got)
	}
}
