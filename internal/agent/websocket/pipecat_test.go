package websocket

import (
	"bytes"
	"context"
	"fmt"
	"math"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/switchback/switchback"
	"github.com/switchback/switchback/internal/media"
)

// repoRoot is the directory holding go.mod.
func repoRoot(t *testing.T) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("no go.mod above the test")
		}
		dir = parent
	}
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// syncBuffer collects a process's output for the test's log.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// startPipecat runs examples/pipecat/bot.py on a free loopback port with
// the repository's .venv, and returns its media URL once it answers. A bot
// that cannot start fails the test: it is the real peer of this package.
func startPipecat(t *testing.T, token, apiBase string) string {
	t.Helper()
	root := repoRoot(t)
	// scripts/python-deps.sh installs pipecat into .venv/ when it is
	// missing, and returns at once when it is there.
	if out, err := exec.Command("bash", filepath.Join(root, "scripts", "python-deps.sh")).CombinedOutput(); err != nil {
		t.Fatalf("scripts/python-deps.sh: %v\n%s", err, out)
	}
	python := filepath.Join(root, ".venv", "bin", "python")
	if _, err := os.Stat(python); err != nil {
		t.Fatalf("the pipecat peer needs %s: %v", python, err)
	}
	port := freePort(t)
	url := fmt.Sprintf("ws://127.0.0.1:%d/media", port)
	cmd := exec.Command(python, filepath.Join(root, "examples", "pipecat", "bot.py"),
		"--host", "127.0.0.1", "--port", fmt.Sprint(port), "--auth-token", token, "--api-base-url", apiBase)
	out := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatalf("start the pipecat bot: %v", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-exited
		if t.Failed() {
			t.Logf("pipecat bot output:\n%s", out.String())
		}
	})
	health := fmt.Sprintf("http://127.0.0.1:%d/healthz", port)
	deadline := time.Now().Add(90 * time.Second)
	for {
		resp, err := http.Get(health)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return url
			}
		}
		select {
		case err := <-exited:
			exited <- err
			t.Fatalf("the pipecat bot exited: %v\n%s", err, out.String())
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("the pipecat bot did not answer on %s:\n%s", health, out.String())
		}
	}
}

func loadSpeech(t *testing.T) []int16 {
	t.Helper()
	f, err := os.Open(filepath.Join("testdata", "speech.wav"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	pcm, err := media.LoadWAV(f)
	if err != nil {
		t.Fatal(err)
	}
	return pcm
}

func rms(pcm []int16) float64 {
	var sum float64
	for _, s := range pcm {
		sum += float64(s) * float64(s)
	}
	return math.Sqrt(sum / float64(max(1, len(pcm))))
}

// TestPipecat drives the websocket agent against the pipecat example bot, a
// stock TwilioFrameSerializer peer started from the repository's .venv.
func TestPipecat(t *testing.T) {
	const token = "pipecat-token"
	reg := NewRegistry()
	hangUps := make(chan int, 8)
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec := httptest.NewRecorder()
		HangUpHandler(reg, nil).ServeHTTP(rec, r)
		for k, v := range rec.Header() {
			w.Header()[k] = v
		}
		w.WriteHeader(rec.Code)
		w.Write(rec.Body.Bytes())
		hangUps <- rec.Code
	}))
	defer api.Close()
	url := startPipecat(t, token, api.URL)
	f, err := NewFactory("acme", Config{
		URL: url, AuthToken: token, ConnectTimeout: Duration(10 * time.Second),
		HangUpOutput: &Output{TransferType: "SYSTEM", TransferVariables: map[string]string{"ended": "bot"}},
	}, nil, Deps{Registry: reg})
	if err != nil {
		t.Fatal(err)
	}
	t.Run("barge-in, echo, hand-back", func(t *testing.T) { testPipecatConversation(t, f) })
	t.Run("auto hang-up over REST", func(t *testing.T) { testPipecatHangUp(t, f, hangUps) })
}

