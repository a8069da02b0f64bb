package httpapi

import (
	"context"
	"encoding/base64"
	"errors"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/switchback/switchback"
)

// handleCreate serves POST /generativeagent/v1/call-transfers.
func handleCreate(d Deps) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ContentLength > d.MaxBodyBytes {
			writeError(w, r, d.Log, switchback.Errorf(switchback.ETOOLARGE, "request body is larger than %d bytes", d.MaxBodyBytes))
			return
		}
		var req createRequest
		err := decodeJSON(http.MaxBytesReader(w, r.Body, d.MaxBodyBytes), &req)
		var m *malformedJSON
		var rerr *bodyReadError
		if errors.As(err, &m) {
			writeErrorStatus(w, r, http.StatusBadRequest, codeMalformedJSON, m.msg)
			return
		} else if errors.As(err, &rerr) {
			writeBodyReadError(w, r, rerr)
			return
		} else if err != nil {
			writeError(w, r, d.Log, err)
			return
		}
		t, err := req.transfer(tenantOf(r))
		if err != nil {
			writeError(w, r, d.Log, err)
			return
		}
		info(r).transfer = t.ID
		stored, err := d.Transfers.Create(r.Context(), t)
		if err != nil {
			if switchback.ErrorCode(err) == switchback.EEXHAUSTED {
				d.Log.Warn("number pool exhausted", "request_id", requestID(r), "tenant", t.TenantID,
					"country", t.PhoneNumber.Country)
			}
			writeError(w, r, d.Log, err)
			return
		}
		stored.Status = stored.StatusAt(d.Clock())
		writeJSON(w, http.StatusOK, encodeTransfer(stored))
	})
}

// handleGet serves GET /generativeagent/v1/call-transfers/{id}, and waits
// for a status when asked with ?waitForStatus=...&timeout=....
func handleGet(d Deps) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := r.PathValue("id")
		q, err := query(r)
		if err != nil {
			writeError(w, r, d.Log, err)
			return
		}
		// No transfer can have an id a create refuses: such an id is not
		// found without asking the store, which may not even be able to
		// compare it (PostgreSQL refuses invalid UTF-8 and NUL).
		if !switchback.ValidID(id) {
			writeError(w, r, d.Log, switchback.Errorf(switchback.ENOTFOUND, "call transfer %q not found", id))
			return
		}
		info(r).transfer = id
		if !q.Has("waitForStatus") {
			if q.Has("timeout") {
				writeError(w, r, d.Log, switchback.FieldErrorf("timeout", "is only used with waitForStatus"))
				return
			}
			t, err := d.Transfers.Get(r.Context(), tenantOf(r), id)
			if err != nil {
				writeError(w, r, d.Log, err)
				return
			}
			writeJSON(w, http.StatusOK, encodeTransfer(t))
			return
		}
		want, err := parseStatuses(q.Get("waitForStatus"))
		if err != nil {
			writeError(w, r, d.Log, err)
			return
		}
		timeout, err := parseTimeout(q.Get("timeout"), q.Has("timeout"), d.MaxWait)
		if err != nil {
			writeError(w, r, d.Log, err)
			return
		}
		t, reached, err := d.Transfers.Wait(r.Context(), tenantOf(r), id, want, timeout)
		if err != nil {
			if r.Context().Err() != nil {
				return // the client went away
			}
			writeError(w, r, d.Log, err)
			return
		}
		result := "timeout"
		if reached {
			result = "reached"
		}
		w.Header().Set("Switchback-Wait-Result", result)
		writeJSON(w, http.StatusOK, encodeTransfer(t))
	})
}

// query parses the query string, refusing one that does not parse rather
// than silently dropping parameters.
func query(r *http.Request) (url.Values, error) {
	q, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		return nil, switchback.Errorf(switchback.EINVALID, "the query string is malformed: %v", err)
	}
	return q, nil
}

// DefaultWait is the timeout of a wait that names none.
const DefaultWait = 30 * time.Second

func parseStatuses(s string) ([]switchback.Status, error) {
	var out []switchback.Status
	for _, p := range strings.Split(s, ",") {
		st := switchback.Status(strings.ToUpper(strings.TrimSpace(p)))
		if !st.Valid() {
			return nil, switchback.FieldErrorf("waitForStatus", "%q is not one of ACTIVE, ONGOING, COMPLETED, EXPIRED", p)
		}
		out = append(out, st)
	}
	return out, nil
}

// timeoutSyntax is the grammar of the timeout parameter, as the OpenAPI
// document states it: whole seconds, or a Go duration without a sign.
// time.ParseDuration alone also takes "+5s", "-0s" and ".5s".
var timeoutSyntax = regexp.MustCompile(`^([0-9]+|([0-9]+(\.[0-9]+)?(ns|us|µs|μs|ms|s|m|h))+)$`)

