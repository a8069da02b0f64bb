package main

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"math"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/switchback/switchback"
	"github.com/switchback/switchback/internal/config"
	"github.com/switchback/switchback/internal/media"
	"github.com/switchback/switchback/internal/softphone"
)

func TestCallRefusesBadFlags(t *testing.T) {
	cases := []struct {
		name string
		args []string
		want string // in the error
	}{
		{"no target", nil, "usage: switchback call"},
		{"two targets", []string{"+12025550100", "+12025550101"}, "usage: switchback call"},
		{"transport", []string{"--transport", "sctp", "+12025550100"}, "--transport"},
		{"digit", []string{"--dtmf", "1x", "+12025550100"}, `--dtmf: 'x'`},
		{"password without user", []string{"--password", "p", "+12025550100"}, "--password needs --user"},
		{"local ip", []string{"--local-ip", "localhost", "+12025550100"}, "--local-ip"},
		{"rtp ports", []string{"--rtp-ports", "40000", "+12025550100"}, "--rtp-ports"},
		{"timeout", []string{"--timeout", "0s", "+12025550100"}, "--timeout"},
		{"play file", []string{"--play", "/nonexistent.wav", "+12025550100"}, "--play"},
		{"target", []string{"demo"}, "neither a SIP URI"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var out bytes.Buffer
			err := run(context.Background(), append([]string{"call"}, tc.args...), func(string) string { return "" },
				strings.NewReader(""), &out, &out)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("call %v: %v; want an error with %q", tc.args, err, tc.want)
			}
		})
	}
}

// testGateway is Switchback running in the test's process on the demo
// configuration, changed by the test, with an API key of the demo tenant.
type testGateway struct {
	*gateway
	api *apiClient
}

func startTestGateway(t *testing.T, change func(*config.Config)) *testGateway {
	t.Helper()
	ctx := context.Background()
	cfg := demoConfig(filepath.Join(t.TempDir(), "sb.db"), false)
	if change != nil {
		change(&cfg)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	store, err := openStore(ctx, cfg, true)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	key, secret, err := switchback.NewAPIKey(config.DefaultTenantID, "test", []string{switchback.ScopeCallTransfers}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if err := store.CreateAPIKey(ctx, key); err != nil {
		t.Fatal(err)
	}
	g, err := listenOnFreePorts(ctx, cfg, store, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- g.serve(runCtx, nil) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
	return &testGateway{gateway: g, api: &apiClient{base: "http://" + g.apiAddr().String(), id: key.ID, secret: secret,
		http: &http.Client{Timeout: 10 * time.Second}, timeout: 10 * time.Second}}
}

// create makes a SIP transfer id for task, with accountNumber 3434.
func (g *testGateway) create(t *testing.T, id, task string) {
	t.Helper()
	body, _ := json.Marshal(createRequest{ID: id, ExternalConversationID: "conv-" + id, Type: "SIP",
		InputContext: &switchback.InputContext{TaskName: task, InputVariables: map[string]string{"accountNumber": "3434"}}})
	if _, err := g.api.do(context.Background(), http.MethodPost, basePath, nil, body); err != nil {
		t.Fatal(err)
	}
}

// get fetches a transfer.
func (g *testGateway) get(t *testing.T, id string) transferView {
	t.Helper()
	return g.fetch(t, id, nil)
}

// getCompleted fetches a transfer once it is COMPLETED, waiting up to 5 s.
func (g *testGateway) getCompleted(t *testing.T, id string) transferView {
	t.Helper()
	return g.fetch(t, id, url.Values{"waitForStatus": {"COMPLETED"}, "timeout": {"5s"}})
}

func (g *testGateway) fetch(t *testing.T, id string, q url.Values) transferView {
	t.Helper()
	rep, err := g.api.do(context.Background(), http.MethodGet, basePath+"/"+id, q, nil)
	if err != nil {
		t.Fatal(err)
	}
	var v transferView
	if err := json.Unmarshal(rep.body, &v); err != nil {
		t.Fatal(err)
	}
	return v
}

// call runs "switchback call args... sip:demo@<the gateway>".
func (g *testGateway) call(args ...string) (string, error) {
	var out bytes.Buffer
	args = append(append([]string{"call"}, args...), "sip:demo@"+g.edge.Addr().String())
	err := run(context.Background(), args, func(string) string { return "" }, strings.NewReader(""), &out, &out)
	return out.String(), err
}

func TestCallPressesDigits(t *testing.T) {
	g := startTestGateway(t, nil)
	cases := []struct {
		name     string
		args     []string
		sent     string
		wantType switchback.OutputTransferType
	}{
		{"RFC 4733 over UDP", []string{"--dtmf", "1"}, "sent DTMF 1\n", switchback.TransferAgent},
		{"SIP INFO", []string{"--dtmf", "2", "--info"}, "sent DTMF 2 (SIP INFO)", switchback.TransferSystem},
		{"RFC 4733 over TCP", []string{"--dtmf", "1", "--transport", "tcp"}, "sent DTMF 1\n", switchback.TransferAgent},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			id := "digits-" + string(rune('a'+i))
			g.create(t, id, "")
			out, err := g.call(append([]string{"--transfer-id", id}, tc.args...)...)
			if err != nil {
				t.Fatalf("call: %v\n%s", err, out)
			}
			for _, want := range []string{"100 Trying", "200 OK (PCMU)", tc.sent, "received BYE: the call was handed back",
				"call ended: BYE from the far end", "(not silent)"} {
				if !strings.Contains(out, want) {
					t.Errorf("output lacks %q:\n%s", want, out)
				}
			}
			tr := g.get(t, id)
			if tr.Status != "COMPLETED" || tr.OutputContext == nil || tr.OutputContext.TransferType != tc.wantType ||
				tr.OutputContext.ReferenceVariables["accountNumber"] != "3434" {
				t.Fatalf("after the call: %+v %+v", tr, tr.OutputContext)
			}
		})
	}
}

func TestCallTakesAREFER(t *testing.T) {
	g := startTestGateway(t, nil)
	const target = "sip:desk@customer.example.com;User-to-User=UUI-1?X-Foo=1"
	for _, tc := range []struct {
		name, flag, say, end string
		notify               int
		fallback             bool
	}{
		{"accepted", "", "received REFER to <" + target + ">: accepted", "call ended: REFER to <" + target + ">, then BYE", 200, false},
		{"declined", "--decline-refer", "received REFER to <" + target + ">: declined", "call ended: BYE from the far end", 0, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			id := "refer-" + tc.name
			body, _ := json.Marshal(createRequest{ID: id, ExternalConversationID: "conv-" + id, Type: "SIP",
				SIP:          &createSIP{ReturnURI: target, ReturnTransferType: "REFER"},
				InputContext: &switchback.InputContext{TaskName: "instant"}})
			if _, err := g.api.do(context.Background(), http.MethodPost, basePath, nil, body); err != nil {
				t.Fatal(err)
			}
			args := []string{"--transfer-id", id}
			if tc.flag != "" {
				args = append(args, tc.flag)
			}
			out, err := g.call(args...)
			if err != nil {
				t.Fatalf("call: %v\n%s", err, out)
			}
			for _, want := range []string{tc.say, tc.end} {
				if !strings.Contains(out, want) {
					t.Errorf("output lacks %q:\n%s", want, out)
				}
			}
			tr := g.get(t, id)
			if rr := tr.ReturnResult; rr == nil || rr.Method != "REFER" || rr.NotifyStatus != tc.notify || rr.Fallback != tc.fallback {
				t.Fatalf("returnResult = %+v", tr.ReturnResult)
			}
		})
	}
}

