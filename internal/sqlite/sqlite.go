// Package sqlite is the embedded Store: one SQLite file in WAL mode, written
// through a single connection and read through a pool, with every commit
// synced to disk before it is acknowledged.
package sqlite

import (
	"context"
	"database/sql"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/switchback/switchback"
	_ "modernc.org/sqlite" // the pure-Go SQLite driver
)

//go:embed migrations/*.sql
var migrations embed.FS

// Options tune a store.
type Options struct {
	// Quarantine is how long a released number stays unleasable.
	Quarantine time.Duration
	// Cache keeps recently used transfers in memory so reads cost no query.
	// It takes a lock file beside the database, so a second process that
	// asks for it fails to open: the cache is only right while this process
	// is the only one writing transfers.
	Cache bool
}

// cacheSize is how many transfers the cache holds.
const cacheSize = 50000

// DB is a switchback.Store on one SQLite file.
type DB struct {
	write      *sql.DB // written only by the committer's goroutine, one transaction at a time
	read       *sql.DB
	readStmts  sync.Map // query -> *sql.Stmt on the read pool
	quarantine time.Duration
	committer  *committer
	cache      *transferCache
	lock       *os.File               // held while the cache is on
	nonceKey   atomic.Pointer[[]byte] // the SIP nonce key once read; it never changes
}

// Open opens (creating if needed) the SQLite database at path and applies
// any pending migrations.
func Open(ctx context.Context, path string, opts Options) (*DB, error) {
	if path == "" {
		return nil, errors.New("open sqlite: empty path")
	}
	var lock *os.File
	if opts.Cache {
		var err error
		if lock, err = lockFile(path + ".lock"); err != nil {
			return nil, err
		}
	}
	pragmas := url.Values{}
	for _, p := range []string{"busy_timeout(10000)", "journal_mode(WAL)", "synchronous(FULL)", "foreign_keys(ON)"} {
		pragmas.Add("_pragma", p)
	}
	// Checkpoints are the committer's (commit.go), not SQLite's inside
	// whichever commit crosses a threshold.
	writeDSN := "file:" + path + "?" + pragmas.Encode() + "&_pragma=wal_autocheckpoint(0)&_pragma=journal_size_limit(67108864)&_txlock=immediate"
	write, err := sql.Open("sqlite", writeDSN)
	if err != nil {
		unlock(lock)
		return nil, fmt.Errorf("open sqlite: %w", err)
	}
	// The committer runs one transaction at a time; the second connection
	// lets it prepare a new statement while its transaction holds the first.
	write.SetMaxOpenConns(2)
	write.SetMaxIdleConns(2)
	write.SetConnMaxLifetime(0)

	pragmas.Add("_pragma", "query_only(ON)")
	read, err := sql.Open("sqlite", "file:"+path+"?"+pragmas.Encode())
	if err != nil {
		write.Close()
		unlock(lock)
		return nil, fmt.Errorf("open sqlite: %w", err)
	}
	n := max(4, runtime.GOMAXPROCS(0)*2)
	read.SetMaxOpenConns(n)
	read.SetMaxIdleConns(n)

	db := &DB{write: write, read: read, quarantine: opts.Quarantine, cache: newTransferCache(0), lock: lock}
	if opts.Cache {
		db.cache = newTransferCache(cacheSize)
	}
	db.committer = newCommitter(write)
	if err := db.migrate(ctx); err != nil {
		db.Close()
		return nil, err
	}
	return db, nil
}

// Close closes both connection pools.
func (db *DB) Close() error {
	db.committer.stop()
	err := errors.Join(db.read.Close(), db.write.Close())
	unlock(db.lock)
	return err
}

// Ping checks that the file can be read.
func (db *DB) Ping(ctx context.Context) error {
	var one int
	return db.readRow(ctx, "SELECT 1").Scan(&one)
}

