package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/switchback/switchback"
)

// transferColumns is the column list scanTransfer reads, in its order.
const transferColumns = `tenant_id, id, external_conversation_id, type, status,
	input_context, output_context, country, transfer_number,
	return_uri, return_transfer_type, return_auth_username, return_auth_password,
	created_at, expires_at, call_received_at, completed_at, request_hash, number_released_at,
	return_result, owner_node, owner_epoch`

// CreateTransfer stores t as ACTIVE, leasing a number in the same
// transaction for a PHONE_NUMBER transfer. A retry of an existing id returns
// the stored transfer and leases nothing.
//
// The insert comes first and the lease after it: the primary key makes a
// concurrent create of the same id wait for this one, then find its
// transfer, instead of locking a second number meanwhile.
func (db *DB) CreateTransfer(ctx context.Context, t *switchback.Transfer, now time.Time) (*switchback.Transfer, bool, error) {
	if t.Type == switchback.TypePhoneNumber && (t.PhoneNumber == nil || t.PhoneNumber.Country == "") {
		return nil, false, switchback.Errorf(switchback.EINVALID, "a PHONE_NUMBER transfer needs a country")
	}
	in, err := encodeJSON(t.InputContext)
	if err != nil {
		return nil, false, fmt.Errorf("create transfer: input context: %w", err)
	}
	createdAt := t.CreatedAt
	if createdAt.IsZero() {
		createdAt = now
	}
	var country string
	if t.PhoneNumber != nil {
		country = t.PhoneNumber.Country
	}
	var sip switchback.SIP
	if t.SIP != nil {
		sip = *t.SIP
	}

	var (
		stored  *switchback.Transfer
		created bool
	)
	err = pgx.BeginFunc(ctx, db.pool, func(tx pgx.Tx) error {
		inserted, err := scanTransfer(tx.QueryRow(ctx, `
			INSERT INTO transfers (tenant_id, id, external_conversation_id, type, status,
				input_context, country,
				return_uri, return_transfer_type, return_auth_username, return_auth_password,
				created_at, expires_at, request_hash)
			VALUES ($1, $2, $3, $4, 'ACTIVE', $5, $6, $7, $8, $9, $10, $11, $12, $13)
			ON CONFLICT (tenant_id, id) DO NOTHING
			RETURNING `+transferColumns,
			t.TenantID, t.ID, t.ExternalConversationID, string(t.Type),
			in, country,
			sip.ReturnURI, string(sip.ReturnTransferType), sip.ReturnAuthUsername, sip.ReturnAuthPassword,
			micros(createdAt), micros(t.ExpiresAt), t.RequestHash))
		if notFound(err) {
			// The id is taken; this statement sees the committed winner.
			stored, err = scanTransfer(tx.QueryRow(ctx,
				`SELECT `+transferColumns+` FROM transfers WHERE tenant_id = $1 AND id = $2`, t.TenantID, t.ID))
			if err != nil {
				return fmt.Errorf("read the stored transfer: %w", err)
			}
			return nil
		} else if err != nil {
			return fmt.Errorf("insert: %w", err)
		}
		// A refusal rolls the insert back. A leg matched after this check
		// is no harm: the new one's own match is refused while it is live.
		if live, err := liveLeg(ctx, tx, t.TenantID, t.ExternalConversationID, t.ID); err != nil {
			return err
		} else if live != "" {
			return switchback.LiveLegError(t.ExternalConversationID, live)
		}
		if t.Type != switchback.TypePhoneNumber {
			stored, created = inserted, true
			return nil
		}

		number, err := pickNumber(ctx, tx, t.TenantID, country, now)
		if err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `
			UPDATE numbers SET leased_tenant = $2, leased_transfer = $3, leased_until = $4
			WHERE e164 = $1`,
			number, t.TenantID, t.ID, micros(t.ExpiresAt)); err != nil {
			return fmt.Errorf("lease %s: %w", number, err)
		}
		stored, err = scanTransfer(tx.QueryRow(ctx, `
			UPDATE transfers SET transfer_number = $3 WHERE tenant_id = $1 AND id = $2
			RETURNING `+transferColumns, t.TenantID, t.ID, number))
		if err != nil {
			return fmt.Errorf("lease %s: %w", number, err)
		}
		created = true
		return nil
	})
	if err != nil {
		return nil, false, wrap("create transfer", err)
	}
	if created && t.PhoneNumber != nil {
		t.PhoneNumber.TransferNumber = stored.PhoneNumber.TransferNumber
	}
	return stored, created, nil
}

