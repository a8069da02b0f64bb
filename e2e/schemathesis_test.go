package e2e

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/switchback/switchback/internal/pgtest"
)

// TestSchemathesis runs schemathesis, a contract tester independent of this
// code base, against api/openapi.yaml and a live `switchback serve` on each
// store: it generates valid and invalid requests for every operation and
// fails on any answer that is a 5xx, that the document does not describe
// (status, headers, content type, body schema, the error envelope
// included), that accepts data the document forbids, or that answers an
// undocumented method with anything but 405 and the right Allow. Its run is
// bounded and seeded by e2e/testdata/schemathesis.toml.
//
// scripts/python-deps.sh installs it into .venv/ when it is missing; the
// test fails, and never skips, when that cannot be done.
func TestSchemathesis(t *testing.T) {
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	deps := exec.Command("bash", filepath.Join(root, "scripts", "python-deps.sh"))
	if out, err := deps.CombinedOutput(); err != nil {
		t.Fatalf("scripts/python-deps.sh: %v\n%s", err, out)
	}
	tool := filepath.Join(root, ".venv", "bin", "schemathesis")

	for _, store := range []string{"sqlite", "postgres"} {
		t.Run(store, func(t *testing.T) {
			dir := t.TempDir()
			cfg := filepath.Join(dir, "switchback.yaml")
			// Waits are cut to a second so the generated ones (any timeout
			// the document allows, up to api.maxWait) keep the run short.
			conf := "api:\n  maxWait: 1s\n"
			if store == "postgres" {
				conf += fmt.Sprintf("store:\n  driver: postgres\n  dsn: %q\n", pgtest.NewDatabase(t))
			}
			writeFile(t, cfg, conf)
			srv := startServer(t, dir, cfg)
			key := newKey(t, dir, cfg)

			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
			defer cancel()
			cmd := exec.CommandContext(ctx, tool,
				"--config-file", filepath.Join(root, "e2e", "testdata", "schemathesis.toml"),
				"run", filepath.Join(root, "api", "openapi.yaml"), "--url", srv.URL, "--no-color")
			cmd.Dir = t.TempDir() // for whatever files it leaves
			cmd.Env = append(os.Environ(), "SWITCHBACK_API_ID="+key.id, "SWITCHBACK_API_SECRET="+key.secret)
			var out bytes.Buffer
			cmd.Stdout, cmd.Stderr = &out, &out
			start := time.Now()
			err := cmd.Run()
			if err != nil {
				t.Fatalf("schemathesis on %s failed (%v) after %v:\n%s", store, err, time.Since(start).Round(time.Second), out.String())
			}
			t.Logf("schemathesis on %s passed in %v: %s", store, time.Since(start).Round(time.Second), summary(out.String()))
			if errs := srv.stderr.String(); strings.Contains(errs, `"level":"ERROR"`) {
				t.Fatalf("the server logged errors under schemathesis:\n%s", errs)
			}
		})
	}
}

var testCases = regexp.MustCompile(`\d+ generated[^\n]*`)

// summary is schemathesis's count of the cases it ran.
func summary(out string) string {
	return testCases.FindString(out)
}
