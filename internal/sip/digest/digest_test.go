package digest

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	client "github.com/icholy/digest"

	"github.com/switchback/switchback/internal/sqlite"
)

const (
	realm = "switchback.example.com"
	uri   = "sip:+12025550100@switchback.example.com"
)

var t0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

// memStore is a NonceStore in memory that counts what it is asked.
type memStore struct {
	mu         sync.Mutex
	key        []byte
	used       map[string]bool
	keyCalls   int
	claimCalls int
	err        error // returned by every call when set
}

func newMemStore() *memStore {
	return &memStore{key: bytes.Repeat([]byte{7}, 32), used: map[string]bool{}}
}

func (s *memStore) NonceKey(ctx context.Context) ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.keyCalls++
	if s.err != nil {
		return nil, s.err
	}
	return bytes.Clone(s.key), nil
}

func (s *memStore) ClaimNonce(ctx context.Context, nonce string, expiresAt, now time.Time) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.claimCalls++
	if s.err != nil {
		return false, s.err
	}
	if s.used[nonce] {
		return false, nil
	}
	s.used[nonce] = true
	return true, nil
}

// clock is a settable switchback.Clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

var users = map[string]string{"alice": "wonderland", `q"uo\te`: "p\"a\\ss", "jörg": "pässwort"}

func lookup(username string) (string, bool) {
	p, ok := users[username]
	return p, ok
}

func newAuth(s *memStore, c *clock) *Authenticator {
	return &Authenticator{Realm: realm, Store: s, Clock: c.Now}
}