// migrate applies every embedded migration newer than the file's user_version.
func (db *DB) migrate(ctx context.Context) error {
	names, err := fs.Glob(migrations, "migrations/*.sql")
	if err != nil {
		return err
	}
	sort.Strings(names)
	var current int
	if err := db.read.QueryRowContext(ctx, "PRAGMA user_version").Scan(&current); err != nil {
		return fmt.Errorf("read schema version: %w", err)
	}
	for _, name := range names {
		base := strings.TrimPrefix(name, "migrations/")
		version, err := strconv.Atoi(strings.SplitN(base, "_", 2)[0])
		if err != nil {
			return fmt.Errorf("migration %s: name must start with its version", base)
		}
		if version <= current {
			continue
		}
		body, err := migrations.ReadFile(name)
		if err != nil {
			return err
		}
		err = db.inTx(ctx, func(tx *wtx) error {
			if _, err := tx.tx.ExecContext(ctx, string(body)); err != nil {
				return err
			}
			_, err := tx.tx.ExecContext(ctx, fmt.Sprintf("PRAGMA user_version = %d", version))
			return err
		})
		if err != nil {
			return fmt.Errorf("migration %s: %w", base, err)
		}
	}
	return nil
}

// micros stores a time as microseconds since the epoch; the zero time is 0.
func micros(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMicro()
}

func fromMicros(us int64) time.Time {
	if us == 0 {
		return time.Time{}
	}
	return time.UnixMicro(us).UTC()
}

const transferColumns = `tenant_id, id, external_conversation_id, type, status, input_context, output_context,
	country, transfer_number, return_uri, return_transfer_type, return_auth_username, return_auth_password,
	created_at, expires_at, call_received_at, completed_at, request_hash, number_released_at, return_result,
	owner_node, owner_epoch`

type scanner interface{ Scan(dest ...any) error }

func scanTransfer(row scanner) (*switchback.Transfer, error) {
	var (
		t                                     switchback.Transfer
		input, output, number, result         sql.NullString
		country, uri, rtype, user, pass       string
		created, expires, received, completed int64
		released                              int64
	)
	err := row.Scan(&t.TenantID, &t.ID, &t.ExternalConversationID, &t.Type, &t.Status, &input, &output,
		&country, &number, &uri, &rtype, &user, &pass, &created, &expires, &received, &completed, &t.RequestHash, &released,
		&result, &t.Owner.Node, &t.Owner.Epoch)
	if err != nil {
		return nil, err
	}
	if result.Valid {
		if t.ReturnResult, err = decodeReturnResult(result.String); err != nil {
			return nil, fmt.Errorf("decode return result of %s: %w", t.ID, err)
		}
	}
	t.CreatedAt, t.ExpiresAt = fromMicros(created), fromMicros(expires)
	t.CallReceivedAt, t.CompletedAt = fromMicros(received), fromMicros(completed)
	if input.Valid {
		t.InputContext = new(switchback.InputContext)
		if err := json.Unmarshal([]byte(input.String), t.InputContext); err != nil {
			return nil, fmt.Errorf("decode input context of %s: %w", t.ID, err)
		}
	}
	if output.Valid {
		t.OutputContext = new(switchback.OutputContext)
		if err := json.Unmarshal([]byte(output.String), t.OutputContext); err != nil {
			return nil, fmt.Errorf("decode output context of %s: %w", t.ID, err)
		}
	}
	switch t.Type {
	case switchback.TypePhoneNumber:
		t.PhoneNumber = &switchback.PhoneNumber{Country: country, TransferNumber: number.String, ReleasedAt: fromMicros(released)}
	case switchback.TypeSIP:
		t.SIP = &switchback.SIP{ReturnURI: uri, ReturnTransferType: switchback.ReturnTransferType(rtype),
			ReturnAuthUsername: user, ReturnAuthPassword: pass}
	}
	return &t, nil
}

func jsonOrNull(v any, isNil bool) (sql.NullString, error) {
	if isNil {
		return sql.NullString{}, nil
	}
	b, err := json.Marshal(v)
	return sql.NullString{String: string(b), Valid: true}, err
}

