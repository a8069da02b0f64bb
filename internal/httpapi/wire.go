package httpapi

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"io"
	"net/http"
	"sort"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/switchback/switchback"
)

// timeFormat is RFC 3339 in UTC with milliseconds, so expiries are exact.
const timeFormat = "2006-01-02T15:04:05.000Z"

func formatTime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(timeFormat)
}

// transferJSON is the call transfer resource of the spec. Expiry and the
// return URI are written under both spellings the spec pages use.
type transferJSON struct {
	ID                     string                    `json:"id"`
	ExternalConversationID string                    `json:"externalConversationId"`
	Status                 switchback.Status         `json:"status"`
	Type                   switchback.Type           `json:"type"`
	CreatedAt              string                    `json:"createdAt"`
	CallReceivedAt         string                    `json:"callReceivedAt,omitempty"`
	CompletedAt            string                    `json:"completedAt,omitempty"`
	ExpiresAt              string                    `json:"expiresAt"`
	ExpireAt               string                    `json:"expireAt"`
	InputContext           *switchback.InputContext  `json:"inputContext,omitempty"`
	OutputContext          *switchback.OutputContext `json:"outputContext,omitempty"`
	ReturnResult           *returnResultJSON         `json:"returnResult,omitempty"`
	PhoneNumber            *phoneNumberJSON          `json:"phoneNumber,omitempty"`
	SIP                    *sipJSON                  `json:"sip,omitempty"`
}

// returnResultJSON is how the hand-back went, once Switchback knows.
type returnResultJSON struct {
	Method       switchback.ReturnTransferType `json:"method"`
	SIPStatus    int                           `json:"sipStatus,omitempty"`
	NotifyStatus int                           `json:"notifyStatus,omitempty"`
	Fallback     bool                          `json:"fallback"`
	Reason       string                        `json:"reason,omitempty"`
	At           string                        `json:"at"`
}

type phoneNumberJSON struct {
	TransferNumber string `json:"transferNumber"`
	Country        string `json:"country"`
	ExpiresAt      string `json:"expiresAt"`
	ExpireAt       string `json:"expireAt"`
}

type sipJSON struct {
	ReturnURI                  string          `json:"returnURI,omitempty"`
	ReturnUri                  string          `json:"returnUri,omitempty"`
	ReturnTransferType         string          `json:"returnTransferType,omitempty"`
	ReturnInviteAuthentication *returnAuthJSON `json:"returnInviteAuthentication,omitempty"`
}

type returnAuthJSON struct {
	Username string `json:"username"`
	// Password is read from requests and never written back.
	Password string `json:"password,omitempty"`
}

// encodeTransfer turns a transfer into its resource. The return password
// never leaves the store.
func encodeTransfer(t *switchback.Transfer) *transferJSON {
	exp := formatTime(t.ExpiresAt)
	out := &transferJSON{
		ID: t.ID, ExternalConversationID: t.ExternalConversationID, Status: t.Status, Type: t.Type,
		CreatedAt: formatTime(t.CreatedAt), CallReceivedAt: formatTime(t.CallReceivedAt),
		CompletedAt: formatTime(t.CompletedAt), ExpiresAt: exp, ExpireAt: exp,
		InputContext: t.InputContext, OutputContext: t.OutputContext,
	}
	if r := t.ReturnResult; r != nil {
		out.ReturnResult = &returnResultJSON{Method: r.Method, SIPStatus: r.SIPStatus, NotifyStatus: r.NotifyStatus,
			Fallback: r.Fallback, Reason: r.Reason, At: formatTime(r.At)}
	}
	if t.PhoneNumber != nil {
		out.PhoneNumber = &phoneNumberJSON{TransferNumber: t.PhoneNumber.TransferNumber,
			Country: t.PhoneNumber.Country, ExpiresAt: exp, ExpireAt: exp}
	}
	if t.SIP != nil {
		out.SIP = &sipJSON{ReturnURI: t.SIP.ReturnURI, ReturnUri: t.SIP.ReturnURI,
			ReturnTransferType: string(t.SIP.ReturnTransferType)}
		if t.SIP.ReturnAuthUsername != "" {
			out.SIP.ReturnInviteAuthentication = &returnAuthJSON{Username: t.SIP.ReturnAuthUsername}
		}
	}
	return out
}

// createRequest is the body of POST /call-transfers. Pointers tell a field
// left out from one given empty.
type createRequest struct {
	ID                     *string          `json:"id"`
	ExternalConversationID *string          `json:"externalConversationId"`
	Type                   *string          `json:"type"`
	PhoneNumber            *phoneRequest    `json:"phoneNumber"`
	SIP                    *sipRequest      `json:"sip"`
	InputContext           *inputContextReq `json:"inputContext"`
}

type phoneRequest struct {
	Country *string `json:"country"`
}

