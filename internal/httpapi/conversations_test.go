package httpapi_test

import (
	"context"
	"encoding/json"
	"net/url"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/switchback/switchback"
)

const conversationsPath = "/generativeagent/v1/conversations"

func legBody(id, conversation string) string {
	b, _ := json.Marshal(map[string]any{"id": id, "externalConversationId": conversation, "type": "SIP",
		"sip": map[string]string{"returnURI": "sip:back@pbx.example.com", "returnTransferType": "REFER"}})
	return string(b)
}

func TestConversationShowsLegsStateAndEvents(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	ctx := context.Background()
	const conv = "conv/42 ünïcode" // anything a create accepts can be read back
	path := conversationsPath + "/" + url.PathEscape(conv)
	if r := h.do("POST", transfersPath, legBody("leg-1", conv)); r.Status != 200 {
		t.Fatalf("create leg-1: %d %s", r.Status, r.Body)
	}
	if _, err := h.Svc.Match(ctx, "acme", "leg-1"); err != nil {
		t.Fatal(err)
	}
	h.clock.Add(time.Second)
	if _, err := h.Svc.Complete(ctx, "acme", "leg-1", &switchback.OutputContext{TransferType: switchback.TransferAgent}); err != nil {
		t.Fatal(err)
	}
	if err := h.Svc.SetReturnResult(ctx, "acme", "leg-1", &switchback.ReturnResult{Method: switchback.ReturnREFER, SIPStatus: 202, NotifyStatus: 200}); err != nil {
		t.Fatal(err)
	}
	err := h.Svc.RecordConversation(ctx, &switchback.ConversationRecord{TenantID: "acme", ExternalID: conv,
		State: json.RawMessage(`{"menu":"billing","tries":2}`),
		Events: []switchback.ConversationEvent{
			{TransferID: "leg-1", Type: switchback.EventDigit, Data: map[string]string{"digit": "1", "leg": "caller"}},
			{TransferID: "leg-1", Type: switchback.EventCallEnded, Data: map[string]string{"by": "switchback"}},
		}})
	if err != nil {
		t.Fatal(err)
	}
	h.clock.Add(time.Second)
	if r := h.do("POST", transfersPath, legBody("leg-2", conv)); r.Status != 200 {
		t.Fatalf("create leg-2: %d %s", r.Status, r.Body)
	}
	h.clock.Add(2 * time.Minute) // leg-2 is past its expiry; no timer has moved it

	r := h.do("GET", path, "")
	if r.Status != 200 {
		t.Fatalf("GET conversation: %d %s", r.Status, r.Body)
	}
	want := map[string]any{
		"externalConversationId": conv,
		"createdAt":              "2026-03-01T12:00:00.000Z",
		"updatedAt":              "2026-03-01T12:00:01.000Z",
		"state.menu":             "billing",
		"state.tries":            2.0,
	}
	for p, v := range want {
		if got := r.field(p); got != v {
			t.Errorf("%s = %v, want %v", p, got, v)
		}
	}
	legs, _ := r.JSON["legs"].([]any)
	if len(legs) != 2 {
		t.Fatalf("legs = %v", r.JSON["legs"])
	}
	for i, id := range []string{"leg-1", "leg-2"} {
		g := h.do("GET", transfersPath+"/"+id, "")
		if !reflect.DeepEqual(legs[i], g.JSON) {
			t.Errorf("leg %d = %v\nwant GET of %s = %v", i, legs[i], id, g.JSON)
		}
	}
	if s := legs[1].(map[string]any)["status"]; s != "EXPIRED" {
		t.Errorf("leg-2 status %v, want EXPIRED (read at now)", s)
	}
	if rr := legs[0].(map[string]any)["returnResult"]; rr == nil {
		t.Errorf("leg-1 has no returnResult: %v", legs[0])
	}
	events, _ := r.JSON["events"].([]any)
	wantEvents := []map[string]any{
		{"at": "2026-03-01T12:00:01.000Z", "transferId": "leg-1", "type": "digit", "data": map[string]any{"digit": "1", "leg": "caller"}},
		{"at": "2026-03-01T12:00:01.000Z", "transferId": "leg-1", "type": "call.ended", "data": map[string]any{"by": "switchback"}},
	}
	if len(events) != len(wantEvents) {
		t.Fatalf("events = %v", events)
	}
	for i, w := range wantEvents {
		if !reflect.DeepEqual(events[i], any(w)) {
			t.Errorf("event %d = %v, want %v", i, events[i], w)
		}
	}
}

