package httpapi_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/switchback/switchback"
)

const transfersPath = "/generativeagent/v1/call-transfers"

func sipBody(id string) string {
	return fmt.Sprintf(`{"id":%q,"externalConversationId":"conv-1","type":"SIP",
		"sip":{"returnURI":"sip:user@customer-sbc.example.com;User-to-User=UUI-12345","returnTransferType":"REFER"},
		"inputContext":{"taskName":"call_routing","inputVariables":{"accountNumber":"3434","name":"John Doe"}}}`, id)
}

func phoneBody(id, country string) string {
	return fmt.Sprintf(`{"id":%q,"externalConversationId":"conv-%s","type":"PHONE_NUMBER","phoneNumber":{"country":%q}}`, id, id, country)
}

func TestCreateSIPTransferMatchesSpecExample(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	r := h.do("POST", transfersPath, sipBody("t-1"))
	if r.Status != 200 {
		t.Fatalf("status %d: %s", r.Status, r.Body)
	}
	want := map[string]any{
		"id": "t-1", "externalConversationId": "conv-1", "status": "ACTIVE", "type": "SIP",
		"createdAt": "2026-03-01T12:00:00.000Z", "expiresAt": "2026-03-01T12:01:00.000Z", "expireAt": "2026-03-01T12:01:00.000Z",
		"inputContext.taskName": "call_routing", "inputContext.inputVariables.name": "John Doe",
		"sip.returnURI":          "sip:user@customer-sbc.example.com;User-to-User=UUI-12345",
		"sip.returnUri":          "sip:user@customer-sbc.example.com;User-to-User=UUI-12345",
		"sip.returnTransferType": "REFER",
	}
	for path, v := range want {
		if got := r.field(path); got != v {
			t.Errorf("%s = %v, want %v", path, got, v)
		}
	}
	for _, absent := range []string{"phoneNumber", "outputContext", "callReceivedAt", "completedAt"} {
		if r.field(absent) != nil {
			t.Errorf("%s present on a new SIP transfer", absent)
		}
	}
	g := h.do("GET", transfersPath+"/t-1", "")
	if g.Status != 200 || string(g.Body) != string(r.Body) {
		t.Fatalf("GET = %d %s, want the created resource %s", g.Status, g.Body, r.Body)
	}
}

func TestCreatePhoneNumberTransferLeasesANumber(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	r := h.do("POST", transfersPath, phoneBody("p-1", "us"))
	if r.Status != 200 {
		t.Fatalf("status %d: %s", r.Status, r.Body)
	}
	if r.field("phoneNumber.transferNumber") != "+12025550100" || r.field("phoneNumber.country") != "US" ||
		r.field("phoneNumber.expiresAt") != "2026-03-01T12:01:00.000Z" || r.field("phoneNumber.expireAt") != "2026-03-01T12:01:00.000Z" {
		t.Fatalf("phoneNumber = %v", r.JSON["phoneNumber"])
	}
	if r.field("sip") != nil {
		t.Fatal("sip object on a PHONE_NUMBER transfer")
	}
}

func TestSIPDefaultsAndPasswordNeverReturned(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	r := h.do("POST", transfersPath, `{"id":"b","externalConversationId":"c","type":"SIP"}`)
	if r.Status != 200 || r.field("sip.returnTransferType") != "BYE" {
		t.Fatalf("bare SIP transfer: %d %s", r.Status, r.Body)
	}
	body := `{"id":"i","externalConversationId":"c","type":"SIP","sip":{"returnUri":"sip:x@h","returnTransferType":"INVITE",
		"returnInviteAuthentication":{"username":"sbc-user","password":"hunter2-secret"}}}`
	for _, r := range []*response{h.do("POST", transfersPath, body), h.do("POST", transfersPath, body), h.do("GET", transfersPath+"/i", "")} {
		if r.Status != 200 {
			t.Fatalf("status %d: %s", r.Status, r.Body)
		}
		if strings.Contains(string(r.Body), "hunter2") || strings.Contains(string(r.Body), "password") {
			t.Fatalf("password echoed: %s", r.Body)
		}
		if r.field("sip.returnInviteAuthentication.username") != "sbc-user" || r.field("sip.returnURI") != "sip:x@h" {
			t.Fatalf("sip = %v", r.JSON["sip"])
		}
	}
}

