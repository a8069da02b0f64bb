package sip

import (
	"github.com/switchback/switchback"
)

// status is a SIP final response.
type status struct {
	code   int
	reason string
}

// statusOf maps each domain error code to the SIP response an INVITE gets
// for it. It is the only place that does so.
var statusOf = map[string]status{
	switchback.EINVALID:       {400, "Bad Request"},
	switchback.EUNAUTHORIZED:  {401, "Unauthorized"},
	switchback.EFORBIDDEN:     {403, "Forbidden"},
	switchback.ENOTFOUND:      {404, "Not Found"},
	switchback.EGONE:          {410, "Gone"},
	switchback.ECONFLICT:      {486, "Busy Here"},
	switchback.ERATELIMIT:     {486, "Busy Here"},
	switchback.ETOOLARGE:      {513, "Message Too Large"},
	switchback.EUNPROCESSABLE: {488, "Not Acceptable Here"},
	switchback.EEXHAUSTED:     {503, "Service Unavailable"},
	switchback.EUNAVAILABLE:   {503, "Service Unavailable"},
	switchback.EBUSY:          {486, "Busy Here"},           // the tenant's calls across the fleet are at its limit
	switchback.EFENCED:        {503, "Service Unavailable"}, // this node lost its lease: another node takes the call
	switchback.EINTERNAL:      {503, "Service Unavailable"},
}

// statusFor returns the SIP response for err, and whether it should carry
// Retry-After (the caller may try again shortly).
func statusFor(err error) (status, bool) {
	s, ok := statusOf[switchback.ErrorCode(err)]
	if !ok {
		s = statusOf[switchback.EINTERNAL]
	}
	return s, s.code == 503 || s.code == 486
}
