package httpapi

import (
	"math"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"time"

	"github.com/switchback/switchback"
)

// authenticator checks the asapp-api-id and asapp-api-secret headers and
// applies the key's rate limit. Keys are cached for a few seconds so that a
// request costs no store read; the cache holds only the stored hash.
//
// A key id the store does not have costs a store read too, and anyone can
// send one without credentials. So an unknown id is remembered for as long
// as a known key is (a key created meanwhile works once that much time has
// passed), in a cache of bounded size; and each source address has a
// budget of failed authentications, past which an id this node has not
// seen is answered 429 without a store read. Keys seen before keep working
// from that address: behind a load balancer every client shares it.
type authenticator struct {
	d        Deps
	mu       sync.Mutex
	cache    map[string]cachedKey
	limit    map[string]*bucket
	unknown  *lru[string, time.Time] // key id -> when the store did not have it
	failures *lru[string, *bucket]   // source address -> its failed authentications
}

type cachedKey struct {
	key     *switchback.APIKey
	fetched time.Time
}

// Sizes of the authenticator's bounded caches. Past them the least
// recently used entry is forgotten: an unknown id is then read again, and
// a source address starts with a full budget.
const (
	unknownKeyCacheSize = 10000
	failureSources      = 10000
)

func newAuthenticator(d Deps) *authenticator {
	return &authenticator{d: d, cache: map[string]cachedKey{}, limit: map[string]*bucket{},
		unknown: newLRU[string, time.Time](unknownKeyCacheSize), failures: newLRU[string, *bucket](failureSources)}
}

// tenantOf returns the tenant the request was authenticated for.
func tenantOf(r *http.Request) string { return info(r).tenant }

// require wraps next so it runs only for an authenticated, authorised key
// within its rate limit.
func (a *authenticator) require(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, secret := r.Header.Get("asapp-api-id"), r.Header.Get("asapp-api-secret")
		source := sourceOf(r)
		if id == "" || secret == "" {
			a.failed(source)
			writeError(w, r, a.d.Log, switchback.Errorf(switchback.EUNAUTHORIZED,
				"the asapp-api-id and asapp-api-secret headers are required"))
			return
		}
		// Unknown key, revoked key and wrong secret read the same, so the
		// answer tells nothing about which keys exist.
		invalid := switchback.Errorf(switchback.EUNAUTHORIZED, "invalid API credentials")
		// An id no key can have is refused before any lookup: the store
		// may not even be able to compare it (PostgreSQL refuses invalid
		// UTF-8 and NUL).
		if !switchback.ValidID(id) {
			a.failed(source)
			writeError(w, r, a.d.Log, invalid)
			return
		}
		key, wait, err := a.key(r, id, source)
		if wait > 0 {
			retryAfter(w, int(math.Ceil(wait.Seconds())))
			writeError(w, r, a.d.Log, switchback.Errorf(switchback.ERATELIMIT,
				"too many failed authentications from this address; retry after %s", wait.Round(time.Millisecond)))
			return
		}
		if err != nil {
			writeError(w, r, a.d.Log, err)
			return
		}
		if key == nil || key.Revoked() || !key.Verify(secret) {
			a.failed(source)
			writeError(w, r, a.d.Log, invalid)
			return
		}
		info(r).tenant = key.TenantID
		tenant, ok := a.d.Tenant(key.TenantID)
		if !key.Allows(switchback.ScopeCallTransfers) || !ok {
			writeError(w, r, a.d.Log, switchback.Errorf(switchback.EFORBIDDEN, "this API key may not use call transfers"))
			return
		}
		if wait := a.take(key.ID, tenant); wait > 0 {
			retryAfter(w, int(math.Ceil(wait.Seconds())))
			writeError(w, r, a.d.Log, switchback.Errorf(switchback.ERATELIMIT,
				"this API key is over its limit of %g requests per second; retry after %s", tenant.RequestsPerSecond, wait.Round(time.Millisecond)))
			return
		}
		next.ServeHTTP(w, r)
	})
}

