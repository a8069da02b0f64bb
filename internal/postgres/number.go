package postgres

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/switchback/switchback"
)

// AddNumbers adds numbers to the pool. A number already there takes the
// given country and tenant; its current lease, if any, is left alone. It
// returns how many were new.
func (db *DB) AddNumbers(ctx context.Context, numbers []switchback.Number) (int, error) {
	// One statement may not touch a row twice, so a number listed twice
	// counts once, with the last country and tenant given.
	index := map[string]int{}
	var e164s, countries, tenants []string
	for _, n := range numbers {
		if i, ok := index[n.E164]; ok {
			countries[i], tenants[i] = n.Country, n.TenantID
			continue
		}
		index[n.E164] = len(e164s)
		e164s = append(e164s, n.E164)
		countries = append(countries, n.Country)
		tenants = append(tenants, n.TenantID)
	}
	if len(e164s) == 0 {
		return 0, nil
	}
	var added int64
	err := pgx.BeginFunc(ctx, db.pool, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `
			INSERT INTO numbers (e164, country, tenant_id)
			SELECT * FROM unnest($1::text[], $2::text[], $3::text[])
			ON CONFLICT (e164) DO NOTHING`, e164s, countries, tenants)
		if err != nil {
			return err
		}
		added = tag.RowsAffected()
		_, err = tx.Exec(ctx, `
			UPDATE numbers n SET country = a.country, tenant_id = a.tenant_id
			FROM unnest($1::text[], $2::text[], $3::text[]) AS a (e164, country, tenant_id)
			WHERE n.e164 = a.e164 AND (n.country, n.tenant_id) IS DISTINCT FROM (a.country, a.tenant_id)`,
			e164s, countries, tenants)
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("add numbers: %w", err)
	}
	return int(added), nil
}

// RemoveNumbers removes numbers from the pool, all or none: none if any is
// leased (ECONFLICT) or unknown (ENOTFOUND), the first such in e164s
// deciding which.
func (db *DB) RemoveNumbers(ctx context.Context, e164s []string) error {
	seen := map[string]bool{}
	var unique []string
	for _, n := range e164s {
		if !seen[n] {
			seen[n] = true
			unique = append(unique, n)
		}
	}
	if len(unique) == 0 {
		return nil
	}
	err := pgx.BeginFunc(ctx, db.pool, func(tx pgx.Tx) error {
		// The row locks keep a racing create from leasing a number between
		// the check and the delete.
		rows, err := tx.Query(ctx, `
			SELECT e164, leased_transfer IS NOT NULL FROM numbers
			WHERE e164 = ANY($1) ORDER BY e164 FOR UPDATE`, unique)
		if err != nil {
			return err
		}
		var (
			e164      string
			isLeased  bool
			leasedNow = map[string]bool{}
		)
		if _, err := pgx.ForEachRow(rows, []any{&e164, &isLeased}, func() error {
			leasedNow[e164] = isLeased
			return nil
		}); err != nil {
			return err
		}
		// Report the first offending number in the order given, as the
		// SQLite store does.
		for _, n := range unique {
			leased, found := leasedNow[n]
			if !found {
				return switchback.Errorf(switchback.ENOTFOUND, "number %s is not in the pool", n)
			} else if leased {
				return switchback.Errorf(switchback.ECONFLICT, "number %s is leased to a call transfer; remove it once the lease ends", n)
			}
		}
		_, err = tx.Exec(ctx, `DELETE FROM numbers WHERE e164 = ANY($1)`, unique)
		return err
	})
	if err != nil {
		return wrap("remove numbers", err)
	}
	return nil
}

// Numbers lists the pool's numbers of a country ("" for all), ordered by
// country then number, with their state at now.
func (db *DB) Numbers(ctx context.Context, country string, now time.Time) ([]switchback.NumberState, error) {
	rows, err := db.pool.Query(ctx, `
		SELECT e164, country, tenant_id, leased_tenant, leased_transfer,
			leased_until, released_at, quarantine_until
		FROM numbers
		WHERE $1 = '' OR country = $1
		ORDER BY country, e164`, country)
	if err != nil {
		return nil, fmt.Errorf("list numbers: %w", err)
	}
	at := micros(now)
	states, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (switchback.NumberState, error) {
		var (
			s                                   switchback.NumberState
			leasedTenant, leasedTransfer        *string
			leasedUntil, released, quarantUntil int64
		)
		if err := row.Scan(&s.E164, &s.Country, &s.TenantID, &leasedTenant, &leasedTransfer,
			&leasedUntil, &released, &quarantUntil); err != nil {
			return s, err
		}
		s.ReleasedAt = fromMicros(released)
		switch {
		case leasedTransfer != nil:
			s.State = switchback.NumberLeased
			s.TransferID = *leasedTransfer
			if leasedTenant != nil {
				s.TransferTenant = *leasedTenant
			}
			s.LeasedUntil = fromMicros(leasedUntil)
		case quarantUntil > at:
			s.State = switchback.NumberQuarantined
			s.QuarantineUntil = fromMicros(quarantUntil)
		default:
			s.State = switchback.NumberFree
		}
		return s, nil
	})
	if err != nil {
		return nil, fmt.Errorf("list numbers: %w", err)
	}
	return states, nil
}

// PoolSummaries counts each country's numbers by state at now, ordered by
// country.
func (db *DB) PoolSummaries(ctx context.Context, now time.Time) ([]switchback.PoolSummary, error) {
	rows, err := db.pool.Query(ctx, `
		SELECT country, count(*),
			count(*) FILTER (WHERE leased_transfer IS NOT NULL),
			count(*) FILTER (WHERE leased_transfer IS NULL AND quarantine_until > $1)
		FROM numbers
		GROUP BY country
		ORDER BY country`, micros(now))
	if err != nil {
		return nil, fmt.Errorf("summarize pool: %w", err)
	}
	sums, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (switchback.PoolSummary, error) {
		var (
			s                         switchback.PoolSummary
			size, leased, quarantined int64
		)
		err := row.Scan(&s.Country, &size, &leased, &quarantined)
		s.Size, s.Leased, s.Quarantined = int(size), int(leased), int(quarantined)
		s.Free = s.Size - s.Leased - s.Quarantined
		return s, err
	})
	if err != nil {
		return nil, fmt.Errorf("summarize pool: %w", err)
	}
	return sums, nil
}

// NumberHolder implements switchback.Store.
func (db *DB) NumberHolder(ctx context.Context, e164 string, now time.Time) (switchback.TransferKey, error) {
	var k switchback.TransferKey
	var expires int64
	err := db.pool.QueryRow(ctx, `SELECT tenant_id, id, expires_at FROM transfers
		WHERE transfer_number = $1 AND status = 'ACTIVE' AND expires_at > $2`, e164, micros(now)).Scan(&k.TenantID, &k.ID, &expires)
	if notFound(err) {
		return k, switchback.Errorf(switchback.ENOTFOUND, "no active call transfer holds number %s", e164)
	} else if err != nil {
		return k, fmt.Errorf("number holder: %w", err)
	}
	k.ExpiresAt = fromMicros(expires)
	return k, nil
}
