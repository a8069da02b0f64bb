package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/switchback/switchback"
)

// liveLeg returns the id of a transfer of the tenant's conversation ext,
// other than id, that is ONGOING, or "" when there is none. A transfer
// without a conversation id has no other legs.
func liveLeg(ctx context.Context, tx *wtx, tenantID, ext, id string) (string, error) {
	if ext == "" {
		return "", nil
	}
	var live string
	err := tx.queryRow(ctx, `SELECT id FROM transfers
		WHERE tenant_id = ? AND external_conversation_id = ? AND status = 'ONGOING' AND id <> ?
		ORDER BY id LIMIT 1`, tenantID, ext, id).Scan(&live)
	if errors.Is(err, sql.ErrNoRows) {
		return "", nil
	}
	return live, err
}

// returnResultJSON is how a ReturnResult is kept in transfers.return_result.
type returnResultJSON struct {
	Method       string `json:"method"`
	SIPStatus    int    `json:"sipStatus,omitempty"`
	NotifyStatus int    `json:"notifyStatus,omitempty"`
	Fallback     bool   `json:"fallback,omitempty"`
	Reason       string `json:"reason,omitempty"`
	At           int64  `json:"at"` // microseconds since the epoch
}

func encodeReturnResult(r *switchback.ReturnResult) (string, error) {
	b, err := json.Marshal(returnResultJSON{Method: string(r.Method), SIPStatus: r.SIPStatus,
		NotifyStatus: r.NotifyStatus, Fallback: r.Fallback, Reason: r.Reason, At: micros(r.At)})
	return string(b), err
}

func decodeReturnResult(s string) (*switchback.ReturnResult, error) {
	var j returnResultJSON
	if err := json.Unmarshal([]byte(s), &j); err != nil {
		return nil, err
	}
	return &switchback.ReturnResult{Method: switchback.ReturnTransferType(j.Method), SIPStatus: j.SIPStatus,
		NotifyStatus: j.NotifyStatus, Fallback: j.Fallback, Reason: j.Reason, At: fromMicros(j.At)}, nil
}

// SetReturnResult implements switchback.Store.
func (db *DB) SetReturnResult(ctx context.Context, tenantID, id string, r *switchback.ReturnResult, by switchback.NodeLease, now time.Time) error {
	if r == nil {
		return switchback.Errorf(switchback.EINVALID, "no return result for call transfer %q", id)
	}
	result, err := encodeReturnResult(r)
	if err != nil {
		return fmt.Errorf("encode return result: %w", err)
	}
	err = db.inTx(ctx, func(tx *wtx) error {
		_, err := db.setReturnResult(ctx, tx, tenantID, id, result, by, now)
		return err
	})
	return wrap("set return result", err)
}

// setReturnResult records an encoded result on a COMPLETED transfer, fenced
// by by. It writes nothing when it fails.
func (db *DB) setReturnResult(ctx context.Context, tx *wtx, tenantID, id string, result any, by switchback.NodeLease, now time.Time) (*switchback.Transfer, error) {
	cond, condArgs := ownedBy(&by, now)
	t, err := scanTransfer(tx.queryRow(ctx, `UPDATE transfers SET return_result = ?
		WHERE tenant_id = ? AND id = ? AND status = ?`+cond+` RETURNING `+transferColumns,
		append([]any{result, tenantID, id, switchback.StatusCompleted}, condArgs...)...))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, refuseWrite(ctx, tx, tenantID, id, switchback.StatusCompleted, &by, now)
	} else if err != nil {
		return nil, err
	}
	tx.afterCommit(func() { db.cache.put(t) })
	return t, nil
}

// EndCall implements switchback.Store. Everything is encoded and checked
// before the transaction; in it, only the first statement can be refused,
// and then nothing has been written.
func (db *DB) EndCall(ctx context.Context, e *switchback.CallEnd, by switchback.NodeLease, now time.Time) (*switchback.Transfer, error) {
	var output sql.NullString
	var err error
	if e.Output != nil {
		if output, err = jsonOrNull(e.Output, false); err != nil {
			return nil, fmt.Errorf("encode output context: %w", err)
		}
	}
	var result any
	if e.Result != nil {
		if result, err = encodeReturnResult(e.Result); err != nil {
			return nil, fmt.Errorf("encode return result: %w", err)
		}
	}
	var rec *encodedRecord
	if e.Record != nil {
		if rec, err = encodeRecord(e.Record); err != nil {
			return nil, err
		}
	}
	var t *switchback.Transfer
	err = db.inTx(ctx, func(tx *wtx) error {
		var err error
		if e.Output != nil {
			if t, err = db.complete(ctx, tx, e.TenantID, e.ID, output, &by, now); err != nil {
				return err
			}
		}
		if e.Result != nil {
			if t, err = db.setReturnResult(ctx, tx, e.TenantID, e.ID, result, by, now); err != nil {
				return err
			}
		}
		if t == nil {
			// Only a record: it is fenced by the call's owner all the same.
			if err := refuseWrite(ctx, tx, e.TenantID, e.ID, "", &by, now); err != nil {
				return err
			}
			if t, err = db.txTransfer(ctx, tx, e.TenantID, e.ID); err != nil {
				return err
			}
		}
		if rec != nil {
			return db.record(ctx, tx, rec, now)
		}
		return nil
	})
	return t, wrap("end call", err)
}