// key returns the key of id (nil if there is none), reading the store only
// when no cache answers. An id this node has never seen as a key is read
// only while source is within its failure budget; otherwise key says how
// long until it is.
func (a *authenticator) key(r *http.Request, id, source string) (*switchback.APIKey, time.Duration, error) {
	now := a.d.Clock()
	a.mu.Lock()
	c, known := a.cache[id]
	if known && now.Sub(c.fetched) < a.d.KeyCacheTTL {
		a.mu.Unlock()
		return c.key, 0, nil
	}
	if !known {
		if at, ok := a.unknown.get(id); ok && now.Sub(at) < a.d.KeyCacheTTL {
			a.mu.Unlock()
			return nil, 0, nil
		}
		if wait := a.overBudget(source, now); wait > 0 {
			a.mu.Unlock()
			return nil, wait, nil
		}
	}
	a.mu.Unlock()

	k, err := a.d.Store.APIKey(r.Context(), id)
	if switchback.ErrorCode(err) == switchback.ENOTFOUND {
		a.mu.Lock()
		delete(a.cache, id) // deleted from the store since
		a.unknown.put(id, now)
		a.mu.Unlock()
		return nil, 0, nil
	}
	if err != nil {
		return nil, 0, err
	}
	a.mu.Lock()
	if len(a.cache) > 100000 {
		clear(a.cache)
	}
	a.cache[id] = cachedKey{k, now}
	a.unknown.remove(id)
	a.mu.Unlock()
	return k, 0, nil
}

// failed records a failed authentication from source.
func (a *authenticator) failed(source string) {
	l := a.d.AuthFailureLimit
	if l.RequestsPerSecond <= 0 {
		return
	}
	now := a.d.Clock()
	a.mu.Lock()
	defer a.mu.Unlock()
	b, ok := a.failures.get(source)
	if !ok {
		b = &bucket{tokens: float64(max(l.Burst, 1)), at: now}
		a.failures.put(source, b)
	}
	b.take(now, l.RequestsPerSecond, float64(max(l.Burst, 1)))
}

// overBudget says how long until source may fail authentication again: 0
// while it is within its budget. a.mu is held.
func (a *authenticator) overBudget(source string, now time.Time) time.Duration {
	l := a.d.AuthFailureLimit
	if l.RequestsPerSecond <= 0 {
		return 0
	}
	b, ok := a.failures.get(source)
	if !ok {
		return 0
	}
	return b.wait(now, l.RequestsPerSecond, float64(max(l.Burst, 1)))
}

// sourceOf is the address a request's failures are counted against: its
// IP address, or for IPv6 its /64, which one host usually holds whole.
func sourceOf(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return host
	}
	ip = ip.Unmap()
	if ip.Is4() {
		return ip.String()
	}
	p, _ := ip.Prefix(64)
	return p.String()
}

// take takes one token from the key's bucket, or says how long until one
// is there.
func (a *authenticator) take(keyID string, t Tenant) time.Duration {
	if t.RequestsPerSecond <= 0 {
		return 0
	}
	now := a.d.Clock()
	a.mu.Lock()
	defer a.mu.Unlock()
	b, ok := a.limit[keyID]
	if !ok {
		b = &bucket{tokens: float64(t.Burst), at: now}
		a.limit[keyID] = b
	}
	return b.take(now, t.RequestsPerSecond, float64(max(t.Burst, 1)))
}

// bucket is a token bucket.
type bucket struct {
	tokens float64
	at     time.Time
}

func (b *bucket) take(now time.Time, rate, burst float64) time.Duration {
	if wait := b.wait(now, rate, burst); wait > 0 {
		return wait
	}
	b.tokens--
	return 0
}

// wait refills the bucket to now and says how long until it holds a
// token: 0 if it does.
func (b *bucket) wait(now time.Time, rate, burst float64) time.Duration {
	if elapsed := now.Sub(b.at).Seconds(); elapsed > 0 {
		b.tokens = math.Min(burst, b.tokens+elapsed*rate)
		b.at = now
	}
	if b.tokens >= 1 {
		return 0
	}
	return time.Duration((1 - b.tokens) / rate * float64(time.Second))
}
