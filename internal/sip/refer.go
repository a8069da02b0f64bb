package sip

import (
	"bytes"
	"context"
	"strconv"
	"strings"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/switchback/switchback"
)

// referNotify is what one NOTIFY of a REFER's implicit subscription said
// (RFC 3515 §2.4.4): the status line of its message/sipfrag body.
type referNotify struct {
	id     string // the Event header's id parameter: the REFER's CSeq, or ""
	status int
}

// referBack hands the call back by a blind transfer (RFC 3515): an
// in-dialog REFER whose Refer-To is the returnURI byte for byte, then the
// NOTIFYs that report how the caller's new call went. A refused REFER, a
// failure the NOTIFYs report, or no final NOTIFY in time ends the call by
// BYE instead; a successful transfer ends it by BYE too, unless the caller
// already hung up. It returns how it went, and whether our leg still needs
// its BYE: that comes once the result is recorded.
func (c *call) referBack() (r switchback.ReturnResult, bye bool) {
	r = switchback.ReturnResult{Method: switchback.ReturnREFER}
	fallback := func(reason string) (switchback.ReturnResult, bool) {
		r.Fallback, r.Reason = true, reason
		c.log.Warn("REFER hand-back failed; ending the call by BYE", "reason", reason)
		return r, true
	}
	if isClosed(c.hungup) {
		r.Reason = "the caller hung up before the REFER"
		return r, false
	}
	contact := c.dialog.InviteRequest.Contact()
	if contact == nil {
		return fallback("the caller gave no Contact to send the REFER to")
	}
	req := sip.NewRequest(sip.REFER, contact.Address)
	// The Refer-To is the customer's URI exactly as given (DESIGN.md
	// invariant 5): a generic header is written as it is.
	req.AppendHeader(sip.NewHeader("Refer-To", "<"+c.t.SIP.ReturnURI+">"))
	req.AppendHeader(sip.NewHeader("Referred-By", "<"+c.e.tenantURI(c.t.TenantID)+">"))
	ctx, cancel := context.WithTimeout(context.Background(), 32*time.Second)
	res, err := c.dialog.Do(ctx, req)
	cancel()
	if err != nil {
		select {
		case <-c.hungup:
			r.Reason = "the caller hung up before answering the REFER"
			return r, false
		default:
		}
		return fallback("no answer to the REFER")
	}
	r.SIPStatus = res.StatusCode
	if !res.IsSuccess() && isClosed(c.hungup) {
		r.Reason = "the caller hung up before answering the REFER"
		return r, false
	}
	if !res.IsSuccess() {
		return fallback("REFER refused with " + strconv.Itoa(res.StatusCode))
	}
	id := ""
	if cseq := req.CSeq(); cseq != nil {
		id = strconv.FormatUint(uint64(cseq.SeqNo), 10)
	}
	// final records what a NOTIFY of this REFER says, and whether it is
	// the last one.
	final := func(n referNotify) bool {
		if n.id != "" && n.id != id {
			return false
		}
		r.NotifyStatus = n.status
		return n.status >= 200
	}
	timeout := c.e.cfg.ReferTimeout.Duration()
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	for {
		select {
		case n := <-c.notifies:
			if !final(n) {
				continue
			}
			if n.status < 300 {
				return r, true
			}
			return fallback("the transfer failed with " + strconv.Itoa(n.status))
		case <-c.hungup:
			// NOTIFYs we answered before the caller's BYE are queued (see
			// onNotify) but may lose this select to the BYE: read them.
			for queued := true; queued && r.NotifyStatus < 200; {
				select {
				case n := <-c.notifies:
					final(n)
				default:
					queued = false
				}
			}
			// The caller hung up: nothing is left to hang up.
			switch {
			case r.NotifyStatus < 200:
				r.Reason = "the caller hung up before the final NOTIFY"
			case r.NotifyStatus >= 300:
				r.Reason = "the transfer failed with " + strconv.Itoa(r.NotifyStatus) + " and the caller hung up"
			}
			return r, false
		case <-timer.C:
			return fallback("no final NOTIFY within " + timeout.String())
		case <-c.stopping:
			return fallback("Switchback is shutting down")
		}
	}
}

// onNotify takes the NOTIFYs of a REFER's subscription.
func (e *Edge) onNotify(req *sip.Request, tx sip.ServerTransaction) {
	if !validate(req, tx) {
		return
	}
	c := e.callOf(req)
	if c == nil {
		respond(tx, req, 481, "Subscription Does Not Exist")
		return
	}
	event := req.GetHeader("Event")
	if event == nil {
		event = req.GetHeader("o") // compact form
	}
	var pkg, id string
	if event != nil {
		v, params, _ := strings.Cut(event.Value(), ";")
		pkg = strings.TrimSpace(v)
		for _, p := range strings.Split(params, ";") {
			if k, val, ok := strings.Cut(strings.TrimSpace(p), "="); ok && strings.EqualFold(k, "id") {
				id = strings.TrimSpace(val)
			}
		}
	}
	if !strings.EqualFold(pkg, "refer") {
		respond(tx, req, 489, "Bad Event", sip.NewHeader("Allow-Events", "refer"))
		return
	}
	status, ok := sipfragStatus(req.Body())
	if !ok {
		respond(tx, req, 400, "Bad sipfrag body")
		return
	}
	// Queued before the 200 goes out: a BYE the caller sends once it has
	// the 200 then finds the NOTIFY already there.
	select {
	case c.notifies <- referNotify{id: id, status: status}:
	default: // nobody is waiting on that many: drop
	}
	respond(tx, req, 200, "OK")
}

// sipfragStatus reads the status code of a message/sipfrag body's status
// line ("SIP/2.0 200 OK", RFC 3420).
func sipfragStatus(body []byte) (int, bool) {
	line, _, _ := bytes.Cut(bytes.TrimLeft(body, " \r\n"), []byte("\n"))
	f := strings.Fields(string(line))
	if len(f) < 2 || !strings.HasPrefix(strings.ToUpper(f[0]), "SIP/") {
		return 0, false
	}
	code, err := strconv.Atoi(f[1])
	if err != nil || code < 100 || code > 699 {
		return 0, false
	}
	return code, true
}
