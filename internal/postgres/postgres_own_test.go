package postgres_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/switchback/switchback"
	"github.com/switchback/switchback/internal/pgtest"
	"github.com/switchback/switchback/internal/postgres"
	"github.com/switchback/switchback/internal/storetest"
)

// These tests cover what only the PostgreSQL store has to get right: nodes
// that share one database, each with its own connection pool.

var t0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

func TestOpenMigratesOnceWhenNodesStartTogether(t *testing.T) {
	dsn := pgtest.NewDatabase(t)
	var wg sync.WaitGroup
	errs := make(chan error, 6)
	for i := 0; i < 6; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			db, err := postgres.Open(context.Background(), dsn, postgres.Options{})
			if err == nil {
				db.Close()
			}
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("open while others open: %v", err)
		}
	}
	db := open(t, dsn, 0) // and once more, with nothing left to apply
	if err := db.Ping(context.Background()); err != nil {
		t.Fatal(err)
	}
	conn := connect(t, dsn)
	rows, err := conn.Query(context.Background(), "SELECT version FROM schema_migrations ORDER BY version")
	if err != nil {
		t.Fatal(err)
	}
	versions, err := pgx.CollectRows(rows, pgx.RowTo[int32])
	if err != nil || fmt.Sprint(versions) != "[1 2 3 4 5 6 7]" {
		t.Fatalf("schema_migrations = %v, %v; want [1 2 3 4 5 6 7]", versions, err)
	}
}

func TestOpenRefusesBadDSN(t *testing.T) {
	if _, err := postgres.Open(context.Background(), "postgres://nobody@127.0.0.1:1/x?connect_timeout=1", postgres.Options{}); err == nil {
		t.Fatal("opened a database that is not there")
	}
}

// TestRetriedCreatesRaceForOneNumber sends one create many times at once, as
// a client retrying through several nodes would: one wins, every other call
// gets the winner's transfer back, and the pool loses one number only.
func TestRetriedCreatesRaceForOneNumber(t *testing.T) {
	dsn := pgtest.NewDatabase(t)
	nodes := []*postgres.DB{open(t, dsn, time.Second), open(t, dsn, time.Second)}
	ctx := context.Background()
	if _, err := nodes[0].AddNumbers(ctx, []switchback.Number{
		{E164: "+12025550100", Country: "US"}, {E164: "+12025550101", Country: "US"}, {E164: "+12025550102", Country: "US"},
	}); err != nil {
		t.Fatal(err)
	}
	for round := 0; round < 10; round++ {
		id := fmt.Sprintf("p-%d", round)
		now := t0.Add(time.Duration(round) * 2 * time.Second) // past the last round's quarantine
		var (
			wg      sync.WaitGroup
			mu      sync.Mutex
			created int
			numbers = map[string]bool{}
		)
		for i := 0; i < 12; i++ {
			wg.Add(1)
			go func(db *postgres.DB) {
				defer wg.Done()
				got, ok, err := db.CreateTransfer(ctx, phoneTransfer("acme", id, now), now)
				if err != nil {
					t.Errorf("create %s: %v", id, err)
					return
				}
				mu.Lock()
				defer mu.Unlock()
				if ok {
					created++
				}
				numbers[got.PhoneNumber.TransferNumber] = true
			}(nodes[i%2])
		}
		wg.Wait()
		if created != 1 || len(numbers) != 1 {
			t.Fatalf("%s: %d creates won, numbers returned %v; want one of each", id, created, numbers)
		}
		sum, err := nodes[0].PoolSummaries(ctx, now)
		if err != nil || sum[0].Leased != 1 {
			t.Fatalf("%s: pool %+v %v; want exactly one number leased", id, sum, err)
		}
		if _, err := nodes[1].MatchTransfer(ctx, "acme", id, switchback.CallClaim{}, now); err != nil {
			t.Fatal(err)
		}
	}
}

