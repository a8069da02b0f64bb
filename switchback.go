// Package switchback holds the domain of the Switchback call-transfer gateway:
// call transfers and their legal status moves, output contexts, the phone-number
// pool, API keys, the error codes every layer speaks, and the Store interface
// the databases implement. It imports only the standard library; the HTTP API,
// the stores and the SIP edge live in internal/ and depend on it, never the
// other way round.
package switchback

import "time"

// Clock returns the current time. Everything that reads time takes one, so
// expiry and quarantine are tested without sleeping.
type Clock func() time.Time

// SystemClock is the wall clock, in UTC.
func SystemClock() time.Time { return time.Now().UTC() }