// pickNumber locks the number a new transfer of tenant in country should
// lease at now: a free one (not leased, out of quarantine), dedicated to the
// tenant before shared, released longest ago first. Numbers another
// transaction is leasing right now are skipped rather than waited for.
func pickNumber(ctx context.Context, tx pgx.Tx, tenantID, country string, now time.Time) (string, error) {
	var e164 string
	err := tx.QueryRow(ctx, `
		SELECT e164 FROM numbers
		WHERE country = $1 AND tenant_id IN ($2, '')
			AND leased_transfer IS NULL AND quarantine_until <= $3
		ORDER BY (tenant_id = ''), released_at, e164
		LIMIT 1
		FOR UPDATE SKIP LOCKED`, country, tenantID, micros(now)).Scan(&e164)
	if err == nil {
		return e164, nil
	} else if !notFound(err) {
		return "", fmt.Errorf("pick a number: %w", err)
	}
	var pool bool
	if err := tx.QueryRow(ctx, `
		SELECT EXISTS (SELECT 1 FROM numbers WHERE country = $1 AND tenant_id IN ($2, ''))`,
		country, tenantID).Scan(&pool); err != nil {
		return "", fmt.Errorf("look for a pool: %w", err)
	}
	if !pool {
		return "", switchback.Errorf(switchback.EUNPROCESSABLE, "no phone numbers are available for country %s", country)
	}
	return "", switchback.Errorf(switchback.EEXHAUSTED, "every phone number for country %s is in use; try again later", country)
}

// Transfer returns one transfer of a tenant, as stored.
func (db *DB) Transfer(ctx context.Context, tenantID, id string) (*switchback.Transfer, error) {
	t, err := scanTransfer(db.pool.QueryRow(ctx,
		`SELECT `+transferColumns+` FROM transfers WHERE tenant_id = $1 AND id = $2`, tenantID, id))
	if notFound(err) {
		return nil, errTransferNotFound(id)
	} else if err != nil {
		return nil, fmt.Errorf("get transfer: %w", err)
	}
	return t, nil
}

// ListTransfers returns a tenant's transfers newest first, continuing after
// f.After when set. A negative Limit means no limit.
func (db *DB) ListTransfers(ctx context.Context, f switchback.TransferFilter) ([]*switchback.Transfer, error) {
	var q strings.Builder
	args := []any{f.TenantID}
	arg := func(v any) string {
		args = append(args, v)
		return "$" + strconv.Itoa(len(args))
	}
	q.WriteString(`SELECT ` + transferColumns + ` FROM transfers WHERE tenant_id = $1`)
	if f.ExternalConversationID != "" {
		q.WriteString(` AND external_conversation_id = ` + arg(f.ExternalConversationID))
	}
	if f.After != nil {
		q.WriteString(` AND (created_at, id) < (` + arg(micros(f.After.CreatedAt)) + `, ` + arg(f.After.ID) + `)`)
	}
	q.WriteString(` ORDER BY created_at DESC, id DESC LIMIT ` + arg(limitArg(f.Limit)))
	rows, err := db.pool.Query(ctx, q.String(), args...)
	if err != nil {
		return nil, fmt.Errorf("list transfers: %w", err)
	}
	ts, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (*switchback.Transfer, error) { return scanTransfer(r) })
	if err != nil {
		return nil, fmt.Errorf("list transfers: %w", err)
	}
	return ts, nil
}

