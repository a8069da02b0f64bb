package echo

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	ws "github.com/coder/websocket"
	"go.uber.org/goleak"

	"github.com/switchback/switchback"
	"github.com/switchback/switchback/internal/agent/websocket"
	"github.com/switchback/switchback/internal/media"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func tone(n int) []int16 {
	pcm := make([]int16, n)
	for i := range pcm {
		pcm[i] = int16((i%20 - 10) * 800)
	}
	return pcm
}

// TestWire speaks to the echo agent as Switchback does, message by
// message.
func TestWire(t *testing.T) {
	srv := httptest.NewServer(New(Options{Greeting: tone(400)}))
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, _, err := ws.Dial(ctx, "ws"+strings.TrimPrefix(srv.URL, "http"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	send := func(s string) {
		t.Helper()
		if err := c.Write(ctx, ws.MessageText, []byte(s)); err != nil {
			t.Fatal(err)
		}
	}
	read := func() map[string]any {
		t.Helper()
		_, b, err := c.Read(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var m map[string]any
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatal(err)
		}
		return m
	}
	send(`{"event":"connected","protocol":"Call","version":"1.0.0"}`)
	send(`{"event":"start","sequenceNumber":"1","start":{"streamSid":"MZ1","callSid":"CA1"},"streamSid":"MZ1"}`)
	var greeting int
	for range 3 { // 400 samples: 160, 160, 80
		m := read()
		b, _ := base64.StdEncoding.DecodeString(m["media"].(map[string]any)["payload"].(string))
		greeting += len(b)
		if m["streamSid"] != "MZ1" {
			t.Errorf("streamSid = %v", m["streamSid"])
		}
	}
	if m := read(); greeting != 400 || m["event"] != "mark" || m["mark"].(map[string]any)["name"] != "greeting" {
		t.Errorf("greeting of %d samples, then %v", greeting, m)
	}
	send(`{"event":"media","media":{"track":"outbound","chunk":"1","timestamp":"0","payload":"AAAA"},"streamSid":"MZ1"}`)
	send(`{"event":"media","media":{"track":"inbound","chunk":"1","timestamp":"20","payload":"f39/"},"streamSid":"MZ1"}`)
	if m := read(); m["event"] != "media" || m["media"].(map[string]any)["payload"] != "f39/" {
		t.Errorf("echo = %v", m)
	}
	send(`{"event":"dtmf","dtmf":{"track":"inbound_track","digit":"7"},"streamSid":"MZ1"}`)
	if m := read(); m["event"] != "switchback.transcript" || m["text"] != "pressed 7" {
		t.Errorf("transcript = %v", m)
	}
	m := read()
	out, _ := m["outputContext"].(map[string]any)
	if m["event"] != "switchback.handback" || out["transferType"] != "AGENT" || out["transferVariables"].(map[string]any)["digit"] != "7" {
		t.Errorf("hand-back = %v", m)
	}
	send(`{"event":"stop","stop":{},"streamSid":"MZ1"}`)
	if _, _, err := c.Read(ctx); ws.CloseStatus(err) != ws.StatusNormalClosure {
		t.Errorf("after stop: %v", err)
	}
}

// TestOnEcho: the hook hears of each frame echoed, with its payload and
// the agent's own time, and of nothing else.
func TestOnEcho(t *testing.T) {
	type echoed struct {
		payload       string
		read, written time.Time
	}
	got := make(chan echoed, 4)
	srv := httptest.NewServer(New(Options{OnEcho: func(p string, read, written time.Time) { got <- echoed{p, read, written} }}))
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, _, err := ws.Dial(ctx, "ws"+strings.TrimPrefix(srv.URL, "http"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	before := time.Now()
	for _, m := range []string{
		`{"event":"start","sequenceNumber":"1","start":{"streamSid":"MZ1"},"streamSid":"MZ1"}`,
		`{"event":"media","media":{"track":"outbound","payload":"AAAA"},"streamSid":"MZ1"}`,
		`{"event":"media","media":{"track":"inbound","payload":"f39/"},"streamSid":"MZ1"}`,
	} {
		if err := c.Write(ctx, ws.MessageText, []byte(m)); err != nil {
			t.Fatal(err)
		}
	}
	if _, _, err := c.Read(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case e := <-got:
		if e.payload != "f39/" || e.read.Before(before) || e.written.Before(e.read) {
			t.Errorf("echoed %q, read %v after the start, written %v after the read", e.payload, e.read.Sub(before), e.written.Sub(e.read))
		}
	case <-ctx.Done():
		t.Fatal("OnEcho was not called")
	}
	c.Close(ws.StatusNormalClosure, "")
	if len(got) != 0 {
		t.Errorf("OnEcho called %d more times", len(got))
	}
}

// TestSignature: with an auth token, the agent takes only handshakes
// Switchback signed.
func TestSignature(t *testing.T) {
	const url = "ws://agent.example/echo"
	srv := httptest.NewServer(New(Options{AuthToken: "tok", URL: url}))
	defer srv.Close()
	for _, tt := range []struct {
		sig  string
		want int
	}{
		{"", http.StatusForbidden},
		{websocket.Signature("other", url, nil), http.StatusForbidden},
		{websocket.Signature("tok", url, nil), http.StatusSwitchingProtocols},
	} {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		c, resp, _ := ws.Dial(ctx, "ws"+strings.TrimPrefix(srv.URL, "http"),
			&ws.DialOptions{HTTPHeader: http.Header{websocket.SignatureHeader: {tt.sig}}})
		if resp == nil || resp.StatusCode != tt.want {
			t.Errorf("signature %q: %v, want %d", tt.sig, resp, tt.want)
		}
		if c != nil {
			c.Close(ws.StatusNormalClosure, "")
		}
		cancel()
	}
}

// TestRoundTrip: Switchback's websocket agent against the echo agent, on a
// fake call: the caller hears the greeting and its own voice back, and a
// digit hands the call back.
func TestRoundTrip(t *testing.T) {
	echo := New(Options{Greeting: tone(320)})
	srv := httptest.NewServer(echo)
	defer srv.Close()
	f, err := websocket.NewFactory("acme", websocket.Config{URL: "ws" + strings.TrimPrefix(srv.URL, "http")}, nil, websocket.Deps{})
	if err != nil {
		t.Fatal(err)
	}
	call := newCall()
	a, err := f.NewAgent(context.Background(), call.Info())
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan *switchback.HandBack, 1)
	go func() {
		hb, err := a.Run(context.Background(), call)
		if err != nil {
			t.Error(err)
		}
		done <- hb
	}()
	said := tone(160)
	call.audio <- switchback.AudioFrame{Leg: switchback.LegCaller, PCM: said, At: time.Now()}
	// What comes back went through µ-law twice: compare with that.
	ulaw := make([]byte, 160)
	media.EncodeULaw(ulaw, said)
	heard := make([]int16, 160)
	media.DecodeULaw(heard, ulaw)
	deadline := time.Now().Add(5 * time.Second)
	for call.samples() < 320+160 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	call.mu.Lock()
	echoed := call.queued[len(call.queued)-1]
	call.mu.Unlock()
	if call.samples() != 480 || !equal(echoed, heard) {
		t.Errorf("queued %d samples; last %v, want the echo %v", call.samples(), echoed[:8], heard[:8])
	}
	call.digits <- switchback.Digit{Leg: switchback.LegCaller, Digit: '3'}
	select {
	case hb := <-done:
		if hb == nil || hb.Output.TransferType != switchback.TransferAgent || hb.Output.TransferVariables["digit"] != "3" || !hb.FinishAudio {
			t.Errorf("hand-back = %+v", hb)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no hand-back")
	}
	a.(interface{ Close() error }).Close()
	if echo.Echoed.Load() != 1 {
		t.Errorf("echoed %d", echo.Echoed.Load())
	}
}

func equal(a, b []int16) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// call is a switchback.Call whose playout keeps what it was given.
type call struct {
	audio  chan switchback.AudioFrame
	digits chan switchback.Digit
	marks  chan string
	mu     sync.Mutex
	queued [][]int16
	events []switchback.EventType
}

func newCall() *call {
	return &call{audio: make(chan switchback.AudioFrame, 8), digits: make(chan switchback.Digit, 8), marks: make(chan string, 8)}
}

func (c *call) Info() *switchback.CallInfo {
	return &switchback.CallInfo{TenantID: "acme", TransferID: "demo-1", ExternalConversationID: "c-1",
		Input: &switchback.InputContext{}, Return: switchback.ReturnBYE}
}
func (c *call) Audio() <-chan switchback.AudioFrame       { return c.audio }
func (c *call) Digits() <-chan switchback.Digit           { return c.digits }
func (c *call) Marks() <-chan string                      { return c.marks }
func (c *call) Play(_ context.Context, pcm []int16) error { return c.Enqueue(pcm) }
func (c *call) Enqueue(pcm []int16) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.queued = append(c.queued, pcm)
	return nil
}
func (c *call) Mark(name string) error    { c.marks <- name; return nil }
func (c *call) Clear()                    {}
func (c *call) SaveState(json.RawMessage) {}
func (c *call) Record(t switchback.EventType, _ map[string]string) {
	c.mu.Lock()
	c.events = append(c.events, t)
	c.mu.Unlock()
}

func (c *call) samples() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, q := range c.queued {
		n += len(q)
	}
	return n
}
