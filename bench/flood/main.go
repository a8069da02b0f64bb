// Command flood is the benchmark of unauthenticated SIP traffic (bench/flood.sh,
// make bench): it runs `switchback serve` with a tenant that takes digest
// credentials from any address, floods it with INVITEs that carry none from
// many loopback addresses, and meanwhile places calls that authenticate.
// It reports the server's live heap and RSS before, at the end of the
// flood and a while after it, the bytes the flood got back per byte it
// sent, and the calls' success and INVITE->200 latency. docs/benchmarks.md
// ("Unauthenticated flood") explains it and holds the figures of a real run.
//
//	flood -bin ./switchback [-sources 2000] [-rate 2500] [-duration 40s] [-after 60s]
//	      [-warmup 20s] [-call-rate 2.5] [-out DIR] [-strict]
//
// Everything runs on loopback: the sources are bound to 127.10.0.1 and up
// (Linux routes all of 127.0.0.0/8 to lo). Calls are placed from the
// start, through the flood, and for -after past it, when the server is
// sampled for the last time.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"time"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "flood:", err)
		os.Exit(1)
	}
}

// settings are the benchmark's flags.
type settings struct {
	bin      string
	label    string
	sources  int
	rate     int
	duration time.Duration
	after    time.Duration
	warmup   time.Duration
	callRate float64
	out      string
	strict   bool
}