// MatchTransfer moves an unexpired ACTIVE transfer to ONGOING and releases
// its number into quarantine.
func (db *DB) MatchTransfer(ctx context.Context, tenantID, id string, c switchback.CallClaim, now time.Time) (*switchback.Transfer, error) {
	t, err := db.match(ctx, c, now, `t.tenant_id = $4 AND t.id = $5`, tenantID, id)
	if notFound(err) {
		exists, err := db.transferExists(ctx, tenantID, id)
		if err != nil {
			return nil, fmt.Errorf("match transfer: %w", err)
		} else if !exists {
			return nil, errTransferNotFound(id)
		}
		return nil, switchback.Errorf(switchback.EGONE, "call transfer %s is no longer active", id)
	} else if err != nil {
		return nil, wrap("match transfer", err)
	}
	return t, nil
}

// MatchNumber matches the unexpired ACTIVE transfer leasing e164.
func (db *DB) MatchNumber(ctx context.Context, e164 string, c switchback.CallClaim, now time.Time) (*switchback.Transfer, error) {
	t, err := db.match(ctx, c, now, `t.transfer_number = $4`, e164)
	if notFound(err) {
		return nil, switchback.Errorf(switchback.ENOTFOUND, "no active call transfer holds number %s", e164)
	} else if err != nil {
		return nil, wrap("match number", err)
	}
	return t, nil
}

// match moves the transfer of t that where selects (its parameters from $4
// on) from ACTIVE to ONGOING at now, if unexpired, records c.Owner as its
// owner, gives it a call slot under c.MaxCalls (see slots.go) and releases
// its number. It returns pgx.ErrNoRows when no transfer made the move,
// EFENCED when c.Owner is no longer current, the live-leg ECONFLICT when
// another leg of its conversation is ONGOING, and EBUSY when its tenant
// has no call slot free.
//
// Two legs of one conversation may be matched on two nodes at once, and
// under READ COMMITTED neither would see the other's uncommitted move; so
// the check and the move run under a transaction-scoped advisory lock on
// the conversation, which the winner holds until its move is committed.
func (db *DB) match(ctx context.Context, c switchback.CallClaim, now time.Time, where string, args ...any) (*switchback.Transfer, error) {
	args = append([]any{micros(now), c.Owner.Node, c.Owner.Epoch}, args...)
	for attempt := 1; ; attempt++ {
		t, err := db.matchOnce(ctx, c, now, where, args)
		var lost *slotTakenError
		if !errors.As(err, &lost) {
			return t, err
		} else if attempt == maxSlotAttempts {
			return nil, switchback.BusyError(lost.tenantID, c.MaxCalls)
		}
	}
}

// matchOnce is one attempt of match, whose args it takes as they are.
func (db *DB) matchOnce(ctx context.Context, c switchback.CallClaim, now time.Time, where string, args []any) (*switchback.Transfer, error) {
	var t *switchback.Transfer
	err := pgx.BeginFunc(ctx, db.pool, func(tx pgx.Tx) error {
		var (
			live             bool
			tenantID, id, ex *string
		)
		// One row whether or not a transfer is found: the lease first.
		if err := tx.QueryRow(ctx, `
			SELECT l.live, t.tenant_id, t.id, t.external_conversation_id
			FROM (SELECT `+leaseLive("$2", "$3")+` AS live) AS l
			LEFT JOIN transfers AS t ON `+where+` AND t.status = 'ACTIVE' AND t.expires_at > $1`,
			args...).Scan(&live, &tenantID, &id, &ex); err != nil {
			return err
		}
		if !live {
			return switchback.LeaseLostError(c.Owner)
		} else if id == nil {
			return pgx.ErrNoRows
		}
		ext := *ex
		if ext != "" {
			if err := lockConversation(ctx, tx, *tenantID, ext); err != nil {
				return err
			}
			if live, err := liveLeg(ctx, tx, *tenantID, ext, *id); err != nil {
				return err
			} else if live != "" {
				return switchback.LiveLegError(ext, live)
			}
		}
		var slot *int32 // none without a limit
		if c.MaxCalls > 0 {
			s, err := pickCallSlot(ctx, tx, *tenantID, c.MaxCalls)
			if err != nil {
				return err
			}
			slot = &s
		}
		var err error
		t, err = scanTransfer(tx.QueryRow(ctx, `
			UPDATE transfers SET status = 'ONGOING', call_received_at = $1, number_released_at = $1,
				owner_node = $4, owner_epoch = $5, call_slot = $6
			WHERE tenant_id = $2 AND id = $3 AND status = 'ACTIVE' AND expires_at > $1
			RETURNING `+transferColumns,
			micros(now), *tenantID, *id, c.Owner.Node, c.Owner.Epoch, slot))
		if err != nil {
			return slotTaken(err, *tenantID)
		}
		return db.release(ctx, tx, t, now)
	})
	return t, err
}

