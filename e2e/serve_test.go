package e2e

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestServeDefaultsAndStops starts `switchback serve` with no config file in
// an empty directory: it creates its SQLite file, prints the demo key once,
// serves the API, and stops cleanly on SIGTERM. A second server on the same
// file refuses to start.
func TestServeDefaultsAndStops(t *testing.T) {
	dir := t.TempDir()
	srv := startServer(t, dir, "")
	out := srv.stdout.String()
	m := keyLines.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no demo key printed:\n%s", out)
	}
	c := newClient(credentials{m[1], m[2]})
	r, err := c.do(context.Background(), "POST", srv.URL+"/generativeagent/v1/call-transfers",
		`{"id":"first","externalConversationId":"c","type":"PHONE_NUMBER","phoneNumber":{"country":"GB"}}`)
	if err != nil || r.status != 200 {
		t.Fatalf("create with the demo key: %v %d %s", err, r.status, r.raw)
	}
	if !strings.HasPrefix(r.body["phoneNumber"].(map[string]any)["transferNumber"].(string), "+44207946") {
		t.Fatalf("not a number of the demo GB pool: %s", r.raw)
	}

	second := startFailing(t, dir)
	if !strings.Contains(second, "in use by another switchback server") {
		t.Fatalf("a second server on the same SQLite file said: %s", second)
	}

	srv.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-srv.done:
	case <-time.After(15 * time.Second):
		t.Fatal("serve did not stop on SIGTERM")
	}
	if code := srv.cmd.ProcessState.ExitCode(); code != 0 {
		t.Fatalf("serve exited %d on SIGTERM: %s", code, srv.stderr)
	}

	// The key is shown once: a restart names it but does not print a secret.
	srv = startServer(t, dir, "")
	if keyLines.MatchString(srv.stdout.String()) || !strings.Contains(srv.stdout.String(), m[1]) {
		t.Fatalf("restart printed:\n%s", srv.stdout)
	}
	if _, err := os.Stat(filepath.Join(dir, "switchback.db")); err != nil {
		t.Fatalf("the default store is not switchback.db in the working directory: %v", err)
	}
}
