package websocket

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"go.uber.org/goleak"

	"github.com/switchback/switchback"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// t0 is when every test's stream starts, so timestamps are exact.
var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// testURL is the URL every test agent is configured with; testDeps points
// the dial at the test's server, so SIDs and signatures stay the same.
const testURL = "ws://agent.example/media"

func testInfo(ret switchback.ReturnTransferType) *switchback.CallInfo {
	return &switchback.CallInfo{
		TenantID: "acme", TransferID: "tr-1", ExternalConversationID: "conv-1", Type: switchback.TypeSIP,
		Input: &switchback.InputContext{TaskName: "billing", InputVariables: map[string]string{
			"customerId": "42", "from": "shadowed",
		}},
		Return: ret, CallID: "a84b4c76e66710@caller.example",
		From: "sip:+15551230000@carrier.example", To: "sip:acme@switchback.example",
	}
}

// newTestFactory builds a factory dialing srv whatever cfg.URL says.
func newTestFactory(t *testing.T, srv *httptest.Server, cfg Config, fallback switchback.AgentFactory, reg *Registry) *Factory {
	t.Helper()
	if cfg.URL == "" {
		cfg.URL = testURL
	}
	f, err := NewFactory("acme", cfg, fallback, Deps{Registry: reg, Now: func() time.Time { return t0 }})
	if err != nil {
		t.Fatal(err)
	}
	if srv != nil {
		dialTo(f, srv.Listener.Addr().String())
	}
	return f
}

// dialTo points f's dial at addr, whatever its URL's host.
func dialTo(f *Factory, addr string) {
	d := &net.Dialer{}
	f.client = newHTTPClient(nil, func(ctx context.Context, network, _ string) (net.Conn, error) {
		return d.DialContext(ctx, network, addr)
	})
}

// fakeCall is a switchback.Call whose playout is driven by the test:
// Enqueue and Mark queue, play delivers the marks reached, Clear drops the
// queue and delivers its marks.
type fakeCall struct {
	info   *switchback.CallInfo
	audio  chan switchback.AudioFrame
	digits chan switchback.Digit
	marks  chan string

	mu       sync.Mutex
	queue    []any // []int16 or a mark name (string)
	enqueued int   // samples
	full     bool  // Enqueue fails with ErrPlayoutFull
	cleared  int
	states   []string
	events   []switchback.ConversationEvent
	changed  chan struct{} // a signal on every change
}

func newFakeCall(info *switchback.CallInfo) *fakeCall {
	return &fakeCall{
		info: info, audio: make(chan switchback.AudioFrame, 64), digits: make(chan switchback.Digit, 8),
		marks: make(chan string, 64), changed: make(chan struct{}, 1),
	}
}

func (c *fakeCall) Info() *switchback.CallInfo          { return c.info }
func (c *fakeCall) Audio() <-chan switchback.AudioFrame { return c.audio }
func (c *fakeCall) Digits() <-chan switchback.Digit     { return c.digits }
func (c *fakeCall) Marks() <-chan string                { return c.marks }

func (c *fakeCall) Play(ctx context.Context, pcm []int16) error { return c.Enqueue(pcm) }

func (c *fakeCall) Enqueue(pcm []int16) error {
	defer c.signal()
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.full {
		return switchback.ErrPlayoutFull
	}
	c.queue = append(c.queue, pcm)
	c.enqueued += len(pcm)
	return nil
}

func (c *fakeCall) Mark(name string) error {
	defer c.signal()
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.queue) == 0 {
		c.marks <- name
		return nil
	}
	c.queue = append(c.queue, name)
	return nil
}

// play plays out the whole queue, delivering its marks.
func (c *fakeCall) play() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, q := range c.queue {
		if name, ok := q.(string); ok {
			c.marks <- name
		}
	}
	c.queue = nil
}

