package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"github.com/switchback/switchback"
	"sync"
	"sync/atomic"
	"time"
)

// Group commit. SQLite has one writer and every acknowledged write must be
// synced to disk, so writes are queued to one goroutine that runs all the
// writes waiting at that moment in a single transaction and syncs once for
// all of them. Nobody hears of success before the commit that made it
// durable.
//
// The contract that keeps a batch cheap: a write function returns a domain
// error (*switchback.Error, a refusal such as "not found" or "pool
// exhausted") only before it has changed anything, so the batch commits
// around it. Any other error (the disk, a bug) rolls the whole batch back,
// and each of its writes is then run again in a transaction of its own, so
// only the one that fails fails.

// maxBatch bounds how many writes share one commit.
const maxBatch = 256

// Checkpoints. A background goroutine (checkpointLoop) copies the WAL back
// into the database file beside the writer, so the writer never stalls for
// the bulk of it. But a WAL only starts over when a checkpoint has copied
// every frame before the next write begins, which a copy racing a busy
// writer never does; so once the WAL is past walRestartFrames, the committer
// runs the last, short copy itself between two batches.
const (
	checkpointInterval = 100 * time.Millisecond
	walRestartFrames   = 4000
)

var errClosed = errors.New("sqlite store is closed")

type writeOp struct {
	ctx  context.Context
	fn   func(*wtx) error
	done chan error
}

type committer struct {
	db    *sql.DB
	ops   chan writeOp
	quit  chan struct{}
	ended chan struct{}
	stmts map[string]*sql.Stmt // owned by the loop goroutine
	after []func()             // what the batch's successful writes do once committed
	once  sync.Once

	restartWAL  atomic.Bool // set by checkpointLoop: the committer should finish a checkpoint
	checkpoints sync.WaitGroup
}

func newCommitter(db *sql.DB) *committer {
	c := &committer{db: db, ops: make(chan writeOp, maxBatch), quit: make(chan struct{}), ended: make(chan struct{}),
		stmts: map[string]*sql.Stmt{}}
	go c.loop()
	c.checkpoints.Add(1)
	go c.checkpointLoop()
	return c
}

// checkpointLoop copies the WAL into the database file until the committer
// stops, and asks the committer to finish a copy once the WAL is long.
func (c *committer) checkpointLoop() {
	defer c.checkpoints.Done()
	tick := time.NewTicker(checkpointInterval)
	defer tick.Stop()
	for {
		select {
		case <-c.quit:
			return
		case <-tick.C:
		}
		var busy, frames, copied int
		// A failure (busy, closing) only postpones the copy to the next tick.
		if err := c.db.QueryRow("PRAGMA wal_checkpoint(PASSIVE)").Scan(&busy, &frames, &copied); err == nil && frames > walRestartFrames {
			c.restartWAL.Store(true)
		}
	}
}

func (c *committer) stop() {
	c.once.Do(func() { close(c.quit) })
	<-c.ended
	c.checkpoints.Wait()
}

// inTx runs fn in a write transaction and returns once its effects are
// durable, or with the error that undid them.
func (db *DB) inTx(ctx context.Context, fn func(*wtx) error) error {
	op := writeOp{ctx: ctx, fn: fn, done: make(chan error, 1)}
	select {
	case db.committer.ops <- op:
	case <-ctx.Done():
		return ctx.Err()
	case <-db.committer.ended:
		return errClosed
	}
	select {
	case err := <-op.done:
		return err
	case <-db.committer.ended:
		// The loop may have finished this op just before stopping.
		select {
		case err := <-op.done:
			return err
		default:
			return errClosed
		}
	}
}

func (c *committer) loop() {
	defer close(c.ended)
	defer func() {
		for _, st := range c.stmts {
			st.Close()
		}
	}()
	batch := make([]writeOp, 0, maxBatch)
	results := make([]error, 0, maxBatch)
	for {
		batch = batch[:0]
		select {
		case <-c.quit:
			return
		case op := <-c.ops:
			batch = append(batch, op)
		}
	drain:
		for len(batch) < maxBatch {
			select {
			case op := <-c.ops:
				batch = append(batch, op)
			default:
				break drain
			}
		}
		results = results[:len(batch)]
		err := c.run(batch, results)
		for i, op := range batch {
			if err != nil {
				op.done <- err
			} else {
				op.done <- results[i]
			}
		}
		if c.restartWAL.Load() {
			// A failure (the store closing) only postpones the copy.
			c.db.Exec("PRAGMA wal_checkpoint(PASSIVE)")
			c.restartWAL.Store(false)
		}
	}
}

