package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// runCmd runs the program with a config naming a fresh SQLite store.
func runCmd(t *testing.T, cfg string, args ...string) (string, error) {
	t.Helper()
	var out, errb bytes.Buffer
	getenv := func(k string) string {
		if k == "SWITCHBACK_CONFIG" {
			return cfg
		}
		return ""
	}
	err := run(context.Background(), args, getenv, strings.NewReader(""), &out, &errb)
	return out.String() + errb.String(), err
}

func testConfig(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	cfg := filepath.Join(dir, "sb.yaml")
	os.WriteFile(cfg, []byte("store: {dsn: "+filepath.Join(dir, "sb.db")+"}\ntenants: [{id: demo}, {id: acme}]\n"+
		"pool: {numbers: [{country: US, numbers: ['+12025550100-0101']}]}\n"), 0o600)
	return cfg
}

func TestKeysCreateListRevoke(t *testing.T) {
	cfg := testConfig(t)
	out, err := runCmd(t, cfg, "keys", "create", "--tenant", "acme", "--name", "ivr")
	if err != nil {
		t.Fatal(err, out)
	}
	m := regexp.MustCompile(`asapp-api-id: (sbk_\S+)\nasapp-api-secret: (\S+)`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("keys create printed %q", out)
	}
	list, err := runCmd(t, cfg, "keys", "list")
	if err != nil || !strings.Contains(list, m[1]) || !strings.Contains(list, "acme") || strings.Contains(list, m[2]) {
		t.Fatalf("keys list (must show the key, never its secret): %v\n%s", err, list)
	}
	if out, err := runCmd(t, cfg, "keys", "revoke", m[1]); err != nil || !strings.Contains(out, "revoked") {
		t.Fatalf("revoke: %v %s", err, out)
	}
	if _, err := runCmd(t, cfg, "keys", "revoke", "sbk_missing"); err == nil || !strings.Contains(err.Error(), "not found") {
		t.Fatalf("revoking an unknown key: %v", err)
	}
	if _, err := runCmd(t, cfg, "keys", "create", "--tenant", "nobody"); err == nil || !strings.Contains(err.Error(), "--tenant") {
		t.Fatalf("unknown tenant: %v", err)
	}
}

func TestNumbersAddListRemove(t *testing.T) {
	cfg := testConfig(t)
	if out, err := runCmd(t, cfg, "numbers", "add", "--country", "gb", "--tenant", "acme", "+442079460000-0002"); err != nil || !strings.Contains(out, "added 3") {
		t.Fatalf("add: %v %s", err, out)
	}
	out, err := runCmd(t, cfg, "numbers", "list", "--json")
	if err != nil {
		t.Fatal(err)
	}
	var got struct {
		Pools []struct {
			Country    string
			Size, Free int
		}
		Numbers []struct{ Number, Country, Tenant, State string }
	}
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("list --json: %v\n%s", err, out)
	}
	if len(got.Pools) != 1 || got.Pools[0].Country != "GB" || got.Pools[0].Size != 3 || got.Pools[0].Free != 3 ||
		got.Numbers[0].Tenant != "acme" || got.Numbers[0].State != "free" {
		t.Fatalf("list = %+v", got)
	}
	table, _ := runCmd(t, cfg, "numbers", "list", "--country", "GB")
	if !strings.Contains(table, "+442079460001") || !strings.Contains(table, "QUARANTINED") {
		t.Fatalf("table:\n%s", table)
	}
	if out, err := runCmd(t, cfg, "numbers", "remove", "+442079460002"); err != nil || !strings.Contains(out, "removed 1") {
		t.Fatalf("remove: %v %s", err, out)
	}
	for _, bad := range [][]string{
		{"numbers", "add", "--country", "XX", "+12025550100"},
		{"numbers", "add", "--country", "US", "12025550100"},
		{"numbers", "remove", "+19999999999"},
	} {
		if _, err := runCmd(t, cfg, bad...); err == nil {
			t.Errorf("%v succeeded", bad)
		}
	}
}

func TestServeRefusesABadConfigNamingTheField(t *testing.T) {
	cfg := filepath.Join(t.TempDir(), "bad.yaml")
	os.WriteFile(cfg, []byte("tenants: [{id: demo, phoneNumberTTL: -1s}]\npool: {numbers: [{country: XX, numbers: ['+12025550100']}]}\n"), 0o600)
	_, err := runCmd(t, cfg, "serve")
	if err == nil || !strings.Contains(err.Error(), "tenants[0].phoneNumberTTL") || !strings.Contains(err.Error(), "pool.numbers[0].country") {
		t.Fatalf("serve with a bad config: %v", err)
	}
	if _, err := runCmd(t, "", "frobnicate"); err == nil || !strings.Contains(err.Error(), "frobnicate") {
		t.Fatalf("unknown command: %v", err)
	}
	if out, err := runCmd(t, "", "config", "example"); err != nil || !strings.Contains(out, "tenants:") {
		t.Fatalf("config example: %v", err)
	}
}
