package switchback

import (
	"errors"
	"fmt"
)

// Error codes. Each layer maps them to its own status in one table:
// internal/httpapi to HTTP statuses, internal/sip to SIP responses.
const (
	EINVALID       = "invalid"       // a field of the request is malformed or not allowed
	EUNAUTHORIZED  = "unauthorized"  // credentials missing or wrong
	EFORBIDDEN     = "forbidden"     // credentials valid but not allowed to do this
	ENOTFOUND      = "not_found"     // no such resource for this tenant
	ECONFLICT      = "conflict"      // the id is taken by a different request
	EGONE          = "gone"          // the transfer exists but can no longer take a call
	ETOOLARGE      = "too_large"     // the request body is over the limit
	EUNPROCESSABLE = "unprocessable" // well-formed but cannot be served (no pool for the country)
	ERATELIMIT     = "rate_limited"  // the key is over its request rate
	EEXHAUSTED     = "exhausted"     // no number is free right now
	EUNAVAILABLE   = "unavailable"   // the store cannot be reached
	EFENCED        = "fenced"        // the node's lease is no longer current, or another node holds the call: it may write nothing for it
	EBUSY          = "busy"          // the tenant has as many calls in progress as it may have
	EINTERNAL      = "internal"      // a bug; never shown with its details
)

// Error is a domain error: a code from the list above and a message fit for
// the client. Field, when set, names the offending request field.
type Error struct {
	Code    string
	Message string
	Field   string
}

// Error implements the error interface.
func (e *Error) Error() string {
	return fmt.Sprintf("switchback error: code=%s message=%s", e.Code, e.Message)
}

// Errorf returns an *Error with the given code and a formatted message.
func Errorf(code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// FieldErrorf returns an EINVALID *Error naming the field that is wrong. The
// message starts with the field's name, so a client sees at once what to fix.
func FieldErrorf(field, format string, args ...any) *Error {
	return &Error{Code: EINVALID, Field: field, Message: field + ": " + fmt.Sprintf(format, args...)}
}

// ErrorCode returns the code of err if it is, or wraps, an *Error, and
// EINTERNAL otherwise.
func ErrorCode(err error) string {
	var e *Error
	if err == nil {
		return ""
	} else if errors.As(err, &e) {
		return e.Code
	}
	return EINTERNAL
}

// ErrorMessage returns the client-safe message of err: the message of an
// *Error, or a generic text for anything else, whose details stay in the logs.
func ErrorMessage(err error) string {
	var e *Error
	if err == nil {
		return ""
	} else if errors.As(err, &e) {
		return e.Message
	}
	return "internal error"
}