// CompleteTransfer moves an ONGOING transfer to COMPLETED with its output
// context and erases its return password.
func (db *DB) CompleteTransfer(ctx context.Context, tenantID, id string, out *switchback.OutputContext, by switchback.NodeLease, now time.Time) (*switchback.Transfer, error) {
	o, err := encodeJSON(out)
	if err != nil {
		return nil, fmt.Errorf("complete transfer: output context: %w", err)
	}
	return complete(ctx, db.pool, tenantID, id, o, nil, by, now)
}

// querier is what the statements of one transfer need: the pool, or a
// transaction.
type querier interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
}

// complete moves a transfer ONGOING→COMPLETED with its encoded output,
// and its encoded return result when result is not nil (a BYE hand-back
// knows both at once), in one statement fenced by by (see
// switchback.Store).
func complete(ctx context.Context, q querier, tenantID, id string, output any, result *string, by switchback.NodeLease, now time.Time) (*switchback.Transfer, error) {
	t, err := scanTransfer(q.QueryRow(ctx, `
		UPDATE transfers SET status = 'COMPLETED', output_context = $3, completed_at = $4,
			return_auth_password = '', return_result = COALESCE($7, return_result)
		WHERE tenant_id = $1 AND id = $2 AND status = 'ONGOING' AND `+ownedBy("$5", "$6")+`
		RETURNING `+transferColumns,
		tenantID, id, output, micros(now), by.Node, by.Epoch, result))
	if notFound(err) {
		if err := refuseWrite(ctx, q, tenantID, id, switchback.StatusOngoing, by); err != nil {
			return nil, err
		}
		return nil, switchback.Errorf(switchback.EGONE, "call transfer %s is not ongoing", id)
	} else if err != nil {
		return nil, fmt.Errorf("complete transfer: %w", err)
	}
	return t, nil
}

// ExpireTransfer moves an ACTIVE transfer whose expiry is at or before now
// to EXPIRED, releasing its number and erasing its return password.
func (db *DB) ExpireTransfer(ctx context.Context, tenantID, id string, now time.Time) (bool, error) {
	var moved bool
	err := pgx.BeginFunc(ctx, db.pool, func(tx pgx.Tx) error {
		t, err := scanTransfer(tx.QueryRow(ctx, `
			UPDATE transfers SET status = 'EXPIRED', return_auth_password = '', number_released_at = $3
			WHERE tenant_id = $1 AND id = $2 AND status = 'ACTIVE' AND expires_at <= $3
			RETURNING `+transferColumns,
			tenantID, id, micros(now)))
		if notFound(err) {
			return nil
		} else if err != nil {
			return err
		}
		moved = true
		return db.release(ctx, tx, t, now)
	})
	if err != nil {
		return false, fmt.Errorf("expire transfer: %w", err)
	}
	return moved, nil
}

// AbandonCalls completes, as CALLER_DISCONNECT, ONGOING transfers whose
// call arrived at or before receivedBefore, skipping rows other sweeps or
// calls hold.
func (db *DB) AbandonCalls(ctx context.Context, receivedBefore, now time.Time, limit int) ([]switchback.TransferKey, error) {
	out, err := encodeJSON(&switchback.OutputContext{TransferType: switchback.TransferCallerDisconnect})
	if err != nil {
		return nil, err
	}
	rows, err := db.pool.Query(ctx, `
		WITH stale AS (
			SELECT tenant_id, id FROM transfers
			WHERE status = 'ONGOING' AND call_received_at <= $1
			ORDER BY call_received_at
			LIMIT $2
			FOR UPDATE SKIP LOCKED
		)
		UPDATE transfers t SET status = 'COMPLETED', output_context = $3, completed_at = $4, return_auth_password = ''
		FROM stale
		WHERE t.tenant_id = stale.tenant_id AND t.id = stale.id AND t.status = 'ONGOING'
		RETURNING t.tenant_id, t.id, t.expires_at`,
		micros(receivedBefore), limitArg(limit), out, micros(now))
	if err != nil {
		return nil, fmt.Errorf("abandon calls: %w", err)
	}
	keys, err := pgx.CollectRows(rows, scanTransferKey)
	if err != nil {
		return nil, fmt.Errorf("abandon calls: %w", err)
	}
	return keys, nil
}

