package switchback

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Number is a temporary phone number of the pool. A number with an empty
// TenantID is shared by every tenant; otherwise it is dedicated to one.
type Number struct {
	E164     string
	Country  string
	TenantID string
}

// NumberStatus is a number's state at one instant.
type NumberStatus string

// The states a pool number can be in.
const (
	NumberFree        NumberStatus = "free"
	NumberLeased      NumberStatus = "leased"
	NumberQuarantined NumberStatus = "quarantined"
)

// NumberState is a pool number as an operator sees it.
type NumberState struct {
	Number
	State           NumberStatus
	TransferTenant  string    // leased: the transfer holding it
	TransferID      string    // leased: the transfer holding it
	LeasedUntil     time.Time // leased: the transfer's expiry
	QuarantineUntil time.Time // quarantined: when it may be leased again
	ReleasedAt      time.Time // zero if never released
}

// PoolSummary counts one country's numbers by state.
type PoolSummary struct {
	Country     string
	Size        int
	Leased      int
	Quarantined int
	Free        int
}

// ParseNumbers expands a list of E.164 numbers and ranges ("+12025550100-+12025550199",
// or "+12025550100-0199" with the end written as the changing last digits) into
// numbers. It refuses ranges of more than 100,000 numbers.
func ParseNumbers(specs []string) ([]string, error) {
	var out []string
	for _, s := range specs {
		s = strings.TrimSpace(s)
		first, last, isRange := strings.Cut(s, "-")
		if !isRange {
			if !ValidE164(s) {
				return nil, fmt.Errorf("%q is not an E.164 number (+ and 7 to 15 digits)", s)
			}
			out = append(out, s)
			continue
		}
		first, last = strings.TrimSpace(first), strings.TrimSpace(last)
		if !ValidE164(first) {
			return nil, fmt.Errorf("range %q: %q is not an E.164 number", s, first)
		}
		if !strings.HasPrefix(last, "+") && len(last) < len(first) {
			last = first[:len(first)-len(last)] + last
		}
		if !ValidE164(last) || len(last) != len(first) {
			return nil, fmt.Errorf("range %q: end %q must be an E.164 number of the same length as the start", s, last)
		}
		lo, _ := strconv.ParseUint(first[1:], 10, 64)
		hi, _ := strconv.ParseUint(last[1:], 10, 64)
		if hi < lo {
			return nil, fmt.Errorf("range %q: end is before start", s)
		}
		if hi-lo >= 100000 {
			return nil, fmt.Errorf("range %q: more than 100000 numbers", s)
		}
		width := len(first) - 1
		for n := lo; n <= hi; n++ {
			out = append(out, fmt.Sprintf("+%0*d", width, n))
		}
	}
	return out, nil
}