type sipRequest struct {
	ReturnURI                  *string         `json:"returnURI"`
	ReturnUri                  *string         `json:"returnUri"`
	ReturnTransferType         *string         `json:"returnTransferType"`
	ReturnInviteAuthentication *returnAuthJSON `json:"returnInviteAuthentication"`
}

type inputContextReq struct {
	TaskName       *string           `json:"taskName"`
	InputVariables map[string]string `json:"inputVariables"`
}

// Limits on free-text fields, so one transfer cannot fill the store.
const (
	maxTextLength      = 256
	maxInputVariables  = 100
	maxCredentialChars = 256
)

// decodeJSON reads one JSON object from body into v strictly (see
// decodeStrict), turning every failure into an error that names the
// offending field.
func decodeJSON(body io.Reader, v any) error {
	data, err := io.ReadAll(body)
	var tooBig *http.MaxBytesError
	if errors.As(err, &tooBig) {
		return switchback.Errorf(switchback.ETOOLARGE, "request body is larger than %d bytes", tooBig.Limit)
	} else if err != nil {
		return &bodyReadError{err}
	}
	if len(bytes.TrimSpace(data)) == 0 {
		return &malformedJSON{"request body is empty; send a JSON object"}
	}
	return decodeStrict(data, v, "a call transfer request")
}

// malformedJSON is a body that is not a JSON object at all (400-01).
type malformedJSON struct{ msg string }

func (e *malformedJSON) Error() string { return e.msg }

// bodyReadError is a body that could not be read to its end: the client
// stopped sending it before its deadline, or went away.
type bodyReadError struct{ err error }

func (e *bodyReadError) Error() string { return "read request body: " + e.err.Error() }

func (e *bodyReadError) Unwrap() error { return e.err }

// transfer validates the request and turns it into a transfer for tenantID.
// Every error names the field that is wrong.
func (req *createRequest) transfer(tenantID string) (*switchback.Transfer, error) {
	t := &switchback.Transfer{TenantID: tenantID}
	if req.ID == nil || *req.ID == "" {
		return nil, switchback.FieldErrorf("id", "is required")
	}
	if *req.ID == "." || *req.ID == ".." {
		return nil, switchback.FieldErrorf("id", "must not be . or .., which are not path segments of their own")
	}
	if !switchback.ValidID(*req.ID) {
		return nil, switchback.FieldErrorf("id", "must be 1 to %d characters from A-Z a-z 0-9 - . _ ~ (it goes in URLs and SIP headers)", switchback.MaxIDLength)
	}
	t.ID = *req.ID
	if req.ExternalConversationID == nil || *req.ExternalConversationID == "" {
		return nil, switchback.FieldErrorf("externalConversationId", "is required")
	}
	if err := checkText("externalConversationId", *req.ExternalConversationID); err != nil {
		return nil, err
	}
	t.ExternalConversationID = *req.ExternalConversationID
	if req.Type == nil {
		return nil, switchback.FieldErrorf("type", "is required (PHONE_NUMBER or SIP)")
	}
	switch switchback.Type(*req.Type) {
	case switchback.TypePhoneNumber:
		t.Type = switchback.TypePhoneNumber
		if req.SIP != nil {
			return nil, switchback.FieldErrorf("sip", "is only for type SIP")
		}
		if req.PhoneNumber == nil || req.PhoneNumber.Country == nil || *req.PhoneNumber.Country == "" {
			return nil, switchback.FieldErrorf("phoneNumber.country", "is required for type PHONE_NUMBER")
		}
		c := strings.ToUpper(*req.PhoneNumber.Country)
		if !switchback.ValidCountry(c) {
			return nil, switchback.FieldErrorf("phoneNumber.country", "%q is not an ISO 3166 alpha-2 country code", *req.PhoneNumber.Country)
		}
		t.PhoneNumber = &switchback.PhoneNumber{Country: c}
	case switchback.TypeSIP:
		t.Type = switchback.TypeSIP
		if req.PhoneNumber != nil {
			return nil, switchback.FieldErrorf("phoneNumber", "is only for type PHONE_NUMBER")
		}
		sip, err := req.SIP.sip()
		if err != nil {
			return nil, err
		}
		t.SIP = sip
	default:
		return nil, switchback.FieldErrorf("type", "%q is not PHONE_NUMBER or SIP", *req.Type)
	}
	if ic := req.InputContext; ic != nil {
		t.InputContext = &switchback.InputContext{}
		if ic.TaskName != nil {
			if err := checkText("inputContext.taskName", *ic.TaskName); err != nil {
				return nil, err
			}
			t.InputContext.TaskName = *ic.TaskName
		}
		if len(ic.InputVariables) > maxInputVariables {
			return nil, switchback.FieldErrorf("inputContext.inputVariables", "has more than %d variables", maxInputVariables)
		}
		for k := range ic.InputVariables {
			if k == "" {
				return nil, switchback.FieldErrorf("inputContext.inputVariables", "has a variable with an empty name")
			}
			if err := checkText("inputContext.inputVariables", k); err != nil {
				return nil, err
			}
		}
		if len(ic.InputVariables) > 0 {
			t.InputContext.InputVariables = ic.InputVariables
		}
		if t.InputContext.TaskName == "" && t.InputContext.InputVariables == nil {
			t.InputContext = nil
		}
	}
	t.RequestHash = requestHash(t)
	return t, nil
}