func TestIdempotentRetryAndConflict(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	first := h.do("POST", transfersPath, phoneBody("p-1", "US"))
	h.clock.Add(time.Second)
	// The same request, spelled differently (returnUri, key order, country
	// case) is still the same request.
	again := h.do("POST", transfersPath, phoneBody("p-1", "us"))
	if again.Status != 200 || string(again.Body) != string(first.Body) {
		t.Fatalf("retry = %d %s, want %s", again.Status, again.Body, first.Body)
	}
	sums, _ := h.Store.PoolSummaries(context.Background(), h.clock.Now())
	if sums[0].Leased != 1 {
		t.Fatalf("a retry leased a second number: %+v", sums)
	}
	s1 := h.do("POST", transfersPath, `{"id":"s","externalConversationId":"c","type":"SIP","sip":{"returnURI":"sip:a@b","returnTransferType":"REFER"}}`)
	s2 := h.do("POST", transfersPath, `{"type":"SIP","sip":{"returnTransferType":"REFER","returnUri":"sip:a@b"},"externalConversationId":"c","id":"s"}`)
	if s1.Status != 200 || s2.Status != 200 || string(s1.Body) != string(s2.Body) {
		t.Fatalf("respelled retry: %d %s / %d %s", s1.Status, s1.Body, s2.Status, s2.Body)
	}
	c := h.do("POST", transfersPath, phoneBody("p-1", "GB"))
	if c.Status != 409 {
		t.Fatalf("conflict status %d: %s", c.Status, c.Body)
	}
	code, msg := c.errorOf(t)
	if code != "409-01" || !strings.Contains(msg, "id") {
		t.Fatalf("conflict = %s %q", code, msg)
	}
}

