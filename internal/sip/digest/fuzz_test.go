package digest

import (
	"context"
	"maps"
	"slices"
	"strings"
	"testing"
)

// FuzzParseAuthorization feeds arbitrary values to the parser and to
// Verify. Neither may panic; what parses must have lower-case, distinct
// token names and survive being written out and parsed again; and nothing
// the fuzzer makes up can pass Verify, whose nonces it cannot sign.
func FuzzParseAuthorization(f *testing.F) {
	for _, seed := range []string{
		`Digest username="alice", realm="switchback.example.com", nonce="AAABm3y3k0Dq2l1mN2u0x9e4Y2FsZGVyYQ8xX9Jd1vWl", uri="sip:+12025550100@switchback.example.com", algorithm=SHA-256, cnonce="0a4f113b", qop=auth, nc=00000001, response="753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"`,
		`Digest username="Mufasa", realm="testrealm@host.com", nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", uri="/dir/index.html", qop=auth, nc=00000001, cnonce="0a4f113b", response="6629fae49393a05397450978507c4ef1", opaque="5ccc069c403ebaf9f0171e9517f40e41"`,
		`Digest username="a\"b\\c", realm=""`,
		`digest USERNAME=x,Realm="y"`,
		`Basic YWxpY2U6d29uZGVybGFuZA==`,
		`Digest username="`,
		`Digest username="a", username="b"`,
		"Digest a=\"\xc3\xb6\", b=\"\\\xff\"",
	} {
		f.Add(seed)
	}
	a := &Authenticator{Realm: "switchback.example.com", Store: newMemStore()}
	f.Fuzz(func(t *testing.T, s string) {
		p, err := parseAuthorization(s)
		if err == nil {
			if len(p) == 0 || len(p) > maxParams {
				t.Fatalf("%d params from %q", len(p), s)
			}
			for name := range p {
				if tok, _ := token(name, 0); tok != name || name != strings.ToLower(name) {
					t.Fatalf("name %q from %q", name, s)
				}
			}
			again, err := parseAuthorization(format(p))
			if err != nil || !maps.Equal(again, p) {
				t.Fatalf("%q parsed to %q; written as %q it parses to %q, %v", s, p, format(p), again, err)
			}
		}
		_, r, err := a.Verify(context.Background(), "INVITE", s, func(string) (string, bool) { return "pw", true })
		if err != nil || r < OK || r > BadNonce || r == OK {
			t.Fatalf("Verify(%q) = %v, %v", s, r, err)
		}
	})
}

// format writes p as a Digest value, every value quoted.
func format(p params) string {
	var b strings.Builder
	b.WriteString("Digest ")
	for i, name := range slices.Sorted(maps.Keys(p)) {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(name + `="`)
		v := p[name]
		for j := 0; j < len(v); j++ {
			if c := v[j]; c == '"' || c == '\\' || c < 0x20 && c != '\t' || c == 0x7f {
				b.WriteByte('\\')
			}
			b.WriteByte(v[j])
		}
		b.WriteByte('"')
	}
	return b.String()
}