// ExpireDue expires up to limit due transfers (no limit when limit is
// negative) in one statement. Rows another node's sweep or a racing match
// has locked are skipped: that node finishes them.
func (db *DB) ExpireDue(ctx context.Context, now time.Time, limit int) ([]switchback.TransferKey, error) {
	rows, err := db.pool.Query(ctx, `
		WITH due AS (
			SELECT tenant_id, id FROM transfers
			WHERE status = 'ACTIVE' AND expires_at <= $1
			ORDER BY expires_at
			LIMIT $2
			FOR UPDATE SKIP LOCKED
		), expired AS (
			UPDATE transfers t SET status = 'EXPIRED', return_auth_password = '', number_released_at = $1
			FROM due
			WHERE t.tenant_id = due.tenant_id AND t.id = due.id AND t.status = 'ACTIVE'
			RETURNING t.tenant_id, t.id, t.expires_at, t.transfer_number
		), released AS (
			UPDATE numbers n SET leased_tenant = NULL, leased_transfer = NULL, leased_until = 0,
				released_at = $1, quarantine_until = $3
			FROM expired e
			WHERE n.e164 = e.transfer_number AND n.leased_tenant = e.tenant_id AND n.leased_transfer = e.id
		)
		SELECT tenant_id, id, expires_at FROM expired ORDER BY expires_at, tenant_id, id`,
		micros(now), limitArg(limit), micros(now.Add(db.quarantine)))
	if err != nil {
		return nil, fmt.Errorf("expire due transfers: %w", err)
	}
	keys, err := pgx.CollectRows(rows, scanTransferKey)
	if err != nil {
		return nil, fmt.Errorf("expire due transfers: %w", err)
	}
	return keys, nil
}

// PendingExpiries returns up to limit ACTIVE transfers, soonest expiry first.
func (db *DB) PendingExpiries(ctx context.Context, limit int) ([]switchback.TransferKey, error) {
	rows, err := db.pool.Query(ctx, `
		SELECT tenant_id, id, expires_at FROM transfers
		WHERE status = 'ACTIVE'
		ORDER BY expires_at, tenant_id, id
		LIMIT $1`, limitArg(limit))
	if err != nil {
		return nil, fmt.Errorf("pending expiries: %w", err)
	}
	keys, err := pgx.CollectRows(rows, scanTransferKey)
	if err != nil {
		return nil, fmt.Errorf("pending expiries: %w", err)
	}
	return keys, nil
}

