// Package bench holds the API benchmark's tools (bench/run.sh) and, here,
// an in-process version of it for profiling: the API wired as `switchback
// serve` wires it, on a real SQLite file, served over loopback TCP to
// concurrent keep-alive clients.
//
//	go test ./bench -run '^$' -bench APIGetSQLite -benchtime 5s -cpuprofile /tmp/cpu.out -o /tmp/bench.test
//	go tool pprof -top -cum -focus 'net/http.\(\*conn\).serve|committer' /tmp/bench.test /tmp/cpu.out
//
// The clients run in the same process, so a profile shows them too; focus on
// net/http.(*conn).serve (the handlers) and the SQLite committer goroutine
// (every write) for the server's share. The profile of the GET benchmark
// also holds the creates that seed it.
package bench

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/switchback/switchback"
	"github.com/switchback/switchback/internal/httpapi"
	"github.com/switchback/switchback/internal/sqlite"
	"github.com/switchback/switchback/internal/transfer"
)

const transfersURL = "/generativeagent/v1/call-transfers"

type apiServer struct {
	url, id, secret string
	client          *http.Client
}

// startAPI serves the API on a fresh SQLite store as serve.go does, with the
// tenant demo's rate limit out of reach.
func startAPI(b *testing.B) *apiServer {
	b.Helper()
	ctx := context.Background()
	store, err := sqlite.Open(ctx, filepath.Join(b.TempDir(), "bench.db"), sqlite.Options{Quarantine: 10 * time.Second, Cache: true})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { store.Close() })
	key, secret, err := switchback.NewAPIKey("demo", "bench", []string{switchback.ScopeCallTransfers}, switchback.SystemClock())
	if err != nil {
		b.Fatal(err)
	}
	if err := store.CreateAPIKey(ctx, key); err != nil {
		b.Fatal(err)
	}
	svc := transfer.New(transfer.Options{
		Store: store,
		Policy: func(id string) (transfer.Policy, bool) {
			return transfer.Policy{PhoneNumberTTL: time.Hour, SIPTTL: time.Hour, DefaultReturn: switchback.ReturnBYE}, id == "demo"
		},
	})
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- svc.Run(runCtx) }()
	b.Cleanup(func() { cancel(); <-done })
	api := httpapi.NewServer(httpapi.Deps{
		Store: store, Transfers: svc, MaxBodyBytes: 65536, MaxWait: time.Minute,
		Tenant: func(id string) (httpapi.Tenant, bool) {
			return httpapi.Tenant{RequestsPerSecond: 1e9, Burst: 1e9}, id == "demo"
		},
	})
	srv := httptest.NewServer(api)
	b.Cleanup(srv.Close)
	client := &http.Client{Transport: &http.Transport{MaxIdleConns: 256, MaxIdleConnsPerHost: 256, DisableCompression: true}}
	b.Cleanup(client.CloseIdleConnections)
	return &apiServer{url: srv.URL, id: key.ID, secret: secret, client: client}
}

func (s *apiServer) do(b *testing.B, method, url string, body []byte) {
	var r io.Reader
	if body != nil {
		r = bytes.NewReader(body)
	}
	req, err := http.NewRequest(method, url, r)
	if err != nil {
		b.Fatal(err)
	}
	req.Header.Set("asapp-api-id", s.id)
	req.Header.Set("asapp-api-secret", s.secret)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	res, err := s.client.Do(req)
	if err != nil {
		b.Fatal(err)
	}
	io.Copy(io.Discard, res.Body)
	res.Body.Close()
	if res.StatusCode != http.StatusOK {
		b.Fatalf("%s %s: status %d", method, url, res.StatusCode)
	}
}

func createBody(id string) []byte {
	return []byte(`{"id":"` + id + `","externalConversationId":"conv-` + id + `","type":"SIP",` +
		`"inputContext":{"taskName":"billing-dispute","inputVariables":{"customerId":"C-1","intent":"refund"}}}`)
}

// BenchmarkAPICreateSQLite is POST /call-transfers from 32 clients.
func BenchmarkAPICreateSQLite(b *testing.B) {
	s := startAPI(b)
	var n atomic.Int64
	b.SetParallelism(16)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			s.do(b, http.MethodPost, s.url+transfersURL, createBody(fmt.Sprintf("t-%d", n.Add(1))))
		}
	})
}

// BenchmarkAPIGetSQLite is GET /call-transfers/{id} of 2000 transfers from
// 32 clients.
func BenchmarkAPIGetSQLite(b *testing.B) {
	s := startAPI(b)
	const seeded = 2000
	for i := range seeded {
		s.do(b, http.MethodPost, s.url+transfersURL, createBody(fmt.Sprintf("t-%d", i)))
	}
	var n atomic.Int64
	b.SetParallelism(16)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			s.do(b, http.MethodGet, fmt.Sprintf("%s%s/t-%d", s.url, transfersURL, n.Add(1)%seeded), nil)
		}
	})
}

// BenchmarkCeiling is the bare net/http server of bench/ceiling, for scale.
func BenchmarkCeiling(b *testing.B) {
	body := bytes.Repeat([]byte("x"), 384)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Write(body)
	}))
	defer srv.Close()
	s := &apiServer{url: srv.URL, client: &http.Client{Transport: &http.Transport{MaxIdleConns: 256, MaxIdleConnsPerHost: 256}}}
	b.SetParallelism(16)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			s.do(b, http.MethodGet, s.url+"/", nil)
		}
	})
}