// CreateTransfer implements switchback.Store.
func (db *DB) CreateTransfer(ctx context.Context, t *switchback.Transfer, now time.Time) (*switchback.Transfer, bool, error) {
	input, err := jsonOrNull(t.InputContext, t.InputContext == nil)
	if err != nil {
		return nil, false, fmt.Errorf("encode input context: %w", err)
	}
	var stored *switchback.Transfer
	created := false
	err = db.inTx(ctx, func(tx *wtx) error {
		stored, created = nil, false
		// Refusals come before the first write (see inTx), and a retry
		// of a create is answered before the conversation is looked at.
		if live, err := liveLeg(ctx, tx, t.TenantID, t.ExternalConversationID, t.ID); err != nil {
			return err
		} else if live != "" {
			existing, err := db.txTransfer(ctx, tx, t.TenantID, t.ID)
			if errors.Is(err, sql.ErrNoRows) {
				return switchback.LiveLegError(t.ExternalConversationID, live)
			}
			stored = existing
			return err
		}
		var country string
		var number sql.NullString
		phone := t.Type == switchback.TypePhoneNumber && t.PhoneNumber != nil
		if phone {
			country = t.PhoneNumber.Country
			e164, err := pickNumber(ctx, tx, t, now)
			if err != nil {
				// A retry of a create that got its number finds it here,
				// not the exhausted pool.
				if existing, gerr := db.txTransfer(ctx, tx, t.TenantID, t.ID); gerr == nil {
					stored = existing
					return nil
				}
				return err
			}
			number = sql.NullString{String: e164, Valid: true}
		}
		var sip switchback.SIP
		if t.SIP != nil {
			sip = *t.SIP
		}
		res, err := tx.exec(ctx, `INSERT INTO transfers (`+transferColumns+`)
			VALUES (?, ?, ?, ?, ?, ?, NULL, ?, ?, ?, ?, ?, ?, ?, ?, 0, 0, ?, 0, NULL, '', 0)
			ON CONFLICT (tenant_id, id) DO NOTHING`,
			t.TenantID, t.ID, t.ExternalConversationID, t.Type, switchback.StatusActive, input,
			country, number, sip.ReturnURI, sip.ReturnTransferType, sip.ReturnAuthUsername, sip.ReturnAuthPassword,
			micros(t.CreatedAt), micros(t.ExpiresAt), t.RequestHash)
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil {
			return err
		} else if n == 0 {
			stored, err = db.txTransfer(ctx, tx, t.TenantID, t.ID)
			return err
		}
		if phone {
			if _, err := tx.exec(ctx, `UPDATE numbers SET leased_tenant = ?, leased_transfer = ?, leased_until = ?
				WHERE e164 = ? AND leased_transfer IS NULL`, t.TenantID, t.ID, micros(t.ExpiresAt), number.String); err != nil {
				return err
			}
		}
		stored, created = newlyStored(t, number.String), true
		tx.afterCommit(func() { db.cache.put(stored) })
		return nil
	})
	if err != nil {
		return nil, false, wrap("create transfer", err)
	}
	return stored, created, nil
}

// newlyStored is what a freshly inserted row of t reads back as, without
// reading it back.
func newlyStored(t *switchback.Transfer, number string) *switchback.Transfer {
	s := *t
	s.Status = switchback.StatusActive
	s.OutputContext, s.ReturnResult, s.Owner = nil, nil, switchback.NodeLease{}
	s.CallReceivedAt, s.CompletedAt = time.Time{}, time.Time{}
	s.CreatedAt, s.ExpiresAt = fromMicros(micros(t.CreatedAt)), fromMicros(micros(t.ExpiresAt))
	if t.PhoneNumber != nil {
		s.PhoneNumber = &switchback.PhoneNumber{Country: t.PhoneNumber.Country, TransferNumber: number}
	}
	if t.SIP != nil {
		sip := *t.SIP
		s.SIP = &sip
	}
	return &s
}