// pipecatCall connects a call to the bot and feeds it the caller's audio
// in real time: silence until the bot's greeting reaches the caller, then
// the speech over it (a barge-in), then silence.
func pipecatCall(t *testing.T, f *Factory, transferID string) (*fakeCall, switchback.Agent, <-chan runResult) {
	t.Helper()
	info := testInfo(switchback.ReturnBYE)
	info.TransferID = transferID
	call := newFakeCall(info)
	call.audio = make(chan switchback.AudioFrame, 1024)
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	t.Cleanup(cancel)
	a, err := f.NewAgent(ctx, call.info)
	if err != nil {
		t.Fatal(err)
	}
	if _, fell := a.(*fallback); fell {
		t.Fatalf("the pipecat bot was not reached: %+v", a)
	}
	t.Cleanup(func() { closeAgent(t, a) })
	done := startRun(ctx, a, call)
	speech := loadSpeech(t)
	feedDone, stopFeed := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(feedDone)
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		pos, talking := 0, false
		var greeted time.Time
		for {
			select {
			case <-stopFeed:
				return
			case now := <-tick.C:
				pcm := make([]int16, 160)
				if !talking {
					call.mu.Lock()
					heard := call.enqueued
					call.mu.Unlock()
					if heard > 0 && greeted.IsZero() {
						greeted = now
					}
					talking = !greeted.IsZero() && now.Sub(greeted) > 300*time.Millisecond
				}
				if talking && pos < len(speech) {
					pos += copy(pcm, speech[pos:])
				}
				select {
				case call.audio <- switchback.AudioFrame{Leg: switchback.LegCaller, PCM: pcm, At: now}:
				default:
				}
			}
		}
	}()
	t.Cleanup(func() { close(stopFeed); <-feedDone })
	return call, a, done
}

// testPipecatConversation: the bot greets with audio of its own, the
// caller's speech over the greeting makes it clear its audio, it echoes the
// speech with a transcript and state, and a digit hands the call back with
// its output context.
func testPipecatConversation(t *testing.T, f *Factory) {
	call, _, done := pipecatCall(t, f, "tr-pipecat-1")
	call.waitFor(t, "the bot's greeting", func(c *fakeCall) bool { return c.enqueued >= 4000 })
	call.waitFor(t, "a clear on barge-in", func(c *fakeCall) bool { return c.cleared > 0 })
	call.waitFor(t, "the echo's transcript", func(c *fakeCall) bool {
		for _, e := range c.events {
			if e.Type == switchback.EventTranscript && e.Data["role"] == "caller" {
				return true
			}
		}
		return false
	})
	call.waitFor(t, "the echo", func(c *fakeCall) bool { return c.enqueued > 8000*3 })
	call.mu.Lock()
	var heard []int16
	for _, q := range call.queue {
		if pcm, ok := q.([]int16); ok {
			heard = append(heard, pcm...)
		}
	}
	states := append([]string(nil), call.states...)
	call.mu.Unlock()
	if r := rms(heard); r < 500 {
		t.Errorf("the bot's audio is near silence: RMS %.0f", r)
	}
	if len(states) == 0 {
		t.Error("the bot saved no state")
	}
	if ev := call.eventsOf("custom.barge-in"); len(ev) == 0 {
		t.Error("no barge-in event recorded")
	}

	call.digits <- switchback.Digit{Leg: switchback.LegCaller, Digit: '5', At: time.Now()}
	r := waitRun(t, done)
	if r.err != nil || r.hb == nil {
		t.Fatalf("Run = %+v, %v", r.hb, r.err)
	}
	out := r.hb.Output
	if out.TransferType != switchback.TransferAgent || out.CurrentTaskName != "billing" ||
		out.TransferVariables["digit"] != "5" || out.ReferenceVariables["bot"] != "pipecat" || !r.hb.FinishAudio ||
		!bytes.Contains(r.hb.State, []byte(`"lastDigit": "5"`)) {
		t.Errorf("hand-back = %+v, output %+v, state %s", r.hb, out, r.hb.State)
	}
}

// testPipecatHangUp: the bot ends the call as a Twilio bot does: its
// pipeline ends and the serializer's auto hang-up, pointed at Switchback,
// hands the call back with the agent's hangUpOutput.
func testPipecatHangUp(t *testing.T, f *Factory, hangUps <-chan int) {
	call, _, done := pipecatCall(t, f, "tr-pipecat-2")
	call.waitFor(t, "the bot's greeting", func(c *fakeCall) bool { return c.enqueued > 0 })
	call.digits <- switchback.Digit{Leg: switchback.LegCaller, Digit: '*', At: time.Now()}
	r := waitRun(t, done)
	want := &switchback.OutputContext{TransferType: switchback.TransferSystem, CurrentTaskName: "billing",
		TransferVariables: map[string]string{"ended": "bot"}}
	if r.err != nil || r.hb == nil || fmt.Sprint(r.hb.Output) != fmt.Sprint(want) {
		t.Fatalf("Run = %+v, %v; want the hang-up output %+v", r.hb, r.err, want)
	}
	select {
	case code := <-hangUps:
		if code != http.StatusOK {
			t.Errorf("pipecat's hang-up got %d", code)
		}
	case <-time.After(10 * time.Second):
		t.Error("pipecat did not hang up over REST")
	}
}