// TestErrors pins the status, code and message of every failure of the API.
func TestErrors(t *testing.T) {
	long := "sip:" + strings.Repeat("a", 1021) + "@h"
	cases := []struct {
		name         string
		method, path string
		body         string
		headers      []string
		status       int
		code         string
		msgHas       string
	}{
		{"malformed JSON", "POST", transfersPath, `{"id":`, nil, 400, "400-01", "JSON"},
		{"not JSON", "POST", transfersPath, `hello`, nil, 400, "400-01", "not valid JSON"},
		{"empty body", "POST", transfersPath, ` `, nil, 400, "400-01", "empty"},
		{"array body", "POST", transfersPath, `[1]`, nil, 400, "400-01", "object"},
		{"trailing data", "POST", transfersPath, sipBody("x") + `{}`, nil, 400, "400-01", "after"},
		{"unknown field", "POST", transfersPath, `{"id":"x","colour":"red"}`, nil, 400, "400-02", "colour"},
		{"unknown nested field", "POST", transfersPath, `{"id":"x","sip":{"returnUrl":"sip:a@b"}}`, nil, 400, "400-02", "returnUrl"},
		{"id missing", "POST", transfersPath, `{"externalConversationId":"c","type":"SIP"}`, nil, 400, "400-02", "id: is required"},
		{"id wrong type", "POST", transfersPath, `{"id":5,"externalConversationId":"c","type":"SIP"}`, nil, 400, "400-02", "id: must be a string"},
		{"id unsafe", "POST", transfersPath, `{"id":"a/b","externalConversationId":"c","type":"SIP"}`, nil, 400, "400-02", "id: must be"},
		{"id with space", "POST", transfersPath, `{"id":"a b","externalConversationId":"c","type":"SIP"}`, nil, 400, "400-02", "id: must be"},
		{"id too long", "POST", transfersPath, `{"id":"` + strings.Repeat("x", 129) + `","externalConversationId":"c","type":"SIP"}`, nil, 400, "400-02", "id: must be"},
		{"conversation missing", "POST", transfersPath, `{"id":"x","type":"SIP"}`, nil, 400, "400-02", "externalConversationId: is required"},
		{"conversation control char", "POST", transfersPath, `{"id":"x","externalConversationId":"a\u0001","type":"SIP"}`, nil, 400, "400-02", "externalConversationId: contains"},
		{"type missing", "POST", transfersPath, `{"id":"x","externalConversationId":"c"}`, nil, 400, "400-02", "type: is required"},
		{"type unknown", "POST", transfersPath, `{"id":"x","externalConversationId":"c","type":"FAX"}`, nil, 400, "400-02", `type: "FAX"`},
		{"type lower case", "POST", transfersPath, `{"id":"x","externalConversationId":"c","type":"sip"}`, nil, 400, "400-02", "type:"},
		{"country missing", "POST", transfersPath, `{"id":"x","externalConversationId":"c","type":"PHONE_NUMBER"}`, nil, 400, "400-02", "phoneNumber.country: is required"},
		{"country not ISO", "POST", transfersPath, phoneBody("x", "XX"), nil, 400, "400-02", `phoneNumber.country: "XX"`},
		{"country alpha-3", "POST", transfersPath, phoneBody("x", "USA"), nil, 400, "400-02", "phoneNumber.country"},
		{"country wrong type", "POST", transfersPath, `{"id":"x","externalConversationId":"c","type":"PHONE_NUMBER","phoneNumber":{"country":1}}`, nil, 400, "400-02", "phoneNumber.country: must be a string"},
		{"sip on phone transfer", "POST", transfersPath, `{"id":"x","externalConversationId":"c","type":"PHONE_NUMBER","phoneNumber":{"country":"US"},"sip":{}}`, nil, 400, "400-02", "sip: is only for type SIP"},
		{"phone on sip transfer", "POST", transfersPath, `{"id":"x","externalConversationId":"c","type":"SIP","phoneNumber":{"country":"US"}}`, nil, 400, "400-02", "phoneNumber: is only for type PHONE_NUMBER"},
		{"return type unknown", "POST", transfersPath, `{"id":"x","externalConversationId":"c","type":"SIP","sip":{"returnTransferType":"HANGUP"}}`, nil, 400, "400-02", "sip.returnTransferType"},
		{"return URI not sip", "POST", transfersPath, `{"id":"x","externalConversationId":"c","type":"SIP","sip":{"returnURI":"http://a/b"}}`, nil, 400, "400-02", "sip.returnURI: must be a sip: or sips: URI"},
		{"returnUri not sip", "POST", transfersPath, `{"id":"x","externalConversationId":"c","type":"SIP","sip":{"returnUri":"tel:+1555"}}`, nil, 400, "400-02", "sip.returnUri: must be a sip:"},
		{"return URI too long", "POST", transfersPath, `{"id":"x","externalConversationId":"c","type":"SIP","sip":{"returnURI":"` + long + `"}}`, nil, 400, "400-02", "sip.returnURI: longer than 1024"},
		{"return URI with an escaped line break", "POST", transfersPath, `{"id":"x","externalConversationId":"c","type":"SIP","sip":{"returnURI":"sip:a@b?X-A=1%0d%0aVia:%20x"}}`, nil, 400, "400-02", "sip.returnURI: contains an escaped CR, LF or NUL"},
		{"return URI with space", "POST", transfersPath, `{"id":"x","externalConversationId":"c","type":"SIP","sip":{"returnURI":"sip:a b@c"}}`, nil, 400, "400-02", "sip.returnURI"},
		{"return URI spellings differ", "POST", transfersPath, `{"id":"x","externalConversationId":"c","type":"SIP","sip":{"returnURI":"sip:a@b","returnUri":"sip:c@d"}}`, nil, 400, "400-02", "differ"},
		{"return URI missing for REFER", "POST", transfersPath, `{"id":"x","externalConversationId":"c","type":"SIP","sip":{"returnTransferType":"REFER"}}`, nil, 400, "400-02", "sip.returnURI: is required when sip.returnTransferType is REFER"},
		{"return URI missing for INVITE", "POST", transfersPath, `{"id":"x","externalConversationId":"c","type":"SIP","sip":{"returnTransferType":"INVITE"}}`, nil, 400, "400-02", "INVITE"},
		{"auth without username", "POST", transfersPath, `{"id":"x","externalConversationId":"c","type":"SIP","sip":{"returnURI":"sip:a@b","returnInviteAuthentication":{"password":"p"}}}`, nil, 400, "400-02", "sip.returnInviteAuthentication.username"},
		{"variable not a string", "POST", transfersPath, `{"id":"x","externalConversationId":"c","type":"SIP","inputContext":{"inputVariables":{"n":3}}}`, nil, 400, "400-02", "inputContext.inputVariables"},
		{"variable null", "POST", transfersPath, `{"id":"x","externalConversationId":"c","type":"SIP","inputContext":{"inputVariables":{"n":{"a":"b"}}}}`, nil, 400, "400-02", "inputContext.inputVariables"},
		{"task name wrong type", "POST", transfersPath, `{"id":"x","externalConversationId":"c","type":"SIP","inputContext":{"taskName":["a"]}}`, nil, 400, "400-02", "inputContext.taskName"},
		{"no credentials", "GET", transfersPath + "/x", "", []string{"asapp-api-id", "", "asapp-api-secret", ""}, 401, "401-01", "asapp-api-id"},
		{"no secret", "GET", transfersPath + "/x", "", []string{"asapp-api-secret", ""}, 401, "401-01", "required"},
		{"wrong secret", "GET", transfersPath + "/x", "", []string{"asapp-api-secret", "nope"}, 401, "401-01", "invalid API credentials"},
		{"unknown key", "POST", transfersPath, sipBody("x"), []string{"asapp-api-id", "sbk_nope"}, 401, "401-01", "invalid API credentials"},
		{"unknown transfer", "GET", transfersPath + "/nope", "", nil, 404, "404-01", "nope"},
		{"unknown path", "GET", "/generativeagent/v2/things", "", nil, 404, "404-01", "no such endpoint"},
		{"method not allowed", "DELETE", transfersPath + "/x", "", nil, 405, "405-01", "DELETE"},
		{"country without pool", "POST", transfersPath, phoneBody("x", "FR"), nil, 422, "422-01", "FR"},
		{"bad wait status", "GET", transfersPath + "/x?waitForStatus=DONE", "", nil, 400, "400-02", "waitForStatus"},
		{"bad wait timeout", "GET", transfersPath + "/x?waitForStatus=COMPLETED&timeout=soon", "", nil, 400, "400-02", "timeout"},
		{"wait timeout too long", "GET", transfersPath + "/x?waitForStatus=COMPLETED&timeout=2h", "", nil, 400, "400-02", "timeout: must be between"},
		{"timeout without wait", "GET", transfersPath + "/x?timeout=1s", "", nil, 400, "400-02", "timeout"},
		{"bad page size", "GET", transfersPath + "?pageSize=0", "", nil, 400, "400-02", "pageSize"},
		{"bad page token", "GET", transfersPath + "?pageToken=bm90IGEgdG9rZW4", "", nil, 400, "400-02", "pageToken"},
		{"bad query string", "GET", transfersPath + "?pageToken=%zz", "", nil, 400, "400-02", "query string"},
		{"bad query string on get", "GET", transfersPath + "/x?waitForStatus=%zz", "", nil, 400, "400-02", "query string"},
		{"unknown conversation", "GET", conversationsPath + "/nope", "", nil, 404, "404-01", `conversation "nope" not found`},
		{"conversation id too long", "GET", conversationsPath + "/" + strings.Repeat("x", 257), "", nil, 400, "400-02", "externalConversationId: is longer than 256"},
		{"conversation id control char", "GET", conversationsPath + "/a%01b", "", nil, 400, "400-02", "externalConversationId: contains"},
		{"conversation method not allowed", "POST", conversationsPath + "/c", "{}", nil, 405, "405-01", "POST"},
		{"conversation without credentials", "GET", conversationsPath + "/c", "", []string{"asapp-api-id", "", "asapp-api-secret", ""}, 401, "401-01", "asapp-api-id"},
	}
	h := newHarness(t, harnessOptions{})
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := h.do(tc.method, tc.path, tc.body, tc.headers...)
			if r.Status != tc.status {
				t.Fatalf("status %d, want %d: %s", r.Status, tc.status, r.Body)
			}
			code, msg := r.errorOf(t)
			if code != tc.code || !strings.Contains(msg, tc.msgHas) {
				t.Fatalf("error %s %q, want %s containing %q", code, msg, tc.code, tc.msgHas)
			}
		})
	}
}

