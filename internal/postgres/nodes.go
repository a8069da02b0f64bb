package postgres

import (
	"context"
	"fmt"
	"sort"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/switchback/switchback"
)

// Node leases live in the nodes table on the database's clock
// (clock_timestamp(), the time a statement reads it, not when its
// transaction began), never a node's, so nodes whose clocks disagree still
// agree on whose lease is current. The now the NodeStore methods take is
// used only for the transfers they write.
//
// A lease that lapsed is dead for good: a renewal needs it current, and a
// new acquisition is a new epoch. So a write that found its lease current
// cannot be followed by a takeover that found it dead and a later write of
// the same lease that finds it current again.

// leaseLive is an SQL condition: the lease (node, epoch), two parameter
// references, is current, or node is empty (no lease).
func leaseLive(node, epoch string) string {
	return `(` + node + ` = '' OR EXISTS (SELECT 1 FROM nodes
		WHERE nodes.id = ` + node + ` AND nodes.epoch = ` + epoch + ` AND nodes.expires_at > clock_timestamp()))`
}

// ownedBy is an SQL condition on a transfers row: the lease (node, epoch),
// two parameter references, owns it and is current.
func ownedBy(node, epoch string) string {
	return `owner_node = ` + node + ` AND owner_epoch = ` + epoch + ` AND ` + leaseLive(node, epoch)
}

// refuseWrite says why a write by by to a transfer, which must be in status
// want ("" for any), cannot be made: no such transfer, by's lease is no
// longer current, the wrong status, or another owner. nil when nothing
// stands in the way.
func refuseWrite(ctx context.Context, q querier, tenantID, id string, want switchback.Status, by switchback.NodeLease) error {
	var (
		status string
		owner  switchback.NodeLease
		live   bool
	)
	err := q.QueryRow(ctx, `SELECT status, owner_node, owner_epoch, `+leaseLive("$3", "$4")+`
		FROM transfers WHERE tenant_id = $1 AND id = $2`,
		tenantID, id, by.Node, by.Epoch).Scan(&status, &owner.Node, &owner.Epoch, &live)
	switch {
	case notFound(err):
		return errTransferNotFound(id)
	case err != nil:
		return fmt.Errorf("check the call's owner: %w", err)
	case !live:
		return switchback.LeaseLostError(by)
	case want != "" && switchback.Status(status) != want:
		return switchback.Errorf(switchback.EGONE, "call transfer %s is %s, not %s", id, status, want)
	case owner != by:
		return switchback.NotOwnerError(id, owner, by)
	}
	return nil
}

// checkLease returns EFENCED unless l is current (or zero).
func checkLease(ctx context.Context, q querier, l switchback.NodeLease) error {
	if l.IsZero() {
		return nil
	}
	var live bool
	if err := q.QueryRow(ctx, `SELECT `+leaseLive("$1", "$2"), l.Node, l.Epoch).Scan(&live); err != nil {
		return fmt.Errorf("check the node lease: %w", err)
	} else if !live {
		return switchback.LeaseLostError(l)
	}
	return nil
}

// AcquireNode implements switchback.NodeStore.
func (db *DB) AcquireNode(ctx context.Context, id string, ttl time.Duration, now time.Time) (switchback.NodeLease, error) {
	if id == "" {
		return switchback.NodeLease{}, switchback.Errorf(switchback.EINVALID, "a node lease needs a node id")
	}
	l := switchback.NodeLease{Node: id}
	err := db.pool.QueryRow(ctx, `
		INSERT INTO nodes (id, epoch, acquired_at, renewed_at, expires_at)
		SELECT $1, 1, c.now, c.now, c.now + $2 * interval '1 microsecond' FROM (SELECT clock_timestamp() AS now) AS c
		ON CONFLICT (id) DO UPDATE SET epoch = nodes.epoch + 1, acquired_at = EXCLUDED.acquired_at,
			renewed_at = EXCLUDED.renewed_at, expires_at = EXCLUDED.expires_at, released_at = NULL
		RETURNING epoch`, id, ttl.Microseconds()).Scan(&l.Epoch)
	if err != nil {
		return switchback.NodeLease{}, fmt.Errorf("acquire node lease: %w", err)
	}
	return l, nil
}

// RenewNode implements switchback.NodeStore. A renewal racing an
// acquisition of the same id waits for it, then finds the epoch moved on.
func (db *DB) RenewNode(ctx context.Context, l switchback.NodeLease, ttl time.Duration, now time.Time) error {
	tag, err := db.pool.Exec(ctx, `
		UPDATE nodes SET renewed_at = c.now, expires_at = c.now + $3 * interval '1 microsecond'
		FROM (SELECT clock_timestamp() AS now) AS c
		WHERE id = $1 AND epoch = $2 AND released_at IS NULL AND expires_at > c.now`,
		l.Node, l.Epoch, ttl.Microseconds())
	if err != nil {
		return fmt.Errorf("renew node lease: %w", err)
	} else if tag.RowsAffected() == 0 {
		return switchback.LeaseLostError(l)
	}
	return nil
}

// ReleaseNode implements switchback.NodeStore.
func (db *DB) ReleaseNode(ctx context.Context, l switchback.NodeLease, now time.Time) error {
	if _, err := db.pool.Exec(ctx, `
		UPDATE nodes SET expires_at = c.now, released_at = c.now
		FROM (SELECT clock_timestamp() AS now) AS c
		WHERE id = $1 AND epoch = $2 AND released_at IS NULL AND expires_at > c.now`,
		l.Node, l.Epoch); err != nil {
		return fmt.Errorf("release node lease: %w", err)
	}
	return nil
}