func (db *DB) txTransfer(ctx context.Context, tx *wtx, tenantID, id string) (*switchback.Transfer, error) {
	return scanTransfer(tx.queryRow(ctx, `SELECT `+transferColumns+` FROM transfers WHERE tenant_id = ? AND id = ?`, tenantID, id))
}

// pickNumber chooses the number CreateTransfer documents; the caller leases it.
func pickNumber(ctx context.Context, tx *wtx, t *switchback.Transfer, now time.Time) (string, error) {
	var e164 string
	err := tx.queryRow(ctx, `SELECT e164 FROM numbers
		WHERE country = ? AND tenant_id IN (?, '') AND leased_transfer IS NULL AND quarantine_until <= ?
		ORDER BY tenant_id = '', released_at, e164 LIMIT 1`,
		t.PhoneNumber.Country, t.TenantID, micros(now)).Scan(&e164)
	if errors.Is(err, sql.ErrNoRows) {
		var any int
		err := tx.queryRow(ctx, `SELECT count(*) FROM numbers WHERE country = ? AND tenant_id IN (?, '')`,
			t.PhoneNumber.Country, t.TenantID).Scan(&any)
		if err != nil {
			return "", err
		}
		if any == 0 {
			return "", switchback.Errorf(switchback.EUNPROCESSABLE, "phoneNumber.country: no number pool for country %s", t.PhoneNumber.Country)
		}
		return "", switchback.Errorf(switchback.EEXHAUSTED, "no %s number is free right now; retry shortly", t.PhoneNumber.Country)
	} else if err != nil {
		return "", err
	}
	return e164, err
}

// releaseNumber frees the number a transfer holds, if any, into quarantine.
func (db *DB) releaseNumber(ctx context.Context, tx *wtx, tenantID, id string, now time.Time) error {
	_, err := tx.exec(ctx, `UPDATE numbers SET leased_tenant = NULL, leased_transfer = NULL, leased_until = 0,
		released_at = ?, quarantine_until = ? WHERE leased_tenant = ? AND leased_transfer = ?`,
		micros(now), micros(now.Add(db.quarantine)), tenantID, id)
	return err
}

// Transfer implements switchback.Store.
func (db *DB) Transfer(ctx context.Context, tenantID, id string) (*switchback.Transfer, error) {
	cached, seq := db.cache.get(tenantID, id)
	if cached != nil {
		return cached, nil
	}
	t, err := scanTransfer(db.readRow(ctx,
		`SELECT `+transferColumns+` FROM transfers WHERE tenant_id = ? AND id = ?`, tenantID, id))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, notFound(id)
	} else if err != nil {
		return nil, wrap("get transfer", err)
	}
	db.cache.fill(t, seq)
	return t, nil
}

func notFound(id string) error {
	return switchback.Errorf(switchback.ENOTFOUND, "call transfer %q not found", id)
}

// ListTransfers implements switchback.Store.
func (db *DB) ListTransfers(ctx context.Context, f switchback.TransferFilter) ([]*switchback.Transfer, error) {
	q := `SELECT ` + transferColumns + ` FROM transfers WHERE tenant_id = ?`
	args := []any{f.TenantID}
	if f.ExternalConversationID != "" {
		q += ` AND external_conversation_id = ?`
		args = append(args, f.ExternalConversationID)
	}
	if f.After != nil {
		c := micros(f.After.CreatedAt)
		q += ` AND (created_at < ? OR (created_at = ? AND id < ?))`
		args = append(args, c, c, f.After.ID)
	}
	q += ` ORDER BY created_at DESC, id DESC LIMIT ?`
	args = append(args, f.Limit)
	rows, err := db.readRows(ctx, q, args...)
	if err != nil {
		return nil, wrap("list transfers", err)
	}
	defer rows.Close()
	var out []*switchback.Transfer
	for rows.Next() {
		t, err := scanTransfer(rows)
		if err != nil {
			return nil, wrap("list transfers", err)
		}
		out = append(out, t)
	}
	return out, wrap("list transfers", rows.Err())
}