func TestForbiddenWithoutScope(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	id, secret := h.newKey("acme")
	r := h.do("POST", transfersPath, sipBody("x"), "asapp-api-id", id, "asapp-api-secret", secret)
	if code, _ := r.errorOf(t); r.Status != 403 || code != "403-01" {
		t.Fatalf("no-scope key: %d %s", r.Status, r.Body)
	}
	// A key of a tenant this server does not serve is forbidden too.
	id, secret = h.newKey("unconfigured", switchback.ScopeCallTransfers)
	r = h.do("GET", transfersPath+"/x", "", "asapp-api-id", id, "asapp-api-secret", secret)
	if r.Status != 403 {
		t.Fatalf("unconfigured tenant: %d %s", r.Status, r.Body)
	}
}

func TestRevokedKeyIsUnauthorized(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	if r := h.do("GET", transfersPath, ""); r.Status != 200 {
		t.Fatalf("before revoke: %d", r.Status)
	}
	if err := h.Store.RevokeAPIKey(context.Background(), h.KeyID, time.Now()); err != nil {
		t.Fatal(err)
	}
	h.clock.Add(time.Millisecond) // past the key cache's lifetime
	r := h.do("GET", transfersPath, "")
	if code, _ := r.errorOf(t); r.Status != 401 || code != "401-01" {
		t.Fatalf("revoked key: %d %s", r.Status, r.Body)
	}
}

