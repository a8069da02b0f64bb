package sqlite_test

import (
	"bytes"
	"context"
	"database/sql"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/switchback/switchback/internal/sqlite"
)

// TestStoresOnOneFileShareTheNonceKey opens the file twice, as the server
// and an admin command would: both see the key the first one made.
func TestStoresOnOneFileShareTheNonceKey(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "sb.db")
	a, err := sqlite.Open(ctx, path, sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := sqlite.Open(ctx, path, sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	ka, err := a.NonceKey(ctx)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := b.NonceKey(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(ka, kb) {
		t.Fatalf("keys differ: %x and %x", ka, kb)
	}
	if first, err := a.ClaimNonce(ctx, "n", time.Now().Add(time.Minute), time.Now()); err != nil || !first {
		t.Fatalf("claim on a: %v, %v", first, err)
	}
	if first, err := b.ClaimNonce(ctx, "n", time.Now().Add(time.Minute), time.Now()); err != nil || first {
		t.Fatalf("claim on b after a: %v, %v", first, err)
	}
}

// TestClaimPurgesExpiredNonces checks that claims keep sip_nonces at about
// the live nonces, a bounded number of expired rows at a time.
func TestClaimPurgesExpiredNonces(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "sb.db")
	db, err := sqlite.Open(ctx, path, sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	for i := 0; i < 150; i++ {
		if _, err := db.ClaimNonce(ctx, fmt.Sprintf("old-%d", i), t0.Add(time.Second), t0); err != nil {
			t.Fatal(err)
		}
	}
	raw, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(10000)")
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	count := func() int {
		var n int
		if err := raw.QueryRow("SELECT count(*) FROM sip_nonces").Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	later := t0.Add(time.Minute)
	if _, err := db.ClaimNonce(ctx, "new-0", later.Add(time.Minute), later); err != nil {
		t.Fatal(err)
	}
	if n := count(); n != 51 {
		t.Fatalf("after one purging claim %d rows, want 51 (100 purged)", n)
	}
	for i := 1; i < 3; i++ {
		if _, err := db.ClaimNonce(ctx, fmt.Sprintf("new-%d", i), later.Add(time.Minute), later); err != nil {
			t.Fatal(err)
		}
	}
	if n := count(); n != 3 {
		t.Fatalf("after three purging claims %d rows, want the 3 live ones", n)
	}
}
