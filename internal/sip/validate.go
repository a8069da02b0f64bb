package sip

import (
	"strings"

	"github.com/emiago/sipgo/sip"
)

// supported are the option tags Switchback understands in Require (RFC
// 3261 §20.32).
var supported = map[string]bool{"timer": true}

// validate checks what RFC 3261 asks of every request before it is acted
// on (§8.2), and answers the request itself when it fails: 505 for another
// SIP version, 400 for missing, repeated or inconsistent mandatory headers,
// 416 for a Request-URI scheme other than sip, sips or tel, 420 for a
// Require option tag Switchback does not support. It reports whether the
// request may go on.
func validate(req *sip.Request, tx sip.ServerTransaction) bool {
	if req.SipVersion != "SIP/2.0" {
		respond(tx, req, 505, "Version Not Supported")
		return false
	}
	for _, name := range []string{"From", "To", "Call-ID", "CSeq", "Via"} {
		if len(req.GetHeaders(name)) == 0 {
			respond(tx, req, 400, "Missing "+name)
			return false
		}
	}
	for _, name := range []string{"From", "To", "Call-ID", "CSeq", "Content-Length", "Max-Forwards"} {
		if len(req.GetHeaders(name)) > 1 {
			respond(tx, req, 400, "Repeated "+name)
			return false
		}
	}
	if req.GetHeader("Max-Forwards") == nil && !req.IsAck() {
		respond(tx, req, 400, "Missing Max-Forwards")
		return false
	}
	if cseq := req.CSeq(); cseq == nil || cseq.MethodName != req.Method {
		respond(tx, req, 400, "CSeq method does not match the request")
		return false
	}
	switch strings.ToLower(req.Recipient.Scheme) {
	case "sip", "sips", "tel":
	default:
		respond(tx, req, 416, "Unsupported URI Scheme")
		return false
	}
	var unsupported []string
	for _, h := range req.GetHeaders("Require") {
		for _, tag := range strings.Split(h.Value(), ",") {
			if tag = strings.TrimSpace(tag); tag != "" && !supported[strings.ToLower(tag)] {
				unsupported = append(unsupported, tag)
			}
		}
	}
	if len(unsupported) > 0 && !req.IsAck() && !req.IsCancel() {
		respond(tx, req, 420, "Bad Extension", sip.NewHeader("Unsupported", strings.Join(unsupported, ", ")))
		return false
	}
	return true
}
