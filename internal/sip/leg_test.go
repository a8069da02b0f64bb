package sip

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
	"github.com/switchback/switchback"
	"github.com/switchback/switchback/internal/config"
	"github.com/switchback/switchback/internal/sqlite"
	"github.com/switchback/switchback/internal/transfer"
)

// agentFunc is an agent factory whose agents run f.
type agentFunc func(ctx context.Context, call switchback.Call) (*switchback.HandBack, error)

func (f agentFunc) NewAgent(context.Context, *switchback.CallInfo) (switchback.Agent, error) {
	return f, nil
}
func (f agentFunc) Run(ctx context.Context, call switchback.Call) (*switchback.HandBack, error) {
	return f(ctx, call)
}

// holds is an agent that talks until the call ends under it.
var holds = agentFunc(func(ctx context.Context, call switchback.Call) (*switchback.HandBack, error) {
	<-ctx.Done()
	return nil, ctx.Err()
})

// handsBack is an agent that hands the call back at once.
var handsBack = agentFunc(func(ctx context.Context, call switchback.Call) (*switchback.HandBack, error) {
	return &switchback.HandBack{Output: &switchback.OutputContext{TransferType: switchback.TransferSystem}}, nil
})

// legEdge is an edge for the leg tests: tenant "demo" takes calls from
// 127.0.0.2, with agent, on a store whose transfers the test creates.
type legEdge struct {
	*Edge
	svc *transfer.Service
	// stop ends Serve and returns once it has returned.
	stop func()
	// log is what the edge logged, as JSON lines.
	log *syncBuffer
}

// syncBuffer is a bytes.Buffer the test reads while the edge writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func startLegEdge(t *testing.T, agent switchback.AgentFactory, mutate func(*config.Config), minimumSE ...time.Duration) *legEdge {
	t.Helper()
	cfg := config.Default()
	cfg.SIP.Listen = "127.0.0.1:0"
	cfg.SIP.Trunks = nil
	cfg.SIP.RTPTimeout = config.Duration(time.Minute)
	cfg.Tenants[0].SIP.Allow = []string{"127.0.0.2/32"}
	if mutate != nil {
		mutate(&cfg)
	}
	db, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "e.db"), sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	svc := transfer.New(transfer.Options{Store: db, Policy: func(string) (transfer.Policy, bool) {
		return transfer.Policy{SIPTTL: time.Minute}, true
	}})
	log := &syncBuffer{}
	e, err := New(Options{Config: cfg, Transfers: svc, Nonces: db, Agents: agent, Log: slog.New(slog.NewJSONHandler(log, nil))})
	if err != nil {
		t.Fatal(err)
	}
	// Session intervals short enough for a test, unless one is given.
	e.minSE = time.Second
	if len(minimumSE) > 0 {
		e.minSE = minimumSE[0]
	}
	if err := e.Listen(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { e.Serve(ctx); close(done) }()
	stop := func() { cancel(); <-done }
	t.Cleanup(stop)
	return &legEdge{Edge: e, svc: svc, stop: stop, log: log}
}

// transfer creates a SIP transfer for tenant demo.
func (e *legEdge) transfer(t *testing.T, id string, sipSide *switchback.SIP) {
	t.Helper()
	if sipSide == nil {
		sipSide = &switchback.SIP{ReturnTransferType: switchback.ReturnBYE}
	}
	if _, err := e.svc.Create(context.Background(), &switchback.Transfer{TenantID: "demo", ID: id, ExternalConversationID: "conv-" + id,
		Type: switchback.TypeSIP, SIP: sipSide}); err != nil {
		t.Fatal(err)
	}
}

// events returns the conversation's events as "type:leg".
func (e *legEdge) events(t *testing.T, id string) []string {
	t.Helper()
	c, err := e.svc.Conversation(context.Background(), "demo", "conv-"+id)
	if err != nil {
		return nil
	}
	var out []string
	for _, ev := range c.Events {
		s := string(ev.Type)
		if l := ev.Data["leg"]; l != "" {
			s += ":" + l
		}
		if by := ev.Data["by"]; by != "" {
			s += ":" + by
		}
		out = append(out, s)
	}
	return out
}