// parseTimeout reads a Go duration ("30s", "1500ms") or whole seconds
// ("30"), from 0 to limit. Numbers too large for a duration are refused,
// not wrapped around.
func parseTimeout(s string, given bool, limit time.Duration) (time.Duration, error) {
	if !given {
		return min(DefaultWait, limit), nil
	}
	bad := switchback.FieldErrorf("timeout", "must be between 0s and %s, written as a duration such as 30s or 1500ms or as whole seconds", limit)
	if !timeoutSyntax.MatchString(s) {
		return 0, bad
	}
	if whole, ok := parseWhole(s); ok {
		if whole > int64(limit/time.Second) {
			return 0, bad
		}
		return time.Duration(whole) * time.Second, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d > limit {
		return 0, bad
	}
	return d, nil
}

// parseWhole reads a whole number written with ASCII digits only (no sign,
// no space, no exponent), which fits an int64.
func parseWhole(s string) (int64, bool) {
	if s == "" {
		return 0, false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, false
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	return n, err == nil
}

// listJSON is a page of a listing.
type listJSON struct {
	CallTransfers []*transferJSON `json:"callTransfers"`
	NextPageToken string          `json:"nextPageToken,omitempty"`
}

// Page sizes of a listing.
const (
	DefaultPageSize = 20
	MaxPageSize     = 100
)

// handleList serves GET /generativeagent/v1/call-transfers: a tenant's
// transfers, newest first, optionally of one externalConversationId.
func handleList(d Deps) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		q, err := query(r)
		if err != nil {
			writeError(w, r, d.Log, err)
			return
		}
		f := switchback.TransferFilter{TenantID: tenantOf(r), ExternalConversationID: q.Get("externalConversationId"), Limit: DefaultPageSize}
		if f.ExternalConversationID != "" {
			if err := checkText("externalConversationId", f.ExternalConversationID); err != nil {
				writeError(w, r, d.Log, err)
				return
			}
		}
		if q.Has("pageSize") {
			n, ok := parseWhole(q.Get("pageSize"))
			if !ok || n < 1 || n > MaxPageSize {
				writeError(w, r, d.Log, switchback.FieldErrorf("pageSize", "must be a whole number from 1 to %d", MaxPageSize))
				return
			}
			f.Limit = int(n)
		}
		if s := q.Get("pageToken"); s != "" {
			c, ok := decodeCursor(s)
			if !ok {
				writeError(w, r, d.Log, switchback.FieldErrorf("pageToken", "is not a token this API returned"))
				return
			}
			f.After = c
		}
		ts, err := d.Transfers.List(r.Context(), f)
		if err != nil {
			writeError(w, r, d.Log, err)
			return
		}
		out := listJSON{CallTransfers: make([]*transferJSON, 0, len(ts))}
		for _, t := range ts {
			out.CallTransfers = append(out.CallTransfers, encodeTransfer(t))
		}
		if len(ts) == f.Limit {
			last := ts[len(ts)-1]
			out.NextPageToken = encodeCursor(last.CreatedAt, last.ID)
		}
		writeJSON(w, http.StatusOK, out)
	})
}

// maxCursorMicros is the end of year 9999 in Unix microseconds: no
// transfer this API returned was created later, and no token holds a time
// before 1970.
var maxCursorMicros = time.Date(9999, 12, 31, 23, 59, 59, 999999000, time.UTC).UnixMicro()

func encodeCursor(created time.Time, id string) string {
	return base64.RawURLEncoding.EncodeToString([]byte(strconv.FormatInt(created.UnixMicro(), 10) + ":" + id))
}

func decodeCursor(s string) (*switchback.Cursor, bool) {
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return nil, false
	}
	us, id, ok := strings.Cut(string(b), ":")
	n, err := strconv.ParseInt(us, 10, 64)
	if !ok || err != nil || !switchback.ValidID(id) || n < 0 || n > maxCursorMicros {
		return nil, false
	}
	return &switchback.Cursor{CreatedAt: time.UnixMicro(n).UTC(), ID: id}, true
}

func handleHealthz() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
}

// handleReadyz reports ready only while the store answers.
func handleReadyz(d Deps) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if d.Draining != nil && d.Draining() {
			retryAfter(w, 30)
			writeErrorStatus(w, r, http.StatusServiceUnavailable, "503-03", "this node is draining: its calls finish, it takes no new ones")
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		if err := d.Store.Ping(ctx); err != nil {
			d.Log.Warn("store not reachable", "err", err)
			retryAfter(w, 1)
			writeErrorStatus(w, r, http.StatusServiceUnavailable, "503-02", "the store is not reachable")
			return
		}
		writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
	})
}

func notFound() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeErrorStatus(w, r, http.StatusNotFound, "404-01", "no such endpoint: "+r.URL.Path)
	})
}

func methodNotAllowed(allow string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Allow", allow)
		writeErrorStatus(w, r, http.StatusMethodNotAllowed, codeMethodNotAllowed, r.Method+" is not allowed here; use "+allow)
	})
}
