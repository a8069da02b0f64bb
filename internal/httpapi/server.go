// Package httpapi is Switchback's REST API: the call-transfer endpoints of
// the spec, their extensions (list, wait, conversations), authentication by
// API key, rate limits, the spec's error envelope, health checks and
// metrics.
package httpapi

import (
	"context"
	"log/slog"
	"net/http"
	"path"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/switchback/switchback"
	"github.com/switchback/switchback/internal/transfer"
)

// Tenant is what the API needs to know of a configured tenant.
type Tenant struct {
	RequestsPerSecond float64
	Burst             int
}

// RateLimit is a token bucket: RequestsPerSecond on average, in bursts of
// up to Burst. A RequestsPerSecond of 0 is no limit.
type RateLimit struct {
	RequestsPerSecond float64
	Burst             int
}

// Deps are what the API is built from.
type Deps struct {
	Store     switchback.Store
	Transfers *transfer.Service
	Clock     switchback.Clock
	Log       *slog.Logger
	// Tenant returns a configured tenant's API settings.
	Tenant func(id string) (Tenant, bool)
	// MaxBodyBytes caps request bodies (413 beyond).
	MaxBodyBytes int64
	// MaxWait caps the timeout of a wait.
	MaxWait time.Duration
	// Registry receives the API's metrics; nil for a private one.
	Registry *prometheus.Registry
	// Draining, when set, reports whether the node drains: /readyz then
	// answers 503, so a load balancer stops sending it work.
	Draining func() bool
	// Routes are more handlers, by ServeMux pattern, outside the API's
	// key authentication: they authenticate their requests themselves
	// (the Twilio-style REST hang-up of websocket agents).
	Routes map[string]http.Handler
	// KeyCacheTTL is how long a looked-up API key is trusted before it is
	// read again, which bounds how long a revoked key keeps working, and
	// how long a key id the store did not have is taken as unknown, which
	// bounds how long a key created meanwhile may be refused.
	KeyCacheTTL time.Duration
	// AuthFailureLimit is each source address's budget of failed
	// authentications; past it, a key id this node has not seen in use
	// is answered 429 instead of being looked up. Zero: no limit.
	AuthFailureLimit RateLimit
}

// NewServer returns the API's handler.
func NewServer(d Deps) http.Handler {
	if d.Clock == nil {
		d.Clock = switchback.SystemClock
	}
	if d.Log == nil {
		d.Log = slog.New(slog.DiscardHandler)
	}
	if d.Registry == nil {
		d.Registry = prometheus.NewRegistry()
	}
	if d.KeyCacheTTL == 0 {
		d.KeyCacheTTL = 5 * time.Second
	}
	mux := http.NewServeMux()
	m := newMetrics(d.Registry, d.Store, d.Clock)
	addRoutes(mux, d, m)
	// Not the API of api/openapi.yaml: handlers that speak another API
	// (Twilio's), mounted beside it.
	for pattern, h := range d.Routes {
		mux.Handle(pattern, h)
	}
	return withRequestContext(d.Log, m, withPlainTarget(mux))
}

// withPlainTarget answers, in the error envelope, the request targets
// http.ServeMux would answer with a redirect or plain text: a path that is
// not in its clean form (dot segments, doubled slashes) is not an endpoint
// (a redirect would turn a POST into a GET in many clients), "*" is only
// for OPTIONS, and an HTTP/2 preface is not spoken on this port.
func withPlainTarget(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch p := r.URL.EscapedPath(); {
		case r.ProtoMajor != 1:
			w.Header().Set("Connection", "close")
			writeErrorStatus(w, r, http.StatusHTTPVersionNotSupported, "505-01", "unsupported protocol version: this port speaks HTTP/1.1")
		case r.RequestURI == "*":
			writeErrorStatus(w, r, http.StatusBadRequest, codeMalformedJSON, "the request target * is only for OPTIONS")
		case p == "" || p[0] != '/' || cleanPath(p) != p:
			writeErrorStatus(w, r, http.StatusNotFound, "404-01", "no such endpoint: "+r.RequestURI)
		default:
			next.ServeHTTP(w, r)
		}
	})
}

// cleanPath is p as http.ServeMux would clean it: no dot segments, no
// doubled slashes, the trailing slash kept.
func cleanPath(p string) string {
	np := path.Clean(p)
	if p[len(p)-1] == '/' && np != "/" {
		np += "/"
	}
	return np
}

// withRequestContext gives every request an id (echoed as X-Request-Id),
// records its metrics and log line, and turns a panic into the error
// envelope instead of a dropped connection.
func withRequestContext(log *slog.Logger, m *metrics, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		id := newRequestID()
		info := &requestInfo{id: id}
		r = r.WithContext(context.WithValue(r.Context(), requestInfoKey{}, info))
		w.Header().Set("X-Request-Id", id)
		rec := &statusRecorder{ResponseWriter: w, status: http.StatusOK}
		defer func() {
			if p := recover(); p != nil {
				log.Error("handler panicked", "request_id", id, "panic", p)
				if !rec.wrote {
					retryAfter(rec, 1)
					writeErrorStatus(rec, r, http.StatusServiceUnavailable, "503-02", "internal error; retry shortly")
				}
			}
			route := r.Pattern
			if route == "" {
				route = "unmatched"
			}
			elapsed := time.Since(start)
			m.observe(route, rec.status, elapsed)
			level := slog.LevelInfo
			if rec.status >= 500 {
				level = slog.LevelWarn
			}
			if !log.Enabled(r.Context(), level) {
				return
			}
			attrs := []any{"request_id", id, "method", r.Method, "route", route, "status", rec.status,
				"duration_ms", float64(elapsed.Microseconds()) / 1000}
			if info.tenant != "" {
				attrs = append(attrs, "tenant", info.tenant)
			}
			if info.transfer != "" {
				attrs = append(attrs, "transfer", info.transfer)
			}
			if info.conversation != "" {
				attrs = append(attrs, "conversation", info.conversation)
			}
			log.Log(r.Context(), level, "http request", attrs...)
		}()
		next.ServeHTTP(rec, r)
	})
}

type requestInfoKey struct{}

// requestInfo collects what the log line of a request should name.
type requestInfo struct {
	id, tenant, transfer, conversation string
}

func info(r *http.Request) *requestInfo {
	if i, ok := r.Context().Value(requestInfoKey{}).(*requestInfo); ok {
		return i
	}
	return &requestInfo{}
}

func requestID(r *http.Request) string { return info(r).id }

type statusRecorder struct {
	http.ResponseWriter
	status int
	wrote  bool
}

func (s *statusRecorder) WriteHeader(code int) {
	if !s.wrote {
		s.status, s.wrote = code, true
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusRecorder) Write(b []byte) (int, error) {
	s.wrote = true
	return s.ResponseWriter.Write(b)
}

// Flush lets a waiting response be flushed through the recorder.
func (s *statusRecorder) Flush() {
	if f, ok := s.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}
