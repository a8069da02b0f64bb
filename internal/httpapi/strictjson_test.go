package httpapi_test

import (
	"strings"
	"testing"
)

// TestCreateBodyIsReadStrictly sends bodies that encoding/json on its own
// reads differently from a strict reader (a validator or WAF in front of
// Switchback): folded or differently cased names, duplicate names, broken
// strings, null. Each is refused with 400-02 naming the member, and no
// transfer is created.
func TestCreateBodyIsReadStrictly(t *testing.T) {
	const base = `"externalConversationId":"c","type":"SIP"`
	cases := []struct {
		name, body, msgHas string
	}{
		{"long s folds to s", `{"id":"a",` + base + `,"ſip":{"returnTransferType":"BYE"}}`, "ſip: is not a field of a call transfer request; field names are case-sensitive: did you mean sip?"},
		{"long s in a nested name", `{"id":"a",` + base + `,"sip":{"returnURI":"sip:a@b","returnTransferType":"INVITE","returnInviteAuthentication":{"uſername":"u"}}}`, "sip.returnInviteAuthentication.uſername: is not a field of sip.returnInviteAuthentication"},
		{"upper-case id", `{"ID":"a",` + base + `}`, "ID: is not a field of a call transfer request; field names are case-sensitive: did you mean id?"},
		{"upper-case type", `{"id":"a","externalConversationId":"c","TYPE":"SIP"}`, "TYPE: is not a field"},
		{"Kelvin sign in taskName", `{"id":"a",` + base + `,"inputContext":{"tas` + "\u212a" + `Name":"x"}}`, "inputContext.tas\u212aName: is not a field of inputContext; field names are case-sensitive: did you mean taskName?"},
		{"unknown field", `{"id":"a",` + base + `,"colour":"red"}`, "colour: is not a field of a call transfer request; its fields are externalConversationId, id, inputContext, phoneNumber, sip, type"},
		{"duplicate id", `{"id":"A","id":"B",` + base + `}`, "id: is given twice"},
		{"duplicate sip objects", `{"id":"a",` + base + `,"sip":{"returnTransferType":"BYE"},"sip":{"returnURI":"sip:a@b"}}`, "sip: is given twice"},
		{"duplicate nested name", `{"id":"a",` + base + `,"sip":{"returnURI":"sip:a@b","returnURI":"sip:c@d"}}`, "sip.returnURI: is given twice"},
		{"duplicate variable", `{"id":"a",` + base + `,"inputContext":{"inputVariables":{"k":"1","k":"2"}}}`, "inputContext.inputVariables.k: is given twice"},
		{"lone high surrogate", `{"id":"a","externalConversationId":"\ud800","type":"SIP"}`, "externalConversationId: contains a lone UTF-16 surrogate escape"},
		{"lone low surrogate", `{"id":"a","externalConversationId":"x\udc00y","type":"SIP"}`, "externalConversationId: contains a lone UTF-16 surrogate escape"},
		{"high surrogate then a letter", `{"id":"a",` + base + `,"inputContext":{"taskName":"\ud83dx"}}`, "inputContext.taskName: contains a lone UTF-16 surrogate escape"},
		{"two high surrogates", `{"id":"a",` + base + `,"inputContext":{"inputVariables":{"k":"\ud83d\ud83d"}}}`, "inputContext.inputVariables.k: contains a lone UTF-16 surrogate escape"},
		{"surrogate in a name", `{"id":"a",` + base + `,"inputContext":{"inputVariables":{"\udfff":"v"}}}`, "inputContext.inputVariables: has a member name that contains a lone UTF-16 surrogate escape"},
		{"invalid UTF-8 in a value", "{\"id\":\"a\",\"externalConversationId\":\"\xff\",\"type\":\"SIP\"}", "externalConversationId: is not valid UTF-8"},
		{"overlong NUL in a value", "{\"id\":\"a\"," + base + ",\"inputContext\":{\"taskName\":\"\xc0\x80\"}}", "inputContext.taskName: is not valid UTF-8"},
		{"invalid UTF-8 in a name", "{\"id\":\"a\"," + base + ",\"\xffsip\":{}}", "request body: has a member name that is not valid UTF-8"},
		{"escaped NUL", `{"id":"a",` + base + `,"inputContext":{"inputVariables":{"k":"v\u0000"}}}`, "inputContext.inputVariables.k: contains a NUL character"},
		{"null object", `{"id":"a",` + base + `,"sip":null}`, "sip: must be an object, not null"},
		{"null string", `{"id":"a",` + base + `,"sip":{"returnURI":"sip:a@b","returnUri":null}}`, "sip.returnUri: must be a string, not null"},
		{"null variable", `{"id":"a",` + base + `,"inputContext":{"inputVariables":{"k":null}}}`, "inputContext.inputVariables.k: must be a string, not null"},
		{"null id", `{"id":null,"externalConversationId":"c","type":"SIP"}`, "id: must be a string, not null"},
		{"array for a string", `{"id":["a"],"externalConversationId":"c","type":"SIP"}`, "id: must be a string"},
	}
	h := newHarness(t, harnessOptions{})
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := h.do("POST", transfersPath, tc.body)
			if r.Status != 400 {
				t.Fatalf("status %d, want 400: %s", r.Status, r.Body)
			}
			if code, msg := r.errorOf(t); code != "400-02" || !strings.Contains(msg, tc.msgHas) {
				t.Fatalf("error %s %q, want 400-02 containing %q", code, msg, tc.msgHas)
			}
		})
	}
	if r := h.do("GET", transfersPath, ""); len(r.JSON["callTransfers"].([]any)) != 0 {
		t.Fatalf("a refused body created a transfer: %s", r.Body)
	}

	// What is well formed still passes: a surrogate pair, escaped
	// characters, the two spellings of the return URI (equal), and an
	// escaped backslash before a u.
	ok := []string{
		`{"id":"p1","externalConversationId":"\ud83d\ude00 \u00e9\/","type":"SIP"}`,
		`{"id":"p2",` + base + `,"sip":{"returnURI":"sip:a@b","returnUri":"sip:a@b","returnTransferType":"REFER"}}`,
		`{"id":"p3",` + base + `,"inputContext":{"taskName":"a\\ud800","inputVariables":{"k":"\\u0000"}}}`,
	}
	for _, body := range ok {
		if r := h.do("POST", transfersPath, body); r.Status != 200 {
			t.Errorf("create %s: %d %s", body, r.Status, r.Body)
		}
	}
}
