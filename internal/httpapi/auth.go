package httpapi

import (
	"math"
	"net/http"
	"sync"
	"time"

	"github.com/switchback/switchback"
)

// authenticator checks the asapp-api-id and asapp-api-secret headers and
// applies the key's rate limit. Keys are cached for a few seconds so that a
// request costs no store read; the cache holds only the stored hash.
type authenticator struct {
	d     Deps
	mu    sync.Mutex
	cache map[string]cachedKey
	limit map[string]*bucket
}

type cachedKey struct {
	key     *switchback.APIKey
	fetched time.Time
}

func newAuthenticator(d Deps) *authenticator {
	return &authenticator{d: d, cache: map[string]cachedKey{}, limit: map[string]*bucket{}}
}

// tenantOf returns the tenant the request was authenticated for.
func tenantOf(r *http.Request) string { return info(r).tenant }

// require wraps next so it runs only for an authenticated, authorised key
// within its rate limit.
func (a *authenticator) require(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, secret := r.Header.Get("asapp-api-id"), r.Header.Get("asapp-api-secret")
		if id == "" || secret == "" {
			writeError(w, r, a.d.Log, switchback.Errorf(switchback.EUNAUTHORIZED,
				"the asapp-api-id and asapp-api-secret headers are required"))
			return
		}
		// An id no key can have is refused before any lookup: the store
		// may not even be able to compare it (PostgreSQL refuses invalid
		// UTF-8 and NUL), and it reads as any unknown key does.
		if !switchback.ValidID(id) {
			writeError(w, r, a.d.Log, switchback.Errorf(switchback.EUNAUTHORIZED, "invalid API credentials"))
			return
		}
		key, err := a.key(r, id)
		if switchback.ErrorCode(err) == switchback.ENOTFOUND {
			err = nil
		} else if err != nil {
			writeError(w, r, a.d.Log, err)
			return
		}
		// Unknown key, revoked key and wrong secret read the same, so the
		// answer tells nothing about which keys exist.
		if key == nil || key.Revoked() || !key.Verify(secret) {
			writeError(w, r, a.d.Log, switchback.Errorf(switchback.EUNAUTHORIZED, "invalid API credentials"))
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

func (a *authenticator) key(r *http.Request, id string) (*switchback.APIKey, error) {
	now := a.d.Clock()
	a.mu.Lock()
	c, ok := a.cache[id]
	a.mu.Unlock()
	if ok && now.Sub(c.fetched) < a.d.KeyCacheTTL {
		return c.key, nil
	}
	k, err := a.d.Store.APIKey(r.Context(), id)
	if err != nil {
		return nil, err
	}
	a.mu.Lock()
	if len(a.cache) > 100000 {
		clear(a.cache)
	}
	a.cache[id] = cachedKey{k, now}
	a.mu.Unlock()
	return k, nil
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
	if elapsed := now.Sub(b.at).Seconds(); elapsed > 0 {
		b.tokens = math.Min(burst, b.tokens+elapsed*rate)
		b.at = now
	}
	if b.tokens >= 1 {
		b.tokens--
		return 0
	}
	return time.Duration((1 - b.tokens) / rate * float64(time.Second))
}
