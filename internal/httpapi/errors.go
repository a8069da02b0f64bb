package httpapi

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"strconv"

	"github.com/switchback/switchback"
)

// statusOf maps each domain error code to its HTTP status and the spec's
// error code string. It is the only place that does so.
var statusOf = map[string]struct {
	status int
	code   string
}{
	switchback.EINVALID:       {http.StatusBadRequest, "400-02"},
	switchback.EUNAUTHORIZED:  {http.StatusUnauthorized, "401-01"},
	switchback.EFORBIDDEN:     {http.StatusForbidden, "403-01"},
	switchback.ENOTFOUND:      {http.StatusNotFound, "404-01"},
	switchback.ECONFLICT:      {http.StatusConflict, "409-01"},
	switchback.EGONE:          {http.StatusConflict, "409-02"},
	switchback.ETOOLARGE:      {http.StatusRequestEntityTooLarge, "413-01"},
	switchback.EUNPROCESSABLE: {http.StatusUnprocessableEntity, "422-01"},
	switchback.ERATELIMIT:     {http.StatusTooManyRequests, "429-01"},
	switchback.EEXHAUSTED:     {http.StatusServiceUnavailable, "503-01"},
	switchback.EUNAVAILABLE:   {http.StatusServiceUnavailable, "503-02"},
	// A call's own refusals, which no API request meets; were one to, the
	// client could only retry.
	switchback.EBUSY:   {http.StatusServiceUnavailable, "503-02"},
	switchback.EFENCED: {http.StatusServiceUnavailable, "503-02"},
	// A failure that is not a domain error is the store failing or a bug:
	// either way the client can only retry, and never sees the details.
	switchback.EINTERNAL: {http.StatusServiceUnavailable, "503-02"},
}

// codeMalformedJSON tells a body that is not JSON at all from a field that is wrong.
const codeMalformedJSON = "400-01"

// The errors outside the domain table: they are about HTTP, not about
// call transfers.
const (
	codeMethodNotAllowed = "405-01"
	codeRequestTimeout   = "408-01"
)

type errorEnvelope struct {
	Error errorBody `json:"error"`
}

type errorBody struct {
	RequestID string `json:"requestId"`
	Code      string `json:"code"`
	Message   string `json:"message"`
}

// writeError answers with the spec's error envelope. Details of errors
// that are not domain errors go to the log only.
func writeError(w http.ResponseWriter, r *http.Request, log *slog.Logger, err error) {
	code := switchback.ErrorCode(err)
	m := statusOf[code]
	msg := switchback.ErrorMessage(err)
	if code == switchback.EINTERNAL {
		log.Error("request failed", "request_id", requestID(r), "err", err)
		msg = "the store is unavailable; retry shortly"
	}
	if m.status == http.StatusServiceUnavailable {
		w.Header().Set("Retry-After", "1")
	}
	writeErrorStatus(w, r, m.status, m.code, msg)
}

func writeErrorStatus(w http.ResponseWriter, r *http.Request, status int, code, msg string) {
	writeJSON(w, status, errorEnvelope{errorBody{RequestID: requestID(r), Code: code, Message: msg}})
}

// writeBodyReadError answers a request whose body could not be read. The
// connection cannot carry another request after a body read failed half
// way, so it is closed.
func writeBodyReadError(w http.ResponseWriter, r *http.Request, e *bodyReadError) {
	w.Header().Set("Connection", "close")
	var ne net.Error
	if errors.As(e.err, &ne) && ne.Timeout() {
		writeErrorStatus(w, r, http.StatusRequestTimeout, codeRequestTimeout, "the request body did not arrive in time")
		return
	}
	writeErrorStatus(w, r, http.StatusBadRequest, codeMalformedJSON, "the request body could not be read to its end")
}

func retryAfter(w http.ResponseWriter, seconds int) {
	w.Header().Set("Retry-After", strconv.Itoa(max(seconds, 1)))
}

func newRequestID() string {
	var b [16]byte
	rand.Read(b[:])
	h := hex.EncodeToString(b[:])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}