// TestManyNodesNeverShareANumber runs 8 workers on two nodes, each creating
// 200 PHONE_NUMBER transfers against a pool of 5 with short expiries, while
// both nodes sweep. Throughout, it reads the database directly: no number is
// held by two ACTIVE transfers, and the pool's leases agree with the
// transfers. At the end it checks every number's history for overlaps and
// for leases inside quarantine.
func TestManyNodesNeverShareANumber(t *testing.T) {
	const (
		workers    = 8
		perWorker  = 200
		expiry     = 5 * time.Millisecond
		quarantine = 3 * time.Millisecond
	)
	dsn := pgtest.NewDatabase(t)
	nodes := []*postgres.DB{open(t, dsn, quarantine), open(t, dsn, quarantine)}
	ctx := context.Background()
	var pool []switchback.Number
	for i := 0; i < 5; i++ {
		pool = append(pool, switchback.Number{E164: fmt.Sprintf("+1202555010%d", i), Country: "US"})
	}
	if _, err := nodes[0].AddNumbers(ctx, pool); err != nil {
		t.Fatal(err)
	}
	conn := connect(t, dsn)
	recordLeases(t, ctx, conn)

	// A logical clock that only moves forward, shared by both nodes as if
	// their clocks were in sync, keeps expiry and quarantine deterministic.
	// Each operation takes its time before it runs, so under load times are
	// not monotonic in commit order: see checkHistory.
	var (
		clockMu sync.Mutex
		clock   = t0
	)
	tick := func() time.Time {
		clockMu.Lock()
		defer clockMu.Unlock()
		clock = clock.Add(time.Millisecond)
		return clock
	}

	// A create that finds the pool exhausted waits for the next sweep to
	// finish before going on. Otherwise a sweep that stalls (a slow new
	// connection, a busy machine) lets the workers run through all their
	// creates against numbers held by expired transfers that no sweep has
	// released yet, and the race ends having leased almost nothing.
	var (
		sweepMu sync.Mutex
		swept   = make(chan struct{}) // closed, and replaced, as each sweep ends
		dead    = make(chan struct{}) // closed when a sweeper gives up
		dying   sync.Once
	)
	nextSweep := func() <-chan struct{} {
		sweepMu.Lock()
		defer sweepMu.Unlock()
		return swept
	}

	var (
		wg        sync.WaitGroup
		mu        sync.Mutex
		leased    int
		exhausted int
	)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			db := nodes[w%len(nodes)]
			for i := 0; i < perWorker; i++ {
				now := tick()
				tr := phoneTransfer("acme", fmt.Sprintf("w%d-%d", w, i), now)
				tr.ExpiresAt = now.Add(expiry)
				got, _, err := db.CreateTransfer(ctx, tr, now)
				if switchback.ErrorCode(err) == switchback.EEXHAUSTED {
					mu.Lock()
					exhausted++
					mu.Unlock()
					select {
					case <-nextSweep():
					case <-dead:
					}
					continue
				} else if err != nil {
					t.Errorf("create: %v", err)
					return
				}
				mu.Lock()
				leased++
				mu.Unlock()
				switch i % 3 {
				case 0: // the call arrives, on whichever node, and completes
					m := tick()
					// By then the transfer may have expired and its number
					// gone to another, even one created after m: the call
					// belongs to whichever matched.
					if matched, err := nodes[(w+1)%len(nodes)].MatchNumber(ctx, got.PhoneNumber.TransferNumber, switchback.CallClaim{}, m); err == nil {
						out := &switchback.OutputContext{TransferType: switchback.TransferAgent}
						if _, err := db.CompleteTransfer(ctx, matched.TenantID, matched.ID, out, switchback.NodeLease{}, tick()); err != nil {
							t.Errorf("complete: %v", err)
						}
					} else if c := switchback.ErrorCode(err); c != switchback.ENOTFOUND {
						t.Errorf("match number: %v", err)
					}
				case 1: // a client retries the create: nothing new is leased
					again, created, err := db.CreateTransfer(ctx, tr, tick())
					if err != nil || created || again.PhoneNumber.TransferNumber != got.PhoneNumber.TransferNumber {
						t.Errorf("retried create: created=%v %v", created, err)
					}
				}
			}
		}(w)
	}

	stop := make(chan struct{})
	var bg sync.WaitGroup
	for _, db := range nodes {
		bg.Add(1)
		go func(db *postgres.DB) {
			defer bg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				if _, err := db.ExpireDue(ctx, tick(), 3); err != nil {
					t.Errorf("sweep: %v", err)
					dying.Do(func() { close(dead) })
					return
				}
				sweepMu.Lock()
				close(swept)
				swept = make(chan struct{})
				sweepMu.Unlock()
			}
		}(db)
	}
	checks := 0
	bg.Add(1)
	go func() {
		defer bg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			if err := checkLeases(ctx, conn); err != nil {
				t.Error(err)
				return
			}
			checks++
		}
	}()
	wg.Wait()
	close(stop)
	bg.Wait()
	if t.Failed() {
		return
	}
	if err := checkLeases(ctx, conn); err != nil {
		t.Fatal(err)
	}
	if leased < 50 || exhausted == 0 {
		t.Fatalf("the race did not exercise the pool: %d leases, %d exhausted", leased, exhausted)
	}
	t.Logf("%d leases, %d exhausted, %d database checks", leased, exhausted, checks)
	checkHistory(t, ctx, conn, quarantine)
}