func TestOtherTenantsTransferIsNotFound(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	if r := h.do("POST", transfersPath, sipBody("mine")); r.Status != 200 {
		t.Fatal(r.Status)
	}
	id, secret := h.newKey("globex", switchback.ScopeCallTransfers)
	for _, path := range []string{transfersPath + "/mine", transfersPath + "/mine?waitForStatus=COMPLETED&timeout=0s"} {
		r := h.do("GET", path, "", "asapp-api-id", id, "asapp-api-secret", secret)
		if code, _ := r.errorOf(t); r.Status != 404 || code != "404-01" {
			t.Fatalf("other tenant GET %s: %d %s", path, r.Status, r.Body)
		}
	}
	r := h.do("GET", transfersPath, "", "asapp-api-id", id, "asapp-api-secret", secret)
	if r.Status != 200 || len(r.JSON["callTransfers"].([]any)) != 0 {
		t.Fatalf("other tenant's listing: %s", r.Body)
	}
	// The same id is free for the other tenant.
	if r := h.do("POST", transfersPath, sipBody("mine"), "asapp-api-id", id, "asapp-api-secret", secret); r.Status != 200 {
		t.Fatalf("other tenant create with the same id: %d %s", r.Status, r.Body)
	}
}

func TestBodyTooLarge(t *testing.T) {
	h := newHarness(t, harnessOptions{MaxBodyBytes: 64 << 10})
	vars := strings.Repeat(`"k":"`+strings.Repeat("v", 200)+`",`, 400)
	body := `{"id":"x","externalConversationId":"c","type":"SIP","inputContext":{"inputVariables":{` + vars + `"z":"z"}}}`
	r := h.do("POST", transfersPath, body)
	if code, msg := r.errorOf(t); r.Status != 413 || code != "413-01" || !strings.Contains(msg, "65536") {
		t.Fatalf("large body: %d %s", r.Status, r.Body)
	}
	// Without a Content-Length the limit holds as well.
	req, _ := http.NewRequest("POST", h.URL+transfersPath, &chunked{s: body})
	req.Header.Set("asapp-api-id", h.KeyID)
	req.Header.Set("asapp-api-secret", h.Secret)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != 413 {
		t.Fatalf("chunked large body: %d", res.StatusCode)
	}
}

