package softphone_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
	"github.com/icholy/digest"
	"github.com/switchback/switchback/internal/media"
)

// farEnd is what the softphone calls in these tests: a small SIP user
// agent on loopback, built on sipgo, that answers each INVITE as its
// fields say and then runs script on the call. It stands in for a
// gateway; the tests of cmd/switchback and e2e call the real one.
type farEnd struct {
	// refuse, if set, is the final status every INVITE gets.
	refuse int
	// ring sends 180 Ringing and never answers.
	ring bool
	// user and password, if set, challenge each INVITE (RFC 3261 §22.2)
	// with algorithm (MD5 if empty) and refuse wrong credentials with 403.
	user, password, algorithm string
	// script runs once a call is answered and acknowledged, in the
	// INVITE's handler; the call is closed after it.
	script func(ctx context.Context, c *farCall)
	// contactElsewhere (over UDP) names a second socket of the far end in
	// its Contact, as a node behind a load balancer that does not
	// record-route does: requests within the call go there, not where the
	// INVITE went.
	contactElsewhere bool
	// inDialog receives each BYE, INFO and NOTIFY the far end takes.
	inDialog chan *sip.Request

	addr      string // host:port
	transport string // "udp" or "tcp"
	ua        *sipgo.UserAgent
	dialogs   *sipgo.DialogServerCache
	ctx       context.Context
	cancel    context.CancelFunc
	mu        sync.Mutex
	closing   bool           // set once the test ends: no handler starts after
	running   sync.WaitGroup // the INVITEs' handlers
	calls     sync.Map       // dialog id -> *farCall
	invites   chan *sip.Request
	cancelled chan struct{} // closed on the first CANCEL of a ringing call
	cancelOne sync.Once
}

// farCall is one answered call of the far end.
type farCall struct {
	f       *farEnd
	dialog  *sipgo.DialogServerSession
	invite  *sip.Request
	media   *media.Session
	heard   media.Recorder
	listen  sync.WaitGroup
	infos   chan rune
	notices chan *sip.Request
}

// startFarEnd starts f over transport ("udp" or "tcp") on a free port of
// 127.0.0.1, until the test ends.
func startFarEnd(t *testing.T, transport string, f *farEnd) *farEnd {
	t.Helper()
	f.transport = transport
	f.invites = make(chan *sip.Request, 8)
	f.inDialog = make(chan *sip.Request, 16)
	f.cancelled = make(chan struct{})
	log := slog.New(slog.DiscardHandler)
	ua, err := sipgo.NewUA(sipgo.WithUserAgent("far-end"), sipgo.WithUserAgentHostname("127.0.0.1"),
		sipgo.WithUserAgentTransportLayerOptions(sip.WithTransportLayerLogger(log)),
		sipgo.WithUserAgentTransactionLayerOptions(sip.WithTransactionLayerLogger(log),
			sip.WithTransactionLayerUnhandledResponseHandler(func(*sip.Response) {})))
	if err != nil {
		t.Fatal(err)
	}
	f.ua = ua
	srv, err := sipgo.NewServer(ua, sipgo.WithServerLogger(log))
	if err != nil {
		t.Fatal(err)
	}
	var serve func() error
	var listener io.Closer
	switch transport {
	case "udp":
		conn, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		f.addr, listener = conn.LocalAddr().String(), conn
		serve = func() error { return srv.ServeUDP(conn) }
	case "tcp":
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		f.addr, listener = ln.Addr().String(), ln
		serve = func() error { return srv.ServeTCP(ln) }
	}
	contactAddr := f.addr
	var other net.PacketConn
	if f.contactElsewhere {
		if other, err = net.ListenPacket("udp", "127.0.0.1:0"); err != nil {
			t.Fatal(err)
		}
		contactAddr = other.LocalAddr().String()
	}
	host, portStr, _ := net.SplitHostPort(contactAddr)
	port, _ := strconv.Atoi(portStr)
	client, err := sipgo.NewClient(ua, sipgo.WithClientHostname(host), sipgo.WithClientLogger(log),
		sipgo.WithClientConnectionAddr(f.addr))
	if err != nil {
		t.Fatal(err)
	}
	contact := sip.ContactHeader{Address: sip.Uri{Scheme: "sip", User: "far", Host: host, Port: port}}
	if transport == "tcp" {
		contact.Address.UriParams = sip.NewParams()
		contact.Address.UriParams.Add("transport", "tcp")
	}
	f.dialogs = sipgo.NewDialogServerCache(client, contact)
	f.ctx, f.cancel = context.WithCancel(context.Background())

	srv.OnInvite(func(req *sip.Request, tx sip.ServerTransaction) {
		if !f.track() {
			tx.Respond(sip.NewResponseFromRequest(req, 503, "Service Unavailable", nil))
			return
		}
		defer f.running.Done()
		f.onInvite(req, tx)
	})
	srv.OnAck(func(req *sip.Request, tx sip.ServerTransaction) { f.dialogs.ReadAck(req, tx) })
	srv.OnBye(func(req *sip.Request, tx sip.ServerTransaction) {
		f.took(req)
		if err := f.dialogs.ReadBye(req, tx); err != nil {
			tx.Respond(sip.NewResponseFromRequest(req, 481, "Call/Transaction Does Not Exist", nil))
		}
	})
	srv.OnInfo(func(req *sip.Request, tx sip.ServerTransaction) {
		f.took(req)
		c := f.find(req)
		if c == nil {
			tx.Respond(sip.NewResponseFromRequest(req, 481, "Call/Transaction Does Not Exist", nil))
			return
		}
		tx.Respond(sip.NewResponseFromRequest(req, 200, "OK", nil))
		contentType := ""
		if h := req.ContentType(); h != nil {
			contentType = h.Value()
		}
		if d, ok := media.ParseInfoDTMF(contentType, req.Body()); ok {
			c.infos <- d
		}
	})
	srv.OnNotify(func(req *sip.Request, tx sip.ServerTransaction) {
		f.took(req)
		c := f.find(req)
		if c == nil {
			tx.Respond(sip.NewResponseFromRequest(req, 481, "Call/Transaction Does Not Exist", nil))
			return
		}
		tx.Respond(sip.NewResponseFromRequest(req, 200, "OK", nil))
		c.notices <- req
	})

	var serving sync.WaitGroup
	serving.Go(func() { serve() })
	listening := 1
	if other != nil {
		listening = 2
		serving.Go(func() { srv.ServeUDP(other) })
	}
	// Requests leave from the listener once it is in the transport
	// layer's pool; before, sipgo would open a socket of its own.
	if transport == "udp" {
		pool, deadline := ua.TransportLayer().Pool("udp"), time.Now().Add(time.Second)
		for pool.Size() < listening && time.Now().Before(deadline) {
			time.Sleep(time.Millisecond)
		}
	}
	t.Cleanup(func() {
		f.mu.Lock()
		f.closing = true
		f.mu.Unlock()
		f.cancel()
		f.running.Wait()
		ua.Close()
		listener.Close() // sipgo leaves its listeners to their owner
		if other != nil {
			other.Close()
		}
		serving.Wait()
	})
	return f
}

