package e2e

import (
	"strings"
	"testing"
)

func TestReferAcceptedAndCompleted(t *testing.T) {
	requireSIPp(t)
	g := startGateway(t)
	uri := "sip:agent-desk@customer-sbc.example.com;User-to-User=UUI-12345%3Bencoding%3Dhex?X-Foo=1"
	g.create(t, "acme", `{"id":"refer-1","externalConversationId":"c","type":"SIP","sip":{"returnURI":"`+uri+`","returnTransferType":"REFER"},"inputContext":{"taskName":"instant"}}`)
	ok, out := g.sipp(t, "refer.xml", map[string]string{"NOTIFY_FINAL": "200 OK"}, "X-ASAPP-CallTransferId: refer-1", "acme")
	if !ok {
		t.Fatalf("sipp: %s\n%s", out, g.stderr)
	}
	// Invariant 5: the Refer-To is the returnURI byte for byte.
	if !strings.Contains(out, "REFER-TO <"+uri+">\n") {
		t.Fatalf("Refer-To is not <%s>:\n%s", uri, out)
	}
	// The instant SIPp has the BYE, the outcome and the result are stored.
	r := g.get(t, "acme", "refer-1")
	oc, _ := r.body["outputContext"].(map[string]any)
	rr, _ := r.body["returnResult"].(map[string]any)
	if r.str("status") != "COMPLETED" || oc["transferType"] != "SYSTEM" ||
		rr["method"] != "REFER" || rr["sipStatus"] != 202.0 || rr["notifyStatus"] != 200.0 || rr["fallback"] != false || rr["at"] == nil {
		t.Fatalf("after the REFER: %s", r.raw)
	}
}