func TestConversationWithoutRecordAndOfOtherTenants(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	if r := h.do("POST", transfersPath, legBody("mine", "shared-id")); r.Status != 200 {
		t.Fatalf("create: %d %s", r.Status, r.Body)
	}
	r := h.do("GET", conversationsPath+"/shared-id", "")
	if r.Status != 200 {
		t.Fatalf("GET: %d %s", r.Status, r.Body)
	}
	// No record yet: no state, no update, empty events.
	if !strings.Contains(string(r.Body), `"events":[]`) || r.JSON["state"] != nil || r.JSON["updatedAt"] != nil {
		t.Fatalf("conversation without a record: %s", r.Body)
	}

	id, secret := h.newKey("globex", switchback.ScopeCallTransfers)
	other := []string{"asapp-api-id", id, "asapp-api-secret", secret}
	r = h.do("GET", conversationsPath+"/shared-id", "", other...)
	if code, msg := r.errorOf(t); r.Status != 404 || code != "404-01" || !strings.Contains(msg, "shared-id") {
		t.Fatalf("other tenant's conversation: %d %s", r.Status, r.Body)
	}
	// The other tenant's own conversation of that id holds only its legs.
	if r := h.do("POST", transfersPath, legBody("theirs", "shared-id"), other...); r.Status != 200 {
		t.Fatalf("other tenant's create: %d %s", r.Status, r.Body)
	}
	r = h.do("GET", conversationsPath+"/shared-id", "", other...)
	legs, _ := r.JSON["legs"].([]any)
	if r.Status != 200 || len(legs) != 1 || legs[0].(map[string]any)["id"] != "theirs" {
		t.Fatalf("other tenant's conversation: %d %s", r.Status, r.Body)
	}
}

func TestCreateWhileALegIsLiveIs409(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	ctx := context.Background()
	first := h.do("POST", transfersPath, legBody("leg-1", "conv-live"))
	if first.Status != 200 {
		t.Fatalf("create: %d %s", first.Status, first.Body)
	}
	if _, err := h.Svc.Match(ctx, "acme", "leg-1"); err != nil {
		t.Fatal(err)
	}
	r := h.do("POST", transfersPath, legBody("leg-2", "conv-live"))
	code, msg := r.errorOf(t)
	if r.Status != 409 || code != "409-01" || msg != `conversation "conv-live" already has a call in progress (transfer "leg-1")` {
		t.Fatalf("second leg while the first is live: %d %s", r.Status, r.Body)
	}
	if g := h.do("GET", transfersPath+"/leg-2", ""); g.Status != 404 {
		t.Fatalf("the refused leg was stored: %d %s", g.Status, g.Body)
	}
	// A retry of the live leg's create is still a retry.
	if again := h.do("POST", transfersPath, legBody("leg-1", "conv-live")); again.Status != 200 || again.field("status") != "ONGOING" {
		t.Fatalf("retry of the live leg: %d %s", again.Status, again.Body)
	}
	if _, err := h.Svc.Complete(ctx, "acme", "leg-1", &switchback.OutputContext{TransferType: switchback.TransferSystem}); err != nil {
		t.Fatal(err)
	}
	if r := h.do("POST", transfersPath, legBody("leg-2", "conv-live")); r.Status != 200 {
		t.Fatalf("second leg after the first ended: %d %s", r.Status, r.Body)
	}
}

func TestReturnResultShownOnceSet(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	ctx := context.Background()
	if r := h.do("POST", transfersPath, legBody("t-1", "c")); r.Status != 200 {
		t.Fatal(r.Status)
	}
	if _, err := h.Svc.Match(ctx, "acme", "t-1"); err != nil {
		t.Fatal(err)
	}
	if _, err := h.Svc.Complete(ctx, "acme", "t-1", &switchback.OutputContext{TransferType: switchback.TransferAgent}); err != nil {
		t.Fatal(err)
	}
	if r := h.do("GET", transfersPath+"/t-1", ""); r.Status != 200 || r.JSON["returnResult"] != nil {
		t.Fatalf("returnResult before one is known: %s", r.Body)
	}
	h.clock.Add(1500 * time.Millisecond)
	err := h.Svc.SetReturnResult(ctx, "acme", "t-1", &switchback.ReturnResult{Method: switchback.ReturnREFER, SIPStatus: 603,
		Fallback: true, Reason: "the REFER was declined"})
	if err != nil {
		t.Fatal(err)
	}
	r := h.do("GET", transfersPath+"/t-1", "")
	want := map[string]any{"method": "REFER", "sipStatus": 603.0, "fallback": true, "reason": "the REFER was declined",
		"at": "2026-03-01T12:00:01.500Z"}
	if got := r.JSON["returnResult"]; !reflect.DeepEqual(got, any(want)) {
		t.Fatalf("returnResult = %v, want %v", got, want)
	}

	// Zero statuses and reason are left out; fallback is always written.
	if err := h.Svc.SetReturnResult(ctx, "acme", "t-1", &switchback.ReturnResult{Method: switchback.ReturnBYE}); err != nil {
		t.Fatal(err)
	}
	r = h.do("GET", transfersPath+"/t-1", "")
	want = map[string]any{"method": "BYE", "fallback": false, "at": "2026-03-01T12:00:01.500Z"}
	if got := r.JSON["returnResult"]; !reflect.DeepEqual(got, any(want)) {
		t.Fatalf("returnResult = %v, want %v", got, want)
	}
	list := h.do("GET", transfersPath, "")
	if items, _ := list.JSON["callTransfers"].([]any); len(items) != 1 || items[0].(map[string]any)["returnResult"] == nil {
		t.Fatalf("listing without the returnResult: %s", list.Body)
	}
}
