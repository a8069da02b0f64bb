package switchback

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"time"
)

// ScopeCallTransfers allows a key to create and read call transfers.
const ScopeCallTransfers = "call-transfers"

// APIKey is a tenant's credential for the REST API: the asapp-api-id header
// carries ID, asapp-api-secret the secret, of which only a hash is kept.
type APIKey struct {
	ID         string
	TenantID   string
	Name       string
	SecretHash []byte
	Scopes     []string
	CreatedAt  time.Time
	RevokedAt  time.Time // zero while the key is valid
}

// NewAPIKey makes a key for tenant with the given scopes and returns it with
// its secret, which is shown once and never stored.
func NewAPIKey(tenantID, name string, scopes []string, now time.Time) (*APIKey, string, error) {
	id, err := randomToken(12)
	if err != nil {
		return nil, "", err
	}
	secret, err := randomToken(32)
	if err != nil {
		return nil, "", err
	}
	return &APIKey{
		ID:         "sbk_" + id,
		TenantID:   tenantID,
		Name:       name,
		SecretHash: HashSecret(secret),
		Scopes:     scopes,
		CreatedAt:  now,
	}, secret, nil
}

// HashSecret returns the stored form of an API secret. Secrets are 256 random
// bits, so a plain SHA-256 is as strong as a slow password hash here and keeps
// every request cheap to authenticate.
func HashSecret(secret string) []byte {
	h := sha256.Sum256([]byte(secret))
	return h[:]
}

// Verify reports, in constant time, whether secret is this key's secret.
func (k *APIKey) Verify(secret string) bool {
	return subtle.ConstantTimeCompare(HashSecret(secret), k.SecretHash) == 1
}

// Allows reports whether the key has scope.
func (k *APIKey) Allows(scope string) bool {
	for _, s := range k.Scopes {
		if s == scope {
			return true
		}
	}
	return false
}

// Revoked reports whether the key has been revoked.
func (k *APIKey) Revoked() bool { return !k.RevokedAt.IsZero() }

func randomToken(n int) (string, error) {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}