// Conversation implements switchback.Store. It reads in one transaction,
// so legs, state and events are of one moment.
func (db *DB) Conversation(ctx context.Context, tenantID, externalID string) (*switchback.Conversation, error) {
	ctx = context.WithoutCancel(ctx)
	tx, err := db.read.BeginTx(ctx, nil)
	if err != nil {
		return nil, wrap("get conversation", err)
	}
	defer tx.Rollback()
	c := &switchback.Conversation{TenantID: tenantID, ExternalID: externalID}
	rows, err := tx.QueryContext(ctx, `SELECT `+transferColumns+` FROM transfers
		WHERE tenant_id = ? AND external_conversation_id = ? ORDER BY created_at, id`, tenantID, externalID)
	if err != nil {
		return nil, wrap("get conversation legs", err)
	}
	for rows.Next() {
		t, err := scanTransfer(rows)
		if err != nil {
			rows.Close()
			return nil, wrap("get conversation legs", err)
		}
		c.Legs = append(c.Legs, t)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, wrap("get conversation legs", err)
	}

	var (
		state            sql.NullString
		created, updated int64
	)
	err = tx.QueryRowContext(ctx, `SELECT state, created_at, updated_at FROM conversations
		WHERE tenant_id = ? AND external_id = ?`, tenantID, externalID).Scan(&state, &created, &updated)
	recorded := err == nil
	if errors.Is(err, sql.ErrNoRows) {
		if len(c.Legs) == 0 {
			return nil, switchback.Errorf(switchback.ENOTFOUND, "conversation %q not found", externalID)
		}
	} else if err != nil {
		return nil, wrap("get conversation", err)
	}
	if state.Valid {
		c.State = json.RawMessage(state.String)
	}
	c.UpdatedAt = fromMicros(updated)
	c.CreatedAt = fromMicros(created)
	if len(c.Legs) > 0 && (!recorded || c.Legs[0].CreatedAt.Before(c.CreatedAt)) {
		c.CreatedAt = c.Legs[0].CreatedAt
	}
	if !recorded {
		return c, nil
	}

	rows, err = tx.QueryContext(ctx, `SELECT at, transfer_id, type, data FROM conversation_events
		WHERE tenant_id = ? AND external_id = ? ORDER BY seq`, tenantID, externalID)
	if err != nil {
		return nil, wrap("get conversation events", err)
	}
	defer rows.Close()
	for rows.Next() {
		var (
			e    switchback.ConversationEvent
			at   int64
			data sql.NullString
		)
		if err := rows.Scan(&at, &e.TransferID, &e.Type, &data); err != nil {
			return nil, wrap("get conversation events", err)
		}
		e.At = fromMicros(at)
		if data.Valid {
			if err := json.Unmarshal([]byte(data.String), &e.Data); err != nil {
				return nil, fmt.Errorf("decode event data of conversation %q: %w", externalID, err)
			}
		}
		c.Events = append(c.Events, e)
	}
	return c, wrap("get conversation events", rows.Err())
}

// RecordConversation implements switchback.Store.
func (db *DB) RecordConversation(ctx context.Context, r *switchback.ConversationRecord, by switchback.NodeLease, now time.Time) error {
	rec, err := encodeRecord(r)
	if err != nil {
		return err
	}
	return wrap("record conversation", db.inTx(ctx, func(tx *wtx) error {
		if live, err := leaseLive(ctx, tx, by, now); err != nil {
			return err
		} else if !live {
			return switchback.LeaseLostError(by)
		}
		return db.record(ctx, tx, rec, now)
	}))
}

// encodedRecord is a conversation record checked and encoded for the store.
type encodedRecord struct {
	r     *switchback.ConversationRecord
	state sql.NullString
	data  []sql.NullString // each event's data
}

func encodeRecord(r *switchback.ConversationRecord) (*encodedRecord, error) {
	if err := r.Validate(); err != nil {
		return nil, err
	}
	rec := &encodedRecord{r: r, data: make([]sql.NullString, len(r.Events))}
	if r.State != nil {
		rec.state = sql.NullString{String: string(r.State), Valid: true}
	}
	for i, e := range r.Events {
		if e.Data == nil {
			continue
		}
		b, err := json.Marshal(e.Data)
		if err != nil {
			return nil, fmt.Errorf("encode event data: %w", err)
		}
		rec.data[i] = sql.NullString{String: string(b), Valid: true}
	}
	return rec, nil
}

// record appends a record's events and keeps its state, creating the
// conversation's record on first use.
func (db *DB) record(ctx context.Context, tx *wtx, rec *encodedRecord, now time.Time) error {
	r := rec.r
	n := int64(len(r.Events))
	var next int64
	err := tx.queryRow(ctx, `INSERT INTO conversations (tenant_id, external_id, state, created_at, updated_at, next_seq)
		VALUES (?, ?, ?, ?, ?, ?)
		ON CONFLICT (tenant_id, external_id) DO UPDATE SET
			state = CASE WHEN excluded.state IS NULL THEN conversations.state ELSE excluded.state END,
			updated_at = excluded.updated_at,
			next_seq = conversations.next_seq + excluded.next_seq
		RETURNING next_seq`,
		r.TenantID, r.ExternalID, rec.state, micros(now), micros(now), n).Scan(&next)
	if err != nil {
		return err
	}
	for i, e := range r.Events {
		at := e.At
		if at.IsZero() {
			at = now
		}
		if _, err := tx.exec(ctx, `INSERT INTO conversation_events (tenant_id, external_id, seq, at, transfer_id, type, data)
			VALUES (?, ?, ?, ?, ?, ?, ?)`,
			r.TenantID, r.ExternalID, next-n+int64(i), micros(at), e.TransferID, string(e.Type), rec.data[i]); err != nil {
			return err
		}
	}
	return nil
}
