package postgres

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/switchback/switchback"
)

const apiKeyColumns = `id, tenant_id, name, secret_hash, scopes, created_at, revoked_at`

// CreateAPIKey stores a new key; ECONFLICT if its id is taken.
func (db *DB) CreateAPIKey(ctx context.Context, k *switchback.APIKey) error {
	tag, err := db.pool.Exec(ctx, `
		INSERT INTO api_keys (`+apiKeyColumns+`) VALUES ($1, $2, $3, $4, $5, $6, $7)
		ON CONFLICT (id) DO NOTHING`,
		k.ID, k.TenantID, k.Name, k.SecretHash, strings.Join(k.Scopes, " "), micros(k.CreatedAt), micros(k.RevokedAt))
	if err != nil {
		return fmt.Errorf("create api key: %w", err)
	}
	if tag.RowsAffected() == 0 {
		return switchback.Errorf(switchback.ECONFLICT, "api key %s already exists", k.ID)
	}
	return nil
}

// APIKey returns a key by id, revoked or not.
func (db *DB) APIKey(ctx context.Context, id string) (*switchback.APIKey, error) {
	rows, err := db.pool.Query(ctx, `SELECT `+apiKeyColumns+` FROM api_keys WHERE id = $1`, id)
	if err != nil {
		return nil, fmt.Errorf("get api key: %w", err)
	}
	k, err := pgx.CollectExactlyOneRow(rows, scanAPIKey)
	if notFound(err) {
		return nil, switchback.Errorf(switchback.ENOTFOUND, "api key %s not found", id)
	} else if err != nil {
		return nil, fmt.Errorf("get api key: %w", err)
	}
	return k, nil
}

// RevokeAPIKey revokes a key at now. Revoking a revoked key keeps the time
// it was first revoked.
func (db *DB) RevokeAPIKey(ctx context.Context, id string, now time.Time) error {
	tag, err := db.pool.Exec(ctx, `
		UPDATE api_keys SET revoked_at = CASE WHEN revoked_at = 0 THEN $2 ELSE revoked_at END
		WHERE id = $1`, id, micros(now))
	if err != nil {
		return fmt.Errorf("revoke api key: %w", err)
	}
	if tag.RowsAffected() == 0 {
		return switchback.Errorf(switchback.ENOTFOUND, "api key %s not found", id)
	}
	return nil
}

// APIKeys lists a tenant's keys ("" for all), oldest first.
func (db *DB) APIKeys(ctx context.Context, tenantID string) ([]*switchback.APIKey, error) {
	rows, err := db.pool.Query(ctx, `
		SELECT `+apiKeyColumns+` FROM api_keys
		WHERE $1 = '' OR tenant_id = $1
		ORDER BY created_at, id`, tenantID)
	if err != nil {
		return nil, fmt.Errorf("list api keys: %w", err)
	}
	keys, err := pgx.CollectRows(rows, scanAPIKey)
	if err != nil {
		return nil, fmt.Errorf("list api keys: %w", err)
	}
	return keys, nil
}

func scanAPIKey(row pgx.CollectableRow) (*switchback.APIKey, error) {
	var (
		k                switchback.APIKey
		scopes           string
		created, revoked int64
	)
	if err := row.Scan(&k.ID, &k.TenantID, &k.Name, &k.SecretHash, &scopes, &created, &revoked); err != nil {
		return nil, err
	}
	k.Scopes = strings.Fields(scopes)
	k.CreatedAt, k.RevokedAt = fromMicros(created), fromMicros(revoked)
	return &k, nil
}
