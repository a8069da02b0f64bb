package e2e

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/switchback/switchback"
	"github.com/switchback/switchback/internal/sqlite"
)

// TestKillDuringCreatesLosesNothing kills the server with SIGKILL in the
// middle of a stream of creates, restarts it, and finds every transfer that
// was acknowledged with 200; the ACTIVE ones then expire on time (invariant 4).
func TestKillDuringCreatesLosesNothing(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "switchback.yaml")
	const ttl = 4 * time.Second
	writeFile(t, cfg, fmt.Sprintf(`
store: {driver: sqlite, dsn: %s}
pool:
  quarantine: 1s
  numbers:
    - {country: US, numbers: ["+12025550100-+12025550999"]}
tenants:
  - id: demo
    phoneNumberTTL: %s
    sipTTL: %s
    rateLimit: {requestsPerSecond: 100000, burst: 100000}
log: {level: warn}
`, filepath.Join(dir, "sb.db"), ttl, ttl))
	key := newKey(t, dir, cfg)
	srv := startServer(t, dir, cfg)

	type acked struct {
		id, typ, number string
		expires         time.Time
	}
	var (
		mu    sync.Mutex
		acks  []acked
		sent  int
		wg    sync.WaitGroup
		ctx   = context.Background()
		c     = newClient(key)
		start = time.Now()
	)
	stop := make(chan struct{})
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				id := fmt.Sprintf("w%d-%d", w, i)
				body := fmt.Sprintf(`{"id":%q,"externalConversationId":"c","type":"SIP","inputContext":{"inputVariables":{"i":"%d"}}}`, id, i)
				if i%3 == 0 {
					body = fmt.Sprintf(`{"id":%q,"externalConversationId":"c","type":"PHONE_NUMBER","phoneNumber":{"country":"US"}}`, id)
				}
				mu.Lock()
				sent++
				mu.Unlock()
				r, err := c.do(ctx, "POST", srv.URL+"/generativeagent/v1/call-transfers", body)
				if err != nil {
					return // the server died under us: this create was never acknowledged
				}
				if r.status != 200 {
					t.Errorf("create %s: %d %s", id, r.status, r.raw)
					return
				}
				exp, _ := time.Parse(time.RFC3339, r.str("expiresAt"))
				var number string
				if pn, ok := r.body["phoneNumber"].(map[string]any); ok {
					number, _ = pn["transferNumber"].(string)
				}
				mu.Lock()
				acks = append(acks, acked{id, r.str("type"), number, exp})
				mu.Unlock()
			}
		}(w)
	}
	time.Sleep(1500 * time.Millisecond)
	srv.kill()
	close(stop)
	wg.Wait()
	if len(acks) < 50 {
		t.Fatalf("only %d creates acknowledged before the kill; the test did not stress anything", len(acks))
	}
	t.Logf("%d of %d creates acknowledged before SIGKILL at %v", len(acks), sent, time.Since(start).Round(time.Millisecond))

	srv = startServer(t, dir, cfg)
	var latest time.Time
	for _, a := range acks {
		r, err := c.do(ctx, "GET", srv.URL+"/generativeagent/v1/call-transfers/"+a.id, "")
		if err != nil {
			t.Fatal(err)
		}
		if r.status != 200 {
			t.Fatalf("acknowledged transfer %s lost after kill -9: %d %s", a.id, r.status, r.raw)
		}
		if r.str("type") != a.typ || r.str("expiresAt") != a.expires.Format("2006-01-02T15:04:05.000Z") {
			t.Fatalf("transfer %s came back different: %s", a.id, r.raw)
		}
		if a.number != "" {
			if pn, _ := r.body["phoneNumber"].(map[string]any); pn["transferNumber"] != a.number {
				t.Fatalf("transfer %s lost its number %s: %s", a.id, a.number, r.raw)
			}
		}
		if a.expires.After(latest) {
			latest = a.expires
		}
	}

	// Every ACTIVE transfer expires after the restart: the restarted node
	// arms the timers of the transfers it did not create in this life, and
	// the store itself soon says EXPIRED and the number is free. (A GET
	// says EXPIRED from the expiry on, whatever the store says.) How soon
	// depends on the machine's load: the bound here is loose.
	db, err := sqlite.Open(ctx, filepath.Join(dir, "sb.db"), sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	time.Sleep(time.Until(latest.Add(100 * time.Millisecond)))
	var counts map[switchback.Status]int
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if counts, err = db.CountTransfers(ctx); err != nil {
			t.Fatal(err)
		}
		if counts[switchback.StatusActive] == 0 && counts[switchback.StatusExpired] >= len(acks) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("10s after the last expiry: %v (acknowledged %d)", counts, len(acks))
		}
	}
	sums, err := db.PoolSummaries(ctx, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if sums[0].Leased != 0 {
		t.Fatalf("numbers still leased after every transfer expired: %+v", sums)
	}
}