// MatchTransfer implements switchback.Store.
func (db *DB) MatchTransfer(ctx context.Context, tenantID, id string, c switchback.CallClaim, now time.Time) (*switchback.Transfer, error) {
	var t *switchback.Transfer
	err := db.inTx(ctx, func(tx *wtx) error {
		var err error
		t, err = db.match(ctx, tx, tenantID, id, c, now)
		return err
	})
	return t, wrap("match transfer", err)
}

func (db *DB) match(ctx context.Context, tx *wtx, tenantID, id string, c switchback.CallClaim, now time.Time) (*switchback.Transfer, error) {
	// The single writer makes the checks and the move one atomic step: no
	// other transaction runs between them. Every refusal comes before the
	// first write.
	if live, err := leaseLive(ctx, tx, c.Owner, now); err != nil {
		return nil, err
	} else if !live {
		return nil, switchback.LeaseLostError(c.Owner)
	}
	var slot sql.NullInt64 // none without a limit
	if c.MaxCalls > 0 {
		s, err := callSlot(ctx, tx, tenantID, c.MaxCalls)
		if switchback.ErrorCode(err) == switchback.EBUSY {
			// A call that could not be matched anyway says why.
			if err := db.refuseMatch(ctx, tx, tenantID, id, now); err != nil {
				return nil, err
			}
		}
		if err != nil {
			return nil, err
		}
		slot = sql.NullInt64{Int64: s, Valid: true}
	}
	t, err := scanTransfer(tx.queryRow(ctx, `UPDATE transfers SET status = ?, call_received_at = ?, number_released_at = ?,
			owner_node = ?, owner_epoch = ?, call_slot = ?
		WHERE tenant_id = ? AND id = ? AND status = ? AND expires_at > ?
			AND (external_conversation_id = '' OR NOT EXISTS (SELECT 1 FROM transfers AS live
				WHERE live.tenant_id = transfers.tenant_id
					AND live.external_conversation_id = transfers.external_conversation_id
					AND live.status = 'ONGOING'))
		RETURNING `+transferColumns,
		switchback.StatusOngoing, micros(now), micros(now), c.Owner.Node, c.Owner.Epoch, slot,
		tenantID, id, switchback.StatusActive, micros(now)))
	if errors.Is(err, sql.ErrNoRows) {
		if err := db.refuseMatch(ctx, tx, tenantID, id, now); err != nil {
			return nil, err
		}
		return nil, switchback.Errorf(switchback.EGONE, "call transfer %q can no longer take a call", id)
	} else if err != nil {
		return nil, err
	}
	tx.afterCommit(func() { db.cache.put(t) })
	if t.Type != switchback.TypePhoneNumber {
		return t, nil // only PHONE_NUMBER transfers hold a number
	}
	return t, db.releaseNumber(ctx, tx, tenantID, id, now)
}

// refuseMatch says why a transfer cannot be matched at now: no such
// transfer, one that can no longer take a call, or a conversation with
// another leg live; nil when nothing stands in the way.
func (db *DB) refuseMatch(ctx context.Context, tx *wtx, tenantID, id string, now time.Time) error {
	var (
		status, ext string
		expires     int64
	)
	err := tx.queryRow(ctx, `SELECT status, expires_at, external_conversation_id FROM transfers
		WHERE tenant_id = ? AND id = ?`, tenantID, id).Scan(&status, &expires, &ext)
	if errors.Is(err, sql.ErrNoRows) {
		return notFound(id)
	} else if err != nil {
		return err
	}
	if switchback.Status(status) != switchback.StatusActive || expires <= micros(now) {
		return switchback.Errorf(switchback.EGONE, "call transfer %q can no longer take a call", id)
	}
	if live, err := liveLeg(ctx, tx, tenantID, ext, id); err != nil {
		return err
	} else if live != "" {
		return switchback.LiveLegError(ext, live)
	}
	return nil
}

