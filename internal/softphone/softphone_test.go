package softphone_test

import (
	"bytes"
	"context"
	"errors"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/switchback/switchback/internal/media"
	sipedge "github.com/switchback/switchback/internal/sip"
	"github.com/switchback/switchback/internal/softphone"
	"go.uber.org/goleak"
)

// TestMain fails the package if any goroutine, the phone's, a call's or
// sipgo's, outlives the tests.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// lockedBuffer is a bytes.Buffer the test reads while a phone may write.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// newPhone starts a phone over transport, closed when the test ends, and
// the buffer its events go to.
func newPhone(t *testing.T, transport string) (*softphone.Phone, *lockedBuffer) {
	t.Helper()
	events := &lockedBuffer{}
	p, err := softphone.New(softphone.Options{Transport: transport, Events: events})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p, events
}

func TestTransferIDHeaderIsTheEdgesOwn(t *testing.T) {
	if softphone.TransferIDHeader != sipedge.TransferIDHeader {
		t.Fatalf("softphone sends %q, the SIP edge reads %q", softphone.TransferIDHeader, sipedge.TransferIDHeader)
	}
}

func TestNewRefusesAnUnknownTransport(t *testing.T) {
	if p, err := softphone.New(softphone.Options{Transport: "sctp"}); err == nil {
		p.Close()
		t.Fatal("New took transport sctp")
	}
}

func TestRunIsHandedBackByBYE(t *testing.T) {
	cases := []struct {
		name, transport string
		info            bool
		sent            string // in the events
	}{
		{"RFC 4733 over UDP", "udp", false, "sent DTMF 1\n"},
		{"SIP INFO over UDP", "udp", true, "sent DTMF 1 (SIP INFO)\n"},
		{"RFC 4733 over TCP", "tcp", false, "sent DTMF 1\n"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			// The far end greets with a tone, waits for a digit, and hangs
			// up, as Switchback's menu does.
			got := make(chan rune, 1)
			f := startFarEnd(t, tc.transport, &farEnd{script: func(ctx context.Context, c *farCall) {
				c.media.Play(ctx, tone(600*time.Millisecond))
				d, _ := c.digit(ctx, 5*time.Second)
				got <- d
				c.bye(ctx)
			}})
			p, events := newPhone(t, tc.transport)
			r := p.Run(context.Background(), softphone.Plan{Target: "sip:far@" + f.addr,
				DialOptions: softphone.DialOptions{TransferID: "t-1", Record: true},
				DTMF:        "1", DTMFDelay: 100 * time.Millisecond, InfoDTMF: tc.info, Timeout: 10 * time.Second})
			if r.Err != nil || !r.Answered || r.Status != 200 || r.Answer != "200 OK (PCMU)" || !r.HandedBack ||
				r.End != "BYE from the far end (the call was handed back)" {
				t.Fatalf("report %+v\n%s", r, events)
			}
			if d := <-got; d != '1' {
				t.Errorf("the far end got digit %q, want 1", d)
			}
			invite := <-f.invites
			if h := invite.GetHeader(softphone.TransferIDHeader); h == nil || h.Value() != "t-1" {
				t.Errorf("the INVITE's %s: %v", softphone.TransferIDHeader, h)
			}
			// The digit waited for the end of the greeting.
			if !r.DigitsSent || r.HeardBeforeDigits < 500*time.Millisecond {
				t.Errorf("digits sent %v after %s of the 600 ms greeting", r.DigitsSent, r.HeardBeforeDigits)
			}
			if r.Frames == 0 || r.Level < 1000 || len(r.Recording) != int(r.Frames)*media.FrameSamples ||
				r.Heard != time.Duration(r.Frames)*20*time.Millisecond {
				t.Errorf("heard %d frames (%s), level %.0f, %d samples recorded", r.Frames, r.Heard, r.Level, len(r.Recording))
			}
			if softphone.RMS(r.Recording) < 1000 || r.Stats.PacketsReceived == 0 || r.Stats.PacketsSent == 0 {
				t.Errorf("recording RMS %.0f, stats %+v", softphone.RMS(r.Recording), r.Stats)
			}
			for _, want := range []string{"calling sip:far@" + f.addr + " over " + strings.ToUpper(tc.transport),
				"200 OK (PCMU)", tc.sent, "received BYE: the call was handed back"} {
				if !strings.Contains(events.String(), want) {
					t.Errorf("events lack %q:\n%s", want, events)
				}
			}
		})
	}
}

