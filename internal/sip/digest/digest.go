// Package digest is server-side SIP digest authentication (RFC 3261 §22,
// RFC 2617 with qop=auth, RFC 8760 for SHA-256) whose nonces hold across
// several nodes sharing one store.
//
// A challenge costs nothing but a signature: a nonce is its own expiry,
// random bytes and an HMAC under a key every node reads from the store, so
// any node can check a nonce another issued, and an unauthenticated request
// leaves no state behind. A nonce is written to the store only when a
// request carrying it has proved the password, and then only once: a second
// use, on any node, is refused as stale. Each nonce therefore authenticates
// one request; the client answers the stale=true challenge that follows a
// reuse without asking its user again.
package digest

import (
	"context"
	"crypto/md5"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"strings"
	"sync/atomic"
	"time"

	"github.com/switchback/switchback"
)

// DefaultNonceTTL is how long a nonce stays valid when the Authenticator
// sets no NonceTTL: long enough for a client to answer a 401, short enough
// that a captured nonce soon goes stale.
const DefaultNonceTTL = 30 * time.Second

// claimGrace keeps a used nonce on record this long past its expiry, so a
// node whose clock lags the purging node's by up to this much still finds
// it used rather than forgotten.
const claimGrace = time.Minute

// minKeySize is the shortest nonce key accepted from the store.
const minKeySize = 16

// Authenticator challenges and verifies digest credentials for one realm.
// Its exported fields are set before first use; it must not be copied after
// that, and is then safe for concurrent use.
type Authenticator struct {
	// Realm is sent in every challenge and must be echoed by credentials
	// (RFC 3261 §22.1).
	Realm string
	// Store holds the nonce key and the used nonces, shared by every node.
	Store switchback.NonceStore
	// Clock gives the time nonces expire by; nil means the system clock.
	Clock switchback.Clock
	// NonceTTL is how long an issued nonce is valid; zero means
	// DefaultNonceTTL.
	NonceTTL time.Duration
	// Algorithms are offered in this order: "SHA-256" and "MD5". Empty
	// means both, SHA-256 first, as RFC 8760 §2.3 asks. Clients that read
	// only the first challenge and know only MD5 (SIPp, older PBXs) need
	// MD5 first. Credentials in either algorithm are verified whatever the
	// order.
	Algorithms []string

	key atomic.Pointer[[]byte] // the store's nonce key once read; it never changes
}

// Result is what Verify found. Every result other than OK is answered with
// a challenge, except Malformed.
type Result int

// Verify's results. The zero Result is none of them: Verify returns it only
// with an error.
const (
	// OK: the credentials are right and the nonce was unused.
	OK Result = iota + 1
	// Missing: no digest credentials; challenge with 401.
	Missing
	// Malformed: the credentials cannot be parsed, lack a required
	// parameter, or use an algorithm or qop never offered; answer 400.
	Malformed
	// WrongCredentials: an unknown user, a wrong password, or credentials
	// for another realm; challenge again (or refuse, after several).
	WrongCredentials
	// Stale: the password was right but the nonce has expired or was
	// already used; challenge with stale=true, which clients answer
	// without asking the user again (RFC 2617 §3.2.1).
	Stale
	// BadNonce: the nonce was not issued by any node of this store (forged,
	// altered or from another deployment); challenge with 401.
	BadNonce
)

// String names r for logs and metrics.
func (r Result) String() string {
	switch r {
	case OK:
		return "ok"
	case Missing:
		return "missing"
	case Malformed:
		return "malformed"
	case WrongCredentials:
		return "wrong_credentials"
	case Stale:
		return "stale"
	case BadNonce:
		return "bad_nonce"
	}
	return fmt.Sprintf("Result(%d)", int(r))
}

// ChallengeOption changes the challenges Challenge returns.
type ChallengeOption int

const (
	// StaleNonce marks the challenges stale=true: the request was refused
	// only because its nonce was stale, as Verify's Stale result says.
	StaleNonce ChallengeOption = iota + 1
)

