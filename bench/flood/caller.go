package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"time"

	digest "github.com/icholy/digest"

	"github.com/emiago/sipgo/sip"
)

// caller places calls that authenticate: INVITE, the 401's challenge
// answered in a second INVITE, 200, ACK, then the BYE of the menu agent,
// which hands each call back at once. Each call has its own socket on
// 127.0.0.1, and retransmits as RFC 3261 §17.1.1.2 has it (T1 = 500 ms,
// doubling) while it waits for an answer.
type caller struct {
	server         string
	user, password string
}

// callResult is how one call went.
type callResult struct {
	id     string
	ok     bool
	err    string
	start  time.Time
	answer time.Duration // from the first INVITE sent to the 200 OK
}

// placeCalls places a call to each transfer in ids, callRate a second,
// each in its own goroutine, until ids run out or ctx ends, and reports
// every call placed once it is over.
func placeCalls(ctx context.Context, c *caller, ids []string, callRate float64, out chan<- callResult) {
	every := time.Duration(float64(time.Second) / callRate)
	t := time.NewTicker(every)
	defer t.Stop()
	var wg sync.WaitGroup
	defer wg.Wait()
	for _, id := range ids {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			// A call started during the flood finishes after it.
			callCtx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			out <- c.call(callCtx, id)
		}()
	}
}

// call places one call to transfer id.
func (c *caller) call(ctx context.Context, id string) callResult {
	r := callResult{id: id, start: time.Now()}
	conn, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		r.err = err.Error()
		return r
	}
	defer conn.Close()
	to, err := net.ResolveUDPAddr("udp", c.server)
	if err != nil {
		r.err = err.Error()
		return r
	}
	d := &dialogue{conn: conn, to: to, local: conn.LocalAddr().String(), id: id, tag: token(), callID: token() + "@bench"}
	start := time.Now()

	res, err := d.transact(ctx, 1, d.invite(1, ""))
	if err != nil {
		r.err = "first INVITE: " + err.Error()
		return r
	}
	if res.StatusCode != 401 {
		r.err = fmt.Sprintf("first INVITE: %d, want 401", res.StatusCode)
		return r
	}
	d.ack(1, res, d.branch(1))
	h := res.GetHeader("WWW-Authenticate")
	if h == nil {
		r.err = "401 without a challenge"
		return r
	}
	chal, err := digest.ParseChallenge(h.Value())
	if err != nil {
		r.err = err.Error()
		return r
	}
	cred, err := digest.Digest(chal, digest.Options{Method: "INVITE", URI: "sip:open@127.0.0.1", Username: c.user, Password: c.password})
	if err != nil {
		r.err = err.Error()
		return r
	}
	res, err = d.transact(ctx, 2, d.invite(2, "Authorization: "+cred.String()))
	if err != nil {
		r.err = "second INVITE: " + err.Error()
		return r
	}
	if res.StatusCode != 200 {
		r.err = fmt.Sprintf("second INVITE: %d %s", res.StatusCode, res.Reason)
		return r
	}
	r.answer = time.Since(start)
	d.ack(2, res, "z9hG4bK-"+token())
	// The menu hands the call back at once: a BYE comes.
	for {
		msg, err := d.read(ctx)
		if err != nil {
			r.err = "waiting for the BYE: " + err.Error()
			return r
		}
		if req, ok := msg.(*sip.Request); ok && req.Method == sip.BYE {
			ok := sip.NewResponseFromRequest(req, 200, "OK", nil)
			d.conn.WriteTo([]byte(ok.String()), d.from)
			r.ok = true
			return r
		}
	}
}

// dialogue is one call's socket and identifiers.
type dialogue struct {
	conn           *net.UDPConn
	to             *net.UDPAddr
	local, id, tag string
	callID         string
	from           net.Addr // the source of the last message read
	buf            [65536]byte
}

func (d *dialogue) branch(cseq int) string { return fmt.Sprintf("z9hG4bK-%s-%d", d.tag, cseq) }

