// Package pgtest gives tests a real PostgreSQL: the one named by
// SWITCHBACK_TEST_POSTGRES_DSN, or a throwaway cluster that
// scripts/pg-test-cluster.sh starts on this machine. A test that cannot get
// one fails; it is never skipped, so a green run always covered PostgreSQL.
package pgtest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// EnvDSN names the environment variable that points the tests at an existing
// PostgreSQL instead of the throwaway cluster. Its user must be allowed to
// create databases.
const EnvDSN = "SWITCHBACK_TEST_POSTGRES_DSN"

var cluster struct {
	once sync.Once
	dsn  string
	err  error
}

// DSN returns the DSN of the PostgreSQL the tests use, starting the
// throwaway cluster the first time a process needs it. It fails t if there
// is none.
func DSN(t testing.TB) string {
	t.Helper()
	if dsn := os.Getenv(EnvDSN); dsn != "" {
		return dsn
	}
	cluster.once.Do(func() { cluster.dsn, cluster.err = startCluster() })
	if cluster.err != nil {
		t.Fatalf("pgtest: no PostgreSQL for the tests (set %s to use your own): %v", EnvDSN, cluster.err)
	}
	return cluster.dsn
}

// startCluster runs scripts/pg-test-cluster.sh, which may have to install
// PostgreSQL first, and returns the DSN it prints.
func startCluster() (string, error) {
	root, err := repoRoot()
	if err != nil {
		return "", err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, "bash", filepath.Join(root, "scripts", "pg-test-cluster.sh"))
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	// The server it starts must not keep our pipes open; if it ever did,
	// give up waiting on them rather than hang the test binary.
	cmd.WaitDelay = 10 * time.Second
	if err := cmd.Run(); err != nil && !errors.Is(err, exec.ErrWaitDelay) {
		return "", fmt.Errorf("scripts/pg-test-cluster.sh: %w\n%s", err, stderr.Bytes())
	}
	dsn := strings.TrimSpace(stdout.String())
	if dsn == "" {
		return "", fmt.Errorf("scripts/pg-test-cluster.sh printed no DSN\n%s", stderr.Bytes())
	}
	return dsn, nil
}

// repoRoot walks up from the working directory, which go test sets to the
// package's, to the directory holding go.mod.
func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no go.mod above the working directory")
		}
		dir = parent
	}
}

// NewDatabase creates an empty database for one test, drops it (closing any
// connections left to it) when the test ends, and returns its DSN.
func NewDatabase(t testing.TB) string {
	t.Helper()
	dsn := DSN(t)
	name := "switchback_test_" + randomHex(t, 8)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := admin(ctx, dsn, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		t.Fatalf("pgtest: create database %s: %v", name, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := admin(ctx, dsn, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)"); err != nil {
			t.Errorf("pgtest: drop database %s: %v", name, err)
		}
	})
	out, err := withDatabase(dsn, name)
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	return out
}

// admin runs one statement on a connection of its own: CREATE and DROP
// DATABASE cannot run inside a transaction or a pooled session.
func admin(ctx context.Context, dsn, sql string) error {
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	_, err = conn.Exec(ctx, sql)
	return err
}

// withDatabase returns dsn pointing at database name instead, in the form
// (URL or keyword/value) dsn was written in.
func withDatabase(dsn, name string) (string, error) {
	if strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://") {
		u, err := url.Parse(dsn)
		if err != nil {
			return "", fmt.Errorf("parse %s: %w", EnvDSN, err)
		}
		u.Path = "/" + name
		u.RawPath = ""
		return u.String(), nil
	}
	// In a keyword/value string the last setting of a keyword wins.
	return dsn + " dbname=" + name, nil
}

func randomHex(t testing.TB, n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	return hex.EncodeToString(b)
}
