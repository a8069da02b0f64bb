// Command loadgen is the HTTP load generator of the API benchmark
// (bench/run.sh). It drives one target of one server for a bounded time and
// prints one JSON line with the achieved rate and the latency percentiles.
//
//	loadgen -url http://127.0.0.1:8080 -target create -mode sat -conns 32 -duration 5s
//	loadgen -url http://127.0.0.1:8080 -target get -mode rate -rate 1500 -duration 5s
//	loadgen report results.jsonl
//
// Modes:
//
//   - sat: closed loop. -conns workers each send a request, wait for its
//     answer and send the next, as fast as the server allows, for
//     -duration after a -warmup that is not measured. Latency is from send
//     to the end of the response body.
//   - rate: open loop. Requests are scheduled at -rate per second for
//     -duration whatever the answers, and handed to up to -conns workers.
//     Latency is measured from each request's scheduled send time, so a
//     slow server (or a late client) shows in the percentiles instead of
//     silently lowering the rate (no coordinated omission).
//
// A third mode, seed, only creates the transfers of a get run's -ids-file,
// so that runs can share them and none has to pay for them.
//
// Both modes stop by themselves: after -duration, after -max-requests
// requests, and in-flight requests are cut off -drain after the end.
//
// Targets:
//
//   - ceiling: GET / (the bench/ceiling server).
//   - create: POST /generativeagent/v1/call-transfers of a SIP transfer with
//     a unique id and a small inputContext.
//   - get: GET /generativeagent/v1/call-transfers/{id} of -seed transfers
//     created (and not measured) before the run.
//
// Every answer other than 200 is counted, per status, in the output, as is
// every transport error; the rate counts only 200s.
package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/switchback/switchback/bench/internal/procstat"
)

const transfersPath = "/generativeagent/v1/call-transfers"

func main() {
	if len(os.Args) > 1 && os.Args[1] == "rate-of" {
		if err := runRateOf(os.Args[2:], os.Stdout); err != nil {
			fmt.Fprintln(os.Stderr, "loadgen rate-of:", err)
			os.Exit(1)
		}
		return
	}
	if len(os.Args) > 1 && os.Args[1] == "report" {
		if err := runReport(os.Args[2:], os.Stdout); err != nil {
			fmt.Fprintln(os.Stderr, "loadgen report:", err)
			os.Exit(1)
		}
		return
	}
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "loadgen:", err)
		os.Exit(1)
	}
}

type options struct {
	url         string
	server      string
	target      string
	mode        string
	conns       int
	rate        float64
	duration    time.Duration
	warmup      time.Duration
	drain       time.Duration
	maxRequests int
	seed        int
	apiID       string
	apiSecret   string
	timeout     time.Duration
	round       int
	serverPIDs  []int
	idsFile     string
}

// Result is the JSON line printed for a run.
type Result struct {
	Server      string         `json:"server"`
	Target      string         `json:"target"`
	Mode        string         `json:"mode"`
	Round       int            `json:"round,omitempty"`
	Conns       int            `json:"conns"`
	OfferedRPS  float64        `json:"offered_rps,omitempty"`
	Started     string         `json:"started"`
	Seconds     float64        `json:"seconds"`
	Requests    int            `json:"requests"`
	OK          int            `json:"ok"`
	Non200      int            `json:"non200"`
	Statuses    map[string]int `json:"statuses,omitempty"`
	Errors      int            `json:"errors"`
	FirstError  string         `json:"first_error,omitempty"`
	RPS         float64        `json:"rps"`
	MeanMS      float64        `json:"mean_ms"`
	P50MS       float64        `json:"p50_ms"`
	P90MS       float64        `json:"p90_ms"`
	P99MS       float64        `json:"p99_ms"`
	MaxMS       float64        `json:"max_ms"`
	SendLagP99M float64        `json:"send_lag_p99_ms,omitempty"`
	// Shares of the machine's CPU (all cores) during the measured run.
	CPULoadgen *float64 `json:"cpu_loadgen_pct,omitempty"`
	CPUServer  *float64 `json:"cpu_server_pct,omitempty"`
	CPUOther   *float64 `json:"cpu_other_pct,omitempty"`
}

