package e2e

import (
	"context"
	"errors"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/switchback/switchback/internal/media"
)

// softphoneSIP finds the SIP address `switchback serve` prints.
var softphoneSIP = regexp.MustCompile(`Switchback SIP on (\S+)`)

// startDefaultGateway runs `switchback serve` on its embedded defaults and
// returns it, the demo tenant's key it printed, and its SIP address.
func startDefaultGateway(t *testing.T) (*server, credentials, string) {
	t.Helper()
	s := startServer(t, t.TempDir(), "")
	// startServer returns on the API's line; the SIP line comes after it.
	for deadline := time.Now().Add(5 * time.Second); ; {
		out := s.stdout.String()
		key, addr := keyLines.FindStringSubmatch(out), softphoneSIP.FindStringSubmatch(out)
		if key != nil && addr != nil {
			return s, credentials{key[1], key[2]}, addr[1]
		}
		if time.Now().After(deadline) {
			t.Fatalf("serve printed no demo key or SIP address:\n%s", out)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// softphone runs `switchback call args...` and returns its output and exit
// status.
func softphone(t *testing.T, args ...string) (string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, binary, append([]string{"call"}, args...)...).CombinedOutput()
	var exit *exec.ExitError
	switch {
	case err == nil:
		return string(out), 0
	case errors.As(err, &exit):
		return string(out), exit.ExitCode()
	}
	t.Fatalf("switchback call: %v\n%s", err, out)
	return "", 0
}

func TestSoftphoneIsHandedBack(t *testing.T) {
	s, key, sipAddr := startDefaultGateway(t)
	api := newClient(key)
	ctx := context.Background()
	r, err := api.do(ctx, "POST", s.URL+"/generativeagent/v1/call-transfers",
		`{"id":"phone-1","externalConversationId":"c","type":"SIP","inputContext":{"inputVariables":{"accountNumber":"3434"}}}`)
	if err != nil || r.status != 200 {
		t.Fatalf("create: %v %s", err, r.raw)
	}

	recording := filepath.Join(t.TempDir(), "out.wav")
	out, status := softphone(t, "--transfer-id", "phone-1", "--dtmf", "2", "--record", recording, "sip:demo@"+sipAddr)
	if status != 0 {
		t.Fatalf("exit status %d:\n%s\nserver: %s", status, out, s.stderr)
	}
	for _, want := range []string{"200 OK (PCMU)", "sent DTMF 2", "received BYE: the call was handed back",
		"call ended: BYE from the far end (the call was handed back)", "recording:  " + recording} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}

	// The recording holds the built-in chime, the demo menu's greeting.
	f, err := os.Open(recording)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	pcm, err := media.LoadWAV(f)
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	nonzero := 0
	for _, v := range pcm {
		sum += float64(v) * float64(v)
		if v != 0 {
			nonzero++
		}
	}
	if len(pcm) < media.SampleRate/2 {
		t.Fatalf("recorded %d samples, less than half the 1 s greeting", len(pcm))
	}
	if rms := math.Sqrt(sum / float64(len(pcm))); rms < 2000 || float64(nonzero) < 0.5*float64(len(pcm)) {
		t.Fatalf("recording: RMS %.0f, %d of %d samples non-zero; want the chime", rms, nonzero, len(pcm))
	}

	// Pressing 2 chose self-service, stored before the BYE.
	r, err = api.do(ctx, "GET", s.URL+"/generativeagent/v1/call-transfers/phone-1", "")
	if err != nil {
		t.Fatal(err)
	}
	oc, _ := r.body["outputContext"].(map[string]any)
	ref, _ := oc["referenceVariables"].(map[string]any)
	if r.str("status") != "COMPLETED" || oc["transferType"] != "SYSTEM" || oc["currentTaskName"] != "self_service_complete" ||
		ref["accountNumber"] != "3434" {
		t.Fatalf("after the call: %s", r.raw)
	}
}

func TestSoftphoneRefused(t *testing.T) {
	_, _, sipAddr := startDefaultGateway(t)
	out, status := softphone(t, "--transfer-id", "no-such-transfer", "sip:demo@"+sipAddr)
	if status != 1 || !strings.Contains(out, "404 Not Found\n") || !strings.Contains(out, "call ended: refused with 404 Not Found") {
		t.Fatalf("exit status %d:\n%s", status, out)
	}
}
