package softphone_test

import (
	"testing"

	"github.com/switchback/switchback/internal/softphone"
)

func TestParseTarget(t *testing.T) {
	cases := []struct {
		name, target, proxy string
		uri, dest           string // want; uri "" = an error
	}{
		{"SIP URI", "sip:demo@127.0.0.1:5070", "", "sip:demo@127.0.0.1:5070", "127.0.0.1:5070"},
		{"SIP URI without port", "sip:demo@127.0.0.1", "", "sip:demo@127.0.0.1", "127.0.0.1:5060"},
		{"SIP URI through a proxy", "sip:demo@gw.example.com", "127.0.0.1:5080", "sip:demo@gw.example.com", "127.0.0.1:5080"},
		{"phone number", "+12025550100", "", "sip:+12025550100@127.0.0.1:5060", "127.0.0.1:5060"},
		{"phone number through a proxy", "+442079460000", "10.0.0.1:5080", "sip:+442079460000@10.0.0.1:5080", "10.0.0.1:5080"},
		{"national number", "2025550100", "", "sip:2025550100@127.0.0.1:5060", "127.0.0.1:5060"},
		{"sips", "sips:demo@127.0.0.1", "", "", ""},
		{"neither", "demo@127.0.0.1", "", "", ""},
		{"letters in the number", "+1202CALLME", "", "", ""},
		{"proxy without port", "+12025550100", "127.0.0.1", "", ""},
		{"proxy port out of range", "+12025550100", "127.0.0.1:70000", "", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			uri, dest, err := softphone.ParseTarget(tc.target, tc.proxy)
			if tc.uri == "" {
				if err == nil {
					t.Fatalf("ParseTarget(%q, %q) = %s, %s; want an error", tc.target, tc.proxy, uri.String(), dest)
				}
				return
			}
			if err != nil || uri.String() != tc.uri || dest != tc.dest {
				t.Fatalf("ParseTarget(%q, %q) = %s, %s, %v; want %s, %s", tc.target, tc.proxy, uri.String(), dest, err, tc.uri, tc.dest)
			}
		})
	}
}
