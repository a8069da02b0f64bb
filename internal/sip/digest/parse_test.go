package digest

import (
	"crypto/md5"
	"crypto/sha256"
	"errors"
	"reflect"
	"strings"
	"testing"
)

func TestParseAuthorization(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want params
		err  error
	}{
		{"rfc 2617 example", `Digest username="Mufasa",
realm="testrealm@host.com", nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", uri="/dir/index.html", qop=auth,
nc=00000001, cnonce="0a4f113b", response="6629fae49393a05397450978507c4ef1",
opaque="5ccc069c403ebaf9f0171e9517f40e41"`, nil, errMalformed}, // folded lines are not unfolded here
		{"rfc 2617 example unfolded", `Digest username="Mufasa", realm="testrealm@host.com", ` +
			`nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", uri="/dir/index.html", qop=auth, nc=00000001, ` +
			`cnonce="0a4f113b", response="6629fae49393a05397450978507c4ef1", opaque="5ccc069c403ebaf9f0171e9517f40e41"`,
			params{"username": "Mufasa", "realm": "testrealm@host.com", "nonce": "dcd98b7102dd2f0e8b11d0f600bfb0c093",
				"uri": "/dir/index.html", "qop": "auth", "nc": "00000001", "cnonce": "0a4f113b",
				"response": "6629fae49393a05397450978507c4ef1", "opaque": "5ccc069c403ebaf9f0171e9517f40e41"}, nil},
		{"rfc 3261 sip example", `Digest username="bob", realm="biloxi.com", nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093",` +
			` uri="sip:bob@biloxi.com", qop=auth, nc=00000001, cnonce="0a4f113b", response="6629fae49393a05397450978507c4ef1",` +
			` opaque="5ccc069c403ebaf9f0171e9517f40e41"`,
			params{"username": "bob", "realm": "biloxi.com", "nonce": "dcd98b7102dd2f0e8b11d0f600bfb0c093",
				"uri": "sip:bob@biloxi.com", "qop": "auth", "nc": "00000001", "cnonce": "0a4f113b",
				"response": "6629fae49393a05397450978507c4ef1", "opaque": "5ccc069c403ebaf9f0171e9517f40e41"}, nil},
		{"scheme and names any case", "dIgEsT UserName=alice,REALM=r", params{"username": "alice", "realm": "r"}, nil},
		{"spaces and tabs around", " \tDigest\t a = \"b\" \t,\tc=d ", params{"a": "b", "c": "d"}, nil},
		{"escapes", `Digest username="a\"b\\c\d", realm=""`, params{"username": `a"b\cd`, "realm": ""}, nil},
		{"utf-8 username", `Digest username="jörg"`, params{"username": "jörg"}, nil},
		{"tab in quoted string", "Digest username=\"a\tb\"", params{"username": "a\tb"}, nil},
		{"quoted qop", `Digest qop="auth"`, params{"qop": "auth"}, nil},
		{"token chars", "Digest x=a-b.c!d%e*f_g+h`i'j~k", params{"x": "a-b.c!d%e*f_g+h`i'j~k"}, nil},

		{"other scheme", `Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==`, nil, errNotDigest},
		{"scheme prefix only", `Digestive username="a"`, nil, errNotDigest},
		{"empty", "", nil, errMalformed},
		{"scheme alone", "Digest", nil, errMalformed},
		{"scheme and space", "Digest ", nil, errMalformed},
		{"no space after scheme", `Digest,username="a"`, nil, errMalformed},
		{"duplicate", `Digest username="a", USERNAME="b"`, nil, errMalformed},
		{"trailing comma", `Digest username="a",`, nil, errMalformed},
		{"double comma", `Digest username="a",,realm="b"`, nil, errMalformed},
		{"no value", `Digest username=`, nil, errMalformed},
		{"no equals", `Digest username "a"`, nil, errMalformed},
		{"no comma", `Digest username="a" realm="b"`, nil, errMalformed},
		{"unterminated", `Digest username="a`, nil, errMalformed},
		{"escape at end", `Digest username="a\`, nil, errMalformed},
		{"escaped newline", "Digest username=\"a\\\nb\"", nil, errMalformed},
		{"raw newline in quotes", "Digest username=\"a\nb\"", nil, errMalformed},
		{"control in quotes", "Digest username=\"a\x01b\"", nil, errMalformed},
		{"del in quotes", "Digest username=\"a\x7fb\"", nil, errMalformed},
		{"invalid utf-8", "Digest username=\"a\xffb\"", nil, errMalformed},
		{"escaped non-ascii", "Digest username=\"a\\\xc3\xb6\"", nil, errMalformed},
		{"separator in token", `Digest uri=sip:bob@biloxi.com`, nil, errMalformed},
		{"too long", `Digest username="` + strings.Repeat("a", maxAuthorization) + `"`, nil, errMalformed},
		{"too many params", "Digest " + strings.Repeat("a=b, ", maxParams) + "z=1", nil, errMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseAuthorization(tt.in)
			if !errors.Is(err, tt.err) || (tt.err != nil && err == nil) {
				t.Fatalf("error = %v, want %v", err, tt.err)
			}
			if tt.err == nil && !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("params = %q, want %q", got, tt.want)
			}
		})
	}
}

// TestMaxParamsAccepted pins the limit itself: maxParams parameters parse.
func TestMaxParamsAccepted(t *testing.T) {
	var b strings.Builder
	b.WriteString("Digest ")
	for i := 0; i < maxParams; i++ {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString("p" + strings.Repeat("x", i) + "=1")
	}
	if p, err := parseAuthorization(b.String()); err != nil || len(p) != maxParams {
		t.Fatalf("%d params: %v, %v", maxParams, len(p), err)
	}
}

// TestResponseVectors checks the request-digest against the worked examples
// of the RFCs.
func TestResponseVectors(t *testing.T) {
	tests := []struct {
		name     string
		c        credentials
		password string
		method   string
		want     string
	}{
		{
			// RFC 2617 §3.5.
			name: "rfc 2617 md5",
			c: credentials{username: "Mufasa", realm: "testrealm@host.com", nonce: "dcd98b7102dd2f0e8b11d0f600bfb0c093",
				uri: "/dir/index.html", newHash: md5.New, qop: "auth", nc: "00000001", cnonce: "0a4f113b"},
			password: "Circle Of Life", method: "GET",
			want: "6629fae49393a05397450978507c4ef1",
		},
		{
			// RFC 7616 §3.9.1, SHA-256.
			name: "rfc 7616 sha-256",
			c: credentials{username: "Mufasa", realm: "http-auth@example.org", nonce: "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v",
				uri: "/dir/index.html", newHash: sha256.New, qop: "auth", nc: "00000001", cnonce: "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ"},
			password: "Circle of Life", method: "GET",
			want: "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1",
		},
		{
			// RFC 7616 §3.9.1, MD5.
			name: "rfc 7616 md5",
			c: credentials{username: "Mufasa", realm: "http-auth@example.org", nonce: "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v",
				uri: "/dir/index.html", newHash: md5.New, qop: "auth", nc: "00000001", cnonce: "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ"},
			password: "Circle of Life", method: "GET",
			want: "8ca523f5e9506fed4657c9700eebdbec",
		},
		{
			// The inputs of RFC 2069 §2.4's example, without qop; the
			// value was computed independently (Python's hashlib).
			name: "rfc 2069 no qop",
			c: credentials{username: "Mufasa", realm: "testrealm@host.com", nonce: "dcd98b7102dd2f0e8b11d0f600bfb0c093",
				uri: "/dir/index.html", newHash: md5.New},
			password: "CircleOfLife", method: "GET",
			want: "1949323746fe6a43ef61f9606e7febea",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.c.response(tt.password, tt.method); got != tt.want {
				t.Fatalf("response = %s, want %s", got, tt.want)
			}
		})
	}
}

// TestRFC2617ExampleParsesToItsCredentials runs the RFC 2617 §3.5 header
// through the parser and the response check together.
func TestRFC2617ExampleParsesToItsCredentials(t *testing.T) {
	p, err := parseAuthorization(`Digest username="Mufasa", realm="testrealm@host.com", ` +
		`nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", uri="/dir/index.html", qop=auth, nc=00000001, ` +
		`cnonce="0a4f113b", response="6629fae49393a05397450978507c4ef1", opaque="5ccc069c403ebaf9f0171e9517f40e41"`)
	if err != nil {
		t.Fatal(err)
	}
	c, ok := p.credentials()
	if !ok {
		t.Fatalf("credentials refused: %q", p)
	}
	if got := c.response("Circle Of Life", "GET"); got != c.responseHex {
		t.Fatalf("response %s, header says %s", got, c.responseHex)
	}
}