func (c *fakeCall) Clear() {
	defer c.signal()
	c.mu.Lock()
	defer c.mu.Unlock()
	c.cleared++
	for _, q := range c.queue {
		if name, ok := q.(string); ok {
			c.marks <- name
		}
	}
	c.queue = nil
}

func (c *fakeCall) SaveState(state json.RawMessage) {
	defer c.signal()
	c.mu.Lock()
	c.states = append(c.states, string(state))
	c.mu.Unlock()
}

func (c *fakeCall) Record(t switchback.EventType, data map[string]string) {
	defer c.signal()
	c.mu.Lock()
	c.events = append(c.events, switchback.ConversationEvent{Type: t, Data: data})
	c.mu.Unlock()
}

func (c *fakeCall) signal() {
	select {
	case c.changed <- struct{}{}:
	default:
	}
}

// waitFor waits until cond holds, checked under the call's lock.
func (c *fakeCall) waitFor(t *testing.T, what string, cond func(c *fakeCall) bool) {
	t.Helper()
	deadline := time.After(5 * time.Second)
	for {
		c.mu.Lock()
		ok := cond(c)
		c.mu.Unlock()
		if ok {
			return
		}
		select {
		case <-c.changed:
		case <-time.After(10 * time.Millisecond):
		case <-deadline:
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

func (c *fakeCall) eventsOf(t switchback.EventType) []map[string]string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []map[string]string
	for _, e := range c.events {
		if e.Type == t {
			out = append(out, e.Data)
		}
	}
	return out
}

// frame is 20 ms of a tone from the caller (or the return leg), n frames
// after the stream started.
func frame(leg switchback.Leg, n int) switchback.AudioFrame {
	pcm := make([]int16, 160)
	for i := range pcm {
		pcm[i] = int16((i%16 - 8) * 1000)
	}
	return switchback.AudioFrame{Leg: leg, PCM: pcm, At: t0.Add(time.Duration(n) * 20 * time.Millisecond)}
}

// agentServer is a test agent: a real WebSocket server whose handler is
// the test's script, run on the server's goroutine.
type agentServer struct {
	*httptest.Server
	requests chan *http.Request

	mu    sync.Mutex
	conns []*websocket.Conn
	wg    sync.WaitGroup // the scripts, which outlive the server's Close
}

// agentConn is the agent's side of one stream.
type agentConn struct {
	t *testing.T
	c *websocket.Conn
}

func newAgentServer(t *testing.T, script func(a *agentConn)) *agentServer {
	t.Helper()
	s := &agentServer{requests: make(chan *http.Request, 4)}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case s.requests <- r:
		default:
		}
		c, err := websocket.Accept(w, r, nil)
		if err != nil {
			t.Errorf("accept: %v", err)
			return
		}
		s.wg.Add(1)
		defer s.wg.Done()
		s.mu.Lock()
		s.conns = append(s.conns, c)
		s.mu.Unlock()
		defer c.CloseNow()
		c.SetReadLimit(1 << 20)
		script(&agentConn{t: t, c: c})
	}))
	t.Cleanup(func() {
		// A hijacked connection is not waited for by Close: end the
		// scripts first, so none outlives its test.
		s.mu.Lock()
		for _, c := range s.conns {
			c.CloseNow()
		}
		s.mu.Unlock()
		s.wg.Wait()
		s.Close()
	})
	return s
}

