package postgres

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/switchback/switchback"
)

// lockConversation takes the transaction-scoped advisory lock of a
// tenant's conversation, waiting for a transaction of another node that
// holds it. The key is a 64-bit hash of tenant and external id, separated
// by a byte neither contains; two conversations sharing a hash only wait
// for each other.
func lockConversation(ctx context.Context, tx pgx.Tx, tenantID, ext string) error {
	if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtextextended($1 || E'\x1f' || $2, 0))`,
		tenantID, ext); err != nil {
		return fmt.Errorf("lock conversation: %w", err)
	}
	return nil
}

// liveLeg returns the id of a transfer of the tenant's conversation ext,
// other than id, that is ONGOING, or "" when there is none. A transfer
// without a conversation id has no other legs.
func liveLeg(ctx context.Context, tx pgx.Tx, tenantID, ext, id string) (string, error) {
	if ext == "" {
		return "", nil
	}
	var live string
	err := tx.QueryRow(ctx, `
		SELECT id FROM transfers
		WHERE tenant_id = $1 AND external_conversation_id = $2 AND status = 'ONGOING' AND id <> $3
		ORDER BY id LIMIT 1`, tenantID, ext, id).Scan(&live)
	if notFound(err) {
		return "", nil
	} else if err != nil {
		return "", fmt.Errorf("find the live leg: %w", err)
	}
	return live, nil
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

// SetReturnResult records how a completed transfer's hand-back went.
func (db *DB) SetReturnResult(ctx context.Context, tenantID, id string, r *switchback.ReturnResult, by switchback.NodeLease, now time.Time) error {
	if r == nil {
		return switchback.Errorf(switchback.EINVALID, "no return result for call transfer %s", id)
	}
	result, err := encodeReturnResult(r)
	if err != nil {
		return fmt.Errorf("set return result: %w", err)
	}
	_, err = setReturnResult(ctx, db.pool, tenantID, id, result, by)
	return err
}

// setReturnResult records an encoded result on a COMPLETED transfer, in one
// statement fenced by by.
func setReturnResult(ctx context.Context, q querier, tenantID, id, result string, by switchback.NodeLease) (*switchback.Transfer, error) {
	t, err := scanTransfer(q.QueryRow(ctx, `
		UPDATE transfers SET return_result = $3
		WHERE tenant_id = $1 AND id = $2 AND status = 'COMPLETED' AND `+ownedBy("$4", "$5")+`
		RETURNING `+transferColumns, tenantID, id, result, by.Node, by.Epoch))
	if notFound(err) {
		if err := refuseWrite(ctx, q, tenantID, id, switchback.StatusCompleted, by); err != nil {
			return nil, err
		}
		return nil, switchback.Errorf(switchback.EGONE, "call transfer %s is not completed", id)
	} else if err != nil {
		return nil, fmt.Errorf("set return result: %w", err)
	}
	return t, nil
}

// EndCall writes what a call leaves as it ends, in one transaction.
func (db *DB) EndCall(ctx context.Context, e *switchback.CallEnd, by switchback.NodeLease, now time.Time) (*switchback.Transfer, error) {
	var output any
	var result string
	var err error
	if e.Output != nil {
		if output, err = encodeJSON(e.Output); err != nil {
			return nil, fmt.Errorf("end call: output context: %w", err)
		}
	}
	if e.Result != nil {
		if result, err = encodeReturnResult(e.Result); err != nil {
			return nil, fmt.Errorf("end call: return result: %w", err)
		}
	}
	var rec *encodedRecord
	if e.Record != nil {
		if rec, err = encodeRecord(e.Record, now); err != nil {
			return nil, err
		}
	}
	var t *switchback.Transfer
	err = pgx.BeginFunc(ctx, db.pool, func(tx pgx.Tx) error {
		var err error
		if e.Output != nil {
			var withResult *string
			if e.Result != nil {
				withResult = &result
			}
			if t, err = complete(ctx, tx, e.TenantID, e.ID, output, withResult, by, now); err != nil {
				return err
			}
		}
		if e.Result != nil && e.Output == nil {
			if t, err = setReturnResult(ctx, tx, e.TenantID, e.ID, result, by); err != nil {
				return err
			}
		}
		if t == nil {
			// Only a record: it is fenced by the call's owner all the same.
			if err := refuseWrite(ctx, tx, e.TenantID, e.ID, "", by); err != nil {
				return err
			}
			t, err = scanTransfer(tx.QueryRow(ctx, `SELECT `+transferColumns+` FROM transfers WHERE tenant_id = $1 AND id = $2`,
				e.TenantID, e.ID))
			if notFound(err) {
				return errTransferNotFound(e.ID)
			} else if err != nil {
				return fmt.Errorf("end call: %w", err)
			}
		}
		if rec != nil {
			return record(ctx, tx, rec, now)
		}
		return nil
	})
	if err != nil {
		return nil, wrap("end call", err)
	}
	return t, nil
}

// Conversation returns a tenant's conversation, read in one snapshot so
// legs, state and events are of one moment.
func (db *DB) Conversation(ctx context.Context, tenantID, externalID string) (*switchback.Conversation, error) {
	c := &switchback.Conversation{TenantID: tenantID, ExternalID: externalID}
	err := pgx.BeginTxFunc(ctx, db.pool, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `SELECT `+transferColumns+` FROM transfers
			WHERE tenant_id = $1 AND external_conversation_id = $2
			ORDER BY created_at, id`, tenantID, externalID)
		if err != nil {
			return fmt.Errorf("legs: %w", err)
		}
		c.Legs, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (*switchback.Transfer, error) { return scanTransfer(r) })
		if err != nil {
			return fmt.Errorf("legs: %w", err)
		}

		var (
			state            *string
			created, updated int64
		)
		err = tx.QueryRow(ctx, `SELECT state, created_at, updated_at FROM conversations
			WHERE tenant_id = $1 AND external_id = $2`, tenantID, externalID).Scan(&state, &created, &updated)
		recorded := err == nil
		if notFound(err) {
			if len(c.Legs) == 0 {
				return switchback.Errorf(switchback.ENOTFOUND, "conversation %q not found", externalID)
			}
		} else if err != nil {
			return fmt.Errorf("record: %w", err)
		}
		if state != nil {
			c.State = json.RawMessage(*state)
		}
		c.CreatedAt, c.UpdatedAt = fromMicros(created), fromMicros(updated)
		if len(c.Legs) > 0 && (!recorded || c.Legs[0].CreatedAt.Before(c.CreatedAt)) {
			c.CreatedAt = c.Legs[0].CreatedAt
		}
		if !recorded {
			return nil
		}

		rows, err = tx.Query(ctx, `SELECT at, transfer_id, type, data FROM conversation_events
			WHERE tenant_id = $1 AND external_id = $2 ORDER BY seq`, tenantID, externalID)
		if err != nil {
			return fmt.Errorf("events: %w", err)
		}
		var (
			at       int64
			leg, typ string
			data     *string
		)
		_, err = pgx.ForEachRow(rows, []any{&at, &leg, &typ, &data}, func() error {
			ev := switchback.ConversationEvent{At: fromMicros(at), TransferID: leg, Type: switchback.EventType(typ)}
			if data != nil {
				if err := json.Unmarshal([]byte(*data), &ev.Data); err != nil {
					return fmt.Errorf("event data: %w", err)
				}
			}
			c.Events = append(c.Events, ev)
			return nil
		})
		if err != nil {
			return fmt.Errorf("events: %w", err)
		}
		return nil
	})
	if err != nil {
		return nil, wrap("get conversation", err)
	}
	return c, nil
}

// RecordConversation appends a leg's events to its conversation and
// replaces its state when the record has one. The upsert's row lock
// serializes records of one conversation, so their sequence numbers never
// collide.
func (db *DB) RecordConversation(ctx context.Context, r *switchback.ConversationRecord, by switchback.NodeLease, now time.Time) error {
	rec, err := encodeRecord(r, now)
	if err != nil {
		return err
	}
	if err := pgx.BeginFunc(ctx, db.pool, func(tx pgx.Tx) error {
		if err := checkLease(ctx, tx, by); err != nil {
			return err
		}
		return record(ctx, tx, rec, now)
	}); err != nil {
		return wrap("record conversation", err)
	}
	return nil
}

// encodedRecord is a conversation record checked and laid out as the
// arrays its events are inserted from.
type encodedRecord struct {
	r     *switchback.ConversationRecord
	state *string
	ats   []int64
	legs  []string
	types []string
	data  []*string
}

func encodeRecord(r *switchback.ConversationRecord, now time.Time) (*encodedRecord, error) {
	if err := r.Validate(); err != nil {
		return nil, err
	}
	n := len(r.Events)
	rec := &encodedRecord{r: r, ats: make([]int64, n), legs: make([]string, n), types: make([]string, n), data: make([]*string, n)}
	if r.State != nil {
		s := string(r.State)
		rec.state = &s
	}
	for i, e := range r.Events {
		rec.ats[i], rec.legs[i], rec.types[i] = micros(e.At), e.TransferID, string(e.Type)
		if e.At.IsZero() {
			rec.ats[i] = micros(now)
		}
		if e.Data != nil {
			b, err := json.Marshal(e.Data)
			if err != nil {
				return nil, fmt.Errorf("record conversation: event data: %w", err)
			}
			s := string(b)
			rec.data[i] = &s
		}
	}
	return rec, nil
}

// record upserts a conversation's record and appends its events.
func record(ctx context.Context, tx pgx.Tx, rec *encodedRecord, now time.Time) error {
	r, n := rec.r, int64(len(rec.r.Events))
	var next int64
	if err := tx.QueryRow(ctx, `
		INSERT INTO conversations (tenant_id, external_id, state, created_at, updated_at, next_seq)
		VALUES ($1, $2, $3, $4, $4, $5)
		ON CONFLICT (tenant_id, external_id) DO UPDATE SET
			state = COALESCE(EXCLUDED.state, conversations.state),
			updated_at = EXCLUDED.updated_at,
			next_seq = conversations.next_seq + EXCLUDED.next_seq
		RETURNING next_seq`,
		r.TenantID, r.ExternalID, rec.state, micros(now), n).Scan(&next); err != nil {
		return fmt.Errorf("upsert: %w", err)
	}
	if n == 0 {
		return nil
	}
	if _, err := tx.Exec(ctx, `
		INSERT INTO conversation_events (tenant_id, external_id, seq, at, transfer_id, type, data)
		SELECT $1, $2, $3 + e.ord - 1, e.at, e.transfer_id, e.type, e.data
		FROM unnest($4::bigint[], $5::text[], $6::text[], $7::text[])
			WITH ORDINALITY AS e(at, transfer_id, type, data, ord)`,
		r.TenantID, r.ExternalID, next-n, rec.ats, rec.legs, rec.types, rec.data); err != nil {
		return fmt.Errorf("insert events: %w", err)
	}
	return nil
}
