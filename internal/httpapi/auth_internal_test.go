package httpapi

import (
	"context"
	"fmt"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/switchback/switchback"
)

// noKeys is a store that has no API key at all.
type noKeys struct{ switchback.Store }

func (noKeys) APIKey(_ context.Context, id string) (*switchback.APIKey, error) {
	return nil, switchback.Errorf(switchback.ENOTFOUND, "API key %s not found", id)
}

// TestAuthenticatorMemoryIsBounded fails authentication with 30,000 key
// ids from 30,000 addresses: what the authenticator remembers of them
// stays within its fixed sizes.
func TestAuthenticatorMemoryIsBounded(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	a := newAuthenticator(Deps{Store: noKeys{}, Clock: func() time.Time { return now }, KeyCacheTTL: time.Minute,
		AuthFailureLimit: RateLimit{RequestsPerSecond: 1, Burst: 1}})
	for i := range 30000 {
		r := httptest.NewRequest("GET", "/", nil)
		r.RemoteAddr = fmt.Sprintf("10.%d.%d.%d:5000", i>>16, i>>8&0xff, i&0xff)
		source := sourceOf(r)
		key, wait, err := a.key(r, fmt.Sprintf("sbk_%d", i), source)
		if key != nil || wait != 0 || err != nil {
			t.Fatalf("lookup %d: %v %v %v", i, key, wait, err)
		}
		a.failed(source)
	}
	if n := a.unknown.len(); n > unknownKeyCacheSize {
		t.Errorf("%d unknown key ids remembered", n)
	}
	if n := a.failures.len(); n > failureSources {
		t.Errorf("%d sources remembered", n)
	}
	if len(a.cache) != 0 {
		t.Errorf("unknown ids in the key cache: %d", len(a.cache))
	}
}

func TestSourceOf(t *testing.T) {
	for addr, want := range map[string]string{
		"192.0.2.7:5060":             "192.0.2.7",
		"[::ffff:192.0.2.7]:5060":    "192.0.2.7",
		"[2001:db8:1:2:3:4:5:6]:443": "2001:db8:1:2::/64",
		"[2001:db8:1:2::9]:443":      "2001:db8:1:2::/64",
		"[fe80::1%eth0]:1":           "fe80::/64",
		"pipe":                       "pipe",
	} {
		r := httptest.NewRequest("GET", "/", nil)
		r.RemoteAddr = addr
		if got := sourceOf(r); got != want {
			t.Errorf("sourceOf(%s) = %s, want %s", addr, got, want)
		}
	}
}

func TestLRUForgetsTheLeastRecentlyUsed(t *testing.T) {
	c := newLRU[string, int](2)
	c.put("a", 1)
	c.put("b", 2)
	c.get("a")
	c.put("c", 3) // b is the least recently used
	if _, ok := c.get("b"); ok {
		t.Fatal("b kept")
	}
	if v, ok := c.get("a"); !ok || v != 1 {
		t.Fatalf("a = %v %v", v, ok)
	}
	c.put("a", 4)
	c.remove("c")
	if v, _ := c.get("a"); v != 4 || c.len() != 1 {
		t.Fatalf("a = %v, len %d", v, c.len())
	}
}
