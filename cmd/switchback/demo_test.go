package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/switchback/switchback/internal/media"
	"github.com/switchback/switchback/internal/softphone"
)

func TestDemo(t *testing.T) {
	cases := []struct {
		name string
		args []string
		want []string // lines of the narrative, as regular expressions
	}{
		{"SIP", nil, []string{
			`(?m)^1\. Created call transfer (demo-[0-9a-f]{8}) \(SIP, ACTIVE\) via POST /generativeagent/v1/call-transfers$`,
			`(?m)^2\. Called sip:demo@127\.0\.0\.1:\d+ with X-ASAPP-CallTransferId: demo-[0-9a-f]{8} \.\.\. 200 OK \(PCMU\)$`,
		}},
		{"phone number", []string{"--phone-number"}, []string{
			`(?m)^1\. Created call transfer (demo-[0-9a-f]{8}) \(PHONE_NUMBER, ACTIVE, number \+1202555\d{4}\) via POST /generativeagent/v1/call-transfers$`,
			`(?m)^2\. Called sip:\+1202555\d{4}@127\.0\.0\.1:\d+, the leased number, \.\.\. 200 OK \(PCMU\)$`,
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			recording := filepath.Join(t.TempDir(), "greeting.wav")
			var stdout, stderr bytes.Buffer
			start := time.Now()
			err := run(context.Background(), append([]string{"demo", "--record", recording}, tc.args...),
				func(string) string { return "" }, strings.NewReader(""), &stdout, &stderr)
			out := stdout.String()
			if err != nil {
				t.Fatalf("demo: %v\n%s\nstderr: %s", err, out, stderr.String())
			}
			if took := time.Since(start); took > 10*time.Second {
				t.Errorf("the demo took %s", took)
			}
			want := append(tc.want,
				`(?m)^3\. Heard the greeting \((\d\.\d) s of audio\), pressed 1$`,
				`(?m)^4\. Switchback handed the call back: BYE$`,
				`(?m)^5\. GET /generativeagent/v1/call-transfers/(demo-[0-9a-f]{8}) right away:$`)
			var ids []string
			for _, w := range want {
				m := regexp.MustCompile(w).FindStringSubmatch(out)
				if m == nil {
					t.Fatalf("the narrative lacks %s:\n%s", w, out)
				}
				switch {
				case strings.HasPrefix(w, `(?m)^3`):
					if heard, _ := strconv.ParseFloat(m[1], 64); heard < 0.8 {
						t.Errorf("heard %s s of the 1 s greeting", m[1])
					}
				case len(m) > 1:
					ids = append(ids, m[1])
				}
			}
			if ids[0] != ids[1] {
				t.Errorf("created %s, fetched %s", ids[0], ids[1])
			}

			// The JSON fetched right after the BYE.
			var got struct {
				ID            string `json:"id"`
				Status        string `json:"status"`
				OutputContext struct {
					TransferType       string            `json:"transferType"`
					CurrentTaskName    string            `json:"currentTaskName"`
					ReferenceVariables map[string]string `json:"referenceVariables"`
				} `json:"outputContext"`
			}
			_, fetched, _ := strings.Cut(out, "right away:\n")
			if err := json.NewDecoder(strings.NewReader(fetched)).Decode(&got); err != nil {
				t.Fatalf("no JSON after step 5: %v\n%s", err, out)
			}
			oc := got.OutputContext
			if got.ID != ids[0] || got.Status != "COMPLETED" || oc.TransferType != "AGENT" ||
				oc.CurrentTaskName != "agent_escalation" || oc.ReferenceVariables["accountNumber"] != "3434" {
				t.Fatalf("fetched %+v\n%s", got, out)
			}
			if !strings.Contains(out, "The transfer is COMPLETED") {
				t.Errorf("no conclusion:\n%s", out)
			}

			f, err := os.Open(recording)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			pcm, err := media.LoadWAV(f)
			if err != nil {
				t.Fatal(err)
			}
			if level := softphone.RMS(pcm); level < 1000 {
				t.Errorf("the recorded greeting has RMS %.0f: silence", level)
			}
		})
	}
}

// TestDemoWebSocketAgent: the echo agent takes the call over a real
// WebSocket, the caller hears its greeting, and its hand-back carries the
// digit pressed.
func TestDemoWebSocketAgent(t *testing.T) {
	recording := filepath.Join(t.TempDir(), "heard.wav")
	var stdout, stderr bytes.Buffer
	err := run(context.Background(), []string{"demo", "--agent", "websocket", "--record", recording},
		func(string) string { return "" }, strings.NewReader(""), &stdout, &stderr)
	out := stdout.String()
	if err != nil {
		t.Fatalf("demo --agent websocket: %v\n%s\nstderr: %s", err, out, stderr.String())
	}
	for _, w := range []string{
		`(?m)^The call's agent is an echo agent on ws://127\.0\.0\.1:\d+/, over a WebSocket\.$`,
		`(?m)^3\. Heard the greeting \((\d\.\d) s of audio\), pressed 1$`,
		`(?m)^4\. Switchback handed the call back: BYE$`,
		`"transferType": "AGENT"`,
		`"digit": "1"`,
	} {
		if !regexp.MustCompile(w).MatchString(out) {
			t.Fatalf("the narrative lacks %s:\n%s", w, out)
		}
	}
	f, err := os.Open(recording)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	pcm, err := media.LoadWAV(f)
	if err != nil {
		t.Fatal(err)
	}
	if level := softphone.RMS(pcm); level < 1000 {
		t.Errorf("what the caller heard has RMS %.0f: silence", level)
	}
}

func TestDemoRefusesArguments(t *testing.T) {
	var out bytes.Buffer
	err := run(context.Background(), []string{"demo", "extra"}, func(string) string { return "" }, strings.NewReader(""), &out, &out)
	if err == nil || !strings.Contains(err.Error(), "usage: switchback demo") {
		t.Fatalf("demo extra: %v", err)
	}
}
