package sqlite

import (
	"context"
	"crypto/rand"
	"database/sql"
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

// NonceKey implements switchback.NonceStore. The key is created once, by
// whichever call first finds none, and read from memory after that.
func (db *DB) NonceKey(ctx context.Context) ([]byte, error) {
	if k := db.nonceKey.Load(); k != nil {
		return append([]byte(nil), *k...), nil
	}
	var key []byte
	err := db.readRow(ctx, `SELECT value FROM sip_settings WHERE name = ?`, nonceKeyName).Scan(&key)
	if errors.Is(err, sql.ErrNoRows) {
		fresh := make([]byte, nonceKeySize)
		rand.Read(fresh) // never fails (crypto/rand)
		err = db.inTx(ctx, func(tx *wtx) error {
			// Another process on the file may have stored its key since the
			// read: keep that one, so every node signs with the same key.
			if _, err := tx.exec(ctx, `INSERT INTO sip_settings (name, value) VALUES (?, ?)
				ON CONFLICT (name) DO NOTHING`, nonceKeyName, fresh); err != nil {
				return err
			}
			var stored []byte
			if err := tx.queryRow(ctx, `SELECT value FROM sip_settings WHERE name = ?`, nonceKeyName).Scan(&stored); err != nil {
				return err
			}
			key = stored
			return nil
		})
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

// ClaimNonce implements switchback.NonceStore. The claim and a bounded purge
// of expired nonces share one transaction (and so one commit of the batch).
func (db *DB) ClaimNonce(ctx context.Context, nonce string, expiresAt, now time.Time) (bool, error) {
	var first bool
	err := db.inTx(ctx, func(tx *wtx) error {
		first = false
		// Claim first, so the purge cannot free this very nonce for its
		// own claim.
		res, err := tx.exec(ctx, `INSERT INTO sip_nonces (nonce, expires_at) VALUES (?, ?)
			ON CONFLICT (nonce) DO NOTHING`, nonce, micros(expiresAt))
		if err != nil {
			return err
		}
		n, err := res.RowsAffected()
		if err != nil {
			return err
		}
		if _, err := tx.exec(ctx, `DELETE FROM sip_nonces WHERE nonce IN
			(SELECT nonce FROM sip_nonces WHERE expires_at < ? ORDER BY expires_at LIMIT ?)`,
			micros(now), purgeNonces); err != nil {
			return err
		}
		first = n == 1
		return nil
	})
	if err != nil {
		return false, fmt.Errorf("claim nonce: %w", err)
	}
	return first, nil
}