// chunked hides its length, so the request is sent chunked.
type chunked struct{ s string }

func (c *chunked) Read(p []byte) (int, error) {
	if c.s == "" {
		return 0, io.EOF
	}
	n := copy(p, c.s)
	c.s = c.s[n:]
	return n, nil
}

func TestPoolExhaustedIs503WithRetryAfter(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	for i := 0; i < 2; i++ {
		if r := h.do("POST", transfersPath, phoneBody(fmt.Sprintf("p-%d", i), "US")); r.Status != 200 {
			t.Fatal(r.Status)
		}
	}
	r := h.do("POST", transfersPath, phoneBody("p-3", "US"))
	if code, _ := r.errorOf(t); r.Status != 503 || code != "503-01" || r.Header.Get("Retry-After") == "" {
		t.Fatalf("exhausted: %d %v %s", r.Status, r.Header, r.Body)
	}
	if g := h.do("GET", transfersPath+"/p-3", ""); g.Status != 404 {
		t.Fatalf("a refused create was stored: %d", g.Status)
	}
}

func TestRateLimitIs429WithRetryAfter(t *testing.T) {
	h := newHarness(t, harnessOptions{RequestsPerSecond: 1, Burst: 2})
	for i := 0; i < 2; i++ {
		if r := h.do("GET", transfersPath, ""); r.Status != 200 {
			t.Fatalf("request %d within burst: %d", i, r.Status)
		}
	}
	r := h.do("GET", transfersPath, "")
	if code, _ := r.errorOf(t); r.Status != 429 || code != "429-01" || r.Header.Get("Retry-After") != "1" {
		t.Fatalf("over limit: %d %v %s", r.Status, r.Header, r.Body)
	}
	h.clock.Add(time.Second)
	if r := h.do("GET", transfersPath, ""); r.Status != 200 {
		t.Fatalf("after refill: %d", r.Status)
	}
}

func TestStoreUnavailableIs503(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	h.Store.Close()
	for _, r := range []*response{h.do("POST", transfersPath, sipBody("x")), h.do("GET", transfersPath+"/x", "")} {
		code, msg := r.errorOf(t)
		if r.Status != 503 || code != "503-02" || r.Header.Get("Retry-After") == "" || strings.Contains(msg, "sql") {
			t.Fatalf("store down: %d %s", r.Status, r.Body)
		}
	}
	if r := h.do("GET", "/readyz", ""); r.Status != 503 {
		t.Fatalf("readyz with the store down: %d", r.Status)
	}
	if r := h.do("GET", "/healthz", ""); r.Status != 200 {
		t.Fatalf("healthz: %d", r.Status)
	}
}

func TestGetNeverShowsActivePastExpiry(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	h.do("POST", transfersPath, sipBody("t-1"))
	h.clock.Add(time.Minute) // exactly at expiry, no timer has run on this clock
	r := h.do("GET", transfersPath+"/t-1", "")
	if r.field("status") != "EXPIRED" {
		t.Fatalf("status at expiry = %v", r.field("status"))
	}
	l := h.do("GET", transfersPath, "")
	if l.JSON["callTransfers"].([]any)[0].(map[string]any)["status"] != "EXPIRED" {
		t.Fatalf("listing shows %s", l.Body)
	}
}

