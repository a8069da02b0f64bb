package digest

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"time"
)

// A nonce is base64url (no padding) of
//
//	expiry (8 bytes, Unix milliseconds, big-endian)
//	random (12 bytes)
//	mac    (16 bytes: HMAC-SHA256(key, expiry || random), truncated)
//
// so a node checks one another issued with nothing but the shared key, and
// issuing one stores nothing. 36 bytes encode to exactly 48 characters with
// no leftover bits, so each nonce has one spelling and the spelling can key
// the used-nonce record.
const (
	nonceExpirySize = 8
	nonceRandomSize = 12
	nonceMACSize    = 16
	nonceSize       = nonceExpirySize + nonceRandomSize + nonceMACSize
)

var nonceEncoding = base64.RawURLEncoding.Strict()

// nonceTextSize is the length of an encoded nonce.
var nonceTextSize = nonceEncoding.EncodedLen(nonceSize)

// newNonce returns a nonce valid until expiry, signed with key.
func newNonce(key []byte, expiry time.Time) string {
	var b [nonceSize]byte
	binary.BigEndian.PutUint64(b[:nonceExpirySize], uint64(expiry.UnixMilli()))
	rand.Read(b[nonceExpirySize : nonceExpirySize+nonceRandomSize]) // never fails (crypto/rand)
	copy(b[nonceExpirySize+nonceRandomSize:], nonceMAC(key, b[:nonceExpirySize+nonceRandomSize]))
	return nonceEncoding.EncodeToString(b[:])
}

// checkNonce reports whether nonce was signed with key, and until when it
// is valid.
func checkNonce(key []byte, nonce string) (expiry time.Time, ok bool) {
	if len(nonce) != nonceTextSize {
		return time.Time{}, false
	}
	var b [nonceSize]byte
	if n, err := nonceEncoding.Decode(b[:], []byte(nonce)); err != nil || n != nonceSize {
		return time.Time{}, false
	}
	signed := b[:nonceExpirySize+nonceRandomSize]
	if !hmac.Equal(b[len(signed):], nonceMAC(key, signed)) {
		return time.Time{}, false
	}
	return time.UnixMilli(int64(binary.BigEndian.Uint64(b[:nonceExpirySize]))), true
}

func nonceMAC(key, signed []byte) []byte {
	m := hmac.New(sha256.New, key)
	m.Write(signed)
	return m.Sum(nil)[:nonceMACSize]
}