// track counts an INVITE's handler in f.running, unless the test has
// ended. The lock orders each Add before the cleanup's Wait, which the
// network between the phone and the far end does not.
func (f *farEnd) track() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closing {
		return false
	}
	f.running.Add(1)
	return true
}

// took passes an in-dialog request on to f.inDialog, if there is room.
func (f *farEnd) took(req *sip.Request) {
	select {
	case f.inDialog <- req:
	default:
	}
}

// find is the call an in-dialog request belongs to.
func (f *farEnd) find(req *sip.Request) *farCall {
	id, err := sip.DialogIDFromRequestUAS(req)
	if err != nil {
		return nil
	}
	if v, ok := f.calls.Load(id); ok {
		return v.(*farCall)
	}
	return nil
}

func (f *farEnd) onInvite(req *sip.Request, tx sip.ServerTransaction) {
	f.invites <- req
	if f.refuse != 0 {
		refuse(tx, sip.NewResponseFromRequest(req, f.refuse, "Busy Here", nil))
		return
	}
	if f.password != "" && !f.authorized(req, tx) {
		return
	}
	d, err := f.dialogs.ReadInvite(req, tx)
	if err != nil {
		refuse(tx, sip.NewResponseFromRequest(req, 400, "Bad Request", nil))
		return
	}
	defer d.Close()
	if f.ring {
		cancelled := make(chan struct{})
		tx.OnCancel(func(*sip.Request) {
			close(cancelled)
			f.cancelOne.Do(func() { close(f.cancelled) })
		})
		d.Respond(180, "Ringing", nil)
		select {
		case <-cancelled:
		case <-tx.Done():
		case <-f.ctx.Done():
		}
		select {
		case <-cancelled:
			awaitACK(tx) // of the 487 the transaction answered the CANCEL with
		default:
		}
		return
	}
	offer, err := media.ParseOffer(req.Body())
	if err != nil {
		d.Respond(488, "Not Acceptable Here", nil)
		return
	}
	params, err := media.Negotiate(offer, []media.Codec{media.PCMU, media.PCMA})
	if err != nil {
		d.Respond(488, "Not Acceptable Here", nil)
		return
	}
	sess, err := media.ListenRTP(netip.MustParseAddr("127.0.0.1"), media.PortRange{})
	if err != nil {
		d.Respond(500, "Server Internal Error", nil)
		return
	}
	defer sess.Close()
	answer, err := media.BuildSDP(media.NewOrigin(), params.AnswerDescription(sess.LocalAddr(), offer))
	if err != nil || sess.Start(params) != nil {
		d.Respond(500, "Server Internal Error", nil)
		return
	}
	c := &farCall{f: f, dialog: d, invite: req, media: sess, infos: make(chan rune, 8), notices: make(chan *sip.Request, 8)}
	f.calls.Store(d.ID, c)
	defer f.calls.Delete(d.ID)
	c.listen.Go(func() { c.heard.Record(f.ctx, sess.Audio()) })
	defer c.listen.Wait()
	defer sess.Close()
	if err := d.RespondSDP(answer); err != nil {
		return
	}
	if f.script != nil {
		f.script(f.ctx, c)
	}
}