// MatchNumber implements switchback.Store.
func (db *DB) MatchNumber(ctx context.Context, e164 string, c switchback.CallClaim, now time.Time) (*switchback.Transfer, error) {
	var t *switchback.Transfer
	err := db.inTx(ctx, func(tx *wtx) error {
		var tenantID, id string
		err := tx.queryRow(ctx, `SELECT tenant_id, id FROM transfers
			WHERE transfer_number = ? AND status = 'ACTIVE' AND expires_at > ?`,
			e164, micros(now)).Scan(&tenantID, &id)
		if errors.Is(err, sql.ErrNoRows) {
			return switchback.Errorf(switchback.ENOTFOUND, "no active call transfer holds %s", e164)
		} else if err != nil {
			return err
		}
		t, err = db.match(ctx, tx, tenantID, id, c, now)
		return err
	})
	return t, wrap("match number", err)
}

// CompleteTransfer implements switchback.Store.
func (db *DB) CompleteTransfer(ctx context.Context, tenantID, id string, out *switchback.OutputContext, by switchback.NodeLease, now time.Time) (*switchback.Transfer, error) {
	output, err := jsonOrNull(out, out == nil)
	if err != nil {
		return nil, fmt.Errorf("encode output context: %w", err)
	}
	var t *switchback.Transfer
	err = db.inTx(ctx, func(tx *wtx) error {
		var err error
		t, err = db.complete(ctx, tx, tenantID, id, output, &by, now)
		return err
	})
	return t, wrap("complete transfer", err)
}

// complete moves a transfer ONGOING→COMPLETED with its encoded output,
// fenced by by (see switchback.Store), or whoever owns it when by is nil.
// It writes nothing when it fails.
func (db *DB) complete(ctx context.Context, tx *wtx, tenantID, id string, output any, by *switchback.NodeLease, now time.Time) (*switchback.Transfer, error) {
	cond, condArgs := ownedBy(by, now)
	t, err := scanTransfer(tx.queryRow(ctx, `UPDATE transfers
		SET status = ?, completed_at = ?, output_context = ?, return_auth_password = ''
		WHERE tenant_id = ? AND id = ? AND status = ?`+cond+` RETURNING `+transferColumns,
		append([]any{switchback.StatusCompleted, micros(now), output, tenantID, id, switchback.StatusOngoing}, condArgs...)...))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, refuseWrite(ctx, tx, tenantID, id, switchback.StatusOngoing, by, now)
	} else if err != nil {
		return nil, err
	}
	tx.afterCommit(func() { db.cache.put(t) })
	return t, nil
}

// ExpireTransfer implements switchback.Store.
func (db *DB) ExpireTransfer(ctx context.Context, tenantID, id string, now time.Time) (bool, error) {
	var moved bool
	err := db.inTx(ctx, func(tx *wtx) error {
		var err error
		moved, err = db.expire(ctx, tx, tenantID, id, now)
		return err
	})
	return moved, wrap("expire transfer", err)
}

func (db *DB) expire(ctx context.Context, tx *wtx, tenantID, id string, now time.Time) (bool, error) {
	res, err := tx.exec(ctx, `UPDATE transfers SET status = ?, return_auth_password = '', number_released_at = ?
		WHERE tenant_id = ? AND id = ? AND status = ? AND expires_at <= ?`,
		switchback.StatusExpired, micros(now), tenantID, id, switchback.StatusActive, micros(now))
	if err != nil {
		return false, err
	}
	if n, err := res.RowsAffected(); err != nil || n == 0 {
		return false, err
	}
	tx.afterCommit(func() { db.cache.drop(tenantID, id) })
	return true, db.releaseNumber(ctx, tx, tenantID, id, now)
}