// challenge returns the Authenticator's challenge for alg ("SHA-256" or
// "MD5"), parsed by the independent client.
func challenge(t *testing.T, a *Authenticator, alg string) *client.Challenge {
	t.Helper()
	values, err := a.Challenge(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range values {
		c, err := client.ParseChallenge(v)
		if err != nil {
			t.Fatalf("client cannot parse %q: %v", v, err)
		}
		if c.Algorithm == alg {
			return c
		}
	}
	t.Fatalf("no %s challenge in %q", alg, values)
	return nil
}

// answer is the Authorization value the independent client computes.
func answer(t *testing.T, c *client.Challenge, user, password string) string {
	t.Helper()
	cred, err := client.Digest(c, client.Options{Method: "INVITE", URI: uri, Username: user, Password: password})
	if err != nil {
		t.Fatal(err)
	}
	return cred.String()
}

func verify(t *testing.T, a *Authenticator, authorization string) Result {
	t.Helper()
	_, r, err := a.Verify(context.Background(), "INVITE", authorization, lookup)
	if err != nil {
		t.Fatalf("verify: %v", err)
	}
	return r
}

func TestChallengeFormat(t *testing.T) {
	a := newAuth(newMemStore(), &clock{t: t0})
	for _, stale := range []bool{false, true} {
		var opts []ChallengeOption
		if stale {
			opts = append(opts, StaleNonce)
		}
		values, err := a.Challenge(context.Background(), opts...)
		if err != nil {
			t.Fatal(err)
		}
		if len(values) != 2 {
			t.Fatalf("%d challenges, want 2", len(values))
		}
		re := regexp.MustCompile(`^Digest realm="switchback\.example\.com", nonce="([A-Za-z0-9_-]{48})", algorithm=(SHA-256|MD5), qop="auth"(, stale=true)?$`)
		var nonces []string
		for i, v := range values {
			m := re.FindStringSubmatch(v)
			if m == nil {
				t.Fatalf("challenge %q has not the expected form", v)
			}
			if wantAlg := []string{"SHA-256", "MD5"}[i]; m[2] != wantAlg {
				t.Errorf("challenge %d is %s, want %s (RFC 8760: SHA-256 first)", i, m[2], wantAlg)
			}
			if (m[3] != "") != stale {
				t.Errorf("challenge %q: stale=%v wanted", v, stale)
			}
			nonces = append(nonces, m[1])
			c, err := client.ParseChallenge(v)
			if err != nil || c.Realm != realm || c.Nonce != m[1] || !c.SupportsQOP("auth") || c.Stale != stale {
				t.Errorf("client reads %q as %+v, %v", v, c, err)
			}
		}
		if nonces[0] != nonces[1] {
			t.Errorf("the two challenges carry different nonces %s and %s", nonces[0], nonces[1])
		}
	}
}

func TestChallengeQuotesRealm(t *testing.T) {
	a := &Authenticator{Realm: `odd "realm" \ here`, Store: newMemStore()}
	values, err := a.Challenge(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	c, err := client.ParseChallenge(values[0])
	if err != nil || c.Realm != a.Realm {
		t.Fatalf("realm read back as %q (%v) from %s", c.Realm, err, values[0])
	}
	// And the client's answer, which quotes it again, verifies.
	if r := verify(t, a, answer(t, c, "alice", "wonderland")); r != OK {
		t.Fatalf("result %v", r)
	}
}

func TestChallengeRefusesBadConfig(t *testing.T) {
	for name, a := range map[string]*Authenticator{
		"no store":      {Realm: realm},
		"no realm":      {Store: newMemStore()},
		"control realm": {Realm: "a\r\nb", Store: newMemStore()},
	} {
		if _, err := a.Challenge(context.Background()); err == nil {
			t.Errorf("%s: challenge issued", name)
		}
		if _, _, err := a.Verify(context.Background(), "INVITE", "Digest a=b", lookup); err == nil {
			t.Errorf("%s: verify ran", name)
		}
	}
}

// TestChallengeWritesNothing: challenges cost one key read, ever, and no
// write, however many unauthenticated requests come.
func TestChallengeWritesNothing(t *testing.T) {
	s := newMemStore()
	a := newAuth(s, &clock{t: t0})
	seen := map[string]bool{}
	for i := 0; i < 200; i++ {
		values, err := a.Challenge(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		seen[values[0]] = true
	}
	if s.keyCalls != 1 || s.claimCalls != 0 {
		t.Fatalf("200 challenges: %d key reads, %d claims; want 1 and 0", s.keyCalls, s.claimCalls)
	}
	if len(seen) != 200 {
		t.Fatalf("200 challenges, %d distinct nonces", len(seen))
	}
}

// TestIndependentClientPasses answers challenges with
// github.com/icholy/digest, a client written without this package in view.
func TestIndependentClientPasses(t *testing.T) {
	tests := []struct {
		name, alg, user string
		noQOP           bool
		count           int
	}{
		{name: "sha-256 qop=auth", alg: "SHA-256", user: "alice"},
		{name: "md5 qop=auth", alg: "MD5", user: "alice"},
		{name: "sha-256 rfc 2069", alg: "SHA-256", user: "alice", noQOP: true},
		{name: "md5 rfc 2069", alg: "MD5", user: "alice", noQOP: true},
		{name: "escaped username", alg: "SHA-256", user: `q"uo\te`},
		{name: "utf-8 username", alg: "MD5", user: "jörg"},
		{name: "nc above one", alg: "SHA-256", user: "alice", count: 0x1f},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newMemStore()
			a := newAuth(s, &clock{t: t0})
			c := challenge(t, a, tt.alg)
			if tt.noQOP {
				c.QOP = nil
			}
			cred, err := client.Digest(c, client.Options{Method: "INVITE", URI: uri, Username: tt.user,
				Password: users[tt.user], Count: tt.count})
			if err != nil {
				t.Fatal(err)
			}
			h := cred.String()
			if tt.noQOP && strings.Contains(h, "qop=") {
				t.Fatalf("client sent qop in %s", h)
			}
			user, r, err := a.Verify(context.Background(), "INVITE", h, lookup)
			if err != nil || r != OK || user != tt.user {
				t.Fatalf("verify %s: %q, %v, %v", h, user, r, err)
			}
			if s.claimCalls != 1 {
				t.Fatalf("%d claims for one verified request", s.claimCalls)
			}
		})
	}
}

func TestVerifyResults(t *testing.T) {
	other := newMemStore()
	other.key = bytes.Repeat([]byte{9}, 32)
	foreign := challenge(t, newAuth(other, &clock{t: t0}), "SHA-256")

	tests := []struct {
		name string
		// header builds the Authorization value from a fresh SHA-256
		// challenge of the Authenticator under test.
		header func(t *testing.T, c *client.Challenge) string
		want   Result
	}{
		{"missing", func(*testing.T, *client.Challenge) string { return "" }, Missing},
		{"blank", func(*testing.T, *client.Challenge) string { return " \t " }, Missing},
		{"basic", func(*testing.T, *client.Challenge) string { return "Basic YWxpY2U6d29uZGVybGFuZA==" }, Missing},
		{"ok", func(t *testing.T, c *client.Challenge) string { return answer(t, c, "alice", "wonderland") }, OK},
		{"wrong password", func(t *testing.T, c *client.Challenge) string { return answer(t, c, "alice", "looking-glass") }, WrongCredentials},
		{"unknown user", func(t *testing.T, c *client.Challenge) string { return answer(t, c, "mallory", "wonderland") }, WrongCredentials},
		{"wrong realm", func(t *testing.T, c *client.Challenge) string {
			c.Realm = "elsewhere.example.com"
			return answer(t, c, "alice", "wonderland")
		}, WrongCredentials},
		{"realm differs in case", func(t *testing.T, c *client.Challenge) string {
			c.Realm = strings.ToUpper(realm)
			return answer(t, c, "alice", "wonderland")
		}, WrongCredentials},
		{"tampered random part", func(t *testing.T, c *client.Challenge) string {
			// The client signs the altered nonce correctly; only the
			// nonce's own signature can catch it.
			c.Nonce = alterNonce(t, c.Nonce, func(b []byte) { b[nonceExpirySize] ^= 1 })
			return answer(t, c, "alice", "wonderland")
		}, BadNonce},
		{"extended expiry", func(t *testing.T, c *client.Challenge) string {
			c.Nonce = alterNonce(t, c.Nonce, func(b []byte) {
				binary.BigEndian.PutUint64(b, binary.BigEndian.Uint64(b)+uint64(24*time.Hour/time.Millisecond))
			})
			return answer(t, c, "alice", "wonderland")
		}, BadNonce},
		{"tampered signature", func(t *testing.T, c *client.Challenge) string {
			c.Nonce = alterNonce(t, c.Nonce, func(b []byte) { b[nonceSize-1] ^= 0x80 })
			return answer(t, c, "alice", "wonderland")
		}, BadNonce},
		{"truncated nonce", func(t *testing.T, c *client.Challenge) string {
			c.Nonce = c.Nonce[:len(c.Nonce)-4]
			return answer(t, c, "alice", "wonderland")
		}, BadNonce},
		{"nonce with padding", func(t *testing.T, c *client.Challenge) string {
			c.Nonce += "=="
			return answer(t, c, "alice", "wonderland")
		}, BadNonce},
		{"made-up nonce", func(t *testing.T, c *client.Challenge) string {
			c.Nonce = "dcd98b7102dd2f0e8b11d0f600bfb0c093"
			return answer(t, c, "alice", "wonderland")
		}, BadNonce},
		{"nonce of another deployment", func(t *testing.T, c *client.Challenge) string {
			return answer(t, foreign, "alice", "wonderland")
		}, BadNonce},
		{"upper-case response", func(t *testing.T, c *client.Challenge) string {
			h := answer(t, c, "alice", "wonderland")
			i := strings.Index(h, `response="`) + len(`response="`)
			return h[:i] + strings.ToUpper(h[i:])
		}, OK},
		{"missing cnonce with qop", func(t *testing.T, c *client.Challenge) string {
			return dropParam(t, answer(t, c, "alice", "wonderland"), "cnonce")
		}, Malformed},
		{"missing nc with qop", func(t *testing.T, c *client.Challenge) string {
			return dropParam(t, answer(t, c, "alice", "wonderland"), "nc")
		}, Malformed},
		{"short nc", func(t *testing.T, c *client.Challenge) string {
			return strings.Replace(answer(t, c, "alice", "wonderland"), "nc=00000001", "nc=1", 1)
		}, Malformed},
		{"cnonce without qop", func(t *testing.T, c *client.Challenge) string {
			c.QOP = nil
			return answer(t, c, "alice", "wonderland") + `, cnonce="abc"`
		}, Malformed},
		{"qop auth-int", func(t *testing.T, c *client.Challenge) string {
			c.QOP = []string{"auth-int"}
			return answer(t, c, "alice", "wonderland")
		}, Malformed},
		{"missing uri", func(t *testing.T, c *client.Challenge) string {
			return dropParam(t, answer(t, c, "alice", "wonderland"), "uri")
		}, Malformed},
		{"missing response", func(t *testing.T, c *client.Challenge) string {
			return dropParam(t, answer(t, c, "alice", "wonderland"), "response")
		}, Malformed},
		{"missing username", func(t *testing.T, c *client.Challenge) string {
			return dropParam(t, answer(t, c, "alice", "wonderland"), "username")
		}, Malformed},
		{"sha-512", func(t *testing.T, c *client.Challenge) string {
			c.Algorithm = "SHA-512"
			return answer(t, c, "alice", "wonderland")
		}, Malformed},
		{"md5-sess", func(t *testing.T, c *client.Challenge) string {
			return strings.Replace(answer(t, c, "alice", "wonderland"), "algorithm=SHA-256", "algorithm=MD5-sess", 1)
		}, Malformed},
		{"unknown algorithm", func(t *testing.T, c *client.Challenge) string {
			return strings.Replace(answer(t, c, "alice", "wonderland"), "algorithm=SHA-256", `algorithm="ROT13"`, 1)
		}, Malformed},
		{"userhash", func(t *testing.T, c *client.Challenge) string {
			c.Userhash = true
			return answer(t, c, "alice", "wonderland")
		}, Malformed},
		{"duplicate response", func(t *testing.T, c *client.Challenge) string {
			return answer(t, c, "alice", "wonderland") + `, response="00"`
		}, Malformed},
		{"garbage", func(*testing.T, *client.Challenge) string { return `Digest username="alice` }, Malformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newMemStore()
			a := newAuth(s, &clock{t: t0})
			h := tt.header(t, challenge(t, a, "SHA-256"))
			if got := verify(t, a, h); got != tt.want {
				t.Fatalf("Verify(%s) = %v, want %v", h, got, tt.want)
			}
			// A request that did not prove the password never reaches the
			// store's used nonces.
			if wantClaims := map[bool]int{true: 1, false: 0}[tt.want == OK]; s.claimCalls != wantClaims {
				t.Fatalf("%d claims, want %d", s.claimCalls, wantClaims)
			}
		})
	}
}

