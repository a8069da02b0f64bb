package sqlite_test

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
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

// TestConformanceWithCache runs the suite again with the transfer cache on,
// as `switchback serve` opens the store.
func TestConformanceWithCache(t *testing.T) {
	storetest.Run(t, func(t *testing.T, q time.Duration) switchback.Store {
		db, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "sb.db"), sqlite.Options{Quarantine: q, Cache: true})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		return db
	})
}

func TestCacheLockAllowsOneProcess(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "sb.db")
	first, err := sqlite.Open(ctx, path, sqlite.Options{Cache: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sqlite.Open(ctx, path, sqlite.Options{Cache: true}); err == nil || !strings.Contains(err.Error(), "in use") {
		t.Fatalf("second cached open: %v", err)
	}
	// Tools that only read or manage keys and numbers open it without the cache.
	other, err := sqlite.Open(ctx, path, sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	other.Close()
	first.Close()
	again, err := sqlite.Open(ctx, path, sqlite.Options{Cache: true})
	if err != nil {
		t.Fatalf("after close: %v", err)
	}
	again.Close()
}

// TestCacheAgreesWithTheFile races moves and reads of many transfers and
// checks the cached answers equal what the file holds.
func TestCacheAgreesWithTheFile(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "sb.db")
	db, err := sqlite.Open(ctx, path, sqlite.Options{Cache: true})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	now := time.Now().UTC()
	var wg sync.WaitGroup
	for i := 0; i < 40; i++ {
		id := fmt.Sprintf("t-%d", i)
		tr := &switchback.Transfer{TenantID: "a", ID: id, ExternalConversationID: "c-" + id, Type: switchback.TypeSIP,
			SIP: &switchback.SIP{ReturnTransferType: switchback.ReturnBYE}, CreatedAt: now, ExpiresAt: now.Add(time.Duration(i%2) * time.Hour), RequestHash: "h"}
		if _, _, err := db.CreateTransfer(ctx, tr, now); err != nil {
			t.Fatal(err)
		}
		wg.Add(3)
		go func() {
			defer wg.Done()
			if _, err := db.MatchTransfer(ctx, "a", id, switchback.CallClaim{}, now); err == nil {
				db.CompleteTransfer(ctx, "a", id, &switchback.OutputContext{TransferType: switchback.TransferAgent}, switchback.NodeLease{}, now)
				db.SetReturnResult(ctx, "a", id, &switchback.ReturnResult{Method: switchback.ReturnBYE, At: now}, switchback.NodeLease{}, now)
			}
		}()
		go func() { defer wg.Done(); db.ExpireDue(ctx, now, 5) }()
		go func() {
			defer wg.Done()
			for j := 0; j < 20; j++ {
				db.Transfer(ctx, "a", id)
			}
		}()
	}
	wg.Wait()
	plain, err := sqlite.Open(ctx, path, sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	for i := 0; i < 40; i++ {
		id := fmt.Sprintf("t-%d", i)
		cached, err1 := db.Transfer(ctx, "a", id)
		stored, err2 := plain.Transfer(ctx, "a", id)
		if err1 != nil || err2 != nil || cached.Status != stored.Status || !cached.CompletedAt.Equal(stored.CompletedAt) ||
			(cached.ReturnResult == nil) != (stored.ReturnResult == nil) || (stored.Status == switchback.StatusCompleted) != (stored.ReturnResult != nil) {
			t.Fatalf("%s: cached %+v (%v), file %+v (%v)", id, cached, err1, stored, err2)
		}
	}
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