// CountTransfers counts transfers by stored status.
func (db *DB) CountTransfers(ctx context.Context) (map[switchback.Status]int, error) {
	rows, err := db.pool.Query(ctx, `SELECT status, count(*) FROM transfers GROUP BY status`)
	if err != nil {
		return nil, fmt.Errorf("count transfers: %w", err)
	}
	counts := map[switchback.Status]int{}
	var (
		status string
		n      int64
	)
	_, err = pgx.ForEachRow(rows, []any{&status, &n}, func() error {
		counts[switchback.Status(status)] = int(n)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("count transfers: %w", err)
	}
	return counts, nil
}

// release frees the number t holds, if any, into quarantine from now. It
// runs in the transaction that moved t out of ACTIVE.
func (db *DB) release(ctx context.Context, tx pgx.Tx, t *switchback.Transfer, now time.Time) error {
	if t.PhoneNumber == nil || t.PhoneNumber.TransferNumber == "" {
		return nil
	}
	_, err := tx.Exec(ctx, `
		UPDATE numbers SET leased_tenant = NULL, leased_transfer = NULL, leased_until = 0,
			released_at = $4, quarantine_until = $5
		WHERE e164 = $1 AND leased_tenant = $2 AND leased_transfer = $3`,
		t.PhoneNumber.TransferNumber, t.TenantID, t.ID, micros(now), micros(now.Add(db.quarantine)))
	if err != nil {
		return fmt.Errorf("release %s: %w", t.PhoneNumber.TransferNumber, err)
	}
	return nil
}

func (db *DB) transferExists(ctx context.Context, tenantID, id string) (bool, error) {
	return transferExists(ctx, db.pool, tenantID, id)
}

func transferExists(ctx context.Context, q querier, tenantID, id string) (bool, error) {
	var exists bool
	err := q.QueryRow(ctx,
		`SELECT EXISTS (SELECT 1 FROM transfers WHERE tenant_id = $1 AND id = $2)`, tenantID, id).Scan(&exists)
	return exists, err
}

func errTransferNotFound(id string) error {
	return switchback.Errorf(switchback.ENOTFOUND, "call transfer %s not found", id)
}

// scanTransfer reads one row of transferColumns.
func scanTransfer(row pgx.Row) (*switchback.Transfer, error) {
	var (
		t                                     switchback.Transfer
		typ, status, country                  string
		in, out, number, result               *string
		uri, rtt, user, pass                  string
		created, expires, received, completed int64
		released                              int64
	)
	if err := row.Scan(&t.TenantID, &t.ID, &t.ExternalConversationID, &typ, &status,
		&in, &out, &country, &number,
		&uri, &rtt, &user, &pass,
		&created, &expires, &received, &completed, &t.RequestHash, &released,
		&result, &t.Owner.Node, &t.Owner.Epoch); err != nil {
		return nil, err
	}
	if result != nil {
		var err error
		if t.ReturnResult, err = decodeReturnResult(*result); err != nil {
			return nil, fmt.Errorf("transfer %s: return result: %w", t.ID, err)
		}
	}
	t.Type, t.Status = switchback.Type(typ), switchback.Status(status)
	t.CreatedAt, t.ExpiresAt = fromMicros(created), fromMicros(expires)
	t.CallReceivedAt, t.CompletedAt = fromMicros(received), fromMicros(completed)
	if in != nil {
		t.InputContext = new(switchback.InputContext)
		if err := json.Unmarshal([]byte(*in), t.InputContext); err != nil {
			return nil, fmt.Errorf("transfer %s: input context: %w", t.ID, err)
		}
	}
	if out != nil {
		t.OutputContext = new(switchback.OutputContext)
		if err := json.Unmarshal([]byte(*out), t.OutputContext); err != nil {
			return nil, fmt.Errorf("transfer %s: output context: %w", t.ID, err)
		}
	}
	switch t.Type {
	case switchback.TypePhoneNumber:
		t.PhoneNumber = &switchback.PhoneNumber{Country: country, ReleasedAt: fromMicros(released)}
		if number != nil {
			t.PhoneNumber.TransferNumber = *number
		}
	case switchback.TypeSIP:
		t.SIP = &switchback.SIP{
			ReturnURI:          uri,
			ReturnTransferType: switchback.ReturnTransferType(rtt),
			ReturnAuthUsername: user,
			ReturnAuthPassword: pass,
		}
	}
	return &t, nil
}

func scanTransferKey(row pgx.CollectableRow) (switchback.TransferKey, error) {
	var (
		k       switchback.TransferKey
		expires int64
	)
	err := row.Scan(&k.TenantID, &k.ID, &expires)
	k.ExpiresAt = fromMicros(expires)
	return k, err
}

// encodeJSON stores v as JSON text, or NULL when v is a nil pointer.
func encodeJSON[T any](v *T) (*string, error) {
	if v == nil {
		return nil, nil
	}
	b, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	s := string(b)
	return &s, nil
}

// wrap returns domain errors as they are and adds what was being done to
// anything else.
func wrap(doing string, err error) error {
	var se *switchback.Error
	if errors.As(err, &se) {
		return err
	}
	return fmt.Errorf("%s: %w", doing, err)
}