// alterNonce decodes nonce, lets alter change its bytes and encodes it
// again, so the change survives decoding.
func alterNonce(t *testing.T, nonce string, alter func([]byte)) string {
	t.Helper()
	b, err := nonceEncoding.DecodeString(nonce)
	if err != nil || len(b) != nonceSize {
		t.Fatalf("nonce %q: %d bytes, %v", nonce, len(b), err)
	}
	alter(b)
	return nonceEncoding.EncodeToString(b)
}

// dropParam removes the parameter name from an Authorization value the
// independent client wrote.
func dropParam(t *testing.T, h, name string) string {
	t.Helper()
	re := regexp.MustCompile(`(, )?\b` + name + `=("(?:[^"\\]|\\.)*"|[^,]*)`)
	out := re.ReplaceAllString(h, "")
	out = strings.Replace(out, "Digest , ", "Digest ", 1)
	if out == h {
		t.Fatalf("no %s in %s", name, h)
	}
	return out
}

func TestReplayIsStale(t *testing.T) {
	a := newAuth(newMemStore(), &clock{t: t0})
	h := answer(t, challenge(t, a, "SHA-256"), "alice", "wonderland")
	if r := verify(t, a, h); r != OK {
		t.Fatalf("first use: %v", r)
	}
	if r := verify(t, a, h); r != Stale {
		t.Fatalf("second use: %v, want Stale", r)
	}
	// The same nonce under the other algorithm is the same nonce.
	c := challenge(t, a, "MD5")
	first := answer(t, c, "alice", "wonderland")
	c.Algorithm = "SHA-256"
	second := answer(t, c, "alice", "wonderland")
	if r := verify(t, a, first); r != OK {
		t.Fatalf("md5 use: %v", r)
	}
	if r := verify(t, a, second); r != Stale {
		t.Fatalf("sha-256 reuse of the md5 nonce: %v, want Stale", r)
	}
}