func (d *dialogue) invite(cseq int, auth string) string {
	sdp := "v=0\r\no=caller 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n" +
		"m=audio 40002 RTP/AVP 0 8 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n" +
		"a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\na=ptime:20\r\n"
	if auth != "" {
		auth += "\r\n"
	}
	return fmt.Sprintf("INVITE sip:open@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP %s;branch=%s\r\n"+
		"From: <sip:ivr@127.0.0.1>;tag=%s\r\nTo: <sip:open@127.0.0.1>\r\nCall-ID: %s\r\nCSeq: %d INVITE\r\n"+
		"Max-Forwards: 70\r\nContact: <sip:ivr@%s>\r\nX-ASAPP-CallTransferId: %s\r\n%s"+
		"Content-Type: application/sdp\r\nContent-Length: %d\r\n\r\n%s",
		d.local, d.branch(cseq), d.tag, d.callID, cseq, d.local, d.id, auth, len(sdp), sdp)
}

// ack acknowledges res, the final answer to the INVITE of cseq (RFC 3261
// §17.1.1.3 for a non-2xx, in its transaction's branch; §13.2.2.4 for a
// 2xx, in a new one).
func (d *dialogue) ack(cseq int, res *sip.Response, branch string) {
	to := "<sip:open@127.0.0.1>"
	if h := res.To(); h != nil {
		to = h.Value()
	}
	msg := fmt.Sprintf("ACK sip:open@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP %s;branch=%s\r\n"+
		"From: <sip:ivr@127.0.0.1>;tag=%s\r\nTo: %s\r\nCall-ID: %s\r\nCSeq: %d ACK\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
		d.local, branch, d.tag, to, d.callID, cseq)
	d.conn.WriteTo([]byte(msg), d.to)
}

// transact sends an INVITE and returns its final answer, retransmitting
// it until a provisional answer comes.
func (d *dialogue) transact(ctx context.Context, cseq uint32, msg string) (*sip.Response, error) {
	ctx, cancel := context.WithTimeout(ctx, 32*time.Second) // Timer B
	defer cancel()
	interval := 500 * time.Millisecond
	next := time.Now()
	provisional := false
	for {
		if !provisional && !time.Now().Before(next) {
			if _, err := d.conn.WriteTo([]byte(msg), d.to); err != nil {
				return nil, err
			}
			next = time.Now().Add(interval)
			interval *= 2
		}
		wait := time.Until(next)
		if provisional {
			wait = time.Second
		}
		m, err := d.readFor(ctx, wait)
		if errors.Is(err, errTimeout) {
			continue
		}
		if err != nil {
			return nil, err
		}
		res, ok := m.(*sip.Response)
		if !ok || res.CSeq() == nil || res.CSeq().SeqNo != cseq {
			continue // a late retransmission of an earlier answer, say
		}
		if res.StatusCode < 200 {
			provisional = true
			continue
		}
		return res, nil
	}
}

var errTimeout = errors.New("timeout")

// read returns the next message, waiting until ctx ends.
func (d *dialogue) read(ctx context.Context) (sip.Message, error) {
	for {
		m, err := d.readFor(ctx, time.Second)
		if errors.Is(err, errTimeout) {
			continue
		}
		return m, err
	}
}

// readFor returns the next message within wait.
func (d *dialogue) readFor(ctx context.Context, wait time.Duration) (sip.Message, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	deadline := time.Now().Add(wait)
	if dl, ok := ctx.Deadline(); ok && dl.Before(deadline) {
		deadline = dl
	}
	d.conn.SetReadDeadline(deadline)
	n, from, err := d.conn.ReadFrom(d.buf[:])
	if err != nil {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			return nil, errTimeout
		}
		return nil, err
	}
	d.from = from
	m, err := sip.ParseMessage(d.buf[:n])
	if err != nil {
		return nil, fmt.Errorf("parse %q: %w", strings.SplitN(string(d.buf[:n]), "\r\n", 2)[0], err)
	}
	return m, nil
}

func token() string {
	var b [8]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
