package sqlite_test

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/switchback/switchback"
	"github.com/switchback/switchback/internal/sqlite"
	"github.com/switchback/switchback/internal/storetest"
)

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T, q time.Duration) switchback.Store {
		db, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "sb.db"), sqlite.Options{Quarantine: q})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		return db
	})
}

func TestReopenKeepsDataAndSchema(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "sb.db")
	db, err := sqlite.Open(ctx, path, sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC()
	tr := &switchback.Transfer{TenantID: "a", ID: "x", ExternalConversationID: "c", Type: switchback.TypeSIP,
		SIP: &switchback.SIP{ReturnTransferType: switchback.ReturnBYE}, CreatedAt: now, ExpiresAt: now.Add(time.Minute), RequestHash: "h"}
	if _, _, err := db.CreateTransfer(ctx, tr, now); err != nil {
		t.Fatal(err)
	}
	db.Close()
	db, err = sqlite.Open(ctx, path, sqlite.Options{})
	if err != nil {
		t.Fatalf("reopen: %v", err)
	}
	defer db.Close()
	if _, err := db.Transfer(ctx, "a", "x"); err != nil {
		t.Fatalf("after reopen: %v", err)
	}
}