func TestExpiredNonce(t *testing.T) {
	tests := []struct {
		name     string
		ttl      time.Duration
		after    time.Duration
		password string
		want     Result
	}{
		{"just before expiry", 0, DefaultNonceTTL - time.Millisecond, "wonderland", OK},
		{"at expiry", 0, DefaultNonceTTL, "wonderland", Stale},
		{"long after", 0, time.Hour, "wonderland", Stale},
		// Stale would tell a guesser the nonce was the only problem
		// (RFC 2617 §3.2.1): a wrong password stays wrong.
		{"expired and wrong password", 0, time.Hour, "looking-glass", WrongCredentials},
		{"own ttl", 5 * time.Second, 5 * time.Second, "wonderland", Stale},
		{"own ttl, in time", 5 * time.Second, 4 * time.Second, "wonderland", OK},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newMemStore()
			clk := &clock{t: t0}
			a := newAuth(s, clk)
			a.NonceTTL = tt.ttl
			h := answer(t, challenge(t, a, "MD5"), "alice", tt.password)
			clk.Add(tt.after)
			if r := verify(t, a, h); r != tt.want {
				t.Fatalf("result %v, want %v", r, tt.want)
			}
			if tt.want != OK && s.claimCalls != 0 {
				t.Fatalf("a refused nonce was claimed")
			}
		})
	}
}