func TestRunTakesAREFER(t *testing.T) {
	const target = "<sip:desk@customer.example.com;User-to-User=UUI-1>"
	for _, tc := range []struct {
		name     string
		decline  bool
		status   int
		end, say string
	}{
		{"accepted", false, 202, "REFER to " + target + ", then BYE from the far end (the call was handed back)",
			"received REFER to " + target + ": accepted"},
		{"declined", true, 603, "BYE from the far end (the call was handed back)", "received REFER to " + target + ": declined"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			type outcome struct {
				status int
				notify string
			}
			got := make(chan outcome, 1)
			f := startFarEnd(t, "udp", &farEnd{script: func(ctx context.Context, c *farCall) {
				var o outcome
				if res, err := c.refer(ctx, target); err == nil {
					o.status = res.StatusCode
				}
				if o.status == 202 {
					select {
					case n := <-c.notices:
						o.notify = n.GetHeader("Event").Value() + " " + string(n.Body())
					case <-time.After(5 * time.Second):
					}
				}
				got <- o
				c.bye(ctx)
			}})
			p, events := newPhone(t, "udp")
			r := p.Run(context.Background(), softphone.Plan{Target: "sip:far@" + f.addr,
				DialOptions: softphone.DialOptions{DeclineRefer: tc.decline}, Timeout: 10 * time.Second})
			o := <-got
			if r.Err != nil || !r.HandedBack || r.End != tc.end || r.ReferTo != target || r.ReferAccepted == tc.decline {
				t.Fatalf("report %+v\n%s", r, events)
			}
			if o.status != tc.status {
				t.Errorf("REFER answered %d, want %d", o.status, tc.status)
			}
			// RFC 3515 §2.4.5: the NOTIFY names the REFER's CSeq and
			// carries the new call's status line.
			if tc.status == 202 && (!strings.HasPrefix(o.notify, "refer;id=") || !strings.Contains(o.notify, "SIP/2.0 200 OK")) {
				t.Errorf("NOTIFY %q", o.notify)
			}
			if !strings.Contains(events.String(), tc.say) {
				t.Errorf("events lack %q:\n%s", tc.say, events)
			}
		})
	}
}

func TestRunAnswersDigestChallenge(t *testing.T) {
	for _, alg := range []string{"MD5", "SHA-256"} {
		t.Run(alg, func(t *testing.T) {
			f := startFarEnd(t, "udp", &farEnd{user: "ivr", password: "s3cret-pass", algorithm: alg,
				script: func(ctx context.Context, c *farCall) { c.bye(ctx) }})
			p, events := newPhone(t, "udp")
			plan := softphone.Plan{Target: "sip:far@" + f.addr, Timeout: 10 * time.Second,
				DialOptions: softphone.DialOptions{Username: "ivr", Password: "wrong-pass"}}
			r := p.Run(context.Background(), plan)
			var refused *softphone.RefusedError
			if r.Answered || r.Status != 403 || r.End != "refused with 403 Forbidden" || !errors.As(r.Err, &refused) {
				t.Fatalf("a wrong password: %+v\n%s", r, events)
			}
			plan.Password = "s3cret-pass"
			r = p.Run(context.Background(), plan)
			if r.Err != nil || !r.HandedBack || !strings.Contains(events.String(), "401 Unauthorized: answering the digest challenge as ivr") {
				t.Fatalf("the right password: %+v\n%s", r, events)
			}
		})
	}
}

func TestRunRefused(t *testing.T) {
	f := startFarEnd(t, "udp", &farEnd{refuse: 486})
	p, events := newPhone(t, "udp")
	r := p.Run(context.Background(), softphone.Plan{Target: "sip:far@" + f.addr, Timeout: 10 * time.Second})
	var refused *softphone.RefusedError
	if r.Answered || r.Status != 486 || r.Reason != "Busy Here" || r.End != "refused with 486 Busy Here" ||
		!errors.As(r.Err, &refused) || refused.Response.StatusCode != 486 {
		t.Fatalf("report %+v", r)
	}
	if !strings.Contains(events.String(), "486 Busy Here\n") {
		t.Errorf("events:\n%s", events)
	}
}

