package httpapi_test

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/switchback/switchback"
	"github.com/switchback/switchback/internal/httpapi"
	"github.com/switchback/switchback/internal/sqlite"
	"github.com/switchback/switchback/internal/transfer"
)

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestLogsNameRequestTenantTransferAndNoSecret checks the request log lines
// carry request id, tenant and transfer id, and that neither the API secret
// nor a return password ever reaches the log.
func TestLogsNameRequestTenantTransferAndNoSecret(t *testing.T) {
	var logs syncBuffer
	log := slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	db, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "l.db"), sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	svc := transfer.New(transfer.Options{Store: db, Log: log, Policy: func(string) (transfer.Policy, bool) {
		return transfer.Policy{SIPTTL: time.Minute, PhoneNumberTTL: time.Minute, DefaultReturn: switchback.ReturnBYE}, true
	}})
	srv := httptest.NewServer(httpapi.NewServer(httpapi.Deps{Store: db, Transfers: svc, Log: log, MaxBodyBytes: 1 << 16, MaxWait: time.Second,
		Tenant: func(string) (httpapi.Tenant, bool) { return httpapi.Tenant{}, true }}))
	defer srv.Close()
	k, secret, _ := switchback.NewAPIKey("acme", "", []string{switchback.ScopeCallTransfers}, time.Now())
	db.CreateAPIKey(context.Background(), k)
	h := &harness{t: t, URL: srv.URL, KeyID: k.ID, Secret: secret}

	h.do("POST", transfersPath, `{"id":"t-1","externalConversationId":"c","type":"SIP","sip":{"returnURI":"sip:a@b","returnTransferType":"INVITE",
		"returnInviteAuthentication":{"username":"u","password":"pw-never-logged"}}}`)
	h.do("GET", transfersPath+"/t-1", "")
	h.do("GET", transfersPath+"/t-1", "", "asapp-api-secret", "wrong-secret-never-logged")
	db.Close() // a store failure is logged with its details
	h.do("GET", transfersPath+"/t-1", "")

	out := logs.String()
	for _, s := range []string{secret, "pw-never-logged", "wrong-secret-never-logged"} {
		if strings.Contains(out, s) {
			t.Fatalf("a secret reached the log:\n%s", out)
		}
	}
	var sawCreate bool
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("log line is not JSON: %s", line)
		}
		if rec["msg"] == "http request" && rec["route"] == "POST "+transfersPath {
			sawCreate = rec["tenant"] == "acme" && rec["transfer"] == "t-1" && rec["request_id"] != "" && rec["status"] == float64(200)
		}
	}
	if !sawCreate {
		t.Fatalf("no create log line with request id, tenant and transfer:\n%s", out)
	}
}