// checkLeases checks, in one snapshot, that no number is held by two ACTIVE
// transfers and that the numbers table and the ACTIVE transfers agree on
// who holds what.
func checkLeases(ctx context.Context, conn *pgx.Conn) error {
	var shared, orphanLeases, unleased int
	err := conn.QueryRow(ctx, `
		SELECT
			(SELECT count(*) FROM (
				SELECT transfer_number FROM transfers
				WHERE status = 'ACTIVE' AND transfer_number IS NOT NULL
				GROUP BY transfer_number HAVING count(*) > 1) d),
			(SELECT count(*) FROM numbers n WHERE n.leased_transfer IS NOT NULL AND NOT EXISTS (
				SELECT 1 FROM transfers t
				WHERE t.tenant_id = n.leased_tenant AND t.id = n.leased_transfer
					AND t.status = 'ACTIVE' AND t.transfer_number = n.e164)),
			(SELECT count(*) FROM transfers t WHERE t.status = 'ACTIVE' AND t.transfer_number IS NOT NULL
				AND NOT EXISTS (SELECT 1 FROM numbers n
					WHERE n.e164 = t.transfer_number AND n.leased_tenant = t.tenant_id AND n.leased_transfer = t.id))`,
	).Scan(&shared, &orphanLeases, &unleased)
	if err != nil {
		return fmt.Errorf("check leases: %w", err)
	}
	if shared != 0 || orphanLeases != 0 || unleased != 0 {
		return fmt.Errorf("%d numbers held by two ACTIVE transfers, %d leases without their ACTIVE transfer, %d ACTIVE transfers without their lease",
			shared, orphanLeases, unleased)
	}
	return nil
}

// recordLeases makes the database log, in a table of its own, every change
// of a number's holder: each lease and each release, with the release time
// and quarantine the store wrote. Changes to one number are serialized by
// its row lock, held until commit, so the log's sequence orders them as they
// committed; a rolled-back change leaves no entry.
func recordLeases(t *testing.T, ctx context.Context, conn *pgx.Conn) {
	t.Helper()
	if _, err := conn.Exec(ctx, `
		CREATE TABLE lease_log (
			seq              BIGSERIAL PRIMARY KEY,
			e164             TEXT   NOT NULL,
			leased_transfer  TEXT,
			released_at      BIGINT NOT NULL,
			quarantine_until BIGINT NOT NULL
		);
		CREATE FUNCTION log_lease() RETURNS trigger LANGUAGE plpgsql AS $$
		BEGIN
			INSERT INTO lease_log (e164, leased_transfer, released_at, quarantine_until)
			VALUES (NEW.e164, NEW.leased_transfer, NEW.released_at, NEW.quarantine_until);
			RETURN NULL;
		END $$;
		CREATE TRIGGER log_lease AFTER UPDATE ON numbers FOR EACH ROW
			WHEN (OLD.leased_transfer IS DISTINCT FROM NEW.leased_transfer)
			EXECUTE FUNCTION log_lease();`); err != nil {
		t.Fatalf("record leases: %v", err)
	}
}