// run executes a batch in one transaction; results gets each op's own
// outcome, and the returned error is one that failed them all.
func (c *committer) run(batch []writeOp, results []error) error {
	err := c.runTogether(batch, results)
	if err == nil || len(batch) == 1 || !errors.As(err, new(*batchError)) {
		return unwrapBatch(err)
	}
	// One write failed in a way that undid the batch: run each alone.
	for i := range batch {
		if err := c.runTogether(batch[i:i+1], results[i:i+1]); err != nil {
			results[i] = unwrapBatch(err)
		}
	}
	return nil
}

// batchError marks an op's own failure that rolled back its whole batch.
type batchError struct{ err error }

func (e *batchError) Error() string { return e.err.Error() }

func unwrapBatch(err error) error {
	var b *batchError
	if errors.As(err, &b) {
		return b.err
	}
	return err
}

// runTogether runs ops in one transaction and commits it.
func (c *committer) runTogether(batch []writeOp, results []error) error {
	c.after = c.after[:0]
	tx, err := c.db.Begin()
	if err != nil {
		return err
	}
	for i, op := range batch {
		if err := op.ctx.Err(); err != nil {
			results[i] = err
			continue
		}
		w := &wtx{tx: tx, c: c}
		results[i] = op.fn(w)
		var refusal *switchback.Error
		switch {
		case results[i] == nil:
			c.after = append(c.after, w.after...)
		case !errors.As(results[i], &refusal):
			tx.Rollback()
			return &batchError{results[i]}
		}
	}
	if err := tx.Commit(); err != nil {
		return err
	}
	// In commit order, so the cache ends with the last committed state.
	for _, fn := range c.after {
		fn()
	}
	return nil
}

// wtx is a write transaction whose statements are prepared once and reused.
type wtx struct {
	tx    *sql.Tx
	c     *committer
	after []func()
}

// afterCommit runs fn once this write is durable; a write that fails or
// is rolled back never runs it.
func (w *wtx) afterCommit(fn func()) { w.after = append(w.after, fn) }

// Statements run under noCancel: the driver watches a cancellable context
// with a goroutine per statement, which costs more than the statements
// themselves. A write's context is checked once, before its op runs; a read
// is one short query.
var noCancel = context.Background()

func (w *wtx) stmt(ctx context.Context, q string) (*sql.Stmt, error) {
	ctx = noCancel
	st, ok := w.c.stmts[q]
	if !ok {
		var err error
		if st, err = w.c.db.PrepareContext(ctx, q); err != nil {
			return nil, err
		}
		w.c.stmts[q] = st
	}
	return w.tx.StmtContext(ctx, st), nil
}

func (w *wtx) exec(ctx context.Context, q string, args ...any) (sql.Result, error) {
	st, err := w.stmt(ctx, q)
	if err != nil {
		return nil, err
	}
	return st.ExecContext(noCancel, args...)
}

func (w *wtx) queryRow(ctx context.Context, q string, args ...any) *row {
	st, err := w.stmt(ctx, q)
	if err != nil {
		return &row{err: err}
	}
	return &row{row: st.QueryRowContext(noCancel, args...)}
}

func (w *wtx) query(ctx context.Context, q string, args ...any) (*sql.Rows, error) {
	st, err := w.stmt(ctx, q)
	if err != nil {
		return nil, err
	}
	return st.QueryContext(noCancel, args...)
}

// readRow runs a read on the pool with a cached prepared statement.
func (db *DB) readRow(ctx context.Context, q string, args ...any) *row {
	ctx = context.WithoutCancel(ctx)
	st, err := db.readStmt(ctx, q)
	if err != nil {
		return &row{err: err}
	}
	return &row{row: st.QueryRowContext(ctx, args...)}
}

func (db *DB) readRows(ctx context.Context, q string, args ...any) (*sql.Rows, error) {
	ctx = context.WithoutCancel(ctx)
	st, err := db.readStmt(ctx, q)
	if err != nil {
		return nil, err
	}
	return st.QueryContext(ctx, args...)
}

func (db *DB) readStmt(ctx context.Context, q string) (*sql.Stmt, error) {
	if st, ok := db.readStmts.Load(q); ok {
		return st.(*sql.Stmt), nil
	}
	st, err := db.read.PrepareContext(ctx, q)
	if err != nil {
		return nil, err
	}
	if prev, loaded := db.readStmts.LoadOrStore(q, st); loaded {
		st.Close()
		return prev.(*sql.Stmt), nil
	}
	return st, nil
}

// row is a *sql.Row that may carry a preparation error.
type row struct {
	row *sql.Row
	err error
}

func (r *row) Scan(dest ...any) error {
	if r.err != nil {
		return r.err
	}
	return r.row.Scan(dest...)
}
