package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/switchback/switchback"
	"github.com/switchback/switchback/internal/httpapi"
	"github.com/switchback/switchback/internal/sqlite"
	"github.com/switchback/switchback/internal/transfer"
)

// transfersAPI is a real API server on a real SQLite store, and the
// environment that points the client at it.
type transfersAPI struct {
	t      *testing.T
	URL    string
	Svc    *transfer.Service
	Secret string
	env    map[string]string
}

const transfersTenant = "acme"

func startTransfersAPI(t *testing.T) *transfersAPI {
	t.Helper()
	ctx := context.Background()
	db, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "api.db"), sqlite.Options{Quarantine: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	svc := transfer.New(transfer.Options{
		Store: db,
		Policy: func(id string) (transfer.Policy, bool) {
			return transfer.Policy{PhoneNumberTTL: time.Minute, SIPTTL: time.Minute, DefaultReturn: switchback.ReturnBYE},
				id == transfersTenant
		},
		SweepInterval: 20 * time.Millisecond,
		PollInterval:  20 * time.Millisecond,
	})
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { svc.Run(runCtx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })

	srv := httptest.NewServer(httpapi.NewServer(httpapi.Deps{
		Store: db, Transfers: svc, Clock: switchback.SystemClock,
		Tenant: func(id string) (httpapi.Tenant, bool) {
			return httpapi.Tenant{}, id == transfersTenant
		},
		MaxBodyBytes: 64 << 10,
		MaxWait:      time.Minute,
		KeyCacheTTL:  time.Nanosecond,
	}))
	t.Cleanup(srv.Close)

	if _, err := db.AddNumbers(ctx, []switchback.Number{{E164: "+12025550100", Country: "US"}}); err != nil {
		t.Fatal(err)
	}
	k, secret, err := switchback.NewAPIKey(transfersTenant, "cli test", []string{switchback.ScopeCallTransfers}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if err := db.CreateAPIKey(ctx, k); err != nil {
		t.Fatal(err)
	}
	return &transfersAPI{t: t, URL: srv.URL, Svc: svc, Secret: secret, env: map[string]string{
		"SWITCHBACK_SERVER":     srv.URL,
		"SWITCHBACK_API_ID":     k.ID,
		"SWITCHBACK_API_SECRET": secret,
	}}
}

// cliResult is what one run of the program left.
type cliResult struct {
	Stdout, Stderr string
	Err            error
}

// run runs "switchback transfers args..." against the server with stdin
// and the environment (env overrides the server's when set), and fails the
// test if the secret shows up anywhere.
func (a *transfersAPI) run(stdin string, env map[string]string, args ...string) cliResult {
	a.t.Helper()
	return a.runCommand("transfers", stdin, env, args...)
}

// runCommand runs "switchback command args..." as run does "transfers".
func (a *transfersAPI) runCommand(command, stdin string, env map[string]string, args ...string) cliResult {
	a.t.Helper()
	if env == nil {
		env = a.env
	}
	var stdout, stderr bytes.Buffer
	err := run(context.Background(), append([]string{command}, args...), func(k string) string { return env[k] },
		strings.NewReader(stdin), &stdout, &stderr)
	r := cliResult{stdout.String(), stderr.String(), err}
	if a.Secret != "" {
		for _, s := range []string{r.Stdout, r.Stderr, fmt.Sprint(r.Err)} {
			if strings.Contains(s, a.Secret) {
				a.t.Fatalf("%s %v printed the API secret:\n%s", command, args, s)
			}
		}
	}
	return r
}

// ok runs a command that must succeed and returns its stdout.
func (a *transfersAPI) ok(args ...string) string {
	a.t.Helper()
	r := a.run("", nil, args...)
	if r.Err != nil {
		a.t.Fatalf("transfers %v: %v\nstderr: %s", args, r.Err, r.Stderr)
	}
	return r.Stdout
}

// okJSON runs a command with --output json and decodes what it printed.
func (a *transfersAPI) okJSON(args ...string) map[string]any {
	a.t.Helper()
	out := a.ok(append(args, "--output", "json")...)
	var v map[string]any
	if err := json.Unmarshal([]byte(out), &v); err != nil {
		a.t.Fatalf("transfers %v: output is not JSON: %v\n%s", args, err, out)
	}
	if !strings.Contains(out, "\n  \"") {
		a.t.Errorf("transfers %v: JSON is not pretty-printed:\n%s", args, out)
	}
	return v
}

// field reads a dotted path of decoded JSON.
func field(v any, path string) any {
	for _, p := range strings.Split(path, ".") {
		m, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = m[p]
	}
	return v
}

func TestTransfersCreate(t *testing.T) {
	api := startTransfersAPI(t)
	tests := []struct {
		name  string
		args  []string
		want  map[string]any // dotted path -> value; nil: must be absent
		check func(t *testing.T, v map[string]any)
	}{
		{
			name: "SIP with every flag",
			args: []string{"create", "--id", "tr-sip-1", "--conversation", "conv-9", "--return-uri", "sip:agent@example.com",
				"--return-type", "refer", "--return-user", "bob", "--return-password", "hunter2",
				"--task", "billing", "--var", "plan=gold", "--var", "lang=en=GB"},
			want: map[string]any{
				"id": "tr-sip-1", "externalConversationId": "conv-9", "type": "SIP", "status": "ACTIVE",
				"sip.returnURI": "sip:agent@example.com", "sip.returnTransferType": "REFER",
				"sip.returnInviteAuthentication.username": "bob", "sip.returnInviteAuthentication.password": nil,
				"inputContext.taskName": "billing", "inputContext.inputVariables.plan": "gold",
				"inputContext.inputVariables.lang": "en=GB", "phoneNumber": nil,
			},
		},
		{
			name: "SIP with defaults",
			args: []string{"create"},
			want: map[string]any{"type": "SIP", "status": "ACTIVE", "sip.returnTransferType": "BYE", "inputContext": nil},
			check: func(t *testing.T, v map[string]any) {
				id, _ := v["id"].(string)
				if !regexp.MustCompile(`^tr-[0-9a-f]{12}$`).MatchString(id) {
					t.Errorf("generated id %q is not tr-<random>", id)
				}
				if v["externalConversationId"] != id {
					t.Errorf("externalConversationId = %v, want the id %q", v["externalConversationId"], id)
				}
			},
		},
		{
			name: "PHONE_NUMBER",
			args: []string{"create", "--type", "PHONE_NUMBER", "--country", "us", "--id", "tr-pn-1"},
			want: map[string]any{
				"id": "tr-pn-1", "externalConversationId": "tr-pn-1", "type": "PHONE_NUMBER", "status": "ACTIVE",
				"phoneNumber.country": "US", "phoneNumber.transferNumber": "+12025550100", "sip": nil,
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := api.okJSON(tt.args...)
			for path, want := range tt.want {
				if got := field(v, path); got != want {
					t.Errorf("%s = %#v, want %#v", path, got, want)
				}
			}
			if tt.check != nil {
				tt.check(t, v)
			}
		})
	}
}

func TestTransfersCreateBody(t *testing.T) {
	api := startTransfersAPI(t)
	body := `{"id":"tr-raw","externalConversationId":"c1","type":"SIP","sip":{"returnUri":"sip:a@example.com"}}`

	r := api.run(body, nil, "create", "--body", "-", "--output", "json")
	if r.Err != nil {
		t.Fatalf("create --body -: %v\n%s", r.Err, r.Stderr)
	}
	var v map[string]any
	if err := json.Unmarshal([]byte(r.Stdout), &v); err != nil {
		t.Fatal(err)
	}
	if v["id"] != "tr-raw" || field(v, "sip.returnURI") != "sip:a@example.com" {
		t.Errorf("created %s", r.Stdout)
	}

	file := filepath.Join(t.TempDir(), "bad.json")
	writeFile(t, file, `{"id":"tr-raw2","externalConversationId":"c1","type":"SIP","colour":"red"}`)
	r = api.run("", nil, "create", "--body", file)
	var ae *apiError
	if !errors.As(r.Err, &ae) || ae.Status != 400 || !strings.Contains(ae.Message, "colour") {
		t.Errorf("create with an unknown field: err = %v, want a 400 naming colour", r.Err)
	}

	r = api.run(body, nil, "create", "--body", "-", "--id", "x", "--type", "SIP")
	if r.Err == nil || !strings.Contains(r.Err.Error(), "--id, --type") {
		t.Errorf("--body with --id and --type: err = %v, want it to name both", r.Err)
	}
}

func TestTransfersGetTable(t *testing.T) {
	api := startTransfersAPI(t)
	api.ok("create", "--type", "PHONE_NUMBER", "--country", "US", "--id", "tr-pn", "--var", "plan=gold", "--var", "note=a\tb")

	out := api.ok("get", "tr-pn")
	for _, want := range []string{"tr-pn", "PHONE_NUMBER", "ACTIVE", "+12025550100", "US", "plan=gold", `"a\tb"`} {
		if !strings.Contains(out, want) {
			t.Errorf("get table lacks %q:\n%s", want, out)
		}
	}
	// Values line up in one column, and a missing one reads "-".
	valueCol := func(line string) int {
		if strings.HasPrefix(line, " ") { // a continuation line of variables
			return len(line) - len(strings.TrimLeft(line, " "))
		}
		i := strings.Index(line, ":") + 1
		return i + len(line[i:]) - len(strings.TrimLeft(line[i:], " "))
	}
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	for _, line := range lines {
		if valueCol(line) != valueCol(lines[0]) {
			t.Errorf("value of %q starts at column %d, want %d:\n%s", line, valueCol(line), valueCol(lines[0]), out)
		}
	}
	if !regexp.MustCompile(`(?m)^Call received:\s+-$`).MatchString(out) {
		t.Errorf("call received is not shown as -:\n%s", out)
	}

	// Flags may follow the id.
	v := api.okJSON("get", "tr-pn")
	if v["status"] != "ACTIVE" {
		t.Errorf("get --output json: status %v", v["status"])
	}
}

func TestTransfersListAll(t *testing.T) {
	api := startTransfersAPI(t)
	ids := []string{"tr-a", "tr-b", "tr-c"}
	for _, id := range ids {
		api.ok("create", "--id", id, "--conversation", "conv-list")
	}
	api.ok("create", "--id", "tr-other")

	v := api.okJSON("list", "--conversation", "conv-list", "--page-size", "1", "--all")
	items, _ := v["callTransfers"].([]any)
	var got []string
	for _, it := range items {
		got = append(got, fmt.Sprint(field(it, "id")))
	}
	if strings.Join(got, " ") != "tr-c tr-b tr-a" {
		t.Errorf("list --all ids = %v, want tr-c tr-b tr-a (newest first)", got)
	}
	if _, ok := v["nextPageToken"]; ok {
		t.Errorf("list --all output has a nextPageToken: %v", v)
	}

	out := api.ok("list", "--conversation", "conv-list", "--page-size", "1", "--all")
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	if len(lines) != 4 || !regexp.MustCompile(`^ID\s+TYPE\s+STATUS\s+NUMBER/RETURN\s+CREATED$`).MatchString(lines[0]) {
		t.Fatalf("list --all table:\n%s", out)
	}
	for i, id := range []string{"tr-c", "tr-b", "tr-a"} {
		if !regexp.MustCompile(`^` + id + `\s+SIP\s+ACTIVE\s+BYE\s+\d{4}-`).MatchString(lines[i+1]) {
			t.Errorf("row %d = %q, want %s SIP ACTIVE BYE <created>", i+1, lines[i+1], id)
		}
	}

	// Without --all: one page, and where the next one starts.
	r := api.run("", nil, "list", "--conversation", "conv-list", "--page-size", "1")
	if r.Err != nil || strings.Count(r.Stdout, "\n") != 2 || !strings.Contains(r.Stderr, "--page-token ") {
		t.Errorf("list one page: err %v\nstdout:\n%s\nstderr:\n%s", r.Err, r.Stdout, r.Stderr)
	}
	page := api.okJSON("list", "--conversation", "conv-list", "--page-size", "2")
	token, _ := page["nextPageToken"].(string)
	if token == "" {
		t.Fatalf("list --page-size 2 --output json has no nextPageToken: %v", page)
	}
	out = api.ok("list", "--conversation", "conv-list", "--page-size", "2", "--page-token", token)
	if !strings.Contains(out, "tr-a") || strings.Contains(out, "tr-b") {
		t.Errorf("second page:\n%s", out)
	}

	r = api.run("", nil, "list", "--conversation", "nobody")
	if r.Err != nil || r.Stdout != "" || !strings.Contains(r.Stderr, "no call transfers") {
		t.Errorf("empty list: err %v stdout %q stderr %q", r.Err, r.Stdout, r.Stderr)
	}
}

func TestTransfersWaitTimeout(t *testing.T) {
	api := startTransfersAPI(t)
	api.ok("create", "--id", "tr-w")

	start := time.Now()
	r := api.run("", nil, "wait", "tr-w", "--status", "COMPLETED", "--wait", "200ms")
	if elapsed := time.Since(start); elapsed < 200*time.Millisecond {
		t.Errorf("wait returned after %s, before its 200ms", elapsed)
	}
	var wt *waitTimeout
	if !errors.As(r.Err, &wt) {
		t.Fatalf("wait: err = %v, want a waitTimeout", r.Err)
	}
	if !strings.Contains(r.Err.Error(), "timed out") || !strings.Contains(r.Err.Error(), "ACTIVE") {
		t.Errorf("wait error %q does not say it timed out with the transfer ACTIVE", r.Err)
	}
	if exitCode(r.Err) != 2 {
		t.Errorf("exitCode = %d, want 2", exitCode(r.Err))
	}
	if !regexp.MustCompile(`(?m)^Status:\s+ACTIVE$`).MatchString(r.Stdout) {
		t.Errorf("wait did not print the transfer as it stands:\n%s", r.Stdout)
	}
}

func TestTransfersWaitReached(t *testing.T) {
	api := startTransfersAPI(t)
	api.ok("create", "--id", "tr-done")

	ctx := context.Background()
	moved := make(chan error, 1)
	go func() {
		time.Sleep(100 * time.Millisecond)
		if _, err := api.Svc.Match(ctx, transfersTenant, "tr-done"); err != nil {
			moved <- err
			return
		}
		_, err := api.Svc.Complete(ctx, transfersTenant, "tr-done", &switchback.OutputContext{
			TransferType: switchback.TransferAgent, TransferVariables: map[string]string{"reason": "resolved"}})
		moved <- err
	}()
	r := api.run("", nil, "wait", "--wait", "10s", "tr-done")
	if err := <-moved; err != nil {
		t.Fatalf("complete the transfer: %v", err)
	}
	if r.Err != nil || exitCode(r.Err) != 0 {
		t.Fatalf("wait: %v (exit %d)\n%s", r.Err, exitCode(r.Err), r.Stderr)
	}
	for _, re := range []string{`(?m)^Status:\s+COMPLETED$`, `(?m)^Output type:\s+AGENT$`,
		`(?m)^Transfer variables:\s+reason=resolved$`, `(?m)^Completed:\s+\d{4}-`} {
		if !regexp.MustCompile(re).MatchString(r.Stdout) {
			t.Errorf("wait output does not match %s:\n%s", re, r.Stdout)
		}
	}

	// A final status already reached answers at once.
	v := api.okJSON("wait", "tr-done", "--status", "completed")
	if v["status"] != "COMPLETED" || field(v, "outputContext.transferType") != "AGENT" {
		t.Errorf("wait on a completed transfer: %v", v)
	}
}

func TestTransfersAPIError(t *testing.T) {
	api := startTransfersAPI(t)
	r := api.run("", nil, "get", "tr-nope")
	var ae *apiError
	if !errors.As(r.Err, &ae) || ae.Status != 404 || ae.Code != "404-01" {
		t.Fatalf("get unknown: err = %#v, want a 404 apiError", r.Err)
	}
	// main prints it after "switchback: ".
	line := "switchback: " + r.Err.Error()
	if !regexp.MustCompile(`^switchback: 404 404-01: .*tr-nope.* \(request [0-9a-f-]{36}\)$`).MatchString(line) {
		t.Errorf("error reads %q", line)
	}
	if exitCode(r.Err) != 1 {
		t.Errorf("exitCode = %d, want 1", exitCode(r.Err))
	}
	// An id that starts with "-" follows "--".
	r = api.run("", nil, "get", "--output", "json", "--", "-odd")
	if !errors.As(r.Err, &ae) || ae.Status != 404 || !strings.Contains(ae.Message, `"-odd"`) {
		t.Errorf("get -- -odd: err = %v, want a 404 for -odd", r.Err)
	}

	env := map[string]string{"SWITCHBACK_SERVER": api.URL, "SWITCHBACK_API_ID": api.env["SWITCHBACK_API_ID"],
		"SWITCHBACK_API_SECRET": "wrong"}
	r = api.run("", env, "list")
	if !errors.As(r.Err, &ae) || ae.Status != 401 {
		t.Errorf("wrong secret: err = %v, want 401", r.Err)
	}
	r = api.run("", nil, "wait", "tr-x", "--status", "DONE")
	if !errors.As(r.Err, &ae) || ae.Status != 400 || !strings.Contains(ae.Message, "waitForStatus") {
		t.Errorf("wait --status DONE: err = %v, want a 400 about waitForStatus", r.Err)
	}
}

func TestTransfersCredentials(t *testing.T) {
	api := startTransfersAPI(t)
	id, secret := api.env["SWITCHBACK_API_ID"], api.env["SWITCHBACK_API_SECRET"]
	tests := []struct {
		name    string
		env     map[string]string
		args    []string
		wantErr []string // nil: must succeed
	}{
		{"no id", map[string]string{"SWITCHBACK_SERVER": api.URL, "SWITCHBACK_API_SECRET": secret},
			[]string{"list"}, []string{"--api-id", "SWITCHBACK_API_ID"}},
		{"no secret", map[string]string{"SWITCHBACK_SERVER": api.URL, "SWITCHBACK_API_ID": id},
			[]string{"get", "tr-1"}, []string{"--api-secret", "SWITCHBACK_API_SECRET"}},
		{"nothing", map[string]string{}, []string{"create"}, []string{"--api-id", "SWITCHBACK_API_ID"}},
		{"flags instead of env", map[string]string{},
			[]string{"list", "--server", api.URL + "/", "--api-id", id, "--api-secret", secret}, nil},
		{"flags over env", map[string]string{"SWITCHBACK_SERVER": "http://127.0.0.1:1", "SWITCHBACK_API_ID": "nope",
			"SWITCHBACK_API_SECRET": "nope"},
			[]string{"list", "--server", api.URL, "--api-id", id, "--api-secret", secret}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := api.run("", tt.env, tt.args...)
			if tt.wantErr == nil {
				if r.Err != nil {
					t.Fatalf("err = %v", r.Err)
				}
				return
			}
			if r.Err == nil {
				t.Fatal("no error")
			}
			for _, w := range tt.wantErr {
				if !strings.Contains(r.Err.Error(), w) {
					t.Errorf("error %q does not name %s", r.Err, w)
				}
			}
		})
	}
}

