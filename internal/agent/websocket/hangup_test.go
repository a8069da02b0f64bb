package websocket

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"reflect"
	"strings"
	"testing"

	"github.com/switchback/switchback"
)

// TestHangUp: Twilio's call update with Status=completed, as pipecat's
// auto_hang_up sends it, hands the call back with the agent's hangUpOutput.
func TestHangUp(t *testing.T) {
	reg := NewRegistry()
	ag := newRemoteAgent(t)
	cfg := Config{AuthToken: "tok-1", HangUpOutput: &Output{TransferType: "AGENT", TransferVariables: map[string]string{"ended": "bot"}}}
	f := newTestFactory(t, ag.Server, cfg, nil, reg)
	// Another agent of the same tenant, with its own token.
	newTestFactory(t, nil, Config{AuthToken: "tok-2"}, nil, reg)
	call := newFakeCall(testInfo(switchback.ReturnBYE))
	a, err := f.NewAgent(t.Context(), call.info)
	if err != nil {
		t.Fatal(err)
	}
	ag.handshake(t)
	done := startRun(t.Context(), a, call)

	api := httptest.NewServer(http.StripPrefix("", HangUpHandler(reg, nil)))
	defer api.Close()
	account, callSid := AccountSID("acme"), CallSID("acme", "tr-1")
	path := "/2010-04-01/Accounts/" + account + "/Calls/" + callSid + ".json"
	otherCall := "/2010-04-01/Accounts/" + account + "/Calls/" + CallSID("acme", "tr-2") + ".json"
	form := url.Values{"Status": {"completed"}}

	tests := []struct {
		name       string
		method     string
		path       string
		user, pass string
		form       url.Values
		wantStatus int
		wantCode   int
	}{
		{"no credentials", "POST", path, "", "", form, 401, 20003},
		{"wrong token", "POST", path, account, "nope", form, 401, 20003},
		{"another account's sid as user", "POST", path, AccountSID("other"), "tok-1", form, 401, 20003},
		{"the account's other agent's token", "POST", path, account, "tok-2", form, 404, 20404},
		{"unknown call", "POST", otherCall, account, "tok-1", form, 404, 20404},
		{"unknown call, wrong token", "POST", otherCall, account, "nope", form, 401, 20003},
		{"not a call path", "POST", "/2010-04-01/Accounts/" + account + "/Recordings/x.json", account, "tok-1", form, 404, 20404},
		{"GET", "GET", path, account, "tok-1", nil, 405, 20004},
		{"another status", "POST", path, account, "tok-1", url.Values{"Status": {"busy"}}, 400, 20001},
		{"a new URL", "POST", path, account, "tok-1", url.Values{"Url": {"https://example.com/twiml"}}, 400, 20001},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, body := hangUpRequest(t, api.URL, tt.method, tt.path, tt.user, tt.pass, tt.form)
			if status != tt.wantStatus || body["code"] != float64(tt.wantCode) || body["status"] != float64(tt.wantStatus) {
				t.Errorf("%s %s = %d %v, want %d code %d", tt.method, tt.path, status, body, tt.wantStatus, tt.wantCode)
			}
			if !strings.HasPrefix(body["more_info"].(string), "https://www.twilio.com/docs/errors/") {
				t.Errorf("more_info = %v", body["more_info"])
			}
		})
	}
	select {
	case r := <-done:
		t.Fatalf("Run returned on a refused request: %+v", r)
	default:
	}

	status, body := hangUpRequest(t, api.URL, "POST", path, account, "tok-1", form)
	if status != 200 || body["status"] != "completed" || body["sid"] != callSid || body["account_sid"] != account ||
		body["uri"] != path || body["end_time"] == nil || body["from"] != "sip:+15551230000@carrier.example" {
		t.Errorf("hang-up = %d %v", status, body)
	}
	r := waitRun(t, done)
	want := &switchback.HandBack{Output: &switchback.OutputContext{TransferType: switchback.TransferAgent, CurrentTaskName: "billing",
		TransferVariables: map[string]string{"ended": "bot"}}, FinishAudio: true}
	if r.err != nil || !reflect.DeepEqual(r.hb, want) {
		t.Errorf("Run = %+v, %v; want %+v", r.hb, r.err, want)
	}
	ag.nextEvent(t, "stop")
	ag.closed(t)

	// pipecat hangs up again when its pipeline ends: the call is gone, and
	// Twilio's 20404 tells it so.
	if status, body := hangUpRequest(t, api.URL, "POST", path, account, "tok-1", form); status != 404 || body["code"] != float64(20404) {
		t.Errorf("second hang-up = %d %v", status, body)
	}
	closeAgent(t, a)
	if n := reg.len(); n != 0 {
		t.Errorf("%d calls left in the registry", n)
	}
}

// TestHangUpWithoutToken: an agent without authToken cannot be hung up.
func TestHangUpWithoutToken(t *testing.T) {
	reg := NewRegistry()
	ag := newRemoteAgent(t)
	f := newTestFactory(t, ag.Server, Config{}, nil, reg)
	call := newFakeCall(testInfo(switchback.ReturnBYE))
	a, err := f.NewAgent(t.Context(), call.info)
	if err != nil {
		t.Fatal(err)
	}
	ag.handshake(t)
	api := httptest.NewServer(HangUpHandler(reg, nil))
	defer api.Close()
	path := "/2010-04-01/Accounts/" + AccountSID("acme") + "/Calls/" + CallSID("acme", "tr-1") + ".json"
	if status, _ := hangUpRequest(t, api.URL, "POST", path, AccountSID("acme"), "", url.Values{"Status": {"completed"}}); status != 401 {
		t.Errorf("status = %d, want 401", status)
	}
	closeAgent(t, a)
}

func hangUpRequest(t *testing.T, base, method, path, user, pass string, form url.Values) (int, map[string]any) {
	t.Helper()
	req, err := http.NewRequest(method, base+path, strings.NewReader(form.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if user != "" || pass != "" {
		req.SetBasicAuth(user, pass)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type = %q", ct)
	}
	if resp.StatusCode == 401 && resp.Header.Get("WWW-Authenticate") == "" {
		t.Error("401 without WWW-Authenticate")
	}
	var body map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, body
}

func TestParseCallPath(t *testing.T) {
	acc, call := AccountSID("a"), CallSID("a", "b")
	for _, tt := range []struct {
		path string
		ok   bool
	}{
		{"/2010-04-01/Accounts/" + acc + "/Calls/" + call + ".json", true},
		{"/2010-04-01/Accounts/" + acc + "/Calls/" + call, true},
		{"/api/2010-04-01/Accounts/" + acc + "/Calls/" + call + ".json", true}, // mounted under a prefix
		{"/2010-04-01/Accounts/" + acc + "/Calls/" + call + ".json/x", false},
		{"/2010-04-01/Accounts/" + acc + "/Calls/CA123.json", false},
		{"/2010-04-01/Accounts/XX" + acc[2:] + "/Calls/" + call + ".json", false},
		{"/2010-04-01/Accounts/" + acc + "/Queues/" + call + ".json", false},
	} {
		if _, _, ok := parseCallPath(tt.path); ok != tt.ok {
			t.Errorf("parseCallPath(%q) ok = %v", tt.path, ok)
		}
	}
}
