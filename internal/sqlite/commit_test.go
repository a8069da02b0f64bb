package sqlite

import (
	"context"
	"errors"
	"path/filepath"
	"testing"

	"github.com/switchback/switchback"
)

// TestBatchIsolatesAFailingWrite runs one batch whose second write fails
// after writing: the batch is undone and replayed one write at a time, so
// the others commit, the failing one leaves nothing, and a refusal keeps
// its own error.
func TestBatchIsolatesAFailingWrite(t *testing.T) {
	ctx := context.Background()
	db, err := Open(ctx, filepath.Join(t.TempDir(), "b.db"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	insert := func(number string) func(*wtx) error {
		return func(w *wtx) error {
			_, err := w.exec(ctx, `INSERT INTO numbers (e164, country) VALUES (?, 'US')`, number)
			return err
		}
	}
	broken := errors.New("disk on fire")
	refused := switchback.Errorf(switchback.ECONFLICT, "refused")
	var ran []string
	batch := []writeOp{
		{ctx: ctx, fn: insert("+12025550100")},
		{ctx: ctx, fn: func(w *wtx) error {
			if err := insert("+12025550101")(w); err != nil {
				return err
			}
			return broken
		}},
		{ctx: ctx, fn: func(w *wtx) error { return refused }},
		{ctx: ctx, fn: func(w *wtx) error {
			w.afterCommit(func() { ran = append(ran, "fourth") })
			return insert("+12025550102")(w)
		}},
	}
	results := make([]error, len(batch))
	if err := db.committer.run(batch, results); err != nil {
		t.Fatalf("run: %v", err)
	}
	if results[0] != nil || !errors.Is(results[1], broken) || results[2] != refused || results[3] != nil {
		t.Fatalf("results = %v", results)
	}
	ns, err := db.Numbers(ctx, "", switchback.SystemClock())
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, n := range ns {
		got = append(got, n.E164)
	}
	if len(got) != 2 || got[0] != "+12025550100" || got[1] != "+12025550102" {
		t.Fatalf("numbers after the batch = %v, want the first and the fourth", got)
	}
	if len(ran) != 1 {
		t.Fatalf("after-commit actions ran %v times, want once", ran)
	}
}