// sipPeer is an independent SIP user agent (sipgo) on 127.0.0.2: the caller,
// or the customer's side of an INVITE hand-back.
type sipPeer struct {
	ua   *sipgo.UserAgent
	dua  *sipgo.DialogUA
	addr *net.UDPAddr
	reqs chan *sip.Request // the requests it got, in order
	// strays are the responses that matched no transaction of its own:
	// retransmissions of a final response it already had.
	strays chan *sip.Response
	mu     sync.Mutex
	// answerHeaders are extra headers for the 200 it answers an INVITE
	// with; see answerWith.
	answerHeaders []sip.Header
	// byeDelay holds its answer to a BYE that long.
	byeDelay time.Duration
	// ring makes it answer an INVITE with 180 only (the INVITE is on reqs
	// once the 180 is sent), and report a CANCEL of it on reqs; see
	// ringOnly.
	ring   bool
	server *sipgo.DialogServerSession
}

// ringOnly makes the sipPeer ring for every INVITE and never answer.
func (p *sipPeer) ringOnly() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.ring = true
}

// answerWith sets the extra headers of the 200 the sipPeer answers an
// INVITE with, as a text each: its handlers run on sipgo's goroutines.
func (p *sipPeer) answerWith(hs ...string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.answerHeaders = nil
	for _, h := range hs {
		name, value, _ := strings.Cut(h, ": ")
		p.answerHeaders = append(p.answerHeaders, sip.NewHeader(name, value))
	}
}

func newSipPeer(t *testing.T) *sipPeer {
	t.Helper()
	strays := make(chan *sip.Response, 64)
	ua, err := sipgo.NewUA(sipgo.WithUserAgentHostname("127.0.0.2"),
		sipgo.WithUserAgentTransactionLayerOptions(sip.WithTransactionLayerUnhandledResponseHandler(func(res *sip.Response) {
			select {
			case strays <- res:
			default:
			}
		})))
	if err != nil {
		t.Fatal(err)
	}
	srv, _ := sipgo.NewServer(ua)
	conn, err := net.ListenPacket("udp", "127.0.0.2:0")
	if err != nil {
		t.Fatal(err)
	}
	// Requests leave from the socket the sipPeer listens on.
	cli, _ := sipgo.NewClient(ua, sipgo.WithClientHostname("127.0.0.2"), sipgo.WithClientConnectionAddr(conn.LocalAddr().String()))
	p := &sipPeer{ua: ua, addr: conn.LocalAddr().(*net.UDPAddr), reqs: make(chan *sip.Request, 64), strays: strays}
	p.dua = &sipgo.DialogUA{Client: cli, ContactHDR: sip.ContactHeader{Address: sip.Uri{User: "sipPeer", Host: "127.0.0.2", Port: p.addr.Port}}}
	ok := func(req *sip.Request, tx sip.ServerTransaction, hs ...sip.Header) {
		res := sip.NewResponseFromRequest(req, 200, "OK", nil)
		for _, h := range hs {
			res.AppendHeader(h)
		}
		tx.Respond(res)
	}
	srv.OnBye(func(req *sip.Request, tx sip.ServerTransaction) {
		p.reqs <- req
		p.mu.Lock()
		d, delay := p.server, p.byeDelay
		p.mu.Unlock()
		time.Sleep(delay)
		if d != nil {
			d.ReadBye(req, tx)
			return
		}
		ok(req, tx)
	})
	srv.OnUpdate(func(req *sip.Request, tx sip.ServerTransaction) {
		p.reqs <- req
		ok(req, tx, sip.NewHeader("Session-Expires", req.GetHeader("Session-Expires").Value()))
	})
	srv.OnAck(func(req *sip.Request, tx sip.ServerTransaction) {
		p.mu.Lock()
		d := p.server
		p.mu.Unlock()
		if d != nil {
			d.ReadAck(req, tx)
		}
	})
	srv.OnInvite(func(req *sip.Request, tx sip.ServerTransaction) {
		p.mu.Lock()
		ring := p.ring
		p.mu.Unlock()
		if !ring {
			p.reqs <- req
		}
		if ring {
			tx.OnCancel(func(cancel *sip.Request) { p.reqs <- cancel })
			tx.Respond(sip.NewResponseFromRequest(req, 180, "Ringing", nil))
			p.reqs <- req
			<-tx.Done()
			return
		}
		d, err := p.dua.ReadInvite(req, tx)
		if err != nil {
			return
		}
		p.mu.Lock()
		p.server = d
		p.mu.Unlock()
		res := sip.NewSDPResponseFromRequest(d.InviteRequest, peerSDP(p.addr.Port+2, "sendrecv"))
		p.mu.Lock()
		for _, h := range p.answerHeaders {
			res.AppendHeader(sip.HeaderClone(h))
		}
		p.mu.Unlock()
		d.WriteResponse(res)
	})
	go srv.ServeUDP(conn)
	t.Cleanup(func() { conn.Close(); ua.Close() })
	// The client sends from the listening socket once it is served.
	for deadline := time.Now().Add(2 * time.Second); ; {
		if c, _ := ua.TransportLayer().GetConnection("udp", conn.LocalAddr().String()); c != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the sipPeer's socket is not served")
		}
		time.Sleep(time.Millisecond)
	}
	return p
}

