package e2e

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// TestINVITEReturnToKamailio hands calls back by INVITE to Kamailio from
// Debian as the customer's SBC, which logs what it received and refuses
// the call with 486. The Request-URI it logs must be the returnURI up to
// its '?' byte for byte (DESIGN.md invariant 5), for URIs with
// parameters, escaped characters and ;transport=udp, and the URI's
// headers must arrive as real headers, unescaped (RFC 3261 §19.1.5).
func TestINVITEReturnToKamailio(t *testing.T) {
	requireSIPp(t)
	sbc := startKamailio(t, "invite.cfg", "")
	g := startGateway(t)
	cases := []struct {
		name      string
		uri       string // PORT is Kamailio's
		uui, xfoo string // as Kamailio should log them; <null> when absent
	}{
		{"escaped user and parameters",
			"sip:desk%40site@127.0.0.1:PORT;transport=udp;x-line=7?User-to-User=abc%3Bencoding%3Dhex&X-Foo=1",
			"abc;encoding=hex", "1"},
		{"telephone number, escaped parameter value, headers in another order",
			"sip:%2B15551230000@127.0.0.1:PORT;user=phone;x-ctx=a%3Bb%20c;transport=udp?X-Foo=two%20words&User-to-User=00C1%3Bencoding%3Dhex%3Bpurpose%3Dcall",
			"00C1;encoding=hex;purpose=call", "two words"},
		{"no headers, a flag parameter, upper-case transport",
			"sip:Desk.Line-2@127.0.0.1:PORT;lr;transport=UDP",
			"<null>", "<null>"},
		{"password, empty and escaped parameter values, escaped & and = in headers",
			"sip:desk:pw@127.0.0.1:PORT;x=;y=%22q%22;Mixed=Case;transport=udp?X-Foo=a%26b%3Dc&User-to-User=x",
			"x", "a&b=c"},
		{"telephone subscriber with phone-context, UTF-8 header",
			"sip:+1-555-123;phone-context=example.com@127.0.0.1:PORT;user=phone?X-Foo=%E2%82%AC",
			"<null>", "€"},
		{"escaped ? in the user, an empty header",
			"sip:de%3Fsk@127.0.0.1:PORT;transport=udp?X-Foo=",
			"<null>", ""},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			id := "kam-inv-" + strconv.Itoa(i)
			uri := strings.ReplaceAll(tc.uri, "PORT", sbc.port())
			g.create(t, "acme", fmt.Sprintf(`{"id":%q,"externalConversationId":"c","type":"SIP","inputContext":{"taskName":"instant"},
				"sip":{"returnURI":%q,"returnTransferType":"INVITE"}}`, id, uri))
			ok, out := g.sipp(t, "transfer_bye.xml", nil, "X-ASAPP-CallTransferId: "+id, "acme")
			if !ok {
				t.Fatalf("caller: %s\nkamailio:\n%s\nswitchback:\n%s", out, sbc.log, g.stderr)
			}
			// Kamailio logs the INVITE before it answers, so before the
			// caller's BYE: this call's is the i-th (once, unless
			// Switchback sent it again before the 486 came).
			seen := sbc.invites()
			if len(seen) <= i {
				t.Fatalf("Kamailio logged %d INVITEs, want %d:\n%s\nswitchback:\n%s", len(seen), i+1, sbc.log, g.stderr)
			}
			want := kamailioInvite{ruri: uri[:strings.IndexByte(uri+"?", '?')], uui: tc.uui, xfoo: tc.xfoo}
			for _, got := range seen[i:] {
				if got != want {
					t.Fatalf("Kamailio received\n%+v\nwant\n%+v", got, want)
				}
			}
			r := g.get(t, "acme", id)
			rr, _ := r.body["returnResult"].(map[string]any)
			if r.str("status") != "COMPLETED" || rr["method"] != "INVITE" || rr["sipStatus"] != 486.0 || rr["fallback"] != true {
				t.Fatalf("after the refused INVITE return: %s", r.raw)
			}
		})
	}
}

// kamailioInvite is what testdata/kamailio/invite.cfg logs of an INVITE.
type kamailioInvite struct{ ruri, uui, xfoo string }

var kamailioInviteLine = regexp.MustCompile(`(?m)NOTICE: <script>: RETURN-INVITE ruri=<(.*)> uui=<(.*)> xfoo=<(.*)>$`)

// invites are the INVITEs Kamailio logged, in order.
func (k *kamailio) invites() []kamailioInvite {
	var out []kamailioInvite
	for _, m := range kamailioInviteLine.FindAllStringSubmatch(k.log.String(), -1) {
		out = append(out, kamailioInvite{m[1], m[2], m[3]})
	}
	return out
}
