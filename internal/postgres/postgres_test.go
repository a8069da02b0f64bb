package postgres_test

import (
	"context"
	"testing"
	"time"

	"github.com/switchback/switchback"
	"github.com/switchback/switchback/internal/pgtest"
	"github.com/switchback/switchback/internal/postgres"
	"github.com/switchback/switchback/internal/storetest"
)

// TestConformance runs the suite every store must pass, each subtest on a
// database of its own.
func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T, q time.Duration) switchback.Store {
		return open(t, pgtest.NewDatabase(t), q)
	})
}

// open opens a store on dsn that the test closes when it ends.
func open(t *testing.T, dsn string, quarantine time.Duration) *postgres.DB {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	db, err := postgres.Open(ctx, dsn, postgres.Options{Quarantine: quarantine})
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}