// TestWrongPasswordDoesNotBurnNonce: a request with a made-up response
// must not use up the nonce for the real client.
func TestWrongPasswordDoesNotBurnNonce(t *testing.T) {
	a := newAuth(newMemStore(), &clock{t: t0})
	c := challenge(t, a, "SHA-256")
	if r := verify(t, a, answer(t, c, "alice", "guess")); r != WrongCredentials {
		t.Fatalf("guess: %v", r)
	}
	if r := verify(t, a, answer(t, c, "alice", "wonderland")); r != OK {
		t.Fatalf("real client after a guess: %v", r)
	}
}

func TestStoreFailures(t *testing.T) {
	s := newMemStore()
	a := newAuth(s, &clock{t: t0})
	h := answer(t, challenge(t, a, "SHA-256"), "alice", "wonderland")
	s.err = errors.New("disk on fire")
	if _, r, err := a.Verify(context.Background(), "INVITE", h, lookup); !errors.Is(err, s.err) || r != 0 {
		t.Fatalf("claim failing: %v, %v", r, err)
	}
	// A fresh Authenticator has no key yet and must say so.
	if _, err := newAuth(s, &clock{t: t0}).Challenge(context.Background()); !errors.Is(err, s.err) {
		t.Fatalf("key failing: %v", err)
	}
	s.err = nil
	s.key = []byte("short")
	if _, err := newAuth(s, &clock{t: t0}).Challenge(context.Background()); err == nil {
		t.Fatal("challenge signed with a 5-byte key")
	}
}

func TestResultString(t *testing.T) {
	for r, want := range map[Result]string{OK: "ok", Missing: "missing", Malformed: "malformed",
		WrongCredentials: "wrong_credentials", Stale: "stale", BadNonce: "bad_nonce", 0: "Result(0)"} {
		if got := r.String(); got != want {
			t.Errorf("%d.String() = %q, want %q", int(r), got, want)
		}
	}
}

