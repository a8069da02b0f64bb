package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"strings"
	"time"

	"github.com/switchback/switchback"
)

// AddNumbers implements switchback.Store.
func (db *DB) AddNumbers(ctx context.Context, numbers []switchback.Number) (int, error) {
	added := 0
	err := db.inTx(ctx, func(tx *wtx) error {
		added = 0
		for _, n := range numbers {
			res, err := tx.exec(ctx, `INSERT INTO numbers (e164, country, tenant_id) VALUES (?, ?, ?)
				ON CONFLICT (e164) DO NOTHING`, n.E164, n.Country, n.TenantID)
			if err != nil {
				return err
			}
			if k, _ := res.RowsAffected(); k == 1 {
				added++
				continue
			}
			if _, err := tx.exec(ctx, `UPDATE numbers SET country = ?, tenant_id = ? WHERE e164 = ?`,
				n.Country, n.TenantID, n.E164); err != nil {
				return err
			}
		}
		return nil
	})
	return added, wrap("add numbers", err)
}

// RemoveNumbers implements switchback.Store.
func (db *DB) RemoveNumbers(ctx context.Context, e164s []string) error {
	err := db.inTx(ctx, func(tx *wtx) error {
		// Every refusal comes before the first delete (see inTx).
		for _, n := range e164s {
			var leased sql.NullString
			err := tx.queryRow(ctx, `SELECT leased_transfer FROM numbers WHERE e164 = ?`, n).Scan(&leased)
			if errors.Is(err, sql.ErrNoRows) {
				return switchback.Errorf(switchback.ENOTFOUND, "number %s is not in the pool", n)
			} else if err != nil {
				return err
			}
			if leased.Valid {
				return switchback.Errorf(switchback.ECONFLICT, "number %s is leased to call transfer %q; remove it once the lease ends", n, leased.String)
			}
		}
		for _, n := range e164s {
			if _, err := tx.exec(ctx, `DELETE FROM numbers WHERE e164 = ?`, n); err != nil {
				return err
			}
		}
		return nil
	})
	return wrap("remove numbers", err)
}

// Numbers implements switchback.Store.
func (db *DB) Numbers(ctx context.Context, country string, now time.Time) ([]switchback.NumberState, error) {
	q := `SELECT e164, country, tenant_id, leased_tenant, leased_transfer, leased_until, released_at, quarantine_until FROM numbers`
	var args []any
	if country != "" {
		q += ` WHERE country = ?`
		args = append(args, country)
	}
	q += ` ORDER BY country, e164`
	rows, err := db.readRows(ctx, q, args...)
	if err != nil {
		return nil, wrap("list numbers", err)
	}
	defer rows.Close()
	var out []switchback.NumberState
	for rows.Next() {
		var (
			n                      switchback.NumberState
			lt, lx                 sql.NullString
			until, released, quart int64
		)
		if err := rows.Scan(&n.E164, &n.Country, &n.TenantID, &lt, &lx, &until, &released, &quart); err != nil {
			return nil, wrap("list numbers", err)
		}
		n.ReleasedAt = fromMicros(released)
		switch {
		case lx.Valid:
			n.State, n.TransferTenant, n.TransferID, n.LeasedUntil = switchback.NumberLeased, lt.String, lx.String, fromMicros(until)
		case quart > micros(now):
			n.State, n.QuarantineUntil = switchback.NumberQuarantined, fromMicros(quart)
		default:
			n.State = switchback.NumberFree
		}
		out = append(out, n)
	}
	return out, wrap("list numbers", rows.Err())
}

// PoolSummaries implements switchback.Store.
func (db *DB) PoolSummaries(ctx context.Context, now time.Time) ([]switchback.PoolSummary, error) {
	rows, err := db.readRows(ctx, `SELECT country, count(*),
		count(leased_transfer),
		sum(CASE WHEN leased_transfer IS NULL AND quarantine_until > ? THEN 1 ELSE 0 END)
		FROM numbers GROUP BY country ORDER BY country`, micros(now))
	if err != nil {
		return nil, wrap("pool summaries", err)
	}
	defer rows.Close()
	var out []switchback.PoolSummary
	for rows.Next() {
		var s switchback.PoolSummary
		if err := rows.Scan(&s.Country, &s.Size, &s.Leased, &s.Quarantined); err != nil {
			return nil, wrap("pool summaries", err)
		}
		s.Free = s.Size - s.Leased - s.Quarantined
		out = append(out, s)
	}
	return out, wrap("pool summaries", rows.Err())
}

