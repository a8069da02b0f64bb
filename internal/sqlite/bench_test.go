package sqlite_test

import (
	"context"
	"fmt"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/switchback/switchback"
	"github.com/switchback/switchback/internal/sqlite"
)

// BenchmarkCreateTransfer measures durable creates from concurrent callers.
func BenchmarkCreateTransfer(b *testing.B) {
	db, err := sqlite.Open(context.Background(), filepath.Join(b.TempDir(), "b.db"), sqlite.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	var n atomic.Int64
	b.SetParallelism(8)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			now := time.Now()
			id := fmt.Sprintf("t-%d", n.Add(1))
			tr := &switchback.Transfer{TenantID: "a", ID: id, ExternalConversationID: "c", Type: switchback.TypeSIP,
				SIP: &switchback.SIP{ReturnTransferType: switchback.ReturnBYE}, CreatedAt: now, ExpiresAt: now.Add(time.Minute), RequestHash: "h"}
			if _, _, err := db.CreateTransfer(context.Background(), tr, now); err != nil {
				b.Fatal(err)
			}
		}
	})
}
