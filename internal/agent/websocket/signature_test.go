package websocket

import (
	"net/url"
	"testing"
)

// The vectors are twilio-python's RequestValidator tests
// (tests/unit/test_request_validator.py): auth token "12345".
func TestSignatureTwilioVectors(t *testing.T) {
	const token = "12345"
	const uri = "https://mycompany.com/myapp.php?foo=1&bar=2"
	tests := []struct {
		name   string
		url    string
		params url.Values
		want   string
	}{
		{
			name: "POST parameters",
			url:  uri,
			params: url.Values{
				"CallSid": {"CA1234567890ABCDE"}, "Digits": {"1234"}, "From": {"+14158675309"},
				"To": {"+18005551212"}, "Caller": {"+14158675309"},
			},
			want: "RSOYDt4T1cUTdK1PDd93/VVr8B8=",
		},
		{
			// A JSON body is signed by its hash in the URL and no parameters:
			// the URL alone, as a WebSocket handshake is.
			name: "no parameters",
			url:  uri + "&bodySHA256=0a1ff7634d9ab3b95db5c9a2dfe9416e41502b283a80c7cf19632632f96e6620",
			want: "a9nBmqA0ju/hNViExpshrM61xv4=",
		},
		{
			name:   "a repeated parameter, its values sorted",
			url:    uri,
			params: url.Values{"Sid": {"CA123"}, "SidAccount": {"AC123"}, "Digits": {"5678", "1234"}},
			want:   "IK+Dwps556ElfBT0I3Rgjkr1wJU=",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Signature(token, tt.url, tt.params); got != tt.want {
				t.Errorf("Signature = %s, want %s", got, tt.want)
			}
			if !ValidSignature(token, tt.url, tt.params, tt.want) {
				t.Error("ValidSignature refuses the vector")
			}
			if ValidSignature("54321", tt.url, tt.params, tt.want) {
				t.Error("ValidSignature accepts another token")
			}
		})
	}
}

// TestHandshakeSigned: the handshake carries the URL's signature, the
// configured headers and no secret in clear but theirs.
func TestHandshakeSigned(t *testing.T) {
	ag := newRemoteAgent(t)
	cfg := Config{URL: "ws://agent.example/media?tenant=acme", AuthToken: "s3cret",
		Headers: map[string]Secret{"Authorization": "Bearer abc"}}
	f := newTestFactory(t, ag.Server, cfg, nil, nil)
	a, err := f.NewAgent(t.Context(), testInfo("BYE"))
	if err != nil {
		t.Fatal(err)
	}
	r := <-ag.requests
	if got, want := r.Header.Get(SignatureHeader), Signature("s3cret", "ws://agent.example/media?tenant=acme", nil); got != want {
		t.Errorf("%s = %q, want %q", SignatureHeader, got, want)
	}
	if !ValidSignature("s3cret", "ws://agent.example/media?tenant=acme", nil, r.Header.Get(SignatureHeader)) {
		t.Error("the signature does not validate")
	}
	if got := r.Header.Get("Authorization"); got != "Bearer abc" {
		t.Errorf("Authorization = %q", got)
	}
	if r.URL.RequestURI() != "/media?tenant=acme" {
		t.Errorf("request URI = %q", r.URL.RequestURI())
	}
	ag.handshake(t)
	closeAgent(t, a)
	ag.nextEvent(t, "stop")
}
