package e2e

import (
	"context"
	"fmt"
	"path/filepath"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/switchback/switchback"
	"github.com/switchback/switchback/internal/pgtest"
	"github.com/switchback/switchback/internal/postgres"
)

// TestPoolRaceAcrossTwoNodes runs two server processes on one PostgreSQL
// and has concurrent clients create thousands of PHONE_NUMBER transfers
// against a pool of eight numbers, for eight seconds. No number is ever held by two ACTIVE
// transfers or leased during its quarantine (invariants 1 and 2), and an
// exhausted pool answers 503.
func TestPoolRaceAcrossTwoNodes(t *testing.T) {
	dsn := pgtest.NewDatabase(t)
	dir := t.TempDir()
	cfg := filepath.Join(dir, "switchback.yaml")
	const quarantine = 50 * time.Millisecond
	writeFile(t, cfg, fmt.Sprintf(`
store: {driver: postgres, dsn: %q}
expiry: {sweepInterval: 20ms}
pool:
  quarantine: %s
  numbers:
    - {country: US, numbers: ["+12025550100-+12025550107"]}
tenants:
  - id: demo
    phoneNumberTTL: 50ms
    rateLimit: {requestsPerSecond: 1000000, burst: 1000000}
log: {level: warn}
`, dsn, quarantine))
	key := newKey(t, dir, cfg)
	nodes := []*server{startServer(t, dir, cfg), startServer(t, dir, cfg)}

	// The clients race for 8 s, longer on a loaded machine until the pool
	// has been leased 300 times, and 40 s at most.
	const attempts = 40000
	start := time.Now()
	busy, done := context.WithTimeout(context.Background(), 40*time.Second)
	defer done()
	var (
		next      atomic.Int64
		ok, full  atomic.Int64
		wg        sync.WaitGroup
		c         = newClient(key)
		ctx, stop = context.WithTimeout(context.Background(), 90*time.Second)
	)
	defer stop()
	for w := 0; w < 16; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			node := nodes[w%2]
			for {
				i := next.Add(1)
				if i > attempts || busy.Err() != nil || time.Since(start) > 8*time.Second && ok.Load() >= 300 {
					return
				}
				body := fmt.Sprintf(`{"id":"r-%d","externalConversationId":"c-%d","type":"PHONE_NUMBER","phoneNumber":{"country":"US"}}`, i, i)
				r, err := c.do(ctx, "POST", node.URL+"/generativeagent/v1/call-transfers", body)
				if err != nil {
					t.Errorf("create r-%d: %v", i, err)
					return
				}
				switch {
				case r.status == 200:
					ok.Add(1)
				case r.status == 503 && r.errorCode() == "503-01":
					full.Add(1)
					time.Sleep(5 * time.Millisecond) // a client backs off briefly

				default:
					t.Errorf("create r-%d: %d %s", i, r.status, r.raw)
					return
				}
			}
		}(w)
	}
	wg.Wait()
	if ctx.Err() != nil {
		t.Fatal("the clients did not finish in time")
	}
	t.Logf("%d creates: %d leased a number, %d found the pool exhausted", ok.Load()+full.Load(), ok.Load(), full.Load())
	if ok.Load() < 300 || full.Load() == 0 {
		t.Fatalf("the pool was not both used and exhausted: %d leases, %d exhausted", ok.Load(), full.Load())
	}

	// Let every lease end, then check each number's history.
	time.Sleep(500 * time.Millisecond)
	db, err := postgres.Open(context.Background(), dsn, postgres.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	all, err := db.ListTransfers(context.Background(), switchback.TransferFilter{TenantID: "demo", Limit: attempts + 1})
	if err != nil {
		t.Fatal(err)
	}
	if int64(len(all)) != ok.Load() {
		t.Fatalf("store holds %d transfers, clients were acknowledged %d", len(all), ok.Load())
	}
	byNumber := map[string][]*switchback.Transfer{}
	for _, tr := range all {
		n := tr.PhoneNumber.TransferNumber
		byNumber[n] = append(byNumber[n], tr)
	}
	if len(byNumber) != 8 {
		t.Fatalf("leases spread over %d numbers, want all 8", len(byNumber))
	}
	for n, leases := range byNumber {
		sort.Slice(leases, func(i, j int) bool { return leases[i].CreatedAt.Before(leases[j].CreatedAt) })
		for i, l := range leases {
			if l.Status == switchback.StatusActive || l.PhoneNumber.ReleasedAt.IsZero() {
				t.Fatalf("%s: transfer %s still holds its number (%s)", n, l.ID, l.Status)
			}
			if i == 0 {
				continue
			}
			prev := leases[i-1]
			// Invariant 1: the previous lease ended before this one began.
			// Invariant 2: and its quarantine had run out.
			if l.CreatedAt.Before(prev.PhoneNumber.ReleasedAt.Add(quarantine)) {
				t.Fatalf("%s leased to %s at %s, but %s released it at %s (quarantine %s)", n, l.ID,
					l.CreatedAt.Format(time.StampMicro), prev.ID, prev.PhoneNumber.ReleasedAt.Format(time.StampMicro), quarantine)
			}
		}
	}
}
