package postgres_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/switchback/switchback"
	"github.com/switchback/switchback/internal/pgtest"
	"github.com/switchback/switchback/internal/postgres"
)

// BenchmarkCall measures a call's two writes, the match and the
// completion, each of its own conversation, all of one tenant: without a
// node lease, fenced by one, and fenced with a limit on the tenant's calls
// (a call slot each). Serial runs show what the extra statements cost;
// parallel runs (16 callers) whether matches of one tenant wait on each
// other, against the same calls spread over 16 tenants.
//
//	go test -run '^$' -bench Call -benchtime 2000x ./internal/postgres/
func BenchmarkCall(b *testing.B) {
	for _, parallel := range []bool{false, true} {
		for _, bc := range []struct {
			name     string
			fenced   bool
			maxCalls int
			tenants  int
		}{
			{"unfenced", false, 0, 1},
			{"fenced", true, 0, 1},
			{"fenced+limit", true, 1000, 1},
			{"fenced+limit/16-tenants", true, 1000, 16},
		} {
			if bc.tenants > 1 && !parallel {
				continue
			}
			name := bc.name
			if parallel {
				name = "parallel/" + name
			}
			b.Run(name, func(b *testing.B) {
				db, err := postgres.Open(context.Background(), pgtest.NewDatabase(b), postgres.Options{})
				if err != nil {
					b.Fatal(err)
				}
				defer db.Close()
				ctx := context.Background()
				var lease switchback.NodeLease
				if bc.fenced {
					if lease, err = db.AcquireNode(ctx, "bench", time.Hour, time.Now()); err != nil {
						b.Fatal(err)
					}
				}
				createCalls(b, db, b.N, bc.tenants)
				claim := switchback.CallClaim{Owner: lease, MaxCalls: bc.maxCalls}
				out := &switchback.OutputContext{TransferType: switchback.TransferSystem}
				call := func(i int64) {
					id, tenant := fmt.Sprintf("c%d", i), fmt.Sprintf("t%d", i%int64(bc.tenants))
					now := time.Now()
					if _, err := db.MatchTransfer(ctx, tenant, id, claim, now); err != nil {
						b.Fatal(err)
					}
					if _, err := db.CompleteTransfer(ctx, tenant, id, out, lease, now); err != nil {
						b.Fatal(err)
					}
				}
				b.ResetTimer()
				if !parallel {
					for i := 0; i < b.N; i++ {
						call(int64(i))
					}
					return
				}
				var next atomic.Int64
				b.SetParallelism(8)
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						call(next.Add(1) - 1)
					}
				})
			})
		}
	}
}

// createCalls creates n ACTIVE SIP transfers c0…c(n-1), ci of tenant
// t(i mod tenants).
func createCalls(b *testing.B, db *postgres.DB, n, tenants int) {
	b.Helper()
	var (
		wg   sync.WaitGroup
		next atomic.Int64
	)
	for w := 0; w < 16; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := next.Add(1) - 1; i < int64(n); i = next.Add(1) - 1 {
				now := time.Now()
				id := fmt.Sprintf("c%d", i)
				tr := &switchback.Transfer{TenantID: fmt.Sprintf("t%d", i%int64(tenants)), ID: id, ExternalConversationID: "conv-" + id, Type: switchback.TypeSIP,
					SIP: &switchback.SIP{ReturnTransferType: switchback.ReturnBYE}, CreatedAt: now, ExpiresAt: now.Add(time.Hour), RequestHash: "h"}
				if _, _, err := db.CreateTransfer(context.Background(), tr, now); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
}
