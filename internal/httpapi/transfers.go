package httpapi

import (
	"context"
	"encoding/base64"
	"errors"
	"net/http"
	"net/url"
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
		timeout, err := parseTimeout(q.Get("timeout"), d.MaxWait)
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

// parseTimeout reads a Go duration ("30s", "1500ms") or whole seconds ("30").
func parseTimeout(s string, limit time.Duration) (time.Duration, error) {
	if s == "" {
		return min(DefaultWait, limit), nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		n, nerr := strconv.Atoi(s)
		if nerr != nil {
			return 0, switchback.FieldErrorf("timeout", "%q is not a duration such as 30s or 1500ms", s)
		}
		d = time.Duration(n) * time.Second
	}
	if d < 0 || d > limit {
		return 0, switchback.FieldErrorf("timeout", "must be between 0s and %s", limit)
	}
	return d, nil
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
		if s := q.Get("pageSize"); s != "" {
			n, err := strconv.Atoi(s)
			if err != nil || n < 1 || n > MaxPageSize {
				writeError(w, r, d.Log, switchback.FieldErrorf("pageSize", "must be a whole number from 1 to %d", MaxPageSize))
				return
			}
			f.Limit = n
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
