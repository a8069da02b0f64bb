package postgres

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"time"
)

// nonceKeyName is the sip_settings row holding the SIP nonce key.
const nonceKeyName = "nonce_key"

// nonceKeySize is the size of a new nonce key: HMAC-SHA256's full strength.
const nonceKeySize = 32

// purgeNonces bounds how many expired nonces one claim deletes. Each claim
// adds at most one row, so purging up to 100 keeps the table at about the
// nonces still live, without one claim ever paying for a large backlog.
const purgeNonces = 100

// NonceKey implements switchback.NonceStore. Nodes that find no key race to
// insert theirs; the primary key keeps the first, and each then reads that
// one back. After the first success the key comes from memory.
func (db *DB) NonceKey(ctx context.Context) ([]byte, error) {
	if k := db.nonceKey.Load(); k != nil {
		return append([]byte(nil), *k...), nil
	}
	const read = `SELECT value FROM sip_settings WHERE name = $1`
	var key []byte
	err := db.pool.QueryRow(ctx, read, nonceKeyName).Scan(&key)
	if notFound(err) {
		fresh := make([]byte, nonceKeySize)
		rand.Read(fresh) // never fails (crypto/rand)
		// A conflicting insert waits for the other node's to commit, so the
		// read after it (a statement of its own) always finds a key.
		if _, err = db.pool.Exec(ctx, `INSERT INTO sip_settings (name, value) VALUES ($1, $2)
			ON CONFLICT (name) DO NOTHING`, nonceKeyName, fresh); err == nil {
			err = db.pool.QueryRow(ctx, read, nonceKeyName).Scan(&key)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("nonce key: %w", err)
	}
	if len(key) == 0 {
		return nil, errors.New("nonce key: stored key is empty")
	}
	db.nonceKey.Store(&key)
	return append([]byte(nil), key...), nil
}

// ClaimNonce implements switchback.NonceStore in one statement: the claim,
// and a purge of up to purgeNonces expired nonces that skips rows another
// node's purge holds, so concurrent claims never wait on each other's
// purges. The purge reads the statement's snapshot, which cannot hold the
// row the claim inserts.
func (db *DB) ClaimNonce(ctx context.Context, nonce string, expiresAt, now time.Time) (bool, error) {
	var claimed int
	err := db.pool.QueryRow(ctx, `
		WITH claim AS (
			INSERT INTO sip_nonces (nonce, expires_at) VALUES ($1, $2)
			ON CONFLICT (nonce) DO NOTHING
			RETURNING 1
		), purge AS (
			DELETE FROM sip_nonces WHERE nonce IN (
				SELECT nonce FROM sip_nonces WHERE expires_at < $3
				ORDER BY expires_at LIMIT $4 FOR UPDATE SKIP LOCKED)
		)
		SELECT count(*) FROM claim`,
		nonce, micros(expiresAt), micros(now), purgeNonces).Scan(&claimed)
	if err != nil {
		return false, fmt.Errorf("claim nonce: %w", err)
	}
	return claimed == 1, nil
}
