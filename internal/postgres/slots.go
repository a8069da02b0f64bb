package postgres

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/switchback/switchback"
)

// A tenant's limit of calls at once holds across nodes without a row or a
// lock every match of the tenant waits on: a call matched under a limit of
// N takes one of the tenant's call slots 0..N-1, and the unique index
// transfers_call_slot keeps two ONGOING transfers of a tenant from holding
// the same slot. Each match reads the slots taken and picks a free one at
// random, so concurrent matches seldom pick the same slot; when two do,
// the index makes the second wait for the first to commit and then fail,
// and the match runs again. A slot frees itself when its transfer leaves
// ONGOING.

// maxSlotAttempts bounds how many times a match runs again after losing
// its slot to a concurrent match. Each loss means another call took a
// slot, so a match that loses this often is refused as one at the limit.
const maxSlotAttempts = 8

// slotTakenError is a match that lost its call slot to a concurrent one.
type slotTakenError struct{ tenantID string }

func (e *slotTakenError) Error() string {
	return fmt.Sprintf("tenant %q: a call slot was taken by a concurrent match", e.tenantID)
}

// slotTaken turns the unique violation of a slot another call took into a
// slotTakenError, and returns other errors as they are.
func slotTaken(err error, tenantID string) error {
	var pe *pgconn.PgError
	if errors.As(err, &pe) && pe.Code == "23505" && pe.ConstraintName == "transfers_call_slot" {
		return &slotTakenError{tenantID}
	}
	return err
}

// pickCallSlot returns a free call slot of the tenant under max, or EBUSY
// when the tenant has max calls holding slots (those of a higher limit
// since lowered count too, until they end).
func pickCallSlot(ctx context.Context, tx pgx.Tx, tenantID string, max int) (int32, error) {
	max = min(max, math.MaxInt32)
	rows, err := tx.Query(ctx, `SELECT call_slot FROM transfers
		WHERE tenant_id = $1 AND status = 'ONGOING' AND call_slot IS NOT NULL`, tenantID)
	if err != nil {
		return 0, fmt.Errorf("read the tenant's call slots: %w", err)
	}
	taken, err := pgx.CollectRows(rows, pgx.RowTo[int32])
	if err != nil {
		return 0, fmt.Errorf("read the tenant's call slots: %w", err)
	}
	if len(taken) >= max {
		return 0, switchback.BusyError(tenantID, max)
	}
	return freeSlot(taken, int32(max)), nil
}

// freeSlot picks at random a slot under max that taken does not hold;
// there is one.
func freeSlot(taken []int32, max int32) int32 {
	used := make(map[int32]bool, len(taken))
	for _, s := range taken {
		if s < max {
			used[s] = true
		}
	}
	if len(used) < int(max)/2 {
		for {
			if s := rand.Int32N(max); !used[s] {
				return s
			}
		}
	}
	free := make([]int32, 0, int(max)-len(used))
	for s := int32(0); s < max; s++ {
		if !used[s] {
			free = append(free, s)
		}
	}
	return free[rand.IntN(len(free))]
}