func TestCallAnswersDigestChallenge(t *testing.T) {
	for _, alg := range []string{"MD5", "SHA-256"} {
		t.Run(alg, func(t *testing.T) {
			g := startTestGateway(t, func(c *config.Config) {
				c.SIP.DigestAlgorithms = []string{alg}
				c.Tenants[0].SIP.Users = []config.SIPUser{{Username: "ivr", Password: "s3cret-pass"}}
			})
			g.create(t, "auth-1", "instant")
			out, err := g.call("--transfer-id", "auth-1", "--user", "ivr", "--password", "wrong-pass")
			if err == nil || !strings.Contains(out, "refused with 401 Unauthorized") {
				t.Fatalf("a wrong password: %v\n%s", err, out)
			}
			out, err = g.call("--transfer-id", "auth-1", "--user", "ivr", "--password", "s3cret-pass")
			if err != nil || !strings.Contains(out, "401 Unauthorized: answering the digest challenge as ivr") ||
				!strings.Contains(out, "received BYE") {
				t.Fatalf("call: %v\n%s", err, out)
			}
			if tr := g.get(t, "auth-1"); tr.Status != "COMPLETED" || tr.OutputContext.CurrentTaskName != "instant" {
				t.Fatalf("after the call: %+v", tr)
			}
		})
	}
}

func TestCallHangsUpAndTimesOut(t *testing.T) {
	g := startTestGateway(t, nil)
	dir := t.TempDir()
	tone := make([]int16, media.SampleRate/2)
	for i := range tone {
		tone[i] = int16(8000 * math.Sin(2*math.Pi*440*float64(i)/media.SampleRate))
	}
	wav := filepath.Join(dir, "tone.wav")
	if err := softphone.SaveWAV(wav, tone); err != nil {
		t.Fatal(err)
	}

	// Hanging up ourselves is a normal end: exit status 0.
	g.create(t, "hangup-1", "")
	out, err := g.call("--transfer-id", "hangup-1", "--play", wav, "--hangup-after", "800ms", "--record", filepath.Join(dir, "heard.wav"))
	if err != nil || !strings.Contains(out, "played "+wav) || !strings.Contains(out, "sent BYE") ||
		!strings.Contains(out, "we hung up after 800ms (--hangup-after)") {
		t.Fatalf("hang-up: %v\n%s", err, out)
	}
	// Our BYE comes first; the outcome is stored after it.
	if tr := g.getCompleted(t, "hangup-1"); tr.OutputContext == nil || tr.OutputContext.TransferType != switchback.TransferCallerDisconnect {
		t.Fatalf("after our BYE: %+v", tr)
	}
	if _, err := os.Stat(filepath.Join(dir, "heard.wav")); err != nil {
		t.Fatalf("no recording: %v", err)
	}

	// No BYE within --timeout is not: exit status 1.
	g.create(t, "timeout-1", "")
	out, err = g.call("--transfer-id", "timeout-1", "--timeout", "500ms")
	if err == nil || exitCode(err) != 1 || !strings.Contains(out, "we hung up: no BYE from the far end") {
		t.Fatalf("timeout: %v\n%s", err, out)
	}
}

func TestCallRefused(t *testing.T) {
	g := startTestGateway(t, nil)
	out, err := g.call("--transfer-id", "nope")
	if err == nil || exitCode(err) != 1 || !strings.Contains(out, "404 Not Found\n") ||
		!strings.Contains(out, "call ended: refused with 404 Not Found") {
		t.Fatalf("unknown transfer: %v\n%s", err, out)
	}
}