// TestTwoNodesShareOneStore runs two Authenticators, as two nodes would, on
// one SQLite store: a nonce one node issues is good on the other, once.
func TestTwoNodesShareOneStore(t *testing.T) {
	ctx := context.Background()
	store, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "sb.db"), sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	nodeA := &Authenticator{Realm: realm, Store: store}
	nodeB := &Authenticator{Realm: realm, Store: store}

	h := answer(t, challenge(t, nodeA, "SHA-256"), "alice", "wonderland")
	if r := verify(t, nodeB, h); r != OK {
		t.Fatalf("A's nonce on B: %v", r)
	}
	if r := verify(t, nodeA, h); r != Stale {
		t.Fatalf("replay on A after use on B: %v, want Stale", r)
	}
	h = answer(t, challenge(t, nodeB, "MD5"), "alice", "wonderland")
	if r := verify(t, nodeA, h); r != OK {
		t.Fatalf("B's nonce on A: %v", r)
	}
	if r := verify(t, nodeB, h); r != Stale {
		t.Fatalf("replay on B after use on A: %v, want Stale", r)
	}

	// One request replayed at both nodes at once: exactly one accepts it.
	h = answer(t, challenge(t, nodeA, "SHA-256"), "alice", "wonderland")
	results := make([]Result, 8)
	var wg sync.WaitGroup
	for i := range results {
		wg.Add(1)
		go func() {
			defer wg.Done()
			node := []*Authenticator{nodeA, nodeB}[i%2]
			_, r, err := node.Verify(ctx, "INVITE", h, lookup)
			results[i] = r
			if err != nil {
				t.Errorf("verify: %v", err)
			}
		}()
	}
	wg.Wait()
	var ok int
	for _, r := range results {
		switch r {
		case OK:
			ok++
		case Stale:
		default:
			t.Errorf("racing replay: %v", r)
		}
	}
	if ok != 1 {
		t.Fatalf("%d of 8 racing uses accepted: %v", ok, results)
	}
}

// TestCheckWritesNothing: Check gives Verify's results without using the
// nonce up, so a gate in front of the transaction layer may run it on
// every request; only Verify finds a used nonce stale.
func TestCheckWritesNothing(t *testing.T) {
	s := newMemStore()
	clk := &clock{t: t0}
	a := newAuth(s, clk)
	c := challenge(t, a, "SHA-256")
	good := answer(t, c, "alice", "wonderland")
	check := func(h string) Result {
		t.Helper()
		_, r, err := a.Check(context.Background(), "INVITE", h, lookup)
		if err != nil {
			t.Fatalf("check: %v", err)
		}
		return r
	}
	tests := []struct {
		name, authorization string
		want                Result
	}{
		{"right password", good, OK},
		{"right password again", good, OK},
		{"wrong password", answer(t, c, "alice", "guess"), WrongCredentials},
		{"unknown user", answer(t, c, "mallory", "wonderland"), WrongCredentials},
		{"no credentials", "", Missing},
		{"not digest", "Basic YWxpY2U6d29uZGVybGFuZA==", Missing},
		{"malformed", `Digest username="alice"`, Malformed},
		{"forged nonce", strings.Replace(good, c.Nonce, strings.Repeat("A", len(c.Nonce)), 1), BadNonce},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if r := check(tt.authorization); r != tt.want {
				t.Fatalf("Check = %v, want %v", r, tt.want)
			}
		})
	}
	if s.claimCalls != 0 {
		t.Fatalf("Check claimed %d nonces", s.claimCalls)
	}
	if r := verify(t, a, good); r != OK {
		t.Fatalf("Verify after Check: %v, want OK", r)
	}
	// A used nonce still passes Check (it cannot know) and is Verify's to refuse.
	if r := check(good); r != OK {
		t.Fatalf("Check of a used nonce: %v", r)
	}
	if r := verify(t, a, good); r != Stale {
		t.Fatalf("Verify of a used nonce: %v, want Stale", r)
	}
	clk.Add(DefaultNonceTTL)
	if r := check(good); r != Stale {
		t.Fatalf("Check of an expired nonce: %v, want Stale", r)
	}
}