func TestTransfersUnreachable(t *testing.T) {
	api := startTransfersAPI(t)
	dead := httptest.NewServer(nil)
	dead.Close()
	env := map[string]string{"SWITCHBACK_SERVER": dead.URL, "SWITCHBACK_API_ID": "id", "SWITCHBACK_API_SECRET": "s3cret-value"}
	api.Secret = "s3cret-value"
	r := api.run("", env, "get", "tr-1")
	if r.Err == nil || !strings.Contains(r.Err.Error(), "could not reach server "+dead.URL) {
		t.Errorf("err = %v, want it to name %s", r.Err, dead.URL)
	}
	// Nothing was sent, so there is nothing to retry.
	r = api.run("", env, "create")
	if r.Err == nil || strings.Contains(r.Err.Error(), "retry") {
		t.Errorf("create: err = %v, want no hint to retry", r.Err)
	}

	// A create that may have reached the server names its generated id, so
	// it can be retried safely.
	release := make(chan struct{})
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-release:
		}
	}))
	defer slow.Close()
	defer close(release)
	env["SWITCHBACK_SERVER"] = slow.URL
	r = api.run("", env, "create", "--timeout", "100ms")
	if r.Err == nil || !regexp.MustCompile(`did not answer within 100ms .*run again with --id tr-[0-9a-f]{12} to retry safely`).MatchString(r.Err.Error()) {
		t.Errorf("create: err = %v, want a timeout and a hint to retry with the id", r.Err)
	}
}

