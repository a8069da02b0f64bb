package sip

import (
	"github.com/emiago/sipgo/sip"
)

// The dialog table: every leg Switchback holds, caller's and return legs
// alike, by the dialog id its in-dialog requests carry, as seen by
// Switchback (sip.DialogIDFromRequestUAS). One lookup routes a request to
// its leg; a request for no known dialog gets 481 (RFC 3261 §12.2.2).

// legOf finds the leg an in-dialog request belongs to.
func (e *Edge) legOf(req *sip.Request) *leg {
	id, err := sip.DialogIDFromRequestUAS(req)
	if err != nil {
		return nil
	}
	if v, ok := e.dialogs.Load(id); ok {
		l, _ := v.(*leg)
		return l
	}
	return nil
}

// inDialog routes an in-dialog request to its leg.
func (e *Edge) inDialog(req *sip.Request, tx sip.ServerTransaction) {
	if !req.IsAck() && !validate(req, tx) {
		return
	}
	l := e.legOf(req)
	if l == nil {
		if !req.IsAck() { // an ACK is never answered
			reason := "Call/Transaction Does Not Exist"
			if req.Method == sip.NOTIFY {
				reason = "Subscription Does Not Exist"
			}
			respond(tx, req, 481, reason)
		}
		return
	}
	l.onRequest(req, tx)
}