func run(args []string) error {
	var s settings
	fs := flag.NewFlagSet("flood", flag.ContinueOnError)
	fs.StringVar(&s.bin, "bin", "", "the switchback binary to run (required)")
	fs.StringVar(&s.label, "label", "", "a name for this run in the report (default the binary's path)")
	fs.IntVar(&s.sources, "sources", 2000, "source addresses of the flood, 127.10.0.1 and up")
	fs.IntVar(&s.rate, "rate", 2500, "unauthenticated INVITEs a second")
	fs.DurationVar(&s.duration, "duration", 40*time.Second, "how long the flood and the calls last")
	fs.DurationVar(&s.after, "after", 60*time.Second, "how long the server is watched after the flood")
	fs.DurationVar(&s.warmup, "warmup", 20*time.Second, "how long calls run before the baseline is taken")
	fs.Float64Var(&s.callRate, "call-rate", 2.5, "authenticated calls placed a second, from the warm-up to the end")
	fs.StringVar(&s.out, "out", "", "directory for results.json and the server's log (default a new temporary one)")
	fs.BoolVar(&s.strict, "strict", false, "exit 1 when a target is missed")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if s.bin == "" {
		return errors.New("-bin is required")
	}
	if s.sources < 1 || s.sources > 250*250 || s.rate < 1 || s.duration <= 0 {
		return errors.New("-sources must be 1 to 62500, -rate and -duration positive")
	}
	if s.label == "" {
		s.label = s.bin
	}
	if s.out == "" {
		var err error
		if s.out, err = os.MkdirTemp("", "switchback-flood."); err != nil {
			return err
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	srv, err := startServer(ctx, s)
	if err != nil {
		return err
	}
	defer srv.stop()
	logf("switchback (pid %d): API %s, SIP %s", srv.cmd.Process.Pid, srv.api, srv.sip)

	// Calls go on before, through and after the flood, as on a node in
	// service; they also keep the collector running, so the live heap is
	// measured after the flood too. The baseline is taken once the calls
	// have run for -warmup, so it holds what calls leave behind (caches
	// and the like), and after a collection.
	calls := int(s.callRate*(s.warmup+s.duration+s.after+30*time.Second).Seconds()) + 10 // and the wait for a collection
	ids, err := srv.createTransfers(ctx, calls)
	if err != nil {
		return err
	}
	caller := &caller{server: srv.sip, user: "ivr", password: benchPassword}
	results := make(chan callResult, calls)
	callCtx, endCalls := context.WithCancel(ctx)
	defer endCalls()
	var calling sync.WaitGroup
	calling.Add(1)
	go func() {
		defer calling.Done()
		placeCalls(callCtx, caller, ids, s.callRate, results)
		close(results)
	}()
	warmCtx, endWarm := context.WithTimeout(ctx, s.warmup)
	defer endWarm()
	srv.watch(warmCtx)
	for n := srv.gc.count(); srv.gc.count() == n && ctx.Err() == nil; {
		time.Sleep(100 * time.Millisecond)
	}
	floodStart := time.Now()
	base := srv.sample()
	logf("baseline, after %s of calls: %s", s.warmup, base)

	f, err := newFlood(s.sources, s.rate)
	if err != nil {
		return err
	}
	defer f.close()
	floodCtx, endFlood := context.WithTimeout(ctx, s.duration)
	defer endFlood()
	var flooding sync.WaitGroup
	flooding.Add(1)
	go func() { defer flooding.Done(); f.run(floodCtx, srv.sip) }()
	peak := srv.watch(floodCtx)
	flooding.Wait()
	floodEnd := time.Now()
	end := srv.sample()
	logf("end of the flood: %s", end)
	afterCtx, endAfter := context.WithTimeout(ctx, s.after)
	defer endAfter()
	srv.watch(afterCtx)
	if ctx.Err() != nil {
		return ctx.Err()
	}
	later := srv.sample()
	logf("%s after: %s", s.after, later)
	endCalls()
	calling.Wait()
	var during, after []callResult
	for r := range results {
		switch {
		case r.start.Before(floodStart):
		case r.start.Before(floodEnd):
			during = append(during, r)
		default:
			after = append(after, r)
		}
	}

	rep := newReport(s, base, end, later, peak, f.totals(), during, after, srv)
	b, _ := json.MarshalIndent(rep, "", "  ")
	if err := os.WriteFile(filepath.Join(s.out, "results.json"), b, 0o644); err != nil {
		return err
	}
	fmt.Print(rep.markdown())
	logf("results in %s", s.out)
	if s.strict && len(rep.Missed) > 0 {
		return fmt.Errorf("targets missed: %s", strings.Join(rep.Missed, "; "))
	}
	return nil
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "flood: "+format+"\n", args...)
}

// benchPassword is the digest password of the tenant's one user.
const benchPassword = "flood-bench-pass"

// serverConfig is the node under test: one tenant that takes digest
// credentials from any address, whose calls the menu agent hands back at
// once. MD5 is offered first for clients that read one challenge.
const serverConfig = `
store: {driver: sqlite, dsn: %q}
sip:
  listen: 127.0.0.1:0
  rtpPorts: {min: 31000, max: 31999}
  digestAlgorithms: [MD5, SHA-256]
  trunks: []  # the default trunk would take all of loopback by its address
tenants:
  - id: open
    sipTTL: 10m  # the calls' transfers are all created at the start
    sip: {user: open, users: [{username: ivr, password: %s}]}
    rateLimit: {requestsPerSecond: 10000, burst: 10000}
    agents:
      - menu: {digitTimeout: 0s, default: {transferType: SYSTEM, taskName: flood-bench}}
log: {level: warn}
`

// server is the running `switchback serve`.
type server struct {
	cmd      *exec.Cmd
	dir      string
	api, sip string
	keyID    string
	secret   string
	gc       *gcTrace
	done     chan struct{}
	http     *http.Client
}

var (
	apiLine = regexp.MustCompile(`Switchback API on (http://\S+)`)
	sipLine = regexp.MustCompile(`Switchback SIP on (\S+)`)
	keyLine = regexp.MustCompile(`asapp-api-id: (\S+)\s+asapp-api-secret: (\S+)`)
)

func startServer(ctx context.Context, s settings) (*server, error) {
	dir := filepath.Join(s.out, "server")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	cfg := filepath.Join(dir, "switchback.yaml")
	if err := os.WriteFile(cfg, fmt.Appendf(nil, serverConfig, filepath.Join(dir, "sb.db"), benchPassword), 0o644); err != nil {
		return nil, err
	}
	out, err := exec.CommandContext(ctx, s.bin, "keys", "create", "--config", cfg, "--tenant", "open").CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("keys create: %v: %s", err, out)
	}
	m := keyLine.FindStringSubmatch(string(out))
	if m == nil {
		return nil, fmt.Errorf("no key in %q", out)
	}
	srv := &server{dir: dir, keyID: m[1], secret: m[2], gc: &gcTrace{}, done: make(chan struct{}),
		http: &http.Client{Timeout: 10 * time.Second}}
	srv.cmd = exec.Command(s.bin, "serve", "--config", cfg)
	srv.cmd.Dir = dir
	// gctrace: each collection prints the heap it found live.
	srv.cmd.Env = append(os.Environ(), "SWITCHBACK_API_LISTEN=127.0.0.1:0", "SWITCHBACK_SIP_LISTEN=127.0.0.1:0", "GODEBUG=gctrace=1")
	stdout, err := srv.cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	stderr, err := srv.cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	logFile, err := os.Create(filepath.Join(s.out, "server.log"))
	if err != nil {
		return nil, err
	}
	if err := srv.cmd.Start(); err != nil {
		return nil, err
	}
	go func() { srv.cmd.Wait(); logFile.Close(); close(srv.done) }()
	go srv.gc.read(io.TeeReader(stderr, logFile))
	found := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			line := sc.Text()
			if m := apiLine.FindStringSubmatch(line); m != nil {
				srv.api = m[1]
			}
			if m := sipLine.FindStringSubmatch(line); m != nil {
				srv.sip = m[1]
			}
			if srv.api != "" && srv.sip != "" && found != nil {
				close(found)
				found = nil
			}
		}
	}()
	select {
	case <-found:
	case <-srv.done:
		return nil, errors.New("switchback serve exited; see server.log")
	case <-time.After(30 * time.Second):
		srv.stop()
		return nil, errors.New("switchback serve did not start")
	}
	for i := 0; ; i++ {
		res, err := srv.http.Get(srv.api + "/healthz")
		if err == nil {
			res.Body.Close()
			if res.StatusCode == 200 {
				return srv, nil
			}
		}
		if i == 100 {
			srv.stop()
			return nil, fmt.Errorf("healthz never answered: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (s *server) stop() {
	if s.cmd.Process == nil {
		return
	}
	s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.done:
	case <-time.After(15 * time.Second):
		s.cmd.Process.Kill()
		<-s.done
	}
}

// createTransfers creates n SIP transfers for the calls to use.
func (s *server) createTransfers(ctx context.Context, n int) ([]string, error) {
	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprintf("flood-call-%d", i)
		body := fmt.Sprintf(`{"id":%q,"externalConversationId":"c-%d","type":"SIP"}`, ids[i], i)
		req, err := http.NewRequestWithContext(ctx, "POST", s.api+"/generativeagent/v1/call-transfers", strings.NewReader(body))
		if err != nil {
			return nil, err
		}
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("asapp-api-id", s.keyID)
		req.Header.Set("asapp-api-secret", s.secret)
		res, err := s.http.Do(req)
		if err != nil {
			return nil, err
		}
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != 200 {
			return nil, fmt.Errorf("create %s: %d %s", ids[i], res.StatusCode, b)
		}
	}
	return ids, nil
}
