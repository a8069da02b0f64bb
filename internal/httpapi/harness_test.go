package httpapi_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/switchback/switchback"
	"github.com/switchback/switchback/internal/httpapi"
	"github.com/switchback/switchback/internal/pgtest"
	"github.com/switchback/switchback/internal/postgres"
	"github.com/switchback/switchback/internal/sqlite"
	"github.com/switchback/switchback/internal/transfer"
)

// harness is a real API server on a real SQLite store, with a clock the
// test moves.
type harness struct {
	t      *testing.T
	URL    string
	Store  switchback.Store
	Svc    *transfer.Service
	KeyID  string
	Secret string
	clock  *fakeClock
}

type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// harnessOptions change the harness's defaults.
type harnessOptions struct {
	RequestsPerSecond float64 // 0: no limit
	Burst             int
	MaxBodyBytes      int64
	RealClock         bool
	TTL               time.Duration
	// Postgres runs the harness on a fresh PostgreSQL database instead of
	// SQLite.
	Postgres bool
	// Log receives the server's log; nil discards it.
	Log *slog.Logger
	// Change, when set, adjusts the API's dependencies before the server
	// is built.
	Change func(*httpapi.Deps)
	// Server, when set, serves the API through httpapi.NewHTTPServer with
	// these options, as switchback serve does, instead of httptest's.
	Server *httpapi.ServerOptions
}

func newHarness(t *testing.T, o harnessOptions) *harness {
	t.Helper()
	ctx := context.Background()
	var db switchback.Store
	var err error
	if o.Postgres {
		db, err = postgres.Open(ctx, pgtest.NewDatabase(t), postgres.Options{Quarantine: 10 * time.Second})
	} else {
		db, err = sqlite.Open(ctx, filepath.Join(t.TempDir(), "api.db"), sqlite.Options{Quarantine: 10 * time.Second})
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	clock := &fakeClock{now: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)}
	now := clock.Now
	if o.RealClock {
		now = switchback.SystemClock
	}
	if o.TTL == 0 {
		o.TTL = time.Minute
	}
	if o.MaxBodyBytes == 0 {
		o.MaxBodyBytes = 64 << 10
	}
	tenants := map[string]bool{"acme": true, "globex": true}
	svc := transfer.New(transfer.Options{
		Store: db, Clock: now,
		Policy: func(id string) (transfer.Policy, bool) {
			return transfer.Policy{PhoneNumberTTL: o.TTL, SIPTTL: o.TTL, DefaultReturn: switchback.ReturnBYE}, tenants[id]
		},
		SweepInterval: 20 * time.Millisecond,
		PollInterval:  20 * time.Millisecond,
	})
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { svc.Run(runCtx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })

	deps := httpapi.Deps{
		Store: db, Transfers: svc, Clock: now, Log: o.Log,
		Tenant: func(id string) (httpapi.Tenant, bool) {
			return httpapi.Tenant{RequestsPerSecond: o.RequestsPerSecond, Burst: o.Burst}, tenants[id]
		},
		MaxBodyBytes: o.MaxBodyBytes,
		MaxWait:      time.Minute,
		KeyCacheTTL:  time.Nanosecond,
	}
	if o.Change != nil {
		o.Change(&deps)
	}
	url := serveAPI(t, httpapi.NewServer(deps), o.Server)

	var ns []switchback.Number
	for _, n := range []string{"+12025550100", "+12025550101"} {
		ns = append(ns, switchback.Number{E164: n, Country: "US"})
	}
	if _, err := db.AddNumbers(ctx, ns); err != nil {
		t.Fatal(err)
	}
	h := &harness{t: t, URL: url, Store: db, Svc: svc, clock: clock}
	h.KeyID, h.Secret = h.newKey("acme", switchback.ScopeCallTransfers)
	return h
}

// serveAPI serves handler on a loopback port until the test ends, with
// httptest's server or, given options, the API's own, and returns its URL.
func serveAPI(t *testing.T, handler http.Handler, o *httpapi.ServerOptions) string {
	t.Helper()
	if o == nil {
		srv := httptest.NewServer(handler)
		t.Cleanup(srv.Close)
		return srv.URL
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv, ln := httpapi.NewHTTPServer(handler, ln, *o)
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	t.Cleanup(func() {
		srv.Close()
		if err := <-done; err != http.ErrServerClosed {
			t.Errorf("serve: %v", err)
		}
	})
	return "http://" + ln.Addr().String()
}

// newKey stores a key for tenant with the given scopes and returns its
// id and secret.
func (h *harness) newKey(tenant string, scopes ...string) (string, string) {
	h.t.Helper()
	k, secret, err := switchback.NewAPIKey(tenant, "test", scopes, time.Now())
	if err != nil {
		h.t.Fatal(err)
	}
	if err := h.Store.CreateAPIKey(context.Background(), k); err != nil {
		h.t.Fatal(err)
	}
	return k.ID, secret
}

// response is a decoded API answer.
type response struct {
	Status int
	Header http.Header
	Body   []byte
	JSON   map[string]any
}

// do sends a request with the harness's key unless headers say otherwise
// (a header given as "" is left out).
func (h *harness) do(method, path, body string, headers ...string) *response {
	h.t.Helper()
	var r io.Reader
	if body != "" {
		r = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, h.URL+path, r)
	if err != nil {
		h.t.Fatal(err)
	}
	req.Header.Set("asapp-api-id", h.KeyID)
	req.Header.Set("asapp-api-secret", h.Secret)
	req.Header.Set("Content-Type", "application/json")
	for i := 0; i+1 < len(headers); i += 2 {
		if headers[i+1] == "" {
			req.Header.Del(headers[i])
		} else {
			req.Header.Set(headers[i], headers[i+1])
		}
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		h.t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	out := &response{Status: res.StatusCode, Header: res.Header, Body: b}
	if len(bytes.TrimSpace(b)) > 0 {
		json.Unmarshal(b, &out.JSON)
	}
	return out
}

// errorOf returns the code and message of an error envelope, failing the
// test when the response is not one or its request id is not echoed.
func (r *response) errorOf(t *testing.T) (code, message string) {
	t.Helper()
	e, ok := r.JSON["error"].(map[string]any)
	if !ok {
		t.Fatalf("status %d body %s: not an error envelope", r.Status, r.Body)
	}
	id, _ := e["requestId"].(string)
	if id == "" || id != r.Header.Get("X-Request-Id") {
		t.Fatalf("requestId %q does not match X-Request-Id %q", id, r.Header.Get("X-Request-Id"))
	}
	code, _ = e["code"].(string)
	message, _ = e["message"].(string)
	return code, message
}

// field reads a dotted path of a JSON response.
func (r *response) field(path string) any {
	var v any = r.JSON
	for _, p := range strings.Split(path, ".") {
		m, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = m[p]
	}
	return v
}
