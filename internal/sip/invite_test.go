package sip

import (
	"testing"
)

func TestReturnURIBecomesRequestURIAndHeaders(t *testing.T) {
	for _, tc := range []struct {
		uri, requestURI string
		headers         []string // "Name: value"
	}{
		{"sip:desk@sbc.example.com", "sip:desk@sbc.example.com", nil},
		{"SIP:Desk@SBC.example.com:5060", "SIP:Desk@SBC.example.com:5060", nil},
		{"sip:desk@10.0.0.1:5070;transport=tcp;User-to-User=UUI-12345", "sip:desk@10.0.0.1:5070;transport=tcp;User-to-User=UUI-12345", nil},
		{"sip:desk@h?User-to-User=abc%3Bencoding%3Dhex&X-Foo=1", "sip:desk@h", []string{"User-to-User: abc;encoding=hex", "X-Foo: 1"}},
		{"sips:%2B1555;phone-context=x@h;lr?X-A=a%20b", "sips:%2B1555;phone-context=x@h;lr", []string{"X-A: a b"}},
		// Headers that belong to the dialog are not taken from a URI.
		{"sip:d@h?Call-ID=evil&From=x&X-Ok=1", "sip:d@h", []string{"X-Ok: 1"}},
	} {
		ruri, hs, err := splitReturnURI(tc.uri)
		if err != nil || ruri != tc.requestURI {
			t.Errorf("%s: Request-URI %q, %v; want %q", tc.uri, ruri, err, tc.requestURI)
			continue
		}
		var got []string
		for _, h := range hs {
			got = append(got, h.Name()+": "+h.Value())
		}
		if len(got) != len(tc.headers) {
			t.Errorf("%s: headers %q, want %q", tc.uri, got, tc.headers)
			continue
		}
		for i := range got {
			if got[i] != tc.headers[i] {
				t.Errorf("%s: headers %q, want %q", tc.uri, got, tc.headers)
			}
		}
		u, _, err := requestURIOf(ruri)
		if err != nil || u.String() != ruri {
			t.Errorf("%s: written as %q, %v", ruri, u.String(), err)
		}
	}
	for _, bad := range []string{"sip:d@h?X-Bad=%zz", "sip:d@h?X-A=1%0D%0AVia:%20x", "sip:d@h?X%20Y=1", "sip:d@h?X-A=%00"} {
		if _, _, err := splitReturnURI(bad); err == nil {
			t.Errorf("%s: a URI header that is not a header was taken", bad)
		}
	}
	// Compact forms of the dialog's headers are not taken either.
	if _, hs, err := splitReturnURI("sip:d@h?l=0&f=x&i=y&X-Ok=1"); err != nil || len(hs) != 1 || hs[0].Name() != "X-Ok" {
		t.Errorf("compact forms: %v %v", hs, err)
	}
}
