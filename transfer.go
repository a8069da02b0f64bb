package switchback

import (
	"strings"
	"time"
)

// Status is where a call transfer is in its life.
type Status string

// The statuses of a call transfer. The only moves are ACTIVE→ONGOING→COMPLETED
// and ACTIVE→EXPIRED; see CanMoveTo.
const (
	StatusActive    Status = "ACTIVE"
	StatusOngoing   Status = "ONGOING"
	StatusCompleted Status = "COMPLETED"
	StatusExpired   Status = "EXPIRED"
)

// Statuses lists every status, in lifecycle order.
var Statuses = []Status{StatusActive, StatusOngoing, StatusCompleted, StatusExpired}

// Valid reports whether s is one of the four statuses.
func (s Status) Valid() bool {
	switch s {
	case StatusActive, StatusOngoing, StatusCompleted, StatusExpired:
		return true
	}
	return false
}

// CanMoveTo reports whether a transfer in status s may move to next.
func (s Status) CanMoveTo(next Status) bool {
	switch s {
	case StatusActive:
		return next == StatusOngoing || next == StatusExpired
	case StatusOngoing:
		return next == StatusCompleted
	}
	return false
}

// Final reports whether no move leaves s.
func (s Status) Final() bool { return s == StatusCompleted || s == StatusExpired }

// Type is how the call reaches Switchback.
type Type string

// The transfer types of the spec.
const (
	TypePhoneNumber Type = "PHONE_NUMBER" // the caller's system dials a leased temporary number
	TypeSIP         Type = "SIP"          // the caller's system sends a SIP INVITE with the transfer id
)

// ReturnTransferType is how a SIP transfer's call is handed back.
type ReturnTransferType string

// The return transfer types of the spec.
const (
	ReturnBYE    ReturnTransferType = "BYE"
	ReturnREFER  ReturnTransferType = "REFER"
	ReturnINVITE ReturnTransferType = "INVITE"
)

// OutputTransferType says why the call came back.
type OutputTransferType string

// The output transfer types of the spec.
const (
	TransferAgent            OutputTransferType = "AGENT"
	TransferSystem           OutputTransferType = "SYSTEM"
	TransferCallerDisconnect OutputTransferType = "CALLER_DISCONNECT"
)

// InputContext is what the agent is given when the call arrives.
type InputContext struct {
	TaskName       string            `json:"taskName,omitempty"`
	InputVariables map[string]string `json:"inputVariables,omitempty"`
}

// OutputContext is what the agent leaves when it hands the call back.
type OutputContext struct {
	TransferType       OutputTransferType `json:"transferType"`
	CurrentTaskName    string             `json:"currentTaskName,omitempty"`
	ReferenceVariables map[string]string  `json:"referenceVariables,omitempty"`
	TransferVariables  map[string]string  `json:"transferVariables,omitempty"`
}

// PhoneNumber is the PSTN side of a PHONE_NUMBER transfer.
type PhoneNumber struct {
	Country        string // ISO 3166 alpha-2
	TransferNumber string // E.164, set when the number is leased
	// ReleasedAt is when the transfer left ACTIVE and its number went into
	// quarantine; zero while it holds the number.
	ReleasedAt time.Time
}

// SIP is the SIP side of a SIP transfer.
type SIP struct {
	ReturnURI          string
	ReturnTransferType ReturnTransferType
	// ReturnAuthUsername and ReturnAuthPassword answer the return INVITE's
	// challenge. The password is never returned and is erased from the store
	// once the transfer is finished.
	ReturnAuthUsername string
	ReturnAuthPassword string
}

// Transfer is a call transfer: one attempt to bring a live call to an agent.
type Transfer struct {
	TenantID               string
	ID                     string
	ExternalConversationID string
	Type                   Type
	Status                 Status
	InputContext           *InputContext
	OutputContext          *OutputContext
	PhoneNumber            *PhoneNumber // only for TypePhoneNumber
	SIP                    *SIP         // only for TypeSIP
	CreatedAt              time.Time
	ExpiresAt              time.Time
	CallReceivedAt         time.Time // zero until a call is matched
	CompletedAt            time.Time // zero until completed
	// ReturnResult is how the hand-back went; nil until it is known.
	ReturnResult *ReturnResult
	// Owner is the lease of the node that took the call; zero until the
	// transfer is matched, and for a call matched without a lease.
	Owner NodeLease
	// RequestHash identifies the create request that made the transfer, so a
	// retry of the same request is told apart from a different one reusing the id.
	RequestHash string
}