// CreateAPIKey implements switchback.Store.
func (db *DB) CreateAPIKey(ctx context.Context, k *switchback.APIKey) error {
	err := db.inTx(ctx, func(tx *wtx) error {
		res, err := tx.exec(ctx, `INSERT INTO api_keys (id, tenant_id, name, secret_hash, scopes, created_at, revoked_at)
			VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING`,
			k.ID, k.TenantID, k.Name, k.SecretHash, strings.Join(k.Scopes, " "), micros(k.CreatedAt), micros(k.RevokedAt))
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return switchback.Errorf(switchback.ECONFLICT, "API key %s already exists", k.ID)
		}
		return nil
	})
	return wrap("create api key", err)
}

const keyColumns = `id, tenant_id, name, secret_hash, scopes, created_at, revoked_at`

func scanKey(row scanner) (*switchback.APIKey, error) {
	var k switchback.APIKey
	var scopes string
	var created, revoked int64
	if err := row.Scan(&k.ID, &k.TenantID, &k.Name, &k.SecretHash, &scopes, &created, &revoked); err != nil {
		return nil, err
	}
	k.Scopes = strings.Fields(scopes)
	k.CreatedAt, k.RevokedAt = fromMicros(created), fromMicros(revoked)
	return &k, nil
}

// APIKey implements switchback.Store.
func (db *DB) APIKey(ctx context.Context, id string) (*switchback.APIKey, error) {
	k, err := scanKey(db.readRow(ctx, `SELECT `+keyColumns+` FROM api_keys WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, switchback.Errorf(switchback.ENOTFOUND, "API key %s not found", id)
	}
	return k, wrap("get api key", err)
}

// RevokeAPIKey implements switchback.Store.
func (db *DB) RevokeAPIKey(ctx context.Context, id string, now time.Time) error {
	err := db.inTx(ctx, func(tx *wtx) error {
		res, err := tx.exec(ctx, `UPDATE api_keys SET revoked_at = ? WHERE id = ? AND revoked_at = 0`, micros(now), id)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 1 {
			return nil
		}
		var one int
		err = tx.queryRow(ctx, `SELECT 1 FROM api_keys WHERE id = ?`, id).Scan(&one)
		if errors.Is(err, sql.ErrNoRows) {
			return switchback.Errorf(switchback.ENOTFOUND, "API key %s not found", id)
		}
		return err
	})
	return wrap("revoke api key", err)
}

// APIKeys implements switchback.Store.
func (db *DB) APIKeys(ctx context.Context, tenantID string) ([]*switchback.APIKey, error) {
	q := `SELECT ` + keyColumns + ` FROM api_keys`
	var args []any
	if tenantID != "" {
		q += ` WHERE tenant_id = ?`
		args = append(args, tenantID)
	}
	rows, err := db.readRows(ctx, q+` ORDER BY created_at, id`, args...)
	if err != nil {
		return nil, wrap("list api keys", err)
	}
	defer rows.Close()
	var out []*switchback.APIKey
	for rows.Next() {
		k, err := scanKey(rows)
		if err != nil {
			return nil, wrap("list api keys", err)
		}
		out = append(out, k)
	}
	return out, wrap("list api keys", rows.Err())
}

// NumberHolder implements switchback.Store.
func (db *DB) NumberHolder(ctx context.Context, e164 string, now time.Time) (switchback.TransferKey, error) {
	var k switchback.TransferKey
	var expires int64
	err := db.readRow(ctx, `SELECT tenant_id, id, expires_at FROM transfers
		WHERE transfer_number = ? AND status = 'ACTIVE' AND expires_at > ?`, e164, micros(now)).Scan(&k.TenantID, &k.ID, &expires)
	if errors.Is(err, sql.ErrNoRows) {
		return k, switchback.Errorf(switchback.ENOTFOUND, "no active call transfer holds %s", e164)
	} else if err != nil {
		return k, wrap("number holder", err)
	}
	k.ExpiresAt = fromMicros(expires)
	return k, nil
}