// ExpireDue implements switchback.Store.
func (db *DB) ExpireDue(ctx context.Context, now time.Time, limit int) ([]switchback.TransferKey, error) {
	var keys []switchback.TransferKey
	err := db.inTx(ctx, func(tx *wtx) error {
		var err error
		keys, err = transferKeys(ctx, tx, `SELECT tenant_id, id, expires_at FROM transfers
			WHERE status = 'ACTIVE' AND expires_at <= ? ORDER BY expires_at LIMIT ?`, micros(now), limit)
		if err != nil {
			return err
		}
		for _, k := range keys {
			if _, err := db.expire(ctx, tx, k.TenantID, k.ID, now); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, wrap("expire due transfers", err)
	}
	return keys, nil
}

// transferKeys reads the (tenant_id, id, expires_at) rows a query selects.
func transferKeys(ctx context.Context, tx *wtx, query string, args ...any) ([]switchback.TransferKey, error) {
	rows, err := tx.query(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var keys []switchback.TransferKey
	for rows.Next() {
		var k switchback.TransferKey
		var exp int64
		if err := rows.Scan(&k.TenantID, &k.ID, &exp); err != nil {
			return nil, err
		}
		k.ExpiresAt = fromMicros(exp)
		keys = append(keys, k)
	}
	return keys, rows.Err()
}

// AbandonCalls implements switchback.Store.
func (db *DB) AbandonCalls(ctx context.Context, receivedBefore, now time.Time, limit int) ([]switchback.TransferKey, error) {
	output, err := jsonOrNull(&switchback.OutputContext{TransferType: switchback.TransferCallerDisconnect}, false)
	if err != nil {
		return nil, err
	}
	var keys []switchback.TransferKey
	err = db.inTx(ctx, func(tx *wtx) error {
		var err error
		keys, err = transferKeys(ctx, tx, `SELECT tenant_id, id, expires_at FROM transfers
			WHERE status = 'ONGOING' AND call_received_at <= ? ORDER BY call_received_at LIMIT ?`, micros(receivedBefore), limit)
		if err != nil {
			return err
		}
		for _, k := range keys {
			if _, err := db.complete(ctx, tx, k.TenantID, k.ID, output, nil, now); err != nil {
				// Not ONGOING any more can only be a domain error before any
				// write: the rows were read in this transaction.
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, wrap("abandon calls", err)
	}
	return keys, nil
}

// PendingExpiries implements switchback.Store.
func (db *DB) PendingExpiries(ctx context.Context, limit int) ([]switchback.TransferKey, error) {
	rows, err := db.readRows(ctx, `SELECT tenant_id, id, expires_at FROM transfers
		WHERE status = 'ACTIVE' ORDER BY expires_at LIMIT ?`, limit)
	if err != nil {
		return nil, wrap("pending expiries", err)
	}
	defer rows.Close()
	var keys []switchback.TransferKey
	for rows.Next() {
		var k switchback.TransferKey
		var exp int64
		if err := rows.Scan(&k.TenantID, &k.ID, &exp); err != nil {
			return nil, wrap("pending expiries", err)
		}
		k.ExpiresAt = fromMicros(exp)
		keys = append(keys, k)
	}
	return keys, wrap("pending expiries", rows.Err())
}

// CountTransfers implements switchback.Store.
func (db *DB) CountTransfers(ctx context.Context) (map[switchback.Status]int, error) {
	rows, err := db.readRows(ctx, `SELECT status, count(*) FROM transfers GROUP BY status`)
	if err != nil {
		return nil, wrap("count transfers", err)
	}
	defer rows.Close()
	counts := map[switchback.Status]int{}
	for rows.Next() {
		var s switchback.Status
		var n int
		if err := rows.Scan(&s, &n); err != nil {
			return nil, wrap("count transfers", err)
		}
		counts[s] = n
	}
	return counts, wrap("count transfers", rows.Err())
}

// wrap adds what was being done to a driver error and leaves domain errors
// as they are.
func wrap(doing string, err error) error {
	var e *switchback.Error
	if err == nil || errors.As(err, &e) {
		return err
	}
	return fmt.Errorf("%s: %w", doing, err)
}