// Challenge returns the WWW-Authenticate (or Proxy-Authenticate) values of
// a 401 (407): one challenge per algorithm in order of preference, as a
// UAS lists them (RFC 8760 §2.3): SHA-256 first, then MD5 for older
// clients, both with qop="auth" and sharing one fresh nonce. It writes
// nothing to the store (but for the nonce key, the first time any node of
// a new store asks for it).
func (a *Authenticator) Challenge(ctx context.Context, opts ...ChallengeOption) ([]string, error) {
	if err := a.check(); err != nil {
		return nil, err
	}
	key, err := a.nonceKey(ctx)
	if err != nil {
		return nil, err
	}
	nonce := newNonce(key, a.now().Add(a.ttl()))
	var stale string
	for _, o := range opts {
		if o == StaleNonce {
			stale = ", stale=true"
		}
	}
	common := "Digest realm=" + quote(a.Realm) + `, nonce="` + nonce + `", algorithm=`
	algs := a.Algorithms
	if len(algs) == 0 {
		algs = []string{"SHA-256", "MD5"}
	}
	out := make([]string, 0, len(algs))
	for _, alg := range algs {
		out = append(out, common+alg+`, qop="auth"`+stale)
	}
	return out, nil
}

// Verify checks the Authorization (or Proxy-Authorization) value of a
// request with the given method, looking the claimed user's password up
// with lookup. It returns the username the credentials claim, to be trusted
// only when the result is OK. err is set only when the store failed, and
// then result is zero.
//
// The digest-uri is not compared with the Request-URI, which proxies on
// the way may have rewritten; the response covers it all the same.
//
// Verify writes to the store only for credentials whose response is right,
// so requests with a made-up response cannot use up anyone's nonce. A
// request carrying several values (credentials for several realms) may
// have each verified in turn: those for other realms are WrongCredentials
// and touch nothing.
func (a *Authenticator) Verify(ctx context.Context, method, authorization string, lookup func(username string) (password string, ok bool)) (username string, result Result, err error) {
	return a.verify(ctx, method, authorization, lookup, true)
}

// Check is Verify without the single use: it reads nothing from the store
// but the nonce key (once) and writes nothing, so it may run on every
// request, before any state is kept for it. OK from Check means the
// credentials prove the password with a nonce this store's nodes signed
// and that has not expired; the nonce may have been used already, which
// only Verify can tell. Every other result is Verify's too.
func (a *Authenticator) Check(ctx context.Context, method, authorization string, lookup func(username string) (password string, ok bool)) (username string, result Result, err error) {
	return a.verify(ctx, method, authorization, lookup, false)
}

func (a *Authenticator) verify(ctx context.Context, method, authorization string, lookup func(username string) (password string, ok bool), claim bool) (username string, result Result, err error) {
	if err := a.check(); err != nil {
		return "", 0, err
	}
	if lookup == nil {
		return "", 0, errors.New("verify digest: nil password lookup")
	}
	if strings.Trim(authorization, " \t") == "" {
		return "", Missing, nil
	}
	p, err := parseAuthorization(authorization)
	if errors.Is(err, errNotDigest) {
		return "", Missing, nil
	} else if err != nil {
		return "", Malformed, nil
	}
	c, ok := p.credentials()
	if !ok {
		return p["username"], Malformed, nil
	}
	if c.realm != a.Realm {
		return c.username, WrongCredentials, nil
	}
	key, err := a.nonceKey(ctx)
	if err != nil {
		return c.username, 0, err
	}
	expiry, ok := checkNonce(key, c.nonce)
	if !ok {
		return c.username, BadNonce, nil
	}
	password, known := lookup(c.username)
	// An unknown user costs the same hashing as a known one, so timing
	// does not tell which usernames exist.
	want := c.response(password, method)
	got := strings.ToLower(c.responseHex) // RFC 2617 says LHEX; some clients send upper case
	if subtle.ConstantTimeCompare([]byte(want), []byte(got)) != 1 || !known {
		return c.username, WrongCredentials, nil
	}
	// Only now that the client has shown it knows the password may it hear
	// that the nonce is stale (RFC 2617 §3.2.1, stale).
	now := a.now()
	if !now.Before(expiry) {
		return c.username, Stale, nil
	}
	if !claim {
		return c.username, OK, nil
	}
	first, err := a.Store.ClaimNonce(ctx, c.nonce, expiry.Add(claimGrace), now)
	if err != nil {
		return c.username, 0, fmt.Errorf("verify digest: %w", err)
	}
	if !first {
		return c.username, Stale, nil
	}
	return c.username, OK, nil
}

func (a *Authenticator) check() error {
	if a.Store == nil {
		return errors.New("digest authenticator: no store")
	}
	if a.Realm == "" {
		return errors.New("digest authenticator: empty realm")
	}
	for i := 0; i < len(a.Realm); i++ {
		if c := a.Realm[i]; c < 0x20 && c != '\t' || c == 0x7f {
			return fmt.Errorf("digest authenticator: realm %q has a control character", a.Realm)
		}
	}
	return nil
}

