package digest

import (
	"errors"
	"strings"
	"unicode/utf8"
)

// Limits on what parseAuthorization reads: far above any real client's
// credentials, low enough that a hostile header costs little.
const (
	maxAuthorization = 4096
	maxParams        = 32
)

var (
	errNotDigest = errors.New("credentials are not Digest")
	errMalformed = errors.New("malformed digest credentials")
)

// params are the parameters of digest credentials, by lower-case name,
// with quoted-strings unquoted.
type params map[string]string

// parseAuthorization parses an Authorization or Proxy-Authorization value
// (RFC 3261 §25.1):
//
//	credentials     = "Digest" LWS dig-resp *(COMMA dig-resp)
//	dig-resp        = token EQUAL ( token / quoted-string )
//	quoted-string   = SWS DQUOTE *(qdtext / quoted-pair) DQUOTE
//	quoted-pair     = "\" (%x00-09 / %x0B-0C / %x0E-7F)
//
// The value is taken as already unfolded: whitespace is spaces and tabs.
// Every parameter may be a token or a quoted-string, whatever the grammar
// says of each, because clients differ (qop="auth" is common). Names are
// case-insensitive; a name given twice is an error, since the two copies
// could be read differently by different servers. It returns errNotDigest
// for another scheme and errMalformed for anything it cannot read.
func parseAuthorization(s string) (params, error) {
	if len(s) > maxAuthorization {
		return nil, errMalformed
	}
	i := skipSpace(s, 0)
	scheme, i := token(s, i)
	if scheme == "" {
		return nil, errMalformed
	}
	if !strings.EqualFold(scheme, "Digest") {
		return nil, errNotDigest
	}
	if i == len(s) || !isSpace(s[i]) {
		return nil, errMalformed
	}
	p := params{}
	for {
		i = skipSpace(s, i)
		var name string
		if name, i = token(s, i); name == "" {
			return nil, errMalformed
		}
		if i = skipSpace(s, i); i == len(s) || s[i] != '=' {
			return nil, errMalformed
		}
		i = skipSpace(s, i+1)
		var value string
		if i < len(s) && s[i] == '"' {
			var ok bool
			if value, i, ok = quotedString(s, i); !ok {
				return nil, errMalformed
			}
		} else if value, i = token(s, i); value == "" {
			return nil, errMalformed
		}
		name = strings.ToLower(name)
		if _, dup := p[name]; dup || len(p) == maxParams {
			return nil, errMalformed
		}
		p[name] = value
		if i = skipSpace(s, i); i == len(s) {
			return p, nil
		}
		if s[i] != ',' {
			return nil, errMalformed
		}
		i++
	}
}

// token returns the token (RFC 3261 §25.1) starting at s[i], empty if there
// is none, and the index after it.
func token(s string, i int) (string, int) {
	start := i
	for i < len(s) && isTokenChar(s[i]) {
		i++
	}
	return s[start:i], i
}

// quotedString reads the quoted-string whose opening quote is s[i] and
// returns its unquoted value and the index after the closing quote.
func quotedString(s string, i int) (string, int, bool) {
	i++
	start := i
	// Most values have no escapes: return a substring of s for them.
	for i < len(s) && s[i] != '"' && s[i] != '\\' && isQDText(s[i]) {
		i++
	}
	if i < len(s) && s[i] == '"' {
		v := s[start:i]
		return v, i + 1, utf8.ValidString(v)
	}
	var b strings.Builder
	b.WriteString(s[start:i])
	for i < len(s) {
		switch c := s[i]; {
		case c == '"':
			v := b.String()
			return v, i + 1, utf8.ValidString(v)
		case c == '\\':
			if i+1 == len(s) {
				return "", 0, false
			}
			e := s[i+1]
			if e == '\r' || e == '\n' || e > 0x7f {
				return "", 0, false
			}
			b.WriteByte(e)
			i += 2
		case isQDText(c):
			b.WriteByte(c)
			i++
		default:
			return "", 0, false
		}
	}
	return "", 0, false // no closing quote
}

// isQDText reports whether c may appear unescaped in a quoted-string: any
// byte but controls other than tab (bytes of UTF-8 sequences included; the
// whole value is checked to be UTF-8 once read). The quote and backslash
// are handled by the caller.
func isQDText(c byte) bool {
	return c == '\t' || c >= 0x20 && c != 0x7f
}

func isTokenChar(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	return strings.IndexByte("-.!%*_+`'~", c) >= 0
}

func isSpace(c byte) bool { return c == ' ' || c == '\t' }

func skipSpace(s string, i int) int {
	for i < len(s) && isSpace(s[i]) {
		i++
	}
	return i
}
