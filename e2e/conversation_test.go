package e2e

import (
	"context"
	"testing"
	"time"
)

// TestReconnectionResumesTheConversation is DESIGN.md invariant 7 end to
// end: a caller who hangs up in the menu and is transferred again with the
// same externalConversationId resumes where they left off.
func TestReconnectionResumesTheConversation(t *testing.T) {
	requireSIPp(t)
	g := startGateway(t)
	// The first leg knows the account; the caller hangs up in the menu.
	g.create(t, "acme", `{"id":"leg-1","externalConversationId":"conv-r","type":"SIP","inputContext":{"inputVariables":{"accountNumber":"3434"}}}`)
	if ok, out := g.sipp(t, "caller_hangup.xml", nil, "X-ASAPP-CallTransferId: leg-1", "acme"); !ok {
		t.Fatalf("first leg: %s\n%s", out, g.stderr)
	}
	waitStatus(t, g, "acme", "leg-1", "COMPLETED")

	// The second leg carries no variables: pressing 1 hands back the
	// account the first leg was given.
	g.create(t, "acme", `{"id":"leg-2","externalConversationId":"conv-r","type":"SIP"}`)
	if ok, out := g.sipp(t, "dtmf.xml", map[string]string{"PCAP_FILE": "/usr/share/sip-tester/dtmf_2833_1.pcap"}, "X-ASAPP-CallTransferId: leg-2", "acme"); !ok {
		t.Fatalf("second leg: %s\n%s", out, g.stderr)
	}
	r := g.get(t, "acme", "leg-2")
	oc, _ := r.body["outputContext"].(map[string]any)
	ref, _ := oc["referenceVariables"].(map[string]any)
	if oc["transferType"] != "AGENT" || ref["accountNumber"] != "3434" {
		t.Fatalf("the second leg did not resume with the first leg's variables: %s", r.raw)
	}

	// The conversation shows both legs in order, the menu's state, and
	// what happened on each leg (the last events land just after the BYE).
	want := []string{"leg-1:call.started", "leg-1:prompt", "leg-1:call.ended", "leg-2:call.started", "leg-2:digit", "leg-2:outcome", "leg-2:handback", "leg-2:call.ended"}
	deadline := time.Now().Add(3 * time.Second)
	for {
		c, err := newClient(g.keys["acme"]).do(context.Background(), "GET", g.URL+"/generativeagent/v1/conversations/conv-r", "")
		if err != nil || c.status != 200 {
			t.Fatalf("conversation: %v %s", err, c.raw)
		}
		legs, _ := c.body["legs"].([]any)
		if len(legs) != 2 || legs[0].(map[string]any)["id"] != "leg-1" || legs[1].(map[string]any)["id"] != "leg-2" {
			t.Fatalf("legs: %s", c.raw)
		}
		if state, _ := c.body["state"].(map[string]any); state["greeted"] != true {
			t.Fatalf("state: %s", c.raw)
		}
		var seen []string
		for _, e := range c.body["events"].([]any) {
			ev := e.(map[string]any)
			seen = append(seen, ev["transferId"].(string)+":"+ev["type"].(string))
		}
		missing := ""
		for _, w := range want {
			if !contains(seen, w) {
				missing = w
			}
		}
		if missing == "" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("events lack %s: %v", missing, seen)
		}
		time.Sleep(50 * time.Millisecond)
	}
	// Another tenant does not see it.
	if c, _ := newClient(g.keys["solo"]).do(context.Background(), "GET", g.URL+"/generativeagent/v1/conversations/conv-r", ""); c.status != 404 {
		t.Fatalf("another tenant's GET: %d %s", c.status, c.raw)
	}
}

// TestOneLiveLegPerConversation: while a leg is in a call, another leg of
// the same conversation is refused by SIP (486) and by the API (409).
func TestOneLiveLegPerConversation(t *testing.T) {
	requireSIPp(t)
	g := startGateway(t)
	g.create(t, "acme", `{"id":"live-1","externalConversationId":"conv-l","type":"SIP"}`)
	g.create(t, "acme", `{"id":"live-2","externalConversationId":"conv-l","type":"SIP"}`)
	first := make(chan string, 1)
	go func() {
		ok, out := g.sipp(t, "caller_hangup.xml", map[string]string{"PAUSE_MS": "1500"}, "X-ASAPP-CallTransferId: live-1", "acme")
		if !ok {
			first <- out
		}
		close(first)
	}()
	waitStatus(t, g, "acme", "live-1", "ONGOING")
	if ok, out := g.sipp(t, "invite_refused.xml", map[string]string{"EXPECTED_STATUS": "486"}, "X-ASAPP-CallTransferId: live-2", "acme"); !ok {
		t.Fatalf("a second live leg was not refused with 486: %s", out)
	}
	r, err := newClient(g.keys["acme"]).do(context.Background(), "POST", g.URL+"/generativeagent/v1/call-transfers",
		`{"id":"live-3","externalConversationId":"conv-l","type":"SIP"}`)
	if e, _ := r.body["error"].(map[string]any); err != nil || r.status != 409 || e["code"] != "409-01" || e["message"] == nil {
		t.Fatalf("create while a leg is live: %v %d %s", err, r.status, r.raw)
	}
	if out, bad := <-first; bad {
		t.Fatalf("first leg: %s", out)
	}
	if r := g.get(t, "acme", "live-2"); r.str("status") != "ACTIVE" {
		t.Fatalf("the refused leg used its transfer: %s", r.raw)
	}
	// Once the first leg is over, the second takes its call.
	waitStatus(t, g, "acme", "live-1", "COMPLETED")
	if ok, out := g.sipp(t, "caller_hangup.xml", nil, "X-ASAPP-CallTransferId: live-2", "acme"); !ok {
		t.Fatalf("second leg after the first: %s", out)
	}
}

func waitStatus(t *testing.T, g *gateway, tenant, id, status string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		r := g.get(t, tenant, id)
		if r.str("status") == status {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s never became %s: %s", id, status, r.raw)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