func peerSDP(port int, direction string) []byte {
	return []byte(fmt.Sprintf("v=0\r\no=sipPeer 1 %d IN IP4 127.0.0.2\r\ns=-\r\nc=IN IP4 127.0.0.2\r\nt=0 0\r\n"+
		"m=audio %d RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\na=%s\r\n",
		time.Now().UnixNano()%1000, port, direction))
}

// call places a call to the edge for transfer id, with extra headers, and
// returns the answered dialog.
func (p *sipPeer) call(t *testing.T, e *legEdge, id string, hs ...sip.Header) *sipgo.DialogClientSession {
	t.Helper()
	hs = append(hs, sip.NewHeader(TransferIDHeader, id), sip.NewHeader("Content-Type", "application/sdp"))
	to := sip.Uri{User: "demo", Host: "127.0.0.1", Port: int(e.Addr().Port())}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	d, err := p.dua.Invite(ctx, to, peerSDP(p.addr.Port+2, "sendrecv"), hs...)
	if err != nil {
		t.Fatal(err)
	}
	if err := d.WaitAnswer(ctx, sipgo.AnswerOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := d.Ack(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

// next returns the next request of method the sipPeer got.
func (p *sipPeer) next(t *testing.T, method sip.RequestMethod, within time.Duration) *sip.Request {
	t.Helper()
	deadline := time.After(within)
	for {
		select {
		case r := <-p.reqs:
			if r.Method == method {
				return r
			}
		case <-deadline:
			t.Fatalf("no %s within %v", method, within)
			return nil
		}
	}
}

// reinvite sends a re-INVITE (with body, or none) on d and returns the
// answer.
func reinvite(t *testing.T, d *sipgo.DialogClientSession, body []byte) *sip.Response {
	t.Helper()
	req := sip.NewRequest(sip.INVITE, d.InviteResponse.Contact().Address)
	if body != nil {
		req.SetBody(body)
		req.AppendHeader(sip.NewHeader("Content-Type", "application/sdp"))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	res, err := d.Do(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	ack := sip.NewRequest(sip.ACK, d.InviteResponse.Contact().Address)
	ack.AppendHeader(sip.NewHeader("CSeq", fmt.Sprintf("%d ACK", req.CSeq().SeqNo)))
	d.WriteRequest(ack)
	return res
}

func TestCallerLegOfferAnswerAndHold(t *testing.T) {
	e := startLegEdge(t, holds, nil)
	e.transfer(t, "hold-1", nil)
	p := newSipPeer(t)
	d := p.call(t, e, "hold-1")
	if body := string(d.InviteResponse.Body()); !strings.Contains(body, "a=sendrecv\r\n") || !strings.Contains(body, "RTP/AVP 0 101") {
		t.Fatalf("the answer:\n%s", body)
	}
	// Hold: the sipPeer sends only, Switchback then only receives (RFC 3264
	// §8.4); then off hold again.
	for _, tc := range []struct{ offer, answer string }{
		{"sendonly", "recvonly"}, {"sendrecv", "sendrecv"}, {"inactive", "inactive"},
	} {
		res := reinvite(t, d, peerSDP(p.addr.Port+2, tc.offer))
		if res.StatusCode != 200 {
			t.Fatalf("re-INVITE %s answered %d", tc.offer, res.StatusCode)
		}
		if !strings.Contains(string(res.Body()), "a="+tc.answer+"\r\n") {
			t.Fatalf("re-INVITE %s: answer\n%s\nwant a=%s", tc.offer, res.Body(), tc.answer)
		}
	}
	// A re-INVITE without SDP asks Switchback to offer (RFC 3261 §14.2).
	res := reinvite(t, d, nil)
	if res.StatusCode != 200 || len(res.Body()) == 0 {
		t.Fatalf("re-INVITE without SDP: %d with %d bytes of SDP", res.StatusCode, len(res.Body()))
	}
	// An offer with no common codec is refused, and changes nothing.
	bad := strings.Replace(string(peerSDP(p.addr.Port+2, "sendrecv")), "RTP/AVP 0 101", "RTP/AVP 18", 1)
	if res := reinvite(t, d, []byte(bad)); res.StatusCode != 488 {
		t.Fatalf("an offer without G.711 answered %d, want 488", res.StatusCode)
	}
	d.Bye(context.Background())
	waitEvent(t, e, "hold-1", "hold:caller", "unhold:caller", "call.ended:caller")
}

// waitEvent waits for the conversation to have every event of want.
func waitEvent(t *testing.T, e *legEdge, id string, want ...string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		got := e.events(t, id)
		missing := ""
		for _, w := range want {
			found := false
			for _, g := range got {
				found = found || g == w
			}
			if !found {
				missing = w
			}
		}
		if missing == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no event %s in %v", missing, got)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestCallerLegSessionTimer(t *testing.T) {
	t.Run("Switchback refreshes", func(t *testing.T) {
		e := startLegEdge(t, holds, nil)
		e.transfer(t, "st-1", nil)
		p := newSipPeer(t)
		d := p.call(t, e, "st-1", sip.NewHeader("Session-Expires", "2;refresher=uas"), sip.NewHeader("Supported", "timer"))
		if se := d.InviteResponse.GetHeader("Session-Expires"); se == nil || se.Value() != "2;refresher=uas" {
			t.Fatalf("200's Session-Expires = %v", se)
		}
		// Refreshed every half interval, twice in 2.5 s; in its own UPDATE
		// Switchback, the refresher, is the uac (RFC 4028 §7.4).
		for range 2 {
			u := p.next(t, sip.UPDATE, 2*time.Second)
			if se := u.GetHeader("Session-Expires"); se == nil || se.Value() != "2;refresher=uac" {
				t.Fatalf("UPDATE's Session-Expires: %v", se)
			}
		}
		d.Bye(context.Background())
	})
	t.Run("the caller stops refreshing", func(t *testing.T) {
		e := startLegEdge(t, holds, nil)
		e.transfer(t, "st-2", nil)
		p := newSipPeer(t)
		start := time.Now()
		p.call(t, e, "st-2", sip.NewHeader("Session-Expires", "2;refresher=uac"), sip.NewHeader("Supported", "timer"))
		// No refresh: the session is gone after 2 s less a third (RFC 4028
		// §10), and Switchback hangs up.
		p.next(t, sip.BYE, 4*time.Second)
		if el := time.Since(start); el < time.Second {
			t.Fatalf("BYE after %v, before the session expired", el)
		}
		waitEvent(t, e, "st-2", "call.ended:session-timer")
	})
	t.Run("the caller refreshes", func(t *testing.T) {
		e := startLegEdge(t, holds, nil)
		e.transfer(t, "st-3", nil)
		p := newSipPeer(t)
		d := p.call(t, e, "st-3", sip.NewHeader("Session-Expires", "2;refresher=uac"), sip.NewHeader("Supported", "timer"))
		for range 3 {
			time.Sleep(800 * time.Millisecond)
			if res := reinvite(t, d, nil); res.StatusCode != 200 {
				t.Fatalf("refresh answered %d", res.StatusCode)
			}
		}
		select {
		case r := <-p.reqs:
			if r.Method == sip.BYE {
				t.Fatal("hung up although the caller refreshed")
			}
		default:
		}
		d.Bye(context.Background())
	})
	t.Run("an interval below Min-SE", func(t *testing.T) {
		// The edge's real minimum, 90 s (RFC 4028 §4).
		e := startLegEdge(t, holds, nil, minSE)
		e.transfer(t, "st-4", nil)
		p := newSipPeer(t)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		d, err := p.dua.Invite(ctx, sip.Uri{User: "demo", Host: "127.0.0.1", Port: int(e.Addr().Port())}, peerSDP(p.addr.Port+2, "sendrecv"),
			sip.NewHeader(TransferIDHeader, "st-4"), sip.NewHeader("Session-Expires", "30"), sip.NewHeader("Content-Type", "application/sdp"))
		if err != nil {
			t.Fatal(err)
		}
		defer d.Close()
		err = d.WaitAnswer(ctx, sipgo.AnswerOptions{})
		if res := d.InviteResponse; res == nil || res.StatusCode != 422 || res.GetHeader("Min-SE").Value() != "90" {
			t.Fatalf("Session-Expires 30 answered %v (%v)", res, err)
		}
		// The transfer is left for a call that asks less.
		if tr, err := e.svc.Get(ctx, "demo", "st-4"); err != nil || tr.Status != switchback.StatusActive {
			t.Fatalf("after the 422: %+v %v", tr, err)
		}
	})
}

func TestReturnLegSessionTimer(t *testing.T) {
	for _, tc := range []struct {
		name      string
		refresher string
	}{
		{"Switchback refreshes", "uac"},
		{"the return leg stops refreshing", "uas"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := startLegEdge(t, handsBack, nil)
			back := newSipPeer(t)
			back.answerWith("Session-Expires: 2;refresher="+tc.refresher, "Require: timer")
			e.transfer(t, "rt-"+tc.refresher, &switchback.SIP{ReturnURI: fmt.Sprintf("sip:desk@127.0.0.2:%d", back.addr.Port),
				ReturnTransferType: switchback.ReturnINVITE})
			caller := newSipPeer(t)
			d := caller.call(t, e, "rt-"+tc.refresher)
			inv := back.next(t, sip.INVITE, 5*time.Second)
			if h := inv.GetHeader("Supported"); h == nil || !strings.Contains(h.Value(), "timer") {
				t.Errorf("the return INVITE does not say it supports timer")
			}
			if tc.refresher == "uac" {
				// Switchback, the UAC, refreshes the return leg.
				for range 2 {
					back.next(t, sip.UPDATE, 2*time.Second)
				}
				d.Bye(context.Background())
				back.next(t, sip.BYE, 3*time.Second)
				return
			}
			// The return leg never refreshes: it is gone, and both legs
			// are hung up.
			back.next(t, sip.BYE, 4*time.Second)
			caller.next(t, sip.BYE, 2*time.Second)
			waitEvent(t, e, "rt-uas", "bridged", "call.ended:session-timer")
		})
	}
}

// TestCallerGoneWhileTheReturnLegRings: a caller who hangs up while the
// return leg of an INVITE hand-back rings ends the attempt: the return
// INVITE is cancelled at once, not left ringing for sip.returnTimeout
// (the customer's agent would answer a call with nobody on it).
func TestCallerGoneWhileTheReturnLegRings(t *testing.T) {
	e := startLegEdge(t, handsBack, func(c *config.Config) { c.SIP.ReturnTimeout = config.Duration(30 * time.Second) })
	back := newSipPeer(t)
	back.ringOnly()
	e.transfer(t, "ring-1", &switchback.SIP{ReturnURI: fmt.Sprintf("sip:desk@127.0.0.2:%d", back.addr.Port),
		ReturnTransferType: switchback.ReturnINVITE})
	caller := newSipPeer(t)
	d := caller.call(t, e, "ring-1")
	back.next(t, sip.INVITE, 5*time.Second)
	// A CANCEL waits for a provisional response (RFC 3261 §9.1): the 180
	// has left, let it arrive.
	time.Sleep(300 * time.Millisecond)
	if err := d.Bye(context.Background()); err != nil {
		t.Fatal(err)
	}
	back.next(t, sip.CANCEL, 3*time.Second)
	deadline := time.Now().Add(5 * time.Second)
	for {
		tr, err := e.svc.Get(context.Background(), "demo", "ring-1")
		if err != nil {
			t.Fatal(err)
		}
		if r := tr.ReturnResult; r != nil {
			if r.Fallback || !strings.Contains(r.Reason, "hung up before the return leg answered") {
				t.Errorf("return result %+v", r)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no return result: %+v", tr)
		}
		time.Sleep(20 * time.Millisecond)
	}
	waitEvent(t, e, "ring-1", "call.ended:caller")
}

// TestCallerHangsUpRightAfterTheACK: a call acknowledged and hung up at
// once was answered: it ends as the caller hanging up, not as a call
// that was never answered.
func TestCallerHangsUpRightAfterTheACK(t *testing.T) {
	e := startLegEdge(t, holds, nil)
	p := newSipPeer(t)
	for i := range 10 {
		id := fmt.Sprintf("quick-%d", i)
		e.transfer(t, id, nil)
		d := p.call(t, e, id)
		if err := d.Bye(context.Background()); err != nil {
			t.Fatal(err)
		}
		waitEvent(t, e, id, "call.ended:caller")
		for _, ev := range e.events(t, id) {
			if ev == "call.ended:unanswered" {
				t.Fatalf("call %d: events %v", i, e.events(t, id))
			}
		}
	}
}

// TestContactNamesTheCallsTransport: the Contact of Switchback's answer,
// where the caller sends its requests within the call (RFC 3261 §12.1.1),
// names the transport the call came over and that transport's listener:
// a TLS call's BYE must not come back in clear over UDP.
func TestContactNamesTheCallsTransport(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	writeSelfSigned(t, certFile, keyFile)
	e := startLegEdge(t, holds, func(c *config.Config) {
		c.SIP.TLS = config.SIPTLS{Listen: "127.0.0.1:0", CertFile: certFile, KeyFile: keyFile}
		c.Tenants[0].SIP.Allow = []string{"127.0.0.0/8"}
	})
	_, tlsPort, _ := net.SplitHostPort(e.TLSAddr().String())
	for _, tc := range []struct {
		transport, port string
	}{
		{"tcp", strconv.Itoa(int(e.Addr().Port()))},
		{"tls", tlsPort},
	} {
		t.Run(tc.transport, func(t *testing.T) {
			id := "contact-" + tc.transport
			e.transfer(t, id, nil)
			ua, err := sipgo.NewUA(sipgo.WithUserAgentHostname("127.0.0.1"), sipgo.WithUserAgenTLSConfig(&tls.Config{InsecureSkipVerify: true}))
			if err != nil {
				t.Fatal(err)
			}
			defer ua.Close()
			cli, err := sipgo.NewClient(ua, sipgo.WithClientHostname("127.0.0.1"))
			if err != nil {
				t.Fatal(err)
			}
			dua := &sipgo.DialogUA{Client: cli, ContactHDR: sip.ContactHeader{Address: sip.Uri{User: "ivr", Host: "127.0.0.1", Port: 5099,
				UriParams: sip.HeaderParams{{K: "transport", V: tc.transport}}}}}
			port, _ := strconv.Atoi(tc.port)
			to := sip.Uri{User: "demo", Host: "127.0.0.1", Port: port, UriParams: sip.HeaderParams{{K: "transport", V: tc.transport}}}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			d, err := dua.Invite(ctx, to, peerSDP(40000, "sendrecv"), sip.NewHeader(TransferIDHeader, id),
				sip.NewHeader("Content-Type", "application/sdp"))
			if err != nil {
				t.Fatal(err)
			}
			defer d.Close()
			if err := d.WaitAnswer(ctx, sipgo.AnswerOptions{}); err != nil {
				t.Fatal(err)
			}
			if err := d.Ack(ctx); err != nil {
				t.Fatal(err)
			}
			c := d.InviteResponse.Contact()
			if c == nil || strconv.Itoa(c.Address.Port) != tc.port || !strings.EqualFold(c.Address.UriParams.GetOr("transport", ""), tc.transport) {
				t.Errorf("the 200's Contact is %v; want port %s and transport=%s", c, tc.port, tc.transport)
			}
			if err := d.Bye(ctx); err != nil {
				t.Fatal(err)
			}
			waitEvent(t, e, id, "call.ended:caller")
		})
	}
}

// TestReinviteAnswerIsRetransmittedUntilItsACK: over UDP, Switchback's
// 200 to a re-INVITE is retransmitted, T1 apart and then doubling, until
// its ACK comes (RFC 3261 §13.3.1.4, §14.2): a lost 200 would otherwise
// leave the peer's re-INVITE unanswered, and many peers end the call then.
func TestReinviteAnswerIsRetransmittedUntilItsACK(t *testing.T) {
	e := startLegEdge(t, holds, nil)
	e.transfer(t, "re-200", nil)
	p := newSipPeer(t)
	d := p.call(t, e, "re-200")
	req := sip.NewRequest(sip.INVITE, d.InviteResponse.Contact().Address)
	req.SetBody(peerSDP(p.addr.Port+2, "sendonly"))
	req.AppendHeader(sip.NewHeader("Content-Type", "application/sdp"))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	res, err := d.Do(ctx, req) // the peer's transaction ends with the 200
	if err != nil || res.StatusCode != 200 {
		t.Fatalf("re-INVITE: %v %v", res, err)
	}
	cseq := req.CSeq().SeqNo
	again := func(within time.Duration) bool {
		deadline := time.After(within)
		for {
			select {
			case r := <-p.strays:
				if r.StatusCode == 200 && r.CSeq().SeqNo == cseq && r.CSeq().MethodName == sip.INVITE {
					return true
				}
			case <-deadline:
				return false
			}
		}
	}
	if !again(2 * time.Second) {
		t.Fatal("the 200 to the re-INVITE was not retransmitted without its ACK")
	}
	ack := sip.NewRequest(sip.ACK, d.InviteResponse.Contact().Address)
	ack.AppendHeader(sip.NewHeader("CSeq", fmt.Sprintf("%d ACK", cseq)))
	if err := d.WriteRequest(ack); err != nil {
		t.Fatal(err)
	}
	again(200 * time.Millisecond) // one that crossed the ACK
	if again(2500 * time.Millisecond) {
		t.Fatal("the 200 was still retransmitted after its ACK")
	}
	d.Bye(context.Background())
}

// agentAtStop is an agent factory that is still connecting its agent
// when the node stops: it returns once its context ends.
type agentAtStop struct{ connecting chan struct{} }

func (f agentAtStop) NewAgent(ctx context.Context, _ *switchback.CallInfo) (switchback.Agent, error) {
	close(f.connecting)
	<-ctx.Done()
	return nil, ctx.Err()
}

// TestStopEndsTheCallsBeingAnswered: a node that stops at once while a
// new call is matched to its transfer but not yet answered stores that
// call's outcome before Serve returns: the transfer never stays ONGOING
// after the process is gone.
func TestStopEndsTheCallsBeingAnswered(t *testing.T) {
	f := agentAtStop{connecting: make(chan struct{})}
	e := startLegEdge(t, f, nil)
	e.transfer(t, "stop-1", nil)
	p := newSipPeer(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	d, err := p.dua.Invite(ctx, sip.Uri{User: "demo", Host: "127.0.0.1", Port: int(e.Addr().Port())}, peerSDP(p.addr.Port+2, "sendrecv"),
		sip.NewHeader(TransferIDHeader, "stop-1"), sip.NewHeader("Content-Type", "application/sdp"))
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	select {
	case <-f.connecting:
	case <-time.After(5 * time.Second):
		t.Fatal("the call was not admitted")
	}
	e.stop()
	tr, err := e.svc.Get(context.Background(), "demo", "stop-1")
	if err != nil {
		t.Fatal(err)
	}
	if tr.Status != switchback.StatusCompleted || tr.OutputContext == nil ||
		tr.OutputContext.TransferType != switchback.TransferCallerDisconnect {
		t.Fatalf("once Serve returned the transfer is %s with %+v", tr.Status, tr.OutputContext)
	}
}

// TestStopAfterRefusingAnINVITEWhileDraining: an INVITE a draining node
// refuses is not one Serve waits for.
func TestStopAfterRefusingAnINVITEWhileDraining(t *testing.T) {
	e := startLegEdge(t, holds, nil)
	e.calls.Drain()
	if got := exchange(t, "127.0.0.2", net.UDPAddrFromAddrPort(e.Addr()), rawInvite("drain-1")); got != "SIP/2.0 503 Service Unavailable" {
		t.Fatalf("an INVITE while draining got %q", got)
	}
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		e.stop()
	}()
	select {
	case <-stopped:
	case <-time.After(5 * time.Second):
		// The test's cleanup would wait for Serve as well: stop here.
		panic("Serve did not return: it waits for an INVITE it refused")
	}
}

// TestStopWhileBridgedEndsTheBridgeAsShutdown: a node that stops while a
// call is bridged hangs up both legs, and the bridge ended by the
// shutdown, not by the BYE the shutdown sent to one leg.
func TestStopWhileBridgedEndsTheBridgeAsShutdown(t *testing.T) {
	e := startLegEdge(t, handsBack, nil)
	back := newSipPeer(t)
	e.transfer(t, "down-1", &switchback.SIP{ReturnURI: fmt.Sprintf("sip:desk@127.0.0.2:%d", back.addr.Port),
		ReturnTransferType: switchback.ReturnINVITE})
	caller := newSipPeer(t)
	// The caller answers the BYE late: the return leg's BYE, the first,
	// is long done by then.
	caller.mu.Lock()
	caller.byeDelay = 300 * time.Millisecond
	caller.mu.Unlock()
	caller.call(t, e, "down-1")
	waitEvent(t, e, "down-1", "bridged")
	e.stop()
	for _, line := range strings.Split(e.log.String(), "\n") {
		if strings.Contains(line, `"msg":"bridged call ended"`) {
			if !strings.Contains(line, `"by":"shutdown"`) {
				t.Fatalf("bridged call ended: %s", line)
			}
			return
		}
	}
	t.Fatalf("no bridged call ended in the log:\n%s", e.log)
}

// slowAgent is an agent factory that takes a while to connect.
type slowAgent struct{ delay time.Duration }

func (s slowAgent) NewAgent(ctx context.Context, _ *switchback.CallInfo) (switchback.Agent, error) {
	select {
	case <-time.After(s.delay):
	case <-ctx.Done():
	}
	return handsBack, nil
}

func TestCallerHearsRingingWhileItsAgentConnects(t *testing.T) {
	for _, tc := range []struct {
		name  string
		delay time.Duration
		ring  bool
	}{{"a quick agent: no 180", 0, false}, {"a slow agent: 180 first", 800 * time.Millisecond, true}} {
		t.Run(tc.name, func(t *testing.T) {
			e := startLegEdge(t, slowAgent{tc.delay}, nil)
			e.transfer(t, "ring-1", nil)
			p := newSipPeer(t)
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			d, err := p.dua.Invite(ctx, sip.Uri{User: "demo", Host: "127.0.0.1", Port: int(e.Addr().Port())}, peerSDP(p.addr.Port+2, "sendrecv"),
				sip.NewHeader(TransferIDHeader, "ring-1"), sip.NewHeader("Content-Type", "application/sdp"))
			if err != nil {
				t.Fatal(err)
			}
			defer d.Close()
			var codes []int
			var mu sync.Mutex
			err = d.WaitAnswer(ctx, sipgo.AnswerOptions{OnResponse: func(res *sip.Response) error {
				mu.Lock()
				codes = append(codes, res.StatusCode)
				mu.Unlock()
				return nil
			}})
			if err != nil {
				t.Fatal(err)
			}
			d.Ack(ctx)
			// The agent hands the call back at once.
			p.next(t, sip.BYE, 5*time.Second)
			mu.Lock()
			defer mu.Unlock()
			rang := false
			for i, c := range codes {
				if c == 180 {
					rang = true
					if i != len(codes)-2 || codes[len(codes)-1] != 200 {
						t.Fatalf("responses %v: the 180 is not just before the 200", codes)
					}
				}
			}
			if rang != tc.ring {
				t.Fatalf("responses %v, want a 180: %v", codes, tc.ring)
			}
		})
	}
}