func TestLifecycleThroughTheAPI(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	ctx := context.Background()
	h.do("POST", transfersPath, phoneBody("p-1", "US"))
	h.clock.Add(5 * time.Second)
	if _, err := h.Svc.MatchNumber(ctx, "+12025550100"); err != nil {
		t.Fatal(err)
	}
	r := h.do("GET", transfersPath+"/p-1", "")
	if r.field("status") != "ONGOING" || r.field("callReceivedAt") != "2026-03-01T12:00:05.000Z" {
		t.Fatalf("after match: %s", r.Body)
	}
	h.clock.Add(10 * time.Second)
	out := &switchback.OutputContext{TransferType: switchback.TransferSystem, CurrentTaskName: "AccountInquiry",
		ReferenceVariables: map[string]string{"account_balance": "1250.00"}, TransferVariables: map[string]string{"priority": "high"}}
	if _, err := h.Svc.Complete(ctx, "acme", "p-1", out); err != nil {
		t.Fatal(err)
	}
	r = h.do("GET", transfersPath+"/p-1", "")
	want := map[string]any{"status": "COMPLETED", "completedAt": "2026-03-01T12:00:15.000Z",
		"outputContext.transferType": "SYSTEM", "outputContext.currentTaskName": "AccountInquiry",
		"outputContext.referenceVariables.account_balance": "1250.00", "outputContext.transferVariables.priority": "high",
		"phoneNumber.transferNumber": "+12025550100"}
	for path, v := range want {
		if got := r.field(path); got != v {
			t.Errorf("%s = %v, want %v", path, got, v)
		}
	}
}

func TestListPagesNewestFirst(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	for i := 0; i < 5; i++ {
		conv := "a"
		if i%2 == 1 {
			conv = "b"
		}
		h.do("POST", transfersPath, fmt.Sprintf(`{"id":"t-%d","externalConversationId":%q,"type":"SIP"}`, i, conv))
		h.clock.Add(time.Millisecond)
	}
	var ids []string
	path := transfersPath + "?pageSize=2"
	for i := 0; i < 5; i++ {
		r := h.do("GET", path, "")
		if r.Status != 200 {
			t.Fatalf("list: %d %s", r.Status, r.Body)
		}
		for _, tr := range r.JSON["callTransfers"].([]any) {
			ids = append(ids, tr.(map[string]any)["id"].(string))
		}
		next, _ := r.JSON["nextPageToken"].(string)
		if next == "" {
			break
		}
		path = transfersPath + "?pageSize=2&pageToken=" + next
	}
	if fmt.Sprint(ids) != "[t-4 t-3 t-2 t-1 t-0]" {
		t.Fatalf("pages = %v", ids)
	}
	r := h.do("GET", transfersPath+"?externalConversationId=b", "")
	var got []string
	for _, tr := range r.JSON["callTransfers"].([]any) {
		got = append(got, tr.(map[string]any)["id"].(string))
	}
	if fmt.Sprint(got) != "[t-3 t-1]" {
		t.Fatalf("by conversation = %v", got)
	}
}

func TestWaitReturnsOnStatusOrTimeout(t *testing.T) {
	h := newHarness(t, harnessOptions{RealClock: true})
	h.do("POST", transfersPath, sipBody("t-1"))
	ctx := context.Background()
	start := time.Now()
	r := h.do("GET", transfersPath+"/t-1?waitForStatus=COMPLETED&timeout=200ms", "")
	if r.Status != 200 || r.Header.Get("Switchback-Wait-Result") != "timeout" || r.field("status") != "ACTIVE" {
		t.Fatalf("timed-out wait: %d %v %s", r.Status, r.Header, r.Body)
	}
	if el := time.Since(start); el < 200*time.Millisecond {
		t.Fatalf("wait returned after %v, before its timeout", el)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		time.Sleep(100 * time.Millisecond)
		h.Svc.Match(ctx, "acme", "t-1")
		h.Svc.Complete(ctx, "acme", "t-1", &switchback.OutputContext{TransferType: switchback.TransferAgent})
	}()
	start = time.Now()
	r = h.do("GET", transfersPath+"/t-1?waitForStatus=COMPLETED,EXPIRED&timeout=10s", "")
	wg.Wait()
	if r.Header.Get("Switchback-Wait-Result") != "reached" || r.field("status") != "COMPLETED" || r.field("outputContext.transferType") != "AGENT" {
		t.Fatalf("reached wait: %v %s", r.Header, r.Body)
	}
	if el := time.Since(start); el > 2*time.Second {
		t.Fatalf("wait took %v after the completion", el)
	}
}