// StatusAt is the transfer's status as a client must see it at now: an ACTIVE
// transfer past its expiry reads EXPIRED even before a timer has moved it.
func (t *Transfer) StatusAt(now time.Time) Status {
	if t.Status == StatusActive && !now.Before(t.ExpiresAt) {
		return StatusExpired
	}
	return t.Status
}

// TransferKey names a transfer across tenants.
type TransferKey struct {
	TenantID  string
	ID        string
	ExpiresAt time.Time
}

// TransferFilter selects a tenant's transfers for a listing, newest first.
type TransferFilter struct {
	TenantID               string
	ExternalConversationID string // empty: all of the tenant's transfers
	// After, when set, is the cursor of the last transfer of the previous
	// page: the listing continues with transfers older than it.
	After *Cursor
	Limit int
}

// Cursor is a position in a newest-first listing.
type Cursor struct {
	CreatedAt time.Time
	ID        string
}

// MaxIDLength is the longest transfer id accepted.
const MaxIDLength = 128

// ValidID reports whether id is safe both as a URL path segment and as a SIP
// header value: 1 to MaxIDLength of the RFC 3986 unreserved characters,
// and not a dot segment ("." or "..", which a URL path drops: RFC 3986
// section 5.2.4).
func ValidID(id string) bool {
	if len(id) == 0 || len(id) > MaxIDLength || id == "." || id == ".." {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case c == '-' || c == '.' || c == '_' || c == '~':
		default:
			return false
		}
	}
	return true
}

// MaxReturnURILength is the spec's limit on sip.returnURI.
const MaxReturnURILength = 1024

// ValidReturnURI checks that uri is a sip: or sips: URI Switchback can send
// back byte for byte: a scheme, a non-empty rest, no whitespace or control
// characters, at most MaxReturnURILength bytes. It returns a reason when not.
func ValidReturnURI(uri string) (reason string, ok bool) {
	if len(uri) > MaxReturnURILength {
		return "longer than 1024 characters", false
	}
	lower := strings.ToLower(uri)
	var rest string
	switch {
	case strings.HasPrefix(lower, "sip:"):
		rest = uri[4:]
	case strings.HasPrefix(lower, "sips:"):
		rest = uri[5:]
	default:
		return "must be a sip: or sips: URI", false
	}
	if rest == "" {
		return "has no host", false
	}
	for i := 0; i < len(uri); i++ {
		if c := uri[i]; c <= ' ' || c == 0x7f || c == '<' || c == '>' || c == '"' {
			return "contains a space, quote, angle bracket or control character", false
		}
	}
	// Escaped, a line break would still end up in the headers of an INVITE
	// hand-back, whose URI headers are unescaped (RFC 3261 §19.1.5).
	if l := strings.ToLower(uri); strings.Contains(l, "%0d") || strings.Contains(l, "%0a") || strings.Contains(l, "%00") {
		return "contains an escaped CR, LF or NUL", false
	}
	host := rest
	if at := strings.LastIndexByte(host, '@'); at >= 0 {
		host = host[at+1:]
	}
	if end := strings.IndexAny(host, ";?"); end >= 0 {
		host = host[:end]
	}
	if host == "" || host[0] == ':' {
		return "has no host", false
	}
	return "", true
}

// ValidE164 reports whether n is an E.164 number: '+', a non-zero digit, and
// 7 to 15 digits in all.
func ValidE164(n string) bool {
	if len(n) < 8 || len(n) > 16 || n[0] != '+' || n[1] == '0' {
		return false
	}
	for i := 1; i < len(n); i++ {
		if n[i] < '0' || n[i] > '9' {
			return false
		}
	}
	return true
}
