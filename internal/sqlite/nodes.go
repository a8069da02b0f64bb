package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"sort"
	"time"

	"github.com/switchback/switchback"
)

// Node leases live in the nodes table on the node's own clock: a SQLite
// store serves one node, so there is no other clock to agree with. The
// single writer makes every check and the write it guards one atomic step.

// AcquireNode implements switchback.NodeStore.
func (db *DB) AcquireNode(ctx context.Context, id string, ttl time.Duration, now time.Time) (switchback.NodeLease, error) {
	if id == "" {
		return switchback.NodeLease{}, switchback.Errorf(switchback.EINVALID, "a node lease needs a node id")
	}
	l := switchback.NodeLease{Node: id}
	err := db.inTx(ctx, func(tx *wtx) error {
		return tx.queryRow(ctx, `INSERT INTO nodes (id, epoch, acquired_at, renewed_at, expires_at, released_at)
			VALUES (?, 1, ?, ?, ?, 0)
			ON CONFLICT (id) DO UPDATE SET epoch = nodes.epoch + 1, acquired_at = excluded.acquired_at,
				renewed_at = excluded.renewed_at, expires_at = excluded.expires_at, released_at = 0
			RETURNING epoch`, id, micros(now), micros(now), micros(now.Add(ttl))).Scan(&l.Epoch)
	})
	if err != nil {
		return switchback.NodeLease{}, wrap("acquire node lease", err)
	}
	return l, nil
}

// RenewNode implements switchback.NodeStore.
func (db *DB) RenewNode(ctx context.Context, l switchback.NodeLease, ttl time.Duration, now time.Time) error {
	err := db.inTx(ctx, func(tx *wtx) error {
		res, err := tx.exec(ctx, `UPDATE nodes SET renewed_at = ?, expires_at = ?
			WHERE id = ? AND epoch = ? AND expires_at > ? AND released_at = 0`,
			micros(now), micros(now.Add(ttl)), l.Node, l.Epoch, micros(now))
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil {
			return err
		} else if n == 0 {
			return switchback.LeaseLostError(l)
		}
		return nil
	})
	return wrap("renew node lease", err)
}

// ReleaseNode implements switchback.NodeStore.
func (db *DB) ReleaseNode(ctx context.Context, l switchback.NodeLease, now time.Time) error {
	err := db.inTx(ctx, func(tx *wtx) error {
		_, err := tx.exec(ctx, `UPDATE nodes SET expires_at = ?, released_at = ?
			WHERE id = ? AND epoch = ? AND expires_at > ? AND released_at = 0`,
			micros(now), micros(now), l.Node, l.Epoch, micros(now))
		return err
	})
	return wrap("release node lease", err)
}

// Nodes implements switchback.NodeStore.
func (db *DB) Nodes(ctx context.Context, now time.Time) ([]switchback.NodeState, error) {
	rows, err := db.readRows(ctx, `SELECT id, epoch, acquired_at, renewed_at, expires_at, released_at
		FROM nodes ORDER BY id`)
	if err != nil {
		return nil, wrap("list nodes", err)
	}
	defer rows.Close()
	var nodes []switchback.NodeState
	for rows.Next() {
		var (
			n                                    switchback.NodeState
			acquired, renewed, expires, released int64
		)
		if err := rows.Scan(&n.Node, &n.Epoch, &acquired, &renewed, &expires, &released); err != nil {
			return nil, wrap("list nodes", err)
		}
		n.AcquiredAt, n.RenewedAt, n.ExpiresAt, n.ReleasedAt = fromMicros(acquired), fromMicros(renewed), fromMicros(expires), fromMicros(released)
		n.Live = released == 0 && expires > micros(now)
		nodes = append(nodes, n)
	}
	return nodes, wrap("list nodes", rows.Err())
}