func TestTransfersUsage(t *testing.T) {
	api := startTransfersAPI(t)
	tests := []struct {
		name    string
		args    []string
		wantErr string
	}{
		{"no command", nil, "no transfers command"},
		{"unknown command", []string{"delete"}, `unknown transfers command "delete"`},
		{"get without id", []string{"get"}, "usage: switchback transfers get"},
		{"get two ids", []string{"get", "a", "b"}, "usage: switchback transfers get"},
		{"wait without id", []string{"wait"}, "usage: switchback transfers wait"},
		{"list with an argument", []string{"list", "x"}, "unexpected"},
		{"bad output", []string{"get", "x", "--output", "yaml"}, `--output: "yaml"`},
		{"bad server", []string{"get", "x", "--server", "localhost:8080"}, "--server"},
		{"bad type", []string{"create", "--type", "FAX"}, `--type: "FAX"`},
		{"phone without country", []string{"create", "--type", "PHONE_NUMBER"}, "--country is required"},
		{"phone with return", []string{"create", "--type", "PHONE_NUMBER", "--country", "US", "--return-uri", "sip:a@b"}, "--return-uri is only for --type SIP"},
		{"SIP with country", []string{"create", "--country", "US"}, "--country is only for --type PHONE_NUMBER"},
		{"password without user", []string{"create", "--return-password", "pw"}, "--return-user"},
		{"bad var", []string{"create", "--var", "novalue"}, "KEY=VALUE"},
		{"var twice", []string{"create", "--var", "a=1", "--var", "a=2"}, "given twice"},
		{"missing body file", []string{"create", "--body", filepath.Join(t.TempDir(), "none.json")}, "--body"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := api.run("", nil, tt.args...)
			if r.Err == nil || !strings.Contains(r.Err.Error(), tt.wantErr) {
				t.Errorf("err = %v, want it to contain %q", r.Err, tt.wantErr)
			}
		})
	}

	r := api.run("", nil, "help")
	if r.Err != nil || !strings.Contains(r.Stdout, "Exit status") || !strings.Contains(r.Stdout, "2 when wait") {
		t.Errorf("help: err %v\n%s", r.Err, r.Stdout)
	}
	// -h lists the flags without showing the secret from the environment
	// (run checks that).
	r = api.run("", nil, "create", "-h")
	if !errors.Is(r.Err, flag.ErrHelp) || !strings.Contains(r.Stderr, "-api-secret") {
		t.Errorf("create -h: err %v\n%s", r.Err, r.Stderr)
	}
}

func TestExitCode(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want int
	}{
		{"success", nil, 0},
		{"wait timed out", fmt.Errorf("wrapped: %w", &waitTimeout{ID: "x"}), 2},
		{"API error", &apiError{Status: 404}, 1},
		{"other", errors.New("boom"), 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := exitCode(tt.err); got != tt.want {
				t.Errorf("exitCode(%v) = %d, want %d", tt.err, got, tt.want)
			}
		})
	}
}

func writeFile(t *testing.T, name, data string) {
	t.Helper()
	if err := os.WriteFile(name, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
}