// checkHistory checks invariants 1 and 2 over every lease the database
// recorded, in the order each number went through them. A number is leased
// only while no transfer holds it, by a create whose now (the created_at the
// test gives it) is at or after the quarantine its last release set. It is
// released only by the transfer holding it, at the time the store says that
// transfer let it go (the match's call_received_at, or a sweep at or after
// the expiry), and quarantined from then for quarantine.
//
// The order comes from the log recordLeases keeps, not from the transfers'
// times. The test's clock hands out a time before the operation that uses it
// runs, so under load a match may run with a now older than the created_at
// of the transfer it matches: a call "received" before that transfer
// existed, meant for the number's previous holder. The store, as its
// contract says, sets call_received_at to that now and quarantines the
// number from it; a create that runs after that, with a now taken earlier
// still, may then lease the number with a created_at older than the matched
// transfer's. Sorted by created_at, that later lease looks as if it came
// first and sat inside the quarantine of a lease it in fact followed. Judged
// in commit order against the store's own release times, each lease is held
// to exactly the quarantine the store promises, and a stale time can no
// longer fake a violation.
func checkHistory(t *testing.T, ctx context.Context, conn *pgx.Conn, quarantine time.Duration) {
	t.Helper()
	type transfer struct {
		number                                   string
		status                                   string
		created, expires, callReceived, released int64
		leases                                   int
	}
	transfers := map[string]*transfer{}
	rows, err := conn.Query(ctx, `
		SELECT id, transfer_number, status, created_at, expires_at, call_received_at, number_released_at
		FROM transfers WHERE transfer_number IS NOT NULL`)
	if err != nil {
		t.Fatal(err)
	}
	var (
		id string
		tr transfer
	)
	if _, err := pgx.ForEachRow(rows, []any{&id, &tr.number, &tr.status, &tr.created, &tr.expires, &tr.callReceived, &tr.released}, func() error {
		c := tr
		transfers[id] = &c
		return nil
	}); err != nil {
		t.Fatal(err)
	}

	rows, err = conn.Query(ctx, `
		SELECT e164, leased_transfer, released_at, quarantine_until FROM lease_log ORDER BY e164, seq`)
	if err != nil {
		t.Fatal(err)
	}
	type event struct {
		number                string
		holder                *string
		released, quarantined int64
	}
	events, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (e event, err error) {
		err = row.Scan(&e.number, &e.holder, &e.released, &e.quarantined)
		return e, err
	})
	if err != nil {
		t.Fatal(err)
	}
	at := func(us int64) string { return fmt.Sprintf("+%dµs", us-t0.UnixMicro()) }
	q := quarantine.Microseconds()
	var (
		number   string
		holder   string // "" while free
		freeFrom int64  // the quarantine the number's last release set
		last     string // the number's last holder
	)
	for _, e := range events {
		if e.number != number {
			number, holder, freeFrom, last = e.number, "", 0, ""
		}
		if e.holder != nil { // a lease
			tr := transfers[*e.holder]
			switch {
			case tr == nil || tr.number != number:
				t.Fatalf("number %s leased to %s, which does not record it", number, *e.holder)
			case holder != "":
				t.Fatalf("number %s leased to %s at %s while %s held it", number, *e.holder, at(tr.created), holder)
			case tr.created < freeFrom:
				t.Fatalf("number %s leased to %s at %s, inside the quarantine until %s after %s released it",
					number, *e.holder, at(tr.created), at(freeFrom), last)
			}
			tr.leases++
			holder = *e.holder
			continue
		}
		// A release.
		tr := transfers[holder]
		switch {
		case holder == "":
			t.Fatalf("number %s released while free", number)
		case tr.status == string(switchback.StatusActive):
			t.Fatalf("number %s released by %s, still ACTIVE", number, holder)
		case e.released != tr.released:
			t.Fatalf("number %s released at %s, but %s records its release at %s", number, at(e.released), holder, at(tr.released))
		case tr.callReceived != 0 && e.released != tr.callReceived:
			t.Fatalf("number %s released at %s, but %s was matched at %s", number, at(e.released), holder, at(tr.callReceived))
		case tr.callReceived == 0 && e.released < tr.expires:
			t.Fatalf("number %s released at %s, before %s expired at %s", number, at(e.released), holder, at(tr.expires))
		case e.quarantined != e.released+q:
			t.Fatalf("number %s released at %s, quarantined until %s; want %s", number, at(e.released), at(e.quarantined), at(e.released+q))
		}
		last, holder, freeFrom = holder, "", e.quarantined
	}
	for id, tr := range transfers {
		if tr.leases != 1 {
			t.Fatalf("transfer %s holds number %s, leased to it %d times", id, tr.number, tr.leases)
		}
	}
}

func phoneTransfer(tenant, id string, now time.Time) *switchback.Transfer {
	return &switchback.Transfer{
		TenantID:               tenant,
		ID:                     id,
		ExternalConversationID: "conv-" + id,
		Type:                   switchback.TypePhoneNumber,
		Status:                 switchback.StatusActive,
		PhoneNumber:            &switchback.PhoneNumber{Country: "US"},
		CreatedAt:              now,
		ExpiresAt:              now.Add(time.Minute),
		RequestHash:            "hash-" + id,
	}
}

// connect opens a plain connection for reading the database behind the
// store's back.
func connect(t *testing.T, dsn string) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

// TestTwoNodesNeverMatchTwoLegsOfOneConversation races matches of the
// legs of one conversation through two stores on one database, as two
// nodes taking two calls at once would: one leg wins each round.
func TestTwoNodesNeverMatchTwoLegsOfOneConversation(t *testing.T) {
	dsn := pgtest.NewDatabase(t)
	storetest.ConcurrentLegMatches(t, []switchback.Store{open(t, dsn, time.Second), open(t, dsn, time.Second)})
}
