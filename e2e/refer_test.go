package e2e

import (
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// referTransfer is the body of a SIP transfer with the "instant" task,
// handed back by REFER to uri.
func referTransfer(id, uri string) string {
	return `{"id":"` + id + `","externalConversationId":"c-` + id + `","type":"SIP","sip":{"returnURI":"` + uri +
		`","returnTransferType":"REFER"},"inputContext":{"taskName":"instant"}}`
}

// handedBack fetches a transfer whose call has just ended and fails the
// test unless it is COMPLETED with the "instant" task's SYSTEM outcome, and
// its returnResult has exactly the method, sipStatus, notifyStatus and
// fallback of want (nil: the API leaves the field out) and a time no
// earlier than completedAt. It returns the returnResult.
func (g *gateway) handedBack(t *testing.T, tenant, id string, want map[string]any) map[string]any {
	t.Helper()
	r := g.get(t, tenant, id)
	oc, _ := r.body["outputContext"].(map[string]any)
	rr, _ := r.body["returnResult"].(map[string]any)
	if r.str("status") != "COMPLETED" || oc["transferType"] != "SYSTEM" || oc["currentTaskName"] != "instant" || rr == nil {
		t.Fatalf("after the hand-back: %s\nswitchback:\n%s", r.raw, g.stderr)
	}
	for _, k := range []string{"method", "sipStatus", "notifyStatus", "fallback"} {
		if rr[k] != want[k] {
			t.Fatalf("returnResult.%s is %v, want %v: %s\nswitchback:\n%s", k, rr[k], want[k], r.raw, g.stderr)
		}
	}
	at, err1 := time.Parse(time.RFC3339Nano, stringOf(rr["at"]))
	completed, err2 := time.Parse(time.RFC3339Nano, r.str("completedAt"))
	if err1 != nil || err2 != nil || at.Before(completed) {
		t.Fatalf("returnResult.at is not a time at or after completedAt: %s", r.raw)
	}
	return rr
}

func stringOf(v any) string {
	s, _ := v.(string)
	return s
}

func TestReferAcceptedAndCompleted(t *testing.T) {
	requireSIPp(t)
	g := startGateway(t)
	uri := "sip:agent-desk@customer-sbc.example.com;User-to-User=UUI-12345%3Bencoding%3Dhex?X-Foo=1"
	g.create(t, "acme", referTransfer("refer-1", uri))
	ok, out := g.sipp(t, "refer.xml", map[string]string{"NOTIFY_FINAL": "200 OK", "TRANSFER_ID": "refer-1"}, "X-ASAPP-CallTransferId: refer-1", "acme")
	if !ok {
		t.Fatalf("sipp: %s\n%s", out, g.stderr)
	}
	// Invariant 5: the Refer-To is the returnURI byte for byte.
	if !strings.Contains(out, "REFER-TO <"+uri+">\n") {
		t.Fatalf("Refer-To is not <%s>:\n%s", uri, out)
	}
	// The instant SIPp has the BYE, the outcome and the result are stored.
	rr := g.handedBack(t, "acme", "refer-1", map[string]any{"method": "REFER", "sipStatus": 202.0, "notifyStatus": 200.0, "fallback": false})
	if rr["reason"] != nil {
		t.Fatalf("a successful REFER has a reason: %v", rr)
	}
}

// TestReferRefused: the caller answers the REFER with 603, and Switchback
// ends the call by BYE instead.
func TestReferRefused(t *testing.T) {
	requireSIPp(t)
	g := startGateway(t)
	uri := "sip:queue@customer-sbc.example.com"
	g.create(t, "acme", referTransfer("refused-1", uri))
	ok, out := g.sipp(t, "refer_refused.xml", map[string]string{"REFER_STATUS": "603 Decline"}, "X-ASAPP-CallTransferId: refused-1", "acme")
	if !ok {
		t.Fatalf("sipp (REFER answered 603, then a BYE): %s\n%s", out, g.stderr)
	}
	if !strings.Contains(out, "REFER-TO <"+uri+">\n") {
		t.Fatalf("Refer-To is not <%s>:\n%s", uri, out)
	}
	rr := g.handedBack(t, "acme", "refused-1", map[string]any{"method": "REFER", "sipStatus": 603.0, "notifyStatus": nil, "fallback": true})
	if !strings.Contains(stringOf(rr["reason"]), "603") {
		t.Fatalf("the reason does not say the REFER was refused with 603: %v", rr)
	}
}

// TestReferNotifiesFailure: the caller accepts the REFER, but its new call
// fails (NOTIFY with a 486 sipfrag), and Switchback ends the call by BYE.
func TestReferNotifiesFailure(t *testing.T) {
	requireSIPp(t)
	g := startGateway(t)
	uri := "sip:busy-desk@customer-sbc.example.com;User-to-User=UUI-486"
	g.create(t, "acme", referTransfer("busy-1", uri))
	ok, out := g.sipp(t, "refer.xml", map[string]string{"NOTIFY_FINAL": "486 Busy Here"}, "X-ASAPP-CallTransferId: busy-1", "acme")
	if !ok {
		t.Fatalf("sipp (NOTIFY 486, then a BYE): %s\n%s", out, g.stderr)
	}
	if !strings.Contains(out, "REFER-TO <"+uri+">\n") {
		t.Fatalf("Refer-To is not <%s>:\n%s", uri, out)
	}
	rr := g.handedBack(t, "acme", "busy-1", map[string]any{"method": "REFER", "sipStatus": 202.0, "notifyStatus": 486.0, "fallback": true})
	if !strings.Contains(stringOf(rr["reason"]), "486") {
		t.Fatalf("the reason does not say the transfer failed with 486: %v", rr)
	}
}

var sippClock = regexp.MustCompile(`(REFER|BYE)-AT (\d+)`)

// TestReferWithoutFinalNotify: the caller accepts the REFER and sends only
// NOTIFY 100; after sip.referTimeout (2 s in sipConfig) Switchback ends the
// call by BYE.
func TestReferWithoutFinalNotify(t *testing.T) {
	requireSIPp(t)
	g := startGateway(t)
	g.create(t, "acme", referTransfer("silent-1", "sip:slow@customer-sbc.example.com"))
	ok, out := g.sipp(t, "refer_no_final.xml", nil, "X-ASAPP-CallTransferId: silent-1", "acme")
	if !ok {
		t.Fatalf("sipp (NOTIFY 100, then a BYE): %s\n%s", out, g.stderr)
	}
	// SIPp's clock when the REFER and the BYE came.
	at := map[string]int{}
	for _, m := range sippClock.FindAllStringSubmatch(out, -1) {
		at[m[1]], _ = strconv.Atoi(m[2])
	}
	if at["REFER"] == 0 || at["BYE"] == 0 {
		t.Fatalf("SIPp logged no times: %s", out)
	}
	// The timer starts at the 202, after the REFER: the BYE is at least
	// 2 s after the REFER, and not much later.
	wait := time.Duration(at["BYE"]-at["REFER"]) * time.Millisecond
	t.Logf("BYE %v after the REFER", wait)
	if wait < 2*time.Second || wait > 4*time.Second {
		t.Fatalf("BYE %v after the REFER, want the 2 s referTimeout", wait)
	}
	rr := g.handedBack(t, "acme", "silent-1", map[string]any{"method": "REFER", "sipStatus": 202.0, "notifyStatus": 100.0, "fallback": true})
	if !strings.Contains(stringOf(rr["reason"]), "NOTIFY") {
		t.Fatalf("the reason does not mention the missing NOTIFY: %v", rr)
	}
}

// TestReferThenCallerHangsUp: the caller completes the transfer (NOTIFY
// 200) and hangs up at once: the hand-back succeeded, and the call needs
// no BYE of ours.
func TestReferThenCallerHangsUp(t *testing.T) {
	requireSIPp(t)
	g := startGateway(t)
	g.create(t, "acme", referTransfer("left-1", "sip:desk@customer-sbc.example.com"))
	ok, out := g.sipp(t, "refer_caller_hangup.xml", nil, "X-ASAPP-CallTransferId: left-1", "acme")
	if !ok {
		t.Fatalf("sipp (NOTIFY 200, then the caller's BYE): %s\n%s", out, g.stderr)
	}
	// Switchback hangs up once the result is stored; the caller's BYE,
	// sent as its NOTIFY is answered, nearly always comes first. When
	// both ends hang up at once the scenario takes both BYEs; say so.
	crossed := strings.Contains(out, "CROSSED-BYE")
	if crossed {
		t.Log("Switchback's BYE crossed the caller's")
	}
	rr := g.handedBack(t, "acme", "left-1", map[string]any{"method": "REFER", "sipStatus": 202.0, "notifyStatus": 200.0, "fallback": false})
	if rr["reason"] != nil {
		t.Fatalf("a completed transfer has a reason: %v", rr)
	}
	// Nor does Switchback complain: no error and, unless the BYEs
	// crossed, no warning (of a BYE that failed, say).
	if s := g.stderr.String(); strings.Contains(s, `"level":"ERROR"`) || !crossed && strings.Contains(s, `"level":"WARN"`) {
		t.Fatalf("switchback logged a warning or an error:\n%s", s)
	}
}
