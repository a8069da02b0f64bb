// Package postgres implements switchback.Store on PostgreSQL, the store that
// several Switchback nodes share. Its schema mirrors internal/sqlite's; every
// status move is one conditional UPDATE, number leases are taken with
// SELECT ... FOR UPDATE SKIP LOCKED, and the database itself refuses a number
// held by two ACTIVE transfers, so racing nodes cannot break the invariants.
package postgres

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/switchback/switchback"
)

// Options tunes a store.
type Options struct {
	// Quarantine is how long a released number stays unleasable: a number
	// released at T may be leased again from T+Quarantine on.
	Quarantine time.Duration
}

// DB is a switchback.Store on a PostgreSQL database. It is safe for
// concurrent use, and several DBs, in one process or on many nodes, may
// share one database.
type DB struct {
	pool       *pgxpool.Pool
	quarantine time.Duration
	nonceKey   atomic.Pointer[[]byte] // the SIP nonce key once read; it never changes
}

var _ switchback.Store = (*DB)(nil)

//go:embed migrations/*.sql
var migrationFiles embed.FS

// DefaultMaxConns is the connection pool's size when the DSN names none.
const DefaultMaxConns = 16

// migrationLockKey names the advisory lock that serializes migrations, so
// nodes starting together apply each migration once.
const migrationLockKey int64 = 0x5377_6974_6368_6261 // "Switchba"

// Open connects to the database at dsn (a postgres:// URL or a keyword/value
// string), applies any pending migrations and returns the store. The DSN
// may size the connection pool with pgxpool's pool_max_conns; without it the
// pool holds DefaultMaxConns, since every create waits on a commit's fsync
// and a pool the size of the core count would queue requests behind a few.
func Open(ctx context.Context, dsn string, opts Options) (*DB, error) {
	if opts.Quarantine < 0 {
		return nil, fmt.Errorf("open postgres: negative quarantine %v", opts.Quarantine)
	}
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("open postgres: %w", err)
	}
	if !strings.Contains(dsn, "pool_max_conns") {
		cfg.MaxConns = DefaultMaxConns
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("open postgres: %w", err)
	}
	db := &DB{pool: pool, quarantine: opts.Quarantine}
	if err := db.migrate(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("migrate postgres: %w", err)
	}
	return db, nil
}

// Ping reports whether the database is reachable.
func (db *DB) Ping(ctx context.Context) error {
	if err := db.pool.Ping(ctx); err != nil {
		return fmt.Errorf("ping postgres: %w", err)
	}
	return nil
}

// Close releases the store's connections, waiting for those in use.
func (db *DB) Close() error {
	db.pool.Close()
	return nil
}

type migration struct {
	version int
	name    string
	sql     string
}

// migrations returns the embedded migrations in version order. A file is
// named NNNN_what.sql; its version is NNNN.
func migrations() ([]migration, error) {
	names, err := fs.Glob(migrationFiles, "migrations/*.sql")
	if err != nil {
		return nil, err
	}
	var ms []migration
	seen := map[int]string{}
	for _, name := range names {
		base := path.Base(name)
		prefix, _, ok := strings.Cut(base, "_")
		v, err := strconv.Atoi(prefix)
		if !ok || err != nil || v <= 0 {
			return nil, fmt.Errorf("migration %s: name must start with a positive version and '_'", base)
		}
		if other, dup := seen[v]; dup {
			return nil, fmt.Errorf("migrations %s and %s share version %d", other, base, v)
		}
		seen[v] = base
		b, err := migrationFiles.ReadFile(name)
		if err != nil {
			return nil, err
		}
		ms = append(ms, migration{version: v, name: base, sql: string(b)})
	}
	sort.Slice(ms, func(i, j int) bool { return ms[i].version < ms[j].version })
	return ms, nil
}

// migrate applies the migrations the database lacks, all in one transaction
// that first takes an advisory lock: a second node starting at the same time
// waits, then finds them applied.
func (db *DB) migrate(ctx context.Context) error {
	ms, err := migrations()
	if err != nil {
		return err
	}
	return pgx.BeginFunc(ctx, db.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", migrationLockKey); err != nil {
			return fmt.Errorf("lock: %w", err)
		}
		if _, err := tx.Exec(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
			version    INTEGER PRIMARY KEY,
			applied_at BIGINT  NOT NULL
		)`); err != nil {
			return fmt.Errorf("create schema_migrations: %w", err)
		}
		rows, err := tx.Query(ctx, "SELECT version FROM schema_migrations")
		if err != nil {
			return fmt.Errorf("read schema_migrations: %w", err)
		}
		applied, err := pgx.CollectRows(rows, pgx.RowTo[int32])
		if err != nil {
			return fmt.Errorf("read schema_migrations: %w", err)
		}
		done := map[int]bool{}
		for _, v := range applied {
			done[int(v)] = true
		}
		for _, m := range ms {
			if done[m.version] {
				continue
			}
			// Without arguments pgx sends the simple protocol, which runs a
			// file of several statements.
			if _, err := tx.Exec(ctx, m.sql); err != nil {
				return fmt.Errorf("apply %s: %w", m.name, err)
			}
			if _, err := tx.Exec(ctx,
				"INSERT INTO schema_migrations (version, applied_at) VALUES ($1, $2)",
				m.version, micros(time.Now())); err != nil {
				return fmt.Errorf("record %s: %w", m.name, err)
			}
		}
		return nil
	})
}

// micros is how times are stored: microseconds since the epoch, 0 for never.
func micros(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMicro()
}

// fromMicros reverses micros, in UTC.
func fromMicros(us int64) time.Time {
	if us == 0 {
		return time.Time{}
	}
	return time.UnixMicro(us).UTC()
}

// limitArg turns a caller's limit into a LIMIT parameter. As in SQLite, a
// negative limit means none: NULL, which PostgreSQL reads as LIMIT ALL.
func limitArg(n int) any {
	if n < 0 {
		return nil
	}
	return int64(n)
}

// notFound reports whether err means a query found no row.
func notFound(err error) bool { return errors.Is(err, pgx.ErrNoRows) }
