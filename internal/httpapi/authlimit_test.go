package httpapi_test

import (
	"context"
	"fmt"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/switchback/switchback"
	"github.com/switchback/switchback/internal/httpapi"
)

// countingStore counts the API key lookups that reach the store.
type countingStore struct {
	switchback.Store
	lookups atomic.Int64
}

func (s *countingStore) APIKey(ctx context.Context, id string) (*switchback.APIKey, error) {
	s.lookups.Add(1)
	return s.Store.APIKey(ctx, id)
}

// rawFrom sends request from the local address ip (any of 127.0.0.0/8),
// so a test can be several sources.
func rawFrom(t *testing.T, ip, url, request string) *rawResponse {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}}
	return rawWith(t, d.Dial, url, request)
}

func getWithKey(id, secret string) string {
	return "GET " + transfersPath + " HTTP/1.1\r\nHost: x\r\nasapp-api-id: " + id + "\r\nasapp-api-secret: " + secret + "\r\nConnection: close\r\n\r\n"
}

// TestUnknownKeyIDsAreRememberedForAWhile sends the same unknown key id
// again and again: the store is asked once per KeyCacheTTL, not once per
// request, and a key created under that id works once the TTL has passed.
func TestUnknownKeyIDsAreRememberedForAWhile(t *testing.T) {
	var store *countingStore
	h := newHarness(t, harnessOptions{Change: func(d *httpapi.Deps) {
		store = &countingStore{Store: d.Store}
		d.Store, d.KeyCacheTTL = store, 5*time.Second
	}})
	for range 20 {
		if r := h.do("GET", transfersPath, "", "asapp-api-id", "sbk_later"); r.Status != 401 {
			t.Fatalf("unknown key: %d %s", r.Status, r.Body)
		}
	}
	if n := store.lookups.Load(); n != 1 {
		t.Fatalf("20 requests with one unknown key id made %d store lookups", n)
	}
	k := &switchback.APIKey{ID: "sbk_later", TenantID: "acme", SecretHash: switchback.HashSecret("s3cret"),
		Scopes: []string{switchback.ScopeCallTransfers}, CreatedAt: time.Now()}
	if err := h.Store.CreateAPIKey(context.Background(), k); err != nil {
		t.Fatal(err)
	}
	h.clock.Add(5 * time.Second)
	if r := h.do("GET", transfersPath, "", "asapp-api-id", "sbk_later", "asapp-api-secret", "s3cret"); r.Status != 200 {
		t.Fatalf("a key created %v after its id was refused: %d %s", 5*time.Second, r.Status, r.Body)
	}
}

// TestFailedAuthenticationIsLimitedPerSource fails authentication from one
// address with ever new key ids: past its budget the address gets 429 with
// Retry-After and the store is no longer asked, while a key in use keeps
// working from the same address and other addresses are not affected.
func TestFailedAuthenticationIsLimitedPerSource(t *testing.T) {
	var store *countingStore
	h := newHarness(t, harnessOptions{Change: func(d *httpapi.Deps) {
		store = &countingStore{Store: d.Store}
		d.Store, d.KeyCacheTTL = store, 5*time.Second
		d.AuthFailureLimit = httpapi.RateLimit{RequestsPerSecond: 1, Burst: 5}
	}})
	const attacker, other = "127.0.0.2", "127.0.0.3"
	if r := rawFrom(t, attacker, h.URL, getWithKey(h.KeyID, h.Secret)); r.Status != 200 {
		t.Fatalf("the harness key: %d %s", r.Status, r.Body)
	}
	for i := range 5 {
		if r := rawFrom(t, attacker, h.URL, getWithKey(fmt.Sprintf("sbk_guess%d", i), "x")); r.Status != 401 {
			t.Fatalf("failure %d within the budget: %d %s", i, r.Status, r.Body)
		}
	}
	before := store.lookups.Load()
	for i := 5; i < 50; i++ {
		r := rawFrom(t, attacker, h.URL, getWithKey(fmt.Sprintf("sbk_guess%d", i), "x"))
		if r.Status != 429 || r.errorCode(t) != "429-01" || r.Header.Get("Retry-After") != "1" {
			t.Fatalf("failure %d past the budget: %d %v %s", i, r.Status, r.Header, r.Body)
		}
	}
	if n := store.lookups.Load() - before; n != 0 {
		t.Fatalf("45 ids past the budget made %d store lookups", n)
	}
	// Missing credentials and a wrong secret still read as 401.
	if r := rawFrom(t, attacker, h.URL, "GET "+transfersPath+" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"); r.Status != 401 {
		t.Fatalf("no credentials past the budget: %d %s", r.Status, r.Body)
	}
	// The key in use keeps working from the same address, also when its
	// cache entry has to be read again.
	h.clock.Add(6 * time.Second)
	if r := rawFrom(t, attacker, h.URL, getWithKey(h.KeyID, h.Secret)); r.Status != 200 {
		t.Fatalf("a key in use from a source over its budget: %d %s", r.Status, r.Body)
	}
	// Another address has a budget of its own.
	if r := rawFrom(t, other, h.URL, getWithKey("sbk_guess99", "x")); r.Status != 401 {
		t.Fatalf("another source: %d %s", r.Status, r.Body)
	}
	// The budget refills: after the 6 s above, the attacker may fail again
	// five times (the burst), then not.
	for i := range 6 {
		r := rawFrom(t, attacker, h.URL, getWithKey(fmt.Sprintf("sbk_again%d", i), "x"))
		if want := map[bool]int{true: 401, false: 429}[i < 5]; r.Status != want {
			t.Fatalf("failure %d after the refill: %d, want %d", i, r.Status, want)
		}
	}
}