func (a *Authenticator) now() time.Time {
	if a.Clock == nil {
		return switchback.SystemClock()
	}
	return a.Clock()
}

func (a *Authenticator) ttl() time.Duration {
	if a.NonceTTL <= 0 {
		return DefaultNonceTTL
	}
	return a.NonceTTL
}

// nonceKey returns the store's nonce key, reading it once.
func (a *Authenticator) nonceKey(ctx context.Context) ([]byte, error) {
	if k := a.key.Load(); k != nil {
		return *k, nil
	}
	k, err := a.Store.NonceKey(ctx)
	if err != nil {
		return nil, fmt.Errorf("digest nonce key: %w", err)
	}
	if len(k) < minKeySize {
		return nil, fmt.Errorf("digest nonce key: %d bytes, want at least %d", len(k), minKeySize)
	}
	a.key.Store(&k)
	return k, nil
}

// credentials are the parameters of a digest response Verify uses, checked
// for presence and form.
type credentials struct {
	username, realm, nonce, uri, responseHex string
	newHash                                  func() hash.Hash
	qop, nc, cnonce                          string // all empty in the RFC 2069 form
}

// credentials picks the parameters Verify needs out of p, reporting false
// when one is missing or has a value this server never offers.
func (p params) credentials() (credentials, bool) {
	var c credentials
	var ok [5]bool
	c.username, ok[0] = p["username"]
	c.realm, ok[1] = p["realm"]
	c.nonce, ok[2] = p["nonce"]
	c.uri, ok[3] = p["uri"]
	c.responseHex, ok[4] = p["response"]
	if ok != [5]bool{true, true, true, true, true} || c.uri == "" || c.responseHex == "" {
		return c, false
	}
	// RFC 2617 §3.2.2: no algorithm means MD5. The -sess variants are not
	// offered: each nonce serves one request, which is what they save on.
	switch alg := p["algorithm"]; {
	case alg == "" || strings.EqualFold(alg, "MD5"):
		c.newHash = md5.New
	case strings.EqualFold(alg, "SHA-256"):
		c.newHash = sha256.New
	default:
		return c, false
	}
	// userhash (RFC 7616 §3.4.4) is never offered, so a hashed username
	// could only fail to match.
	if strings.EqualFold(p["userhash"], "true") {
		return c, false
	}
	qop, hasQOP := p["qop"]
	c.nc, c.cnonce = p["nc"], p["cnonce"]
	_, hasNC := p["nc"]
	_, hasCnonce := p["cnonce"]
	if !hasQOP {
		// RFC 2069: no qop, so neither nc nor cnonce.
		return c, !hasNC && !hasCnonce
	}
	// RFC 2617 §3.2.2: with qop, cnonce and nc are required; nc is exactly
	// 8 hex digits. auth-int is never offered.
	if !strings.EqualFold(qop, "auth") || c.cnonce == "" || !isNC(c.nc) {
		return c, false
	}
	c.qop = qop
	return c, true
}

// response computes the request-digest the client should have sent
// (RFC 2617 §3.2.2.1; RFC 7616 §3.4.1 for SHA-256):
//
//	H(H(A1):nonce:nc:cnonce:qop:H(A2)), or H(H(A1):nonce:H(A2)) without qop,
//	A1 = username:realm:password, A2 = method:digest-uri.
func (c *credentials) response(password, method string) string {
	h := c.newHash()
	ha1 := hexHash(h, c.username, c.realm, password)
	ha2 := hexHash(h, method, c.uri)
	if c.qop == "" {
		return hexHash(h, ha1, c.nonce, ha2)
	}
	return hexHash(h, ha1, c.nonce, c.nc, c.cnonce, c.qop, ha2)
}

// hexHash is the lower-case hex digest of parts joined by colons.
func hexHash(h hash.Hash, parts ...string) string {
	h.Reset()
	for i, p := range parts {
		if i > 0 {
			h.Write([]byte{':'})
		}
		h.Write([]byte(p))
	}
	return hex.EncodeToString(h.Sum(nil))
}

func isNC(s string) bool {
	if len(s) != 8 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !isHex(s[i]) {
			return false
		}
	}
	return true
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

// quote makes s a quoted-string (RFC 3261 §25.1).
func quote(s string) string {
	var b strings.Builder
	b.Grow(len(s) + 2)
	b.WriteByte('"')
	for i := 0; i < len(s); i++ {
		if s[i] == '"' || s[i] == '\\' {
			b.WriteByte('\\')
		}
		b.WriteByte(s[i])
	}
	b.WriteByte('"')
	return b.String()
}