// sip validates the sip object of a SIP transfer; it may be absent.
func (r *sipRequest) sip() (*switchback.SIP, error) {
	s := &switchback.SIP{}
	if r == nil {
		return s, nil
	}
	if r.ReturnTransferType != nil {
		switch rt := switchback.ReturnTransferType(*r.ReturnTransferType); rt {
		case switchback.ReturnBYE, switchback.ReturnREFER, switchback.ReturnINVITE:
			s.ReturnTransferType = rt
		default:
			return nil, switchback.FieldErrorf("sip.returnTransferType", "%q is not BYE, REFER or INVITE", *r.ReturnTransferType)
		}
	}
	field := "sip.returnURI"
	switch {
	case r.ReturnURI != nil && r.ReturnUri != nil && *r.ReturnURI != *r.ReturnUri:
		return nil, switchback.FieldErrorf("sip.returnURI", "and sip.returnUri are both given and differ; send one")
	case r.ReturnURI != nil:
		s.ReturnURI = *r.ReturnURI
	case r.ReturnUri != nil:
		s.ReturnURI, field = *r.ReturnUri, "sip.returnUri"
	}
	if s.ReturnURI != "" {
		if reason, ok := switchback.ValidReturnURI(s.ReturnURI); !ok {
			return nil, switchback.FieldErrorf(field, "%s", reason)
		}
	} else if s.ReturnTransferType == switchback.ReturnREFER || s.ReturnTransferType == switchback.ReturnINVITE {
		return nil, switchback.FieldErrorf("sip.returnURI", "is required when sip.returnTransferType is %s", s.ReturnTransferType)
	}
	if a := r.ReturnInviteAuthentication; a != nil {
		if a.Username == "" {
			return nil, switchback.FieldErrorf("sip.returnInviteAuthentication.username", "is required with returnInviteAuthentication")
		}
		if len(a.Username) > maxCredentialChars || len(a.Password) > maxCredentialChars {
			return nil, switchback.FieldErrorf("sip.returnInviteAuthentication", "username and password are limited to %d bytes", maxCredentialChars)
		}
		if strings.ContainsAny(a.Username, "\"\\\r\n") {
			return nil, switchback.FieldErrorf("sip.returnInviteAuthentication.username", "must not contain quotes, backslashes or line breaks")
		}
		s.ReturnAuthUsername, s.ReturnAuthPassword = a.Username, a.Password
	}
	return s, nil
}

// checkText applies the rules of every free-text identifier: at most
// maxTextLength bytes of valid UTF-8 without control characters. Ids read
// from a path or a query are checked the same way before they reach a
// store, so what a create refuses can never be looked up either.
func checkText(field, s string) error {
	if len(s) > maxTextLength {
		return switchback.FieldErrorf(field, "is longer than %d bytes", maxTextLength)
	}
	if !utf8.ValidString(s) {
		return switchback.FieldErrorf(field, "is not valid UTF-8")
	}
	for _, r := range s {
		if r < ' ' || r == 0x7f {
			return switchback.FieldErrorf(field, "contains a control character")
		}
	}
	return nil
}

// requestHash identifies what a create request asked for, after
// normalisation (either spelling of returnURI, country case), so the same
// request sent again is recognised as a retry. Every field goes in with its
// length, so no two requests hash alike by shifting bytes between fields.
//
// The return password is left out: the hash stays in the store for good,
// and an unsalted hash of a password is one a dictionary can reverse. A
// retry that changes only the password is taken for the same request.
func requestHash(t *switchback.Transfer) string {
	h := sha256.New()
	var n [8]byte
	put := func(s string) {
		binary.BigEndian.PutUint64(n[:], uint64(len(s)))
		h.Write(n[:])
		io.WriteString(h, s)
	}
	put(t.ID)
	put(t.ExternalConversationID)
	put(string(t.Type))
	if p := t.PhoneNumber; p != nil {
		put("phone")
		put(p.Country)
	}
	if s := t.SIP; s != nil {
		put("sip")
		put(s.ReturnURI)
		put(string(s.ReturnTransferType))
		put(s.ReturnAuthUsername)
	}
	if ic := t.InputContext; ic != nil {
		put("input")
		put(ic.TaskName)
		keys := make([]string, 0, len(ic.InputVariables))
		for k := range ic.InputVariables {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			put(k)
			put(ic.InputVariables[k])
		}
	}
	return hex.EncodeToString(h.Sum(nil))
}