// Nodes implements switchback.NodeStore.
func (db *DB) Nodes(ctx context.Context, now time.Time) ([]switchback.NodeState, error) {
	rows, err := db.pool.Query(ctx, `
		SELECT id, epoch, acquired_at, renewed_at, expires_at, released_at, expires_at > clock_timestamp()
		FROM nodes ORDER BY id`)
	if err != nil {
		return nil, fmt.Errorf("list nodes: %w", err)
	}
	nodes, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (switchback.NodeState, error) {
		var (
			n        switchback.NodeState
			released *time.Time
		)
		err := row.Scan(&n.Node, &n.Epoch, &n.AcquiredAt, &n.RenewedAt, &n.ExpiresAt, &released, &n.Live)
		n.AcquiredAt, n.RenewedAt, n.ExpiresAt = n.AcquiredAt.UTC(), n.RenewedAt.UTC(), n.ExpiresAt.UTC()
		if released != nil {
			n.ReleasedAt = released.UTC()
		}
		return n, err
	})
	if err != nil {
		return nil, fmt.Errorf("list nodes: %w", err)
	}
	return nodes, nil
}

// TakeOverCalls implements switchback.NodeStore. It locks the orphaned
// calls it takes with FOR UPDATE SKIP LOCKED, so takeovers running on
// every node at once each move different calls, and a call whose own node
// is writing it right now is left to the next sweep, which finds it ended
// or still orphaned.
func (db *DB) TakeOverCalls(ctx context.Context, by switchback.NodeLease, now time.Time, limit int) ([]switchback.OrphanedCall, error) {
	out, err := encodeJSON(&switchback.OutputContext{TransferType: switchback.TransferCallerDisconnect})
	if err != nil {
		return nil, err
	}
	var calls []switchback.OrphanedCall
	err = pgx.BeginFunc(ctx, db.pool, func(tx pgx.Tx) error {
		calls = nil
		if err := checkLease(ctx, tx, by); err != nil {
			return err
		}
		// From the few node rows to the ONGOING transfers each one's dead
		// leases own: an older epoch's, or the latest when it lapsed.
		rows, err := tx.Query(ctx, `
			SELECT t.tenant_id, t.id, t.expires_at, t.external_conversation_id, t.owner_node, t.owner_epoch,
				CASE WHEN t.owner_epoch < n.epoch THEN $2
					WHEN n.released_at IS NOT NULL THEN $3
					ELSE $4 END
			FROM nodes AS n JOIN transfers AS t ON t.owner_node = n.id AND t.status = 'ONGOING'
			WHERE t.owner_epoch < n.epoch OR n.expires_at <= clock_timestamp()
			ORDER BY t.call_received_at, t.tenant_id, t.id
			LIMIT $1
			FOR UPDATE OF t SKIP LOCKED`,
			limitArg(limit), switchback.LeaseSuperseded, switchback.LeaseReleased, switchback.LeaseExpired)
		if err != nil {
			return fmt.Errorf("find orphaned calls: %w", err)
		}
		exts := map[switchback.TransferKey]string{}
		calls, err = pgx.CollectRows(rows, func(row pgx.CollectableRow) (switchback.OrphanedCall, error) {
			var (
				c       switchback.OrphanedCall
				expires int64
				ext     string
			)
			err := row.Scan(&c.TenantID, &c.ID, &expires, &ext, &c.Owner.Node, &c.Owner.Epoch, &c.Reason)
			c.ExpiresAt = fromMicros(expires)
			exts[c.TransferKey] = ext
			return c, err
		})
		if err != nil {
			return fmt.Errorf("find orphaned calls: %w", err)
		}
		if len(calls) == 0 {
			return nil
		}
		tenants, ids, results := make([]string, len(calls)), make([]string, len(calls)), make([]string, len(calls))
		for i, c := range calls {
			tenants[i], ids[i] = c.TenantID, c.ID
			if results[i], err = encodeReturnResult(switchback.NodeLostResult(c.Owner, c.Reason, now)); err != nil {
				return err
			}
		}
		// The rows are locked by this transaction: each is still ONGOING.
		if _, err := tx.Exec(ctx, `
			UPDATE transfers t SET status = 'COMPLETED', output_context = $1, completed_at = $2,
				return_auth_password = '', return_result = r.result
			FROM unnest($3::text[], $4::text[], $5::text[]) AS r (tenant_id, id, result)
			WHERE t.tenant_id = r.tenant_id AND t.id = r.id AND t.status = 'ONGOING'`,
			out, micros(now), tenants, ids, results); err != nil {
			return fmt.Errorf("complete orphaned calls: %w", err)
		}
		// Conversations in one order, so two takeovers never wait on each
		// other's in a circle.
		byConversation := append([]switchback.OrphanedCall(nil), calls...)
		sort.Slice(byConversation, func(i, j int) bool {
			a, b := byConversation[i], byConversation[j]
			return a.TenantID < b.TenantID || a.TenantID == b.TenantID && exts[a.TransferKey] < exts[b.TransferKey]
		})
		for _, c := range byConversation {
			ext := exts[c.TransferKey]
			if ext == "" {
				continue
			}
			rec, err := encodeRecord(&switchback.ConversationRecord{TenantID: c.TenantID, ExternalID: ext,
				Events: []switchback.ConversationEvent{switchback.NodeLostEvent(c.ID, c.Owner, c.Reason, now)}}, now)
			if err != nil {
				return err
			}
			if err := record(ctx, tx, rec, now); err != nil {
				return fmt.Errorf("record the lost call of %s: %w", c.ID, err)
			}
		}
		return nil
	})
	if err != nil {
		return nil, wrap("take over calls", err)
	}
	return calls, nil
}
