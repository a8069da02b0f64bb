package postgres_test

import (
	"bytes"
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/switchback/switchback/internal/pgtest"
	"github.com/switchback/switchback/internal/postgres"
)

// TestNodesCreateOneNonceKey starts several nodes on a fresh database that
// all ask for the nonce key at once: they must agree on one.
func TestNodesCreateOneNonceKey(t *testing.T) {
	dsn := pgtest.NewDatabase(t)
	nodes := make([]*postgres.DB, 6)
	for i := range nodes {
		nodes[i] = open(t, dsn, 0)
	}
	keys := make([][]byte, len(nodes))
	var wg sync.WaitGroup
	for i, db := range nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			k, err := db.NonceKey(context.Background())
			if err != nil {
				t.Errorf("node %d: %v", i, err)
			}
			keys[i] = k
		}()
	}
	wg.Wait()
	for i, k := range keys {
		if len(k) != 32 || !bytes.Equal(k, keys[0]) {
			t.Fatalf("node %d key %x, node 0 key %x", i, k, keys[0])
		}
	}
}

// TestNodesClaimANonceOnce races claims of one nonce from two nodes.
func TestNodesClaimANonceOnce(t *testing.T) {
	dsn := pgtest.NewDatabase(t)
	nodes := []*postgres.DB{open(t, dsn, 0), open(t, dsn, 0)}
	for round := 0; round < 10; round++ {
		nonce := fmt.Sprintf("n-%d", round)
		var (
			wg   sync.WaitGroup
			mu   sync.Mutex
			wins int
		)
		for i := 0; i < 8; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				first, err := nodes[i%2].ClaimNonce(context.Background(), nonce, t0.Add(time.Minute), t0)
				if err != nil {
					t.Errorf("claim: %v", err)
				}
				if first {
					mu.Lock()
					wins++
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
		if wins != 1 {
			t.Fatalf("%s: %d claims won", nonce, wins)
		}
	}
}

// TestClaimPurgesExpiredNonces checks that claims keep sip_nonces at about
// the live nonces, a bounded number of expired rows at a time.
func TestClaimPurgesExpiredNonces(t *testing.T) {
	dsn := pgtest.NewDatabase(t)
	db := open(t, dsn, 0)
	ctx := context.Background()
	for i := 0; i < 250; i++ {
		if _, err := db.ClaimNonce(ctx, fmt.Sprintf("old-%d", i), t0.Add(time.Second), t0); err != nil {
			t.Fatal(err)
		}
	}
	conn := connect(t, dsn)
	count := func() int {
		var n int
		if err := conn.QueryRow(ctx, "SELECT count(*) FROM sip_nonces").Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	later := t0.Add(time.Minute)
	if _, err := db.ClaimNonce(ctx, "new-0", later.Add(time.Minute), later); err != nil {
		t.Fatal(err)
	}
	if n := count(); n != 151 {
		t.Fatalf("after one purging claim %d rows, want 151 (100 purged)", n)
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
