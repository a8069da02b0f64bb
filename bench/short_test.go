package bench

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/switchback/switchback/internal/pgtest"
)

// TestBenchmarksRunInShortMode runs `make bench` (bench/run.sh, which runs
// bench/sip.sh, bench/bridge.sh, bench/stream.sh and bench/fleet.sh
// beside the API benchmark) in its short mode: every benchmark, against
// every server, relay and mode, for a few seconds at a tiny load. It fails
// when any of them does not run end to end or measures nothing, so that
// the benchmarks cannot break unnoticed between two full runs. The figures
// of a short run mean nothing and are not judged. It needs what the benchmarks need (SIPp, Kamailio, rtpengine,
// PostgreSQL: scripts/deps.sh installs them) and takes about a minute;
// -short skips it.
func TestBenchmarksRunInShortMode(t *testing.T) {
	if testing.Short() {
		t.Skip("runs every benchmark for a few seconds")
	}
	dsn := pgtest.DSN(t)
	out := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", "bench/run.sh")
	cmd.Dir = ".." // the repository, as make runs it
	// The short mode's own settings, not the ones a developer may have
	// exported for a full run.
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "BENCH_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, "BENCH_SHORT=1", "BENCH_OUT="+out, "BENCH_PG_DSN="+dsn)
	// The scripts start servers in the background: on a time-out, stop
	// the whole process group, so that their cleanup runs and nothing is
	// left behind.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM) }
	cmd.WaitDelay = 15 * time.Second
	var log bytes.Buffer
	cmd.Stdout, cmd.Stderr = &log, &log
	start := time.Now()
	err := cmd.Run()
	t.Logf("BENCH_SHORT=1 bash bench/run.sh took %s", time.Since(start).Round(100*time.Millisecond))
	if err != nil {
		t.Fatalf("BENCH_SHORT=1 bash bench/run.sh: %v\n%s", err, lastLines(log.String(), 80))
	}

	// Each benchmark's results: one JSON line per run.
	type line struct {
		Kind, Server, Target, Mode, Relay, Codecs string
		RPS                                       float64
		OK, Answered, Received, Echoed            int64
	}
	read := func(name string) []line {
		t.Helper()
		f, err := os.Open(filepath.Join(out, name))
		if err != nil {
			t.Fatalf("no results: %v\n%s", err, lastLines(log.String(), 80))
		}
		defer f.Close()
		var lines []line
		sc := bufio.NewScanner(f)
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			var l line
			if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
				t.Fatalf("%s: %v: %s", name, err, sc.Text())
			}
			lines = append(lines, l)
		}
		return lines
	}
	ran := map[string]bool{}
	for _, l := range read("results.jsonl") {
		ran[fmt.Sprintf("api %s %s %s", l.Server, l.Target, l.Mode)] = l.RPS > 0 && l.OK > 0
	}
	for _, l := range read("sip/results.jsonl") {
		switch l.Kind {
		case "step":
			ran["sip step "+l.Server] = l.OK > 0
		case "media":
			ran["sip media"] = l.Answered > 0 && l.Received > 0
		}
	}
	for _, l := range read("bridge/results.jsonl") {
		ran["bridge "+l.Relay+" "+l.Codecs] = l.Received > 0
	}
	for _, l := range read("stream/results.jsonl") {
		ran["stream "+l.Mode] = l.Echoed > 0
	}
	for _, l := range read("fleet/results.jsonl") {
		if l.Kind == "step" {
			ran["fleet step "+l.Server] = l.OK > 0
		}
	}
	var want []string
	for _, st := range []string{"ceiling ceiling", "sqlite create", "sqlite get", "postgres create", "postgres get"} {
		want = append(want, "api "+st+" sat", "api "+st+" rate")
	}
	want = append(want, "sip step kamailio", "sip step switchback", "sip media")
	for _, relay := range []string{"rtpengine", "switchback"} {
		want = append(want, "bridge "+relay+" PCMU/PCMU", "bridge "+relay+" PCMU/PCMA")
	}
	want = append(want, "stream stream", "stream bridge")
	for _, server := range []string{"ceiling", "one-node", "two-nodes", "slots-none", "slots-100"} {
		want = append(want, "fleet step "+server)
	}
	for _, w := range want {
		measured, found := ran[w]
		switch {
		case !found:
			t.Errorf("%s: did not run", w)
		case !measured:
			t.Errorf("%s: ran but measured nothing", w)
		}
	}
	for _, report := range []string{"report.md", "sip/report.md", "bridge/report.md", "stream/report.md", "fleet/report.md"} {
		if b, err := os.ReadFile(filepath.Join(out, report)); err != nil || len(b) == 0 {
			t.Errorf("%s: %v, %d bytes", report, err, len(b))
		}
	}
	if t.Failed() {
		t.Log(lastLines(log.String(), 80))
	}
}

// lastLines is the end of a script's output.
func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(len(lines)-n, 0):], "\n")
}