func TestRunPlaysAndHangsUp(t *testing.T) {
	calls := make(chan *farCall, 1)
	hungUp := make(chan bool, 1)
	f := startFarEnd(t, "udp", &farEnd{script: func(ctx context.Context, c *farCall) {
		calls <- c
		hungUp <- c.hungUp(5 * time.Second)
	}})
	p, events := newPhone(t, "udp")
	r := p.Run(context.Background(), softphone.Plan{Target: "sip:far@" + f.addr, Timeout: 10 * time.Second,
		Play: tone(300 * time.Millisecond), PlayName: "tone", HangupAfter: 600 * time.Millisecond})
	if r.Err != nil || r.HandedBack || r.End != "we hung up after 600ms (--hangup-after)" || r.Level > softphone.SilenceRMS {
		t.Fatalf("report %+v\n%s", r, events)
	}
	if !<-hungUp {
		t.Fatal("the far end got no BYE")
	}
	c := <-calls
	if heard := softphone.RMS(c.heard.PCM()); heard < 1000 {
		t.Errorf("the far end heard RMS %.0f, not the tone", heard)
	}
	for _, want := range []string{"playing tone (0.3 s)", "played tone", "sent BYE"} {
		if !strings.Contains(events.String(), want) {
			t.Errorf("events lack %q:\n%s", want, events)
		}
	}
}

func TestRunTimesOut(t *testing.T) {
	hungUp := make(chan bool, 1)
	f := startFarEnd(t, "udp", &farEnd{script: func(ctx context.Context, c *farCall) {
		hungUp <- c.hungUp(5 * time.Second)
	}})
	p, events := newPhone(t, "udp")
	r := p.Run(context.Background(), softphone.Plan{Target: "sip:far@" + f.addr, Timeout: 400 * time.Millisecond})
	if !r.Answered || r.Err == nil || !strings.Contains(r.Err.Error(), "no BYE from the far end: the time limit of 400ms passed") {
		t.Fatalf("report %+v\n%s", r, events)
	}
	if !<-hungUp {
		t.Fatal("the far end got no BYE")
	}
}

func TestRunCancelsWhileRinging(t *testing.T) {
	f := startFarEnd(t, "udp", &farEnd{ring: true})
	p, events := newPhone(t, "udp")
	r := p.Run(context.Background(), softphone.Plan{Target: "sip:far@" + f.addr, Timeout: 300 * time.Millisecond})
	if r.Answered || r.Err == nil || !strings.Contains(r.End, "no answer") {
		t.Fatalf("report %+v\n%s", r, events)
	}
	select {
	case <-f.cancelled:
	case <-time.After(5 * time.Second):
		t.Fatal("no CANCEL")
	}
}

func TestRunHearsDigits(t *testing.T) {
	f := startFarEnd(t, "udp", &farEnd{script: func(ctx context.Context, c *farCall) {
		c.media.SendDigit(ctx, '5', 100*time.Millisecond)
		c.info(ctx, '#')
		time.Sleep(100 * time.Millisecond) // for the last digit to be read
		c.bye(ctx)
	}})
	p, events := newPhone(t, "udp")
	r := p.Run(context.Background(), softphone.Plan{Target: "sip:far@" + f.addr, Timeout: 10 * time.Second})
	if r.Err != nil || r.DigitsHeard != "5#" {
		t.Fatalf("report %+v\n%s", r, events)
	}
	if !strings.Contains(events.String(), "received DTMF 5") || !strings.Contains(events.String(), "received DTMF #") {
		t.Errorf("events:\n%s", events)
	}
}