func run(args []string) error {
	var o options
	fs := flag.NewFlagSet("loadgen", flag.ContinueOnError)
	fs.StringVar(&o.url, "url", "", "base URL of the server, e.g. http://127.0.0.1:8080 (required)")
	fs.StringVar(&o.server, "server", "", "name of the server in the output (e.g. ceiling, sqlite, postgres)")
	fs.StringVar(&o.target, "target", "ceiling", "ceiling, create or get")
	fs.StringVar(&o.mode, "mode", "sat", "sat (closed loop, -conns workers), rate (open loop at -rate req/s) or seed (only create the -ids-file of a get run)")
	fs.IntVar(&o.conns, "conns", 32, "workers (and at most as many connections); in rate mode, the most requests in flight")
	fs.Float64Var(&o.rate, "rate", 0, "requests per second to offer in rate mode")
	fs.DurationVar(&o.duration, "duration", 5*time.Second, "how long to measure")
	fs.DurationVar(&o.warmup, "warmup", time.Second, "unmeasured load before a sat run")
	fs.DurationVar(&o.drain, "drain", 10*time.Second, "how long after -duration requests still in flight may take before they are cut off")
	fs.IntVar(&o.maxRequests, "max-requests", 2_000_000, "stop after this many measured requests")
	fs.IntVar(&o.seed, "seed", 2000, "transfers to create before a get run, whose ids the run reads")
	fs.StringVar(&o.apiID, "api-id", os.Getenv("SWITCHBACK_API_ID"), "asapp-api-id (env SWITCHBACK_API_ID)")
	fs.StringVar(&o.apiSecret, "api-secret", os.Getenv("SWITCHBACK_API_SECRET"), "asapp-api-secret (env SWITCHBACK_API_SECRET)")
	fs.DurationVar(&o.timeout, "timeout", 10*time.Second, "per-request timeout")
	fs.IntVar(&o.round, "round", 0, "round number to put in the output")
	pids := fs.String("server-pids", "", "comma-separated pids of the server's processes, whose CPU (with their descendants') is reported")
	fs.StringVar(&o.idsFile, "ids-file", "", "get: read the ids from this file if it exists; else seed and write them to it")
	if err := fs.Parse(args); err != nil {
		return err
	}
	var err error
	if o.serverPIDs, err = procstat.ParsePIDs(*pids); err != nil {
		return fmt.Errorf("-server-pids: %w", err)
	}
	switch {
	case o.url == "":
		return errors.New("-url is required")
	case o.conns < 1:
		return errors.New("-conns must be at least 1")
	case o.mode == "rate" && o.rate <= 0:
		return errors.New("-rate must be positive in rate mode")
	case o.mode != "sat" && o.mode != "rate" && o.mode != "seed":
		return fmt.Errorf("-mode %q is not sat, rate or seed", o.mode)
	case o.mode == "seed" && (o.target != "get" || o.idsFile == ""):
		return errors.New("-mode seed is for -target get with an -ids-file")
	case o.duration <= 0 || o.maxRequests < 1:
		return errors.New("-duration and -max-requests must be positive")
	}
	if o.server == "" {
		o.server = o.target
	}

	client := newClient(o)
	tg, err := newTarget(o, client)
	if err != nil || o.mode == "seed" {
		return err
	}
	var res *Result
	if o.mode == "sat" && o.warmup > 0 {
		closedLoop(client, tg, o.conns, o.warmup, o.maxRequests, o.timeout)
	}
	procs := procstat.Reader{Server: o.serverPIDs, Self: true}
	before := procs.Read()
	if o.mode == "sat" {
		res = closedLoop(client, tg, o.conns, o.duration, o.maxRequests, o.timeout)
	} else {
		res = openLoop(client, tg, o)
	}
	if self, server, other, ok := cpuShares(before, procs.Read(), res.Seconds); ok {
		res.CPULoadgen, res.CPUOther = &self, &other
		if len(o.serverPIDs) > 0 {
			res.CPUServer = &server
		}
	}
	res.Server, res.Target, res.Mode, res.Conns, res.Round = o.server, o.target, o.mode, o.conns, o.round
	if o.mode == "rate" {
		res.OfferedRPS = o.rate
	}
	line, _ := json.Marshal(res)
	fmt.Println(string(line))
	return nil
}

// newClient returns a keep-alive client that can hold a connection per worker.
func newClient(o options) *http.Client {
	tr := &http.Transport{
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:        o.conns + 64,
		MaxIdleConnsPerHost: o.conns + 64,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
		ForceAttemptHTTP2:   false,
	}
	return &http.Client{Transport: tr}
}

// target makes the requests of a run; i numbers them from 0.
type target struct {
	newRequest func(ctx context.Context, i int64) (*http.Request, error)
}

