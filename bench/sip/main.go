// Command sipbench is the Go side of bench/sip.sh, the SIP benchmark:
// SIPp driving complete calls against Switchback and against a stateless
// Kamailio (the machine's fast-C-server ceiling), and concurrent calls
// receiving the agent's G.711 audio. docs/benchmarks.md ("SIP calls")
// explains the method and holds the figures of a real run.
//
//	sipbench seed   -url URL -api-id ID -api-secret S -n N -o FILE [-task T]
//	    creates N SIP transfers over the API, concurrently, and writes their
//	    ids one a line (each call of the benchmark uses up one ACTIVE transfer)
//	sipbench wav    -o FILE -seconds 60
//	    writes a tone as an 8 kHz WAV file: the greeting the media test's
//	    agent plays, so it sends audio the whole call
//	sipbench step   -server NAME -rate R -inf CSV -scenario XML -dest ADDR -pids PID...
//	    runs SIPp once at R calls/s, samples the server's CPU and memory
//	    meanwhile, and prints one JSON line
//	sipbench media  -dest ADDR -ids FILE -n N -hold 15s -pids PID
//	    places N calls itself, holds them, measures the RTP each receives
//	    from the agent, and prints one JSON line
//	sipbench report RESULTS.jsonl
//	    prints the markdown tables and the targets' verdicts
//	sipbench fleet-report RESULTS.jsonl
//	    the same for bench/fleet.sh: the runs through Kamailio's dispatcher
//	    (two nodes, one node, the ceiling) and by call limit, with ratios
//	sipbench serve  -config FILE -pprof ADDR [-call-limit=false]
//	    switchback serve, wired the same way, with Go's profiler, and
//	    optionally without the tenants' call limit (bench/fleet.sh runs it
//	    both ways; otherwise for finding where the time goes)
package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/switchback/switchback/internal/media"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: sipbench seed|wav|step|media|report|fleet-report|serve [flags]")
		os.Exit(2)
	}
	var err error
	args := os.Args[2:]
	switch os.Args[1] {
	case "seed":
		err = runSeed(args)
	case "wav":
		err = runWAV(args)
	case "step":
		err = runStep(args)
	case "media":
		err = runMedia(args)
	case "report":
		err = runReport(args, os.Stdout)
	case "fleet-report":
		err = runFleetReport(args, os.Stdout)
	case "serve":
		err = runServe(args)
	default:
		err = fmt.Errorf("unknown command %q: want seed, wav, step, media, report, fleet-report or serve", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "sipbench "+os.Args[1]+":", err)
		os.Exit(1)
	}
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "sipbench: "+format+"\n", args...)
}

// runSeed creates -n SIP transfers and writes their ids to -o.
func runSeed(args []string) error {
	fs := flag.NewFlagSet("seed", flag.ContinueOnError)
	url := fs.String("url", "", "Switchback API base URL, http://host:port")
	id := fs.String("api-id", "", "asapp-api-id")
	secret := fs.String("api-secret", "", "asapp-api-secret")
	n := fs.Int("n", 1000, "transfers to create")
	out := fs.String("o", "", "file to write the ids to, one a line")
	task := fs.String("task", "bench", "inputContext.taskName: picks the tenant's agent")
	conns := fs.Int("conns", 16, "requests in flight")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *url == "" || *id == "" || *secret == "" || *out == "" || *n < 1 {
		return errors.New("need -url, -api-id, -api-secret, -o and -n >= 1")
	}
	b := make([]byte, 4)
	rand.Read(b)
	prefix := "sip-" + *task + "-" + strconv.FormatInt(time.Now().Unix(), 36) + hex.EncodeToString(b) + "-"
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: *conns + 4, DisableCompression: true}, Timeout: 30 * time.Second}
	endpoint := strings.TrimRight(*url, "/") + "/generativeagent/v1/call-transfers"
	ids := make([]string, *n)
	var next, failed atomic.Int64
	var first error
	var once sync.Once
	var wg sync.WaitGroup
	start := time.Now()
	for range *conns {
		wg.Go(func() {
			for {
				i := next.Add(1) - 1
				if i >= int64(*n) {
					return
				}
				tid := prefix + strconv.FormatInt(i, 10)
				body := `{"id":"` + tid + `","externalConversationId":"conv-` + tid + `","type":"SIP",` +
					`"sip":{"returnURI":"sip:ivr@127.0.0.1","returnTransferType":"BYE"},` +
					`"inputContext":{"taskName":"` + *task + `","inputVariables":{"customerId":"C-` + strconv.FormatInt(i, 10) + `"}}}`
				err := post(client, endpoint, *id, *secret, body)
				if err != nil {
					failed.Add(1)
					once.Do(func() { first = err })
					continue
				}
				ids[i] = tid
			}
		})
	}
	wg.Wait()
	if f := failed.Load(); f > 0 {
		return fmt.Errorf("%d of %d creates failed; first: %v", f, *n, first)
	}
	if err := os.WriteFile(*out, []byte(strings.Join(ids, "\n")+"\n"), 0o644); err != nil {
		return err
	}
	d := time.Since(start)
	logf("created %d transfers (task %q) in %.1f s (%.0f/s)", *n, *task, d.Seconds(), float64(*n)/d.Seconds())
	return nil
}

func post(client *http.Client, url, id, secret, body string) error {
	for attempt := 0; ; attempt++ {
		req, err := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
		if err != nil {
			return err
		}
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("asapp-api-id", id)
		req.Header.Set("asapp-api-secret", secret)
		res, err := client.Do(req)
		if err == nil {
			b, _ := io.ReadAll(res.Body)
			res.Body.Close()
			if res.StatusCode == http.StatusOK {
				return nil
			}
			err = fmt.Errorf("status %d: %s", res.StatusCode, strings.TrimSpace(string(b)))
			if res.StatusCode != http.StatusServiceUnavailable && res.StatusCode != http.StatusTooManyRequests {
				return err
			}
		}
		if attempt == 4 {
			return err
		}
		time.Sleep(time.Duration(attempt+1) * 100 * time.Millisecond)
	}
}

// runWAV writes a -seconds long 8 kHz tone (440 Hz, moderate level) to -o.
func runWAV(args []string) error {
	fs := flag.NewFlagSet("wav", flag.ContinueOnError)
	out := fs.String("o", "", "WAV file to write")
	secs := fs.Int("seconds", 60, "length")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *out == "" || *secs < 1 {
		return errors.New("need -o and -seconds >= 1")
	}
	pcm := make([]int16, *secs*media.SampleRate)
	for i := range pcm {
		pcm[i] = int16(8000 * math.Sin(2*math.Pi*440*float64(i)/media.SampleRate))
	}
	f, err := os.Create(*out)
	if err != nil {
		return err
	}
	if err := media.WriteWAV(f, pcm, media.SampleRate); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// freeUDPPort returns a UDP port on 127.0.0.1 that was free a moment ago.
func freeUDPPort() (int, error) {
	c, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).Port, nil
}

func round(x float64, places int) float64 {
	p := math.Pow(10, float64(places))
	return math.Round(x*p) / p
}

// sleepCtx waits d or until ctx ends.
func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
