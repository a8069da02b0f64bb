package sip

import (
	"bytes"
	"context"
	"errors"
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

// Refer implements call.Leg: a blind transfer (RFC 3515), an in-dialog
// REFER whose Refer-To is the returnURI byte for byte (DESIGN.md invariant
// 5), then the NOTIFYs that report how the caller's new call went. The
// whole attempt, the REFER's answer and the NOTIFYs, is bounded by
// sip.referTimeout. A refused REFER, a failure the NOTIFYs report, or no
// final NOTIFY in time is a fallback: the runtime ends the call by BYE.
func (l *leg) Refer(ctx context.Context, t *switchback.Transfer) (r switchback.ReturnResult) {
	r = switchback.ReturnResult{Method: switchback.ReturnREFER}
	fallback := func(reason string) switchback.ReturnResult {
		r.Fallback, r.Reason = true, reason
		l.log.Warn("REFER hand-back failed; the call ends by BYE", "reason", reason)
		return r
	}
	if isClosed(l.ended) {
		r.Reason = l.gone() + " before the REFER"
		return r
	}
	l.referring.Store(true)
	defer l.referring.Store(false)
	timeout := l.e.cfg.ReferTimeout.Duration()
	rctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	// why says why rctx ended.
	why := func() string {
		if errors.Is(context.Cause(ctx), switchback.ErrShutdown) {
			return "Switchback is shutting down"
		}
		return ""
	}

	l.mu.Lock()
	target := l.target
	l.mu.Unlock()
	req := sip.NewRequest(sip.REFER, target)
	// A generic header is written as it is: the Refer-To is the
	// customer's URI exactly as given.
	req.AppendHeader(sip.NewHeader("Refer-To", "<"+t.SIP.ReturnURI+">"))
	req.AppendHeader(sip.NewHeader("Referred-By", "<"+l.e.tenantURI(t.TenantID)+">"))
	req.AppendHeader(sip.NewHeader(TransferIDHeader, t.ID))
	l.e.bindLocal(req, l.transport)
	res, err := l.d.Do(rctx, req)
	if err != nil {
		switch {
		case isClosed(l.ended):
			r.Reason = l.gone() + " before answering the REFER"
			return r
		case why() != "":
			return fallback(why())
		case errors.Is(rctx.Err(), context.DeadlineExceeded):
			return fallback("no answer to the REFER within " + timeout.String())
		}
		return fallback("no answer to the REFER: " + err.Error())
	}
	r.SIPStatus = res.StatusCode
	if !res.IsSuccess() && isClosed(l.ended) {
		r.Reason = l.gone() + " before answering the REFER"
		return r
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
	for {
		select {
		case n := <-l.notifies:
			if !final(n) {
				continue
			}
			if n.status < 300 {
				return r
			}
			return fallback("the transfer failed with " + strconv.Itoa(n.status))
		case <-l.ended:
			// NOTIFYs answered before the caller's BYE are queued (see
			// onNotify) but may lose this select to the BYE: read them.
			for queued := true; queued && r.NotifyStatus < 200; {
				select {
				case n := <-l.notifies:
					final(n)
				default:
					queued = false
				}
			}
			switch {
			case r.NotifyStatus < 200:
				r.Reason = l.gone() + " before the final NOTIFY"
			case r.NotifyStatus >= 300:
				r.Reason = "the transfer failed with " + strconv.Itoa(r.NotifyStatus) + " and the caller hung up"
			}
			return r
		case <-rctx.Done():
			if w := why(); w != "" {
				return fallback(w)
			}
			return fallback("no final NOTIFY within " + timeout.String())
		}
	}
}

// onNotify takes the NOTIFYs of a REFER's subscription.
func (l *leg) onNotify(req *sip.Request, tx sip.ServerTransaction) {
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
	case l.notifies <- referNotify{id: id, status: status}:
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

func isClosed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// byeTimeout bounds a BYE the edge sends on its own.
const byeTimeout = 5 * time.Second