// trySend writes v, ignoring a connection already closed.
func (a *agentConn) trySend(v any) {
	b, ok := v.(string)
	var raw []byte
	if ok {
		raw = []byte(b)
	} else {
		raw, _ = json.Marshal(v)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	a.c.Write(ctx, websocket.MessageText, raw)
}

// runResult is what Run returned.
type runResult struct {
	hb  *switchback.HandBack
	err error
}

// startRun runs agent on call in the background.
func startRun(ctx context.Context, agent switchback.Agent, call switchback.Call) <-chan runResult {
	done := make(chan runResult, 1)
	go func() {
		hb, err := agent.Run(ctx, call)
		done <- runResult{hb, err}
	}()
	return done
}

func waitRun(t *testing.T, done <-chan runResult) runResult {
	t.Helper()
	select {
	case r := <-done:
		return r
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return")
		return runResult{}
	}
}

func closeAgent(t *testing.T, a switchback.Agent) {
	t.Helper()
	if c, ok := a.(interface{ Close() error }); ok {
		if err := c.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	}
}

// recordingFactory is a fallback that records its calls and hands back as
// SYSTEM with a marker.
type recordingFactory struct {
	mu    sync.Mutex
	calls int
	err   error
}

func (r *recordingFactory) NewAgent(context.Context, *switchback.CallInfo) (switchback.Agent, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls++
	if r.err != nil {
		return nil, r.err
	}
	return markerAgent{}, nil
}

func (r *recordingFactory) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.calls
}

type markerAgent struct{}

func (markerAgent) Run(context.Context, switchback.Call) (*switchback.HandBack, error) {
	return &switchback.HandBack{Output: &switchback.OutputContext{
		TransferType: switchback.TransferSystem, CurrentTaskName: "menu-fallback",
	}}, nil
}

var errNoAgent = errors.New("no agent")

// remoteAgent is a test agent the test drives message by message: what
// Switchback sends arrives on msgs, what the test sends goes out at once.
type remoteAgent struct {
	*agentServer
	msgs     chan []byte
	cmds     chan any
	closeErr chan error
}

// closeCmd makes the remote agent close its side with a status.
type closeCmd struct {
	code   websocket.StatusCode
	reason string
}

// dropCmd makes the remote agent cut its TCP connection.
type dropCmd struct{}

func newRemoteAgent(t *testing.T) *remoteAgent {
	t.Helper()
	r := &remoteAgent{msgs: make(chan []byte, 1024), cmds: make(chan any, 16), closeErr: make(chan error, 1)}
	r.agentServer = newAgentServer(t, func(a *agentConn) {
		readerDone := make(chan struct{})
		go func() {
			defer close(readerDone)
			for {
				_, b, err := a.c.Read(context.Background())
				if err != nil {
					r.closeErr <- err
					return
				}
				r.msgs <- b
			}
		}()
		for {
			select {
			case v := <-r.cmds:
				switch v := v.(type) {
				case closeCmd:
					a.c.Close(v.code, v.reason)
					<-readerDone
					return
				case dropCmd:
					a.c.CloseNow()
					<-readerDone
					return
				default:
					// Switchback may have closed the stream already: the
					// test checks what arrived, not this write.
					a.trySend(v)
				}
			case <-readerDone:
				return
			}
		}
	})
	return r
}

// next returns the next message Switchback sent.
func (r *remoteAgent) next(t *testing.T) []byte {
	t.Helper()
	select {
	case b := <-r.msgs:
		return b
	case <-time.After(5 * time.Second):
		t.Fatal("the agent got no message")
		return nil
	}
}

// nextEvent returns the next message of event, skipping media.
func (r *remoteAgent) nextEvent(t *testing.T, event string) map[string]any {
	t.Helper()
	for {
		var m map[string]any
		b := r.next(t)
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatalf("agent got non-JSON %q", b)
		}
		if m["event"] == event {
			return m
		}
		if m["event"] != "media" {
			t.Fatalf("agent got %s, want a %s", b, event)
		}
	}
}

func (r *remoteAgent) send(v any) { r.cmds <- v }

// closed waits for the connection's end and returns how it ended.
func (r *remoteAgent) closed(t *testing.T) error {
	t.Helper()
	select {
	case err := <-r.closeErr:
		return err
	case <-time.After(5 * time.Second):
		t.Fatal("the connection did not close")
		return nil
	}
}

// handshake reads connected, start and switchback.context.
func (r *remoteAgent) handshake(t *testing.T) {
	t.Helper()
	r.nextEvent(t, "connected")
	r.nextEvent(t, "start")
	r.nextEvent(t, "switchback.context")
}