// TakeOverCalls implements switchback.NodeStore.
func (db *DB) TakeOverCalls(ctx context.Context, by switchback.NodeLease, now time.Time, limit int) ([]switchback.OrphanedCall, error) {
	output, err := jsonOrNull(&switchback.OutputContext{TransferType: switchback.TransferCallerDisconnect}, false)
	if err != nil {
		return nil, err
	}
	var calls []switchback.OrphanedCall
	err = db.inTx(ctx, func(tx *wtx) error {
		calls = nil
		if live, err := leaseLive(ctx, tx, by, now); err != nil {
			return err
		} else if !live {
			return switchback.LeaseLostError(by)
		}
		// From the few node rows to the ONGOING transfers each one's dead
		// leases own: an older epoch's, or the latest when it lapsed.
		rows, err := tx.query(ctx, `SELECT t.tenant_id, t.id, t.expires_at, t.external_conversation_id,
				t.owner_node, t.owner_epoch, n.epoch, n.released_at
			FROM nodes AS n JOIN transfers AS t ON t.owner_node = n.id AND t.status = 'ONGOING'
			WHERE t.owner_epoch < n.epoch OR n.expires_at <= ? OR n.released_at <> 0
			ORDER BY t.call_received_at, t.tenant_id, t.id
			LIMIT ?`, micros(now), limit)
		if err != nil {
			return err
		}
		exts := map[switchback.TransferKey]string{}
		for rows.Next() {
			var (
				c                  switchback.OrphanedCall
				ext                string
				expires, nodeEpoch int64
				released           int64
			)
			if err := rows.Scan(&c.TenantID, &c.ID, &expires, &ext, &c.Owner.Node, &c.Owner.Epoch, &nodeEpoch, &released); err != nil {
				rows.Close()
				return err
			}
			c.ExpiresAt = fromMicros(expires)
			c.Reason = lostBecause(c.Owner.Epoch, nodeEpoch, released != 0)
			exts[c.TransferKey] = ext
			calls = append(calls, c)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		for _, c := range calls {
			result, err := encodeReturnResult(switchback.NodeLostResult(c.Owner, c.Reason, now))
			if err != nil {
				return err
			}
			t, err := scanTransfer(tx.queryRow(ctx, `UPDATE transfers
				SET status = 'COMPLETED', completed_at = ?, output_context = ?, return_auth_password = '', return_result = ?
				WHERE tenant_id = ? AND id = ? AND status = 'ONGOING' RETURNING `+transferColumns,
				micros(now), output, result, c.TenantID, c.ID))
			if err != nil {
				return err // the row was read in this transaction: only the disk fails here
			}
			tx.afterCommit(func() { db.cache.put(t) })
		}
		// Conversations in one order, as every writer takes them.
		sort.Slice(calls, func(i, j int) bool {
			a, b := calls[i], calls[j]
			return a.TenantID < b.TenantID || a.TenantID == b.TenantID && exts[a.TransferKey] < exts[b.TransferKey]
		})
		for _, c := range calls {
			ext := exts[c.TransferKey]
			if ext == "" {
				continue
			}
			rec, err := encodeRecord(&switchback.ConversationRecord{TenantID: c.TenantID, ExternalID: ext,
				Events: []switchback.ConversationEvent{switchback.NodeLostEvent(c.ID, c.Owner, c.Reason, now)}})
			if err != nil {
				return err
			}
			if err := db.record(ctx, tx, rec, now); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, wrap("take over calls", err)
	}
	return calls, nil
}

// lostBecause says why a lease of epoch owner is dead, given the node's
// latest epoch and whether that one was released.
func lostBecause(owner, latest int64, released bool) string {
	switch {
	case owner < latest:
		return switchback.LeaseSuperseded
	case released:
		return switchback.LeaseReleased
	}
	return switchback.LeaseExpired
}

// leaseLive reports whether l is current at now; the zero lease always is.
func leaseLive(ctx context.Context, tx *wtx, l switchback.NodeLease, now time.Time) (bool, error) {
	if l.IsZero() {
		return true, nil
	}
	var live bool
	err := tx.queryRow(ctx, `SELECT EXISTS (SELECT 1 FROM nodes
		WHERE id = ? AND epoch = ? AND expires_at > ? AND released_at = 0)`, l.Node, l.Epoch, micros(now)).Scan(&live)
	return live, err
}

// ownedBy is the condition, added to a write's WHERE on transfers, that by
// may write the row: by owns it and, unless zero, its lease is current at
// now. A nil by may write any row: the store's own sweeps.
func ownedBy(by *switchback.NodeLease, now time.Time) (string, []any) {
	switch {
	case by == nil:
		return "", nil
	case by.IsZero():
		return ` AND owner_node = '' AND owner_epoch = 0`, nil
	}
	return ` AND owner_node = ? AND owner_epoch = ? AND EXISTS (SELECT 1 FROM nodes
			WHERE nodes.id = ? AND nodes.epoch = ? AND nodes.expires_at > ? AND nodes.released_at = 0)`,
		[]any{by.Node, by.Epoch, by.Node, by.Epoch, micros(now)}
}

// refuseWrite says why a write by by to a transfer, which must be in status
// want ("" for any), cannot be made: no such transfer, by's lease is no
// longer current, the wrong status, or another owner. nil when nothing
// stands in the way.
func refuseWrite(ctx context.Context, tx *wtx, tenantID, id string, want switchback.Status, by *switchback.NodeLease, now time.Time) error {
	var (
		status string
		owner  switchback.NodeLease
	)
	err := tx.queryRow(ctx, `SELECT status, owner_node, owner_epoch FROM transfers WHERE tenant_id = ? AND id = ?`,
		tenantID, id).Scan(&status, &owner.Node, &owner.Epoch)
	if errors.Is(err, sql.ErrNoRows) {
		return notFound(id)
	} else if err != nil {
		return err
	}
	if by != nil {
		if live, err := leaseLive(ctx, tx, *by, now); err != nil {
			return err
		} else if !live {
			return switchback.LeaseLostError(*by)
		}
	}
	if want != "" && switchback.Status(status) != want {
		return switchback.Errorf(switchback.EGONE, "call transfer %q is %s, not %s", id, status, want)
	}
	if by != nil && owner != *by {
		return switchback.NotOwnerError(id, owner, *by)
	}
	return nil
}

// callSlot returns the lowest call slot of the tenant under max that no
// ONGOING transfer holds, or EBUSY when the tenant has max calls holding
// slots (those of a higher limit since lowered count too, until they end).
// A tenant's limit holds as on a store several nodes share: the unique
// index transfers_call_slot keeps two ONGOING transfers of a tenant from
// holding one slot, and a slot frees itself when its transfer leaves
// ONGOING.
func callSlot(ctx context.Context, tx *wtx, tenantID string, max int) (int64, error) {
	rows, err := tx.query(ctx, `SELECT call_slot FROM transfers
		WHERE tenant_id = ? AND status = 'ONGOING' AND call_slot IS NOT NULL`, tenantID)
	if err != nil {
		return 0, err
	}
	defer rows.Close()
	used := map[int64]bool{}
	n := 0
	for rows.Next() {
		var s int64
		if err := rows.Scan(&s); err != nil {
			return 0, err
		}
		used[s] = true
		n++
	}
	if err := rows.Err(); err != nil {
		return 0, err
	}
	if n >= max {
		return 0, switchback.BusyError(tenantID, max)
	}
	var s int64
	for used[s] {
		s++
	}
	return s, nil
}