// TestExpiryWithin100ms checks that a transfer's stored status becomes
// EXPIRED within 100 ms of its expiry and a waiter hears of it.
func TestExpiryWithin100ms(t *testing.T) {
	h := newHarness(t, harnessOptions{RealClock: true, TTL: 300 * time.Millisecond})
	h.do("POST", transfersPath, phoneBody("p-1", "US"))
	r := h.do("GET", transfersPath+"/p-1?waitForStatus=EXPIRED&timeout=5s", "")
	if r.field("status") != "EXPIRED" {
		t.Fatalf("wait for expiry: %s", r.Body)
	}
	expiry, _ := time.Parse(time.RFC3339, r.field("expiresAt").(string))
	deadline := expiry.Add(100 * time.Millisecond)
	for {
		stored, err := h.Store.Transfer(context.Background(), "acme", "p-1")
		if err != nil {
			t.Fatal(err)
		}
		if stored.Status == switchback.StatusExpired {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("stored status still %s 100ms after expiry", stored.Status)
		}
		time.Sleep(5 * time.Millisecond)
	}
	sums, _ := h.Store.PoolSummaries(context.Background(), time.Now())
	if sums[0].Leased != 0 || sums[0].Quarantined != 1 {
		t.Fatalf("number after expiry: %+v", sums)
	}
}

func TestMetricsCountRequestsTransfersAndPool(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	h.do("POST", transfersPath, phoneBody("p-1", "US"))
	h.do("GET", transfersPath+"/nope", "")
	r := h.do("GET", "/metrics", "")
	body := string(r.Body)
	for _, want := range []string{
		`switchback_http_requests_total{route="POST /generativeagent/v1/call-transfers",status="200"} 1`,
		`switchback_http_requests_total{route="GET /generativeagent/v1/call-transfers/{id}",status="404"} 1`,
		`switchback_http_request_duration_seconds_count{route="POST /generativeagent/v1/call-transfers"} 1`,
		`switchback_transfers{status="ACTIVE"} 1`,
		`switchback_pool_numbers{country="US",state="leased"} 1`,
		`switchback_pool_numbers{country="US",state="free"} 1`,
		`switchback_pool_numbers{country="US",state="size"} 2`,
		`switchback_store_up 1`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}

// The request hash stays in the store after the return password is erased,
// so the password is not in it: a retry that changes only the password is
// the same request, one that changes the username is not.
func TestRetryWithAnotherPasswordIsTheSameRequest(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	body := func(user, pass string) string {
		return `{"id":"pw","externalConversationId":"c","type":"SIP","sip":{"returnURI":"sip:a@b","returnTransferType":"INVITE",
			"returnInviteAuthentication":{"username":"` + user + `","password":"` + pass + `"}}}`
	}
	first := h.do("POST", transfersPath, body("u", "hunter2"))
	again := h.do("POST", transfersPath, body("u", "correct horse"))
	if first.Status != 200 || again.Status != 200 || string(first.Body) != string(again.Body) {
		t.Fatalf("retry with another password: %d %s / %d %s", first.Status, first.Body, again.Status, again.Body)
	}
	if other := h.do("POST", transfersPath, body("v", "hunter2")); other.Status != 409 {
		t.Fatalf("retry with another username: %d %s", other.Status, other.Body)
	}
}