func newTarget(o options, client *http.Client) (*target, error) {
	auth := func(r *http.Request) {
		r.Header.Set("asapp-api-id", o.apiID)
		r.Header.Set("asapp-api-secret", o.apiSecret)
	}
	needKey := func() error {
		if o.apiID == "" || o.apiSecret == "" {
			return fmt.Errorf("target %s needs -api-id and -api-secret", o.target)
		}
		return nil
	}
	switch o.target {
	case "ceiling":
		u := o.url + "/"
		return &target{func(ctx context.Context, _ int64) (*http.Request, error) {
			return http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
		}}, nil
	case "create":
		if err := needKey(); err != nil {
			return nil, err
		}
		return createTarget(o.url, runPrefix("c"), auth), nil
	case "get":
		if err := needKey(); err != nil {
			return nil, err
		}
		ids, err := loadIDs(o.idsFile)
		if err != nil {
			return nil, err
		}
		if len(ids) == 0 {
			if ids, err = seedTransfers(client, o, auth); err != nil {
				return nil, err
			}
			if o.idsFile != "" {
				if err := os.WriteFile(o.idsFile, []byte(strings.Join(ids, "\n")+"\n"), 0o644); err != nil {
					return nil, err
				}
			}
		}
		base := o.url + transfersPath + "/"
		return &target{func(ctx context.Context, i int64) (*http.Request, error) {
			r, err := http.NewRequestWithContext(ctx, http.MethodGet, base+ids[int(i%int64(len(ids)))], nil)
			if err == nil {
				auth(r)
			}
			return r, err
		}}, nil
	}
	return nil, fmt.Errorf("-target %q is not ceiling, create or get", o.target)
}

// runPrefix makes ids unique across runs against the same store.
func runPrefix(kind string) string {
	b := make([]byte, 4)
	rand.Read(b)
	return "bench-" + kind + "-" + strconv.FormatInt(time.Now().Unix(), 36) + hex.EncodeToString(b) + "-"
}

func createTarget(baseURL, prefix string, auth func(*http.Request)) *target {
	u := baseURL + transfersPath
	return &target{func(ctx context.Context, i int64) (*http.Request, error) {
		n := strconv.FormatInt(i, 10)
		body := `{"id":"` + prefix + n + `","externalConversationId":"conv-` + prefix + n + `","type":"SIP",` +
			`"inputContext":{"taskName":"billing-dispute","inputVariables":{"customerId":"C-` + n + `","intent":"refund"}}}`
		r, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader([]byte(body)))
		if err == nil {
			r.Header.Set("Content-Type", "application/json")
			auth(r)
		}
		return r, err
	}}
}

// loadIDs reads the ids of an -ids-file, if there is one.
func loadIDs(path string) ([]string, error) {
	if path == "" {
		return nil, nil
	}
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	} else if err != nil {
		return nil, err
	}
	return strings.Fields(string(b)), nil
}

// seedTransfers creates o.seed transfers for a get run and returns their ids.
func seedTransfers(client *http.Client, o options, auth func(*http.Request)) ([]string, error) {
	prefix := runPrefix("g")
	tg := createTarget(o.url, prefix, auth)
	var (
		next   atomic.Int64
		failed atomic.Int64
		first  sync.Once
		ferr   error
		wg     sync.WaitGroup
	)
	ok := make([]bool, o.seed)
	for w := 0; w < min(o.conns, 16); w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1) - 1
				if i >= int64(o.seed) {
					return
				}
				status, _, err := do(client, tg, i, o.timeout)
				if err != nil || status != http.StatusOK {
					failed.Add(1)
					first.Do(func() { ferr = fmt.Errorf("status %d, err %v", status, err) })
					continue
				}
				ok[i] = true
			}
		}()
	}
	wg.Wait()
	var ids []string
	for i, good := range ok {
		if good {
			ids = append(ids, prefix+strconv.Itoa(i))
		}
	}
	if failed.Load() > 0 || len(ids) == 0 {
		return nil, fmt.Errorf("seeding %d transfers: %d failed (first: %v)", o.seed, failed.Load(), ferr)
	}
	return ids, nil
}

// outcome is one request's.
type outcome struct {
	latency time.Duration
	lag     time.Duration // open loop: from the scheduled time to the send
	status  int
	err     error
}

// do sends request i, reads the whole answer and returns its status and
// when it ended.
func do(client *http.Client, tg *target, i int64, timeout time.Duration) (int, time.Time, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	req, err := tg.newRequest(ctx, i)
	if err != nil {
		return 0, time.Now(), err
	}
	res, err := client.Do(req)
	if err != nil {
		return 0, time.Now(), err
	}
	_, err = io.Copy(io.Discard, res.Body)
	res.Body.Close()
	return res.StatusCode, time.Now(), err
}

