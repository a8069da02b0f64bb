package e2e

import (
	"context"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
	"github.com/icholy/digest"
)

// TestINVITEReturnAnswersSHA256Challenge: a return leg that challenges
// with SHA-256 digest (RFC 8760) gets an Authorization it can verify, made
// with the tenant's default return credentials when the transfer has none.
// The return target is a small sipgo UAS in the test, since SIPp verifies
// only MD5.
func TestINVITEReturnAnswersSHA256Challenge(t *testing.T) {
	requireSIPp(t)
	g := startGateway(t) // acme's returnAuth: acme-desk / acme-desk-pass
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	port := c.LocalAddr().(*net.UDPAddr).Port
	c.Close()

	chal := &digest.Challenge{Realm: "customer", Nonce: "sha-nonce-1", Algorithm: "SHA-256", QOP: []string{"auth"}}
	verdicts := make(chan string, 4)
	ua, err := sipgo.NewUA()
	if err != nil {
		t.Fatal(err)
	}
	defer ua.Close()
	srv, err := sipgo.NewServer(ua)
	if err != nil {
		t.Fatal(err)
	}
	srv.OnInvite(func(req *sip.Request, tx sip.ServerTransaction) {
		h := req.GetHeader("Authorization")
		if h == nil {
			res := sip.NewResponseFromRequest(req, 401, "Unauthorized", nil)
			res.AppendHeader(sip.NewHeader("WWW-Authenticate", chal.String()))
			tx.Respond(res)
			return
		}
		cred, err := digest.ParseCredentials(h.Value())
		if err != nil {
			verdicts <- "unparsable Authorization: " + h.Value()
			tx.Respond(sip.NewResponseFromRequest(req, 400, "Bad Request", nil))
			return
		}
		want, err := digest.Digest(chal, digest.Options{Method: "INVITE", URI: cred.URI, Username: "acme-desk",
			Password: "acme-desk-pass", Cnonce: cred.Cnonce, Count: cred.Nc})
		switch {
		case err != nil:
			verdicts <- err.Error()
		case cred.Algorithm != "SHA-256" || cred.Username != "acme-desk" || cred.Response != want.Response:
			verdicts <- fmt.Sprintf("wrong credentials: %s", h.Value())
		default:
			verdicts <- "ok"
		}
		tx.Respond(sip.NewResponseFromRequest(req, 486, "Busy Here", nil))
	})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go srv.ListenAndServe(ctx, "udp", fmt.Sprintf("127.0.0.1:%d", port))
	time.Sleep(100 * time.Millisecond)

	g.create(t, "acme", fmt.Sprintf(`{"id":"sha-1","externalConversationId":"c","type":"SIP","inputContext":{"taskName":"instant"},
		"sip":{"returnURI":"sip:desk@127.0.0.1:%d","returnTransferType":"INVITE"}}`, port))
	if ok, out := g.sipp(t, "transfer_bye.xml", nil, "X-ASAPP-CallTransferId: sha-1", "acme"); !ok {
		t.Fatalf("caller: %s\n%s", out, g.stderr)
	}
	select {
	case v := <-verdicts:
		if v != "ok" {
			t.Fatal(v)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the return leg never got an authenticated INVITE")
	}
	r := g.get(t, "acme", "sha-1")
	if rr, _ := r.body["returnResult"].(map[string]any); rr["sipStatus"] != 486.0 || rr["fallback"] != true {
		t.Fatalf("after the authenticated INVITE was refused: %s", r.raw)
	}
}
