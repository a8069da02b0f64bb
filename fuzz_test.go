package switchback_test

import (
	"strings"
	"testing"

	"github.com/switchback/switchback"
)

func FuzzParseNumbers(f *testing.F) {
	for _, s := range []string{"+12025550100", "+12025550100-+12025550199", "+442079460000-0099", "+1-+2", "12025550100", "+12025550199-+12025550100", "+0123456789"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, spec string) {
		ns, err := switchback.ParseNumbers([]string{spec})
		if err != nil {
			return
		}
		if len(ns) == 0 || len(ns) > 100000 {
			t.Fatalf("%q expanded to %d numbers", spec, len(ns))
		}
		for _, n := range ns {
			if !switchback.ValidE164(n) {
				t.Fatalf("%q expanded to the invalid %q", spec, n)
			}
		}
	})
}

func FuzzValidReturnURI(f *testing.F) {
	for _, s := range []string{"sip:user@customer-sbc.example.com;User-to-User=UUI-12345", "sips:a@b:5061;transport=tls?X-Foo=1&User-to-User=abc",
		"sip:[2001:db8::1]:5060", "http://a", "sip:", "sip:@", "SIP:A@B", "sip:a b@c", "sip:a@b\r\nVia: x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, uri string) {
		reason, ok := switchback.ValidReturnURI(uri)
		if !ok {
			if reason == "" {
				t.Fatalf("%q refused without a reason", uri)
			}
			return
		}
		lower := strings.ToLower(uri)
		if !strings.HasPrefix(lower, "sip:") && !strings.HasPrefix(lower, "sips:") {
			t.Fatalf("accepted %q without a sip scheme", uri)
		}
		if len(uri) > switchback.MaxReturnURILength || strings.ContainsAny(uri, " \t\r\n<>\"") {
			t.Fatalf("accepted %q, which cannot go into a Refer-To byte for byte", uri)
		}
	})
}