// closedLoop runs conns workers back to back for d.
func closedLoop(client *http.Client, tg *target, conns int, d time.Duration, maxRequests int, timeout time.Duration) *Result {
	var (
		next atomic.Int64
		wg   sync.WaitGroup
	)
	per := make([][]outcome, conns)
	start := time.Now()
	deadline := start.Add(d)
	for w := 0; w < conns; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			out := make([]outcome, 0, 4096)
			for time.Now().Before(deadline) {
				i := next.Add(1) - 1
				if i >= int64(maxRequests) {
					break
				}
				sent := time.Now()
				status, end, err := do(client, tg, i, timeout)
				out = append(out, outcome{latency: end.Sub(sent), status: status, err: err})
			}
			per[w] = out
		}(w)
	}
	wg.Wait()
	return summarize(slices.Concat(per...), start, time.Now(), 0)
}

// openLoop offers o.rate requests per second for o.duration.
func openLoop(client *http.Client, tg *target, o options) *Result {
	total := min(int(o.rate*o.duration.Seconds()), o.maxRequests)
	interval := time.Duration(float64(time.Second) / o.rate)
	type job struct {
		i   int64
		due time.Time
	}
	jobs := make(chan job, min(total, 1<<20))
	var wg sync.WaitGroup
	per := make([][]outcome, o.conns)
	start := time.Now()
	cutoff := start.Add(o.duration + o.drain)
	for w := 0; w < o.conns; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			var out []outcome
			for j := range jobs {
				now := time.Now()
				left := cutoff.Sub(now)
				if left <= 0 {
					out = append(out, outcome{latency: now.Sub(j.due), err: errors.New("not sent before the drain deadline")})
					continue
				}
				status, end, err := do(client, tg, j.i, min(o.timeout, left))
				out = append(out, outcome{latency: end.Sub(j.due), lag: now.Sub(j.due), status: status, err: err})
			}
			per[w] = out
		}(w)
	}
	// Hand out every request at its scheduled time; if the scheduler itself
	// wakes late, the requests it owes go out at once, still timed from
	// their schedule.
	for i := 0; i < total; {
		now := time.Now()
		for ; i < total; i++ {
			due := start.Add(time.Duration(i) * interval)
			if due.After(now) {
				break
			}
			jobs <- job{int64(i), due}
		}
		if i < total {
			time.Sleep(time.Until(start.Add(time.Duration(i) * interval)))
		}
	}
	close(jobs)
	wg.Wait()
	return summarize(slices.Concat(per...), start, time.Now(), 1)
}

func summarize(outs []outcome, start, end time.Time, open int) *Result {
	r := &Result{Started: start.UTC().Format(time.RFC3339), Seconds: end.Sub(start).Seconds(), Requests: len(outs)}
	lat := make([]time.Duration, 0, len(outs))
	var lags []time.Duration
	var sum time.Duration
	for _, o := range outs {
		lat = append(lat, o.latency)
		sum += o.latency
		if open == 1 {
			lags = append(lags, o.lag)
		}
		switch {
		case o.err != nil:
			r.Errors++
			if r.FirstError == "" {
				r.FirstError = o.err.Error()
			}
		case o.status == http.StatusOK:
			r.OK++
		default:
			r.Non200++
			if r.Statuses == nil {
				r.Statuses = map[string]int{}
			}
			r.Statuses[strconv.Itoa(o.status)]++
		}
	}
	if r.Seconds > 0 {
		r.RPS = round(float64(r.OK)/r.Seconds, 1)
	}
	r.Seconds = round(r.Seconds, 3)
	if len(lat) > 0 {
		sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
		r.MeanMS = ms(sum / time.Duration(len(lat)))
		r.P50MS, r.P90MS, r.P99MS = ms(pct(lat, 50)), ms(pct(lat, 90)), ms(pct(lat, 99))
		r.MaxMS = ms(lat[len(lat)-1])
	}
	if len(lags) > 0 {
		sort.Slice(lags, func(i, j int) bool { return lags[i] < lags[j] })
		r.SendLagP99M = ms(pct(lags, 99))
	}
	return r
}

// pct is the nearest-rank percentile of sorted durations.
func pct(sorted []time.Duration, p float64) time.Duration {
	k := int(float64(len(sorted))*p/100+0.999999) - 1
	return sorted[max(0, min(k, len(sorted)-1))]
}

func ms(d time.Duration) float64 { return round(float64(d)/float64(time.Millisecond), 3) }

func round(x float64, places int) float64 {
	p := 1.0
	for range places {
		p *= 10
	}
	return float64(int64(x*p+0.5)) / p
}