// TestDialLeavesRTPToTheCaller is how the media benchmark uses a call: the
// offer names its own socket, and the phone leaves that socket alone.
func TestDialLeavesRTPToTheCaller(t *testing.T) {
	hungUp := make(chan bool, 1)
	f := startFarEnd(t, "udp", &farEnd{script: func(ctx context.Context, c *farCall) {
		c.media.Play(ctx, tone(200*time.Millisecond))
		hungUp <- c.hungUp(5 * time.Second)
	}})
	p, _ := newPhone(t, "udp")
	conn, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx := context.Background()
	c, err := p.Dial(ctx, "sip:far@"+f.addr, softphone.DialOptions{RTP: conn, Codecs: []media.Codec{media.PCMU}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if got := c.Params(); got.Codec != media.PCMU || !got.Remote.IsValid() || got.PayloadType != 0 {
		t.Errorf("params %+v", got)
	}
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 1500)
	n, err := conn.Read(buf)
	if err != nil || n != 12+160 || buf[0]>>6 != 2 || buf[1]&0x7f != 0 {
		t.Fatalf("read %d bytes (%x), %v; want a PCMU packet", n, buf[:min(n, 12)], err)
	}
	if err := c.Play(ctx, tone(20*time.Millisecond)); err == nil {
		t.Error("Play on a call whose RTP is the caller's")
	}
	if err := c.Hangup(ctx); err != nil {
		t.Fatal(err)
	}
	if !<-hungUp {
		t.Fatal("the far end got no BYE")
	}
	select {
	case <-c.Ended():
	default:
		t.Error("Ended is open after Hangup")
	}
}

func TestPhonePlacesCallsAtOnce(t *testing.T) {
	f := startFarEnd(t, "udp", &farEnd{script: func(ctx context.Context, c *farCall) {
		c.media.Play(ctx, tone(100*time.Millisecond))
		c.bye(ctx)
	}})
	p, events := newPhone(t, "udp")
	reports := make([]*softphone.Report, 8)
	var wg sync.WaitGroup
	for i := range reports {
		wg.Go(func() {
			reports[i] = p.Run(context.Background(), softphone.Plan{Target: "sip:far@" + f.addr, Timeout: 10 * time.Second})
		})
	}
	wg.Wait()
	for i, r := range reports {
		if r.Err != nil || !r.HandedBack || r.Frames == 0 {
			t.Errorf("call %d: %+v", i, r)
		}
	}
	if t.Failed() {
		t.Log(events)
	}
}

// TestRequestsWithinACallLeaveFromTheListener: the phone's BYE, INFO and
// NOTIFY leave from the socket it listens on, as its INVITE does, and name
// the call's Contact, even when the far end's Contact is an address the
// phone has never heard from.
func TestRequestsWithinACallLeaveFromTheListener(t *testing.T) {
	f := startFarEnd(t, "udp", &farEnd{contactElsewhere: true, script: func(ctx context.Context, c *farCall) {
		if _, ok := c.digit(ctx, 5*time.Second); !ok {
			return
		}
		if res, err := c.refer(ctx, "<sip:desk@customer.example.com>"); err != nil || res.StatusCode != 202 {
			return
		}
		select {
		case <-c.notices:
		case <-time.After(5 * time.Second):
			return
		}
		c.hungUp(5 * time.Second)
	}})
	p, events := newPhone(t, "udp")
	r := p.Run(context.Background(), softphone.Plan{Target: "sip:far@" + f.addr, DTMF: "1", InfoDTMF: true,
		HangupAfter: 1500 * time.Millisecond, Timeout: 10 * time.Second})
	if r.Err != nil || !r.DigitsSent || r.ReferTo == "" {
		t.Fatalf("report %+v\n%s", r, events)
	}
	invite := <-f.invites
	want := p.Addr().String()
	for _, method := range []string{"INFO", "NOTIFY", "BYE"} {
		var req *sip.Request
		select {
		case req = <-f.inDialog:
		case <-time.After(5 * time.Second):
			t.Fatalf("no %s", method)
		}
		if req.Method.String() != method {
			t.Fatalf("got %s, want %s", req.Method, method)
		}
		via := req.Via()
		if req.Source() != want || net.JoinHostPort(via.Host, strconv.Itoa(via.Port)) != want {
			t.Errorf("%s came from %s with Via %s; the phone listens on %s", method, req.Source(), via.Value(), want)
		}
		if got := req.Contact(); got == nil || got.Address.String() != invite.Contact().Address.String() {
			t.Errorf("%s has Contact %v; the INVITE's is %v", method, got, invite.Contact())
		}
	}
}