// authorized checks the INVITE's digest credentials, and answers 401 with
// a challenge or 403 when they are missing or wrong.
func (f *farEnd) authorized(req *sip.Request, tx sip.ServerTransaction) bool {
	chal := &digest.Challenge{Realm: "far", Nonce: "nonce-1", Algorithm: f.algorithm, QOP: []string{"auth"}}
	if chal.Algorithm == "" {
		chal.Algorithm = "MD5"
	}
	h := req.GetHeader("Authorization")
	if h == nil {
		res := sip.NewResponseFromRequest(req, 401, "Unauthorized", nil)
		res.AppendHeader(sip.NewHeader("WWW-Authenticate", chal.String()))
		refuse(tx, res)
		return false
	}
	cred, err := digest.ParseCredentials(h.Value())
	if err == nil {
		var want *digest.Credentials
		want, err = digest.Digest(chal, digest.Options{Method: "INVITE", URI: cred.URI, Username: f.user,
			Password: f.password, Cnonce: cred.Cnonce, Count: cred.Nc})
		if err == nil && (cred.Username != f.user || cred.Response != want.Response) {
			err = errors.New("wrong credentials")
		}
	}
	if err != nil {
		refuse(tx, sip.NewResponseFromRequest(req, 403, "Forbidden", nil))
		return false
	}
	return true
}

// ackWait bounds how long the far end waits for the ACK of a refusal.
const ackWait = 5 * time.Second

// refuse answers an INVITE with a final response other than 2xx and
// waits for its ACK (see awaitACK).
func refuse(tx sip.ServerTransaction, res *sip.Response) {
	if tx.Respond(res) == nil {
		awaitACK(tx)
	}
}

// awaitACK waits up to ackWait for the ACK of the final response other
// than 2xx the INVITE transaction tx sent (RFC 3261 §17.2.1), so that the
// INVITE's handler, which the far end waits for before it closes, outlives
// it. sipgo reads each request on a goroutine of its own: an ACK still
// being read when the far end closes finds neither the transaction nor the
// listener, and sipgo opens a socket on 0.0.0.0 to answer it that nothing
// closes.
func awaitACK(tx sip.ServerTransaction) {
	t := time.NewTimer(ackWait)
	defer t.Stop()
	select {
	case <-tx.Acks():
	case <-tx.Done():
	case <-t.C:
	}
}

// bye hangs up.
func (c *farCall) bye(ctx context.Context) error { return c.dialog.Bye(ctx) }

// refer sends a REFER to target within the call and returns its answer.
func (c *farCall) refer(ctx context.Context, target string) (*sip.Response, error) {
	req := sip.NewRequest(sip.REFER, c.invite.Contact().Address)
	req.SetTransport(c.invite.Transport())
	req.AppendHeader(sip.NewHeader("Refer-To", target))
	return c.dialog.Do(ctx, req)
}

// info sends a digit by SIP INFO within the call.
func (c *farCall) info(ctx context.Context, d rune) (*sip.Response, error) {
	req := sip.NewRequest(sip.INFO, c.invite.Contact().Address)
	req.SetTransport(c.invite.Transport())
	req.AppendHeader(sip.NewHeader("Content-Type", "application/dtmf-relay"))
	req.SetBody(fmt.Appendf(nil, "Signal=%c\r\nDuration=100\r\n", d))
	return c.dialog.Do(ctx, req)
}

// digit waits up to limit for a digit by RFC 4733 or INFO.
func (c *farCall) digit(ctx context.Context, limit time.Duration) (rune, bool) {
	t := time.NewTimer(limit)
	defer t.Stop()
	select {
	case d := <-c.media.Digits():
		return d, true
	case d := <-c.infos:
		return d, true
	case <-t.C:
	case <-ctx.Done():
	}
	return 0, false
}

// hungUp waits up to limit for the softphone's BYE.
func (c *farCall) hungUp(limit time.Duration) bool {
	select {
	case <-c.dialog.Context().Done():
		return true
	case <-time.After(limit):
		return false
	}
}

// tone is d of a 440 Hz tone at amplitude 8000.
func tone(d time.Duration) []int16 {
	pcm := make([]int16, int(d.Seconds()*media.SampleRate))
	for i := range pcm {
		pcm[i] = int16(8000 * math.Sin(2*math.Pi*440*float64(i)/media.SampleRate))
	}
	return pcm
}
