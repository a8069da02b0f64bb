package websocket

import (
	"context"
	"encoding/base64"
	"net"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/switchback/switchback"
	"github.com/switchback/switchback/internal/media"
)

// connect dials a remote agent and reads its first messages.
func connect(t *testing.T, cfg Config, ret switchback.ReturnTransferType) (*remoteAgent, *fakeCall, switchback.Agent) {
	t.Helper()
	ag := newRemoteAgent(t)
	f := newTestFactory(t, ag.Server, cfg, nil, nil)
	call := newFakeCall(testInfo(ret))
	a, err := f.NewAgent(t.Context(), call.info)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := a.(*fallback); ok {
		t.Fatalf("NewAgent fell back")
	}
	ag.handshake(t)
	return ag, call, a
}

func handBackMsg(tt switchback.OutputTransferType) map[string]any {
	return map[string]any{"event": "switchback.handback", "outputContext": map[string]any{"transferType": tt}}
}

// TestAgentAudio: the agent's media, of any size, is decoded and queued
// for the caller; a full playout queue drops it and counts.
func TestAgentAudio(t *testing.T) {
	ag, call, a := connect(t, Config{}, switchback.ReturnBYE)
	done := startRun(t.Context(), a, call)
	ulaw := make([]byte, 1000) // 125 ms, ahead of real time
	for i := range ulaw {
		ulaw[i] = byte(i)
	}
	ag.send(map[string]any{"event": "media", "streamSid": "x", "media": map[string]string{"payload": base64.StdEncoding.EncodeToString(ulaw)}})
	ag.send(mediaJSON(7))
	call.waitFor(t, "the audio queued", func(c *fakeCall) bool { return c.enqueued == 1007 })
	want := make([]int16, 1000)
	media.DecodeULaw(want, ulaw)
	call.mu.Lock()
	got := call.queue[0].([]int16)
	call.full = true
	call.mu.Unlock()
	if !reflect.DeepEqual(got, want) {
		t.Error("the agent's audio was not decoded as µ-law")
	}
	ag.send(mediaJSON(160))
	ag.send(handBackMsg(switchback.TransferAgent))
	waitRun(t, done)
	s := a.(*session)
	if n := s.stats.playoutFull.Load(); n != 1 {
		t.Errorf("playout drops = %d, want 1", n)
	}
	closeAgent(t, a)
}

// TestMarksAndClear: a mark is echoed once the audio queued before it has
// played; clear drops the queue at once and the pending marks are echoed,
// in order.
func TestMarksAndClear(t *testing.T) {
	ag, call, a := connect(t, Config{}, switchback.ReturnBYE)
	done := startRun(t.Context(), a, call)
	mark := func(name string) map[string]any {
		return map[string]any{"event": "mark", "streamSid": "x", "mark": map[string]string{"name": name}}
	}
	// Nothing queued: the mark is reached at once.
	ag.send(mark("now"))
	if m := ag.nextEvent(t, "mark"); m["mark"].(map[string]any)["name"] != "now" {
		t.Errorf("mark = %v", m)
	}
	ag.send(mediaJSON(320))
	ag.send(mark("one"))
	ag.send(mediaJSON(320))
	ag.send(mark("two"))
	call.waitFor(t, "two marks queued", func(c *fakeCall) bool { return len(c.queue) == 4 })
	select {
	case b := <-ag.msgs:
		t.Fatalf("a mark came before its audio played: %s", b)
	case <-time.After(50 * time.Millisecond):
	}
	ag.send(map[string]any{"event": "clear", "streamSid": "x"})
	for _, name := range []string{"one", "two"} {
		if m := ag.nextEvent(t, "mark"); m["mark"].(map[string]any)["name"] != name {
			t.Errorf("mark = %v, want %s", m, name)
		}
	}
	call.mu.Lock()
	if call.cleared != 1 || len(call.queue) != 0 {
		t.Errorf("cleared %d times, %d left queued", call.cleared, len(call.queue))
	}
	call.mu.Unlock()
	ag.send(handBackMsg(switchback.TransferAgent))
	waitRun(t, done)
	closeAgent(t, a)
}

// TestHandBack: switchback.handback ends Run with its output context;
// one Switchback cannot take hands the call back as SYSTEM with why.
func TestHandBack(t *testing.T) {
	tests := []struct {
		name    string
		msg     any
		want    *switchback.HandBack
		wantErr string
	}{
		{
			name: "everything",
			msg: `{"event":"switchback.handback","outputContext":{"transferType":"AGENT","currentTaskName":"disputes",` +
				`"referenceVariables":{"caseId":"7"},"transferVariables":{"reason":"fraud"}},"state":{"step":3},"finishAudio":false}`,
			want: &switchback.HandBack{
				Output: &switchback.OutputContext{TransferType: switchback.TransferAgent, CurrentTaskName: "disputes",
					ReferenceVariables: map[string]string{"caseId": "7"}, TransferVariables: map[string]string{"reason": "fraud"}},
				State: []byte(`{"step":3}`),
			},
		},
		{
			name: "defaults: the input's task, queued audio finishes",
			msg:  handBackMsg(switchback.TransferSystem),
			want: &switchback.HandBack{Output: &switchback.OutputContext{TransferType: switchback.TransferSystem, CurrentTaskName: "billing"}, FinishAudio: true},
		},
		{name: "caller disconnect is not the agent's", msg: handBackMsg(switchback.TransferCallerDisconnect), wantErr: `transferType "CALLER_DISCONNECT", not AGENT or SYSTEM`},
		{name: "no output context", msg: `{"event":"switchback.handback"}`, wantErr: "has no outputContext"},
		{name: "output context not an object", msg: `{"event":"switchback.handback","outputContext":"AGENT"}`, wantErr: "malformed outputContext"},
		{name: "variables not strings", msg: `{"event":"switchback.handback","outputContext":{"transferType":"AGENT","transferVariables":{"n":1}}}`, wantErr: "malformed outputContext"},
		{name: "broken JSON", msg: `{"event":"switchback.handback","finishAudio":"yes"}`, wantErr: "switchback.handback is malformed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ag, call, a := connect(t, Config{}, switchback.ReturnREFER)
			done := startRun(t.Context(), a, call)
			ag.send(tt.msg)
			r := waitRun(t, done)
			if tt.wantErr != "" {
				if r.err == nil || !strings.Contains(r.err.Error(), tt.wantErr) {
					t.Errorf("Run error = %v, want %q", r.err, tt.wantErr)
				}
			} else if r.err != nil || !reflect.DeepEqual(r.hb, tt.want) {
				t.Errorf("Run = %+v, %v; want %+v", r.hb, r.err, tt.want)
			}
			// Not listening after a REFER: stop and close follow at once,
			// before the runtime's Close.
			ag.nextEvent(t, "stop")
			if err := ag.closed(t); websocket.CloseStatus(err) != websocket.StatusNormalClosure {
				t.Errorf("close = %v", err)
			}
			closeAgent(t, a)
		})
	}
}

// TestRecords: state, transcripts and custom events land in the
// conversation; bad ones are ignored and counted.
func TestRecords(t *testing.T) {
	ag, call, a := connect(t, Config{}, switchback.ReturnBYE)
	done := startRun(t.Context(), a, call)
	ag.send(`{"event":"switchback.state","state":{"step":"verify","tries":1}}`)
	ag.send(`{"event":"switchback.transcript","role":"caller","text":"my card was charged twice","final":true}`)
	ag.send(`{"event":"switchback.transcript","role":"agent","text":"let me check","final":false}`)
	ag.send(`{"event":"switchback.transcript","role":"agent","text":"no final field"}`)
	ag.send(`{"event":"switchback.event","type":"sentiment","data":{"score":"0.2"}}`)
	ag.send(`{"event":"switchback.transcript","text":"no role"}`)
	ag.send(`{"event":"switchback.event","type":"bad type!","data":{}}`)
	ag.send(`{"event":"switchback.event","type":"numbers","data":{"n":1}}`)
	ag.send(`{"event":"switchback.state"}`)
	ag.send(handBackMsg(switchback.TransferAgent))
	waitRun(t, done)
	closeAgent(t, a)
	if want := []string{`{"step":"verify","tries":1}`}; !reflect.DeepEqual(call.states, want) {
		t.Errorf("states = %v, want %v", call.states, want)
	}
	wantTranscripts := []map[string]string{
		{"role": "caller", "text": "my card was charged twice", "final": "true"},
		{"role": "agent", "text": "let me check", "final": "false"},
		{"role": "agent", "text": "no final field", "final": "true"},
	}
	if got := call.eventsOf(switchback.EventTranscript); !reflect.DeepEqual(got, wantTranscripts) {
		t.Errorf("transcripts = %v, want %v", got, wantTranscripts)
	}
	if got := call.eventsOf("custom.sentiment"); !reflect.DeepEqual(got, []map[string]string{{"score": "0.2"}}) {
		t.Errorf("custom events = %v", got)
	}
	if n := a.(*session).stats.malformed.Load(); n != 4 {
		t.Errorf("malformed = %d, want 4", n)
	}
}

// TestGarbage: malformed JSON, binary frames, unknown events and bad
// media are ignored and counted; the stream goes on.
func TestGarbage(t *testing.T) {
	ag, call, a := connect(t, Config{}, switchback.ReturnBYE)
	done := startRun(t.Context(), a, call)
	for _, m := range []string{
		"not json", `{"event":`, `[1,2,3]`, `{"event":"media","media":{"payload":"%%%"}}`,
		`{"event":"media","media":{}}`, `{"event":"mark","mark":{}}`, `{"event":"media","media":"x"}`,
	} {
		ag.send(m)
	}
	ag.send(`{"event":"start","start":{}}`)
	ag.send(`{"event":"something.else"}`)
	ag.send(`{}`)
	ag.send(mediaJSON(160)) // still heard
	call.waitFor(t, "the good audio", func(c *fakeCall) bool { return c.enqueued == 160 })
	ag.send(handBackMsg(switchback.TransferAgent))
	if r := waitRun(t, done); r.err != nil {
		t.Fatal(r.err)
	}
	s := a.(*session)
	if m, u := s.stats.malformed.Load(), s.stats.unknown.Load(); m != 7 || u != 3 {
		t.Errorf("malformed %d, unknown %d; want 7, 3", m, u)
	}
	closeAgent(t, a)
}

// TestCallerHangsUp: when the call ends under the agent, Run returns the
// cause, and Close sends stop, then closes with 1000.
func TestCallerHangsUp(t *testing.T) {
	ag, call, a := connect(t, Config{}, switchback.ReturnBYE)
	ctx, cancel := context.WithCancelCause(t.Context())
	done := startRun(ctx, a, call)
	call.audio <- frame(switchback.LegCaller, 1)
	ag.nextEvent(t, "media")
	cancel(switchback.ErrCallerHungUp)
	if r := waitRun(t, done); r.err != switchback.ErrCallerHungUp {
		t.Errorf("Run = %v, want ErrCallerHungUp", r.err)
	}
	closeAgent(t, a)
	stop := ag.nextEvent(t, "stop")
	if stop["stop"].(map[string]any)["callSid"] != CallSID("acme", "tr-1") {
		t.Errorf("stop = %v", stop)
	}
	if err := ag.closed(t); websocket.CloseStatus(err) != websocket.StatusNormalClosure {
		t.Errorf("close = %v, want 1000", err)
	}
}

// TestFollow: after an INVITE hand-back the stream stays open; bridged,
// the agent hears both legs as inbound and outbound, with their own chunk
// counts, and both legs' digits; its transcripts are still recorded.
func TestFollow(t *testing.T) {
	ag, call, a := connect(t, Config{}, switchback.ReturnINVITE)
	done := startRun(t.Context(), a, call)
	ag.send(handBackMsg(switchback.TransferAgent))
	waitRun(t, done)
	ctx, cancel := context.WithCancel(t.Context())
	followed := make(chan error, 1)
	go func() { followed <- a.(switchback.Follower).Follow(ctx, call) }()
	call.audio <- frame(switchback.LegCaller, 50)
	call.audio <- frame(switchback.LegReturn, 51)
	call.audio <- frame(switchback.LegReturn, 52)
	var tracks []string
	for range 3 {
		m := ag.nextEvent(t, "media")["media"].(map[string]any)
		tracks = append(tracks, m["track"].(string)+"/"+m["chunk"].(string)+"/"+m["timestamp"].(string))
	}
	if want := []string{"inbound/1/1000", "outbound/1/1020", "outbound/2/1040"}; !reflect.DeepEqual(tracks, want) {
		t.Errorf("media = %v, want %v", tracks, want)
	}
	call.digits <- switchback.Digit{Leg: switchback.LegCaller, Digit: '1'}
	call.digits <- switchback.Digit{Leg: switchback.LegReturn, Digit: '2'}
	for _, want := range []string{"inbound_track:1", "outbound_track:2"} {
		d := ag.nextEvent(t, "dtmf")["dtmf"].(map[string]any)
		if got := d["track"].(string) + ":" + d["digit"].(string); got != want {
			t.Errorf("dtmf = %s, want %s", got, want)
		}
	}
	ag.send(`{"event":"switchback.transcript","role":"return","text":"hello, billing"}`)
	ag.send(mediaJSON(160)) // the caller hears the return leg now: ignored
	call.waitFor(t, "the transcript", func(c *fakeCall) bool { return len(c.events) == 1 })
	cancel()
	if err := <-followed; err != nil {
		t.Errorf("Follow = %v", err)
	}
	closeAgent(t, a)
	ag.nextEvent(t, "stop")
	if call.enqueued != 0 {
		t.Error("audio sent while bridged was played")
	}
}

// TestNotFollowing: with listenAfterInviteReturn off, the agent is no
// Follower and its stream ends with the hand-back.
func TestNotFollowing(t *testing.T) {
	off := false
	ag, call, a := connect(t, Config{ListenAfterInviteReturn: &off}, switchback.ReturnINVITE)
	if _, ok := a.(switchback.Follower); ok {
		t.Error("the agent follows")
	}
	done := startRun(t.Context(), a, call)
	ag.send(handBackMsg(switchback.TransferAgent))
	waitRun(t, done)
	ag.nextEvent(t, "stop")
	ag.closed(t)
	closeAgent(t, a)
}

// TestFailureMatrix: whatever goes wrong with the agent, the fallback
// takes the call, and why is recorded.
func TestFailureMatrix(t *testing.T) {
	type setup struct {
		cfg  Config
		addr string       // where the dial goes
		ag   *remoteAgent // set for the mid-call cases
		mid  func(*remoteAgent)
	}
	refused := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "no", http.StatusForbidden)
	}))
	defer refused.Close()
	// silent accepts TCP connections and never answers.
	silent, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	held := make(chan net.Conn, 4)
	go func() {
		for {
			c, err := silent.Accept()
			if err != nil {
				return
			}
			held <- c
		}
	}()
	defer func() {
		for len(held) > 0 {
			(<-held).Close()
		}
	}()
	down, _ := net.Listen("tcp", "127.0.0.1:0")
	downAddr := down.Addr().String()
	down.Close()

	tests := []struct {
		name       string
		setup      func(t *testing.T) setup
		wantReason string
		within     time.Duration // NewAgent's bound, when set
	}{
		{name: "agent down", wantReason: "the agent is unreachable: dial tcp " + downAddr + ": connect: connection refused",
			setup: func(t *testing.T) setup { return setup{addr: downAddr} }},
		{name: "handshake refused", wantReason: "the agent refused the WebSocket handshake: HTTP 403",
			setup: func(t *testing.T) setup { return setup{addr: refused.Listener.Addr().String()} }},
		{name: "connect timeout", wantReason: "the agent did not answer within 200ms", within: 200 * time.Millisecond,
			setup: func(t *testing.T) setup {
				return setup{addr: silent.Addr().String(), cfg: Config{ConnectTimeout: Duration(200 * time.Millisecond)}}
			}},
		{name: "drop mid-call", wantReason: "the connection to the agent dropped",
			setup: func(t *testing.T) setup {
				return setup{ag: newRemoteAgent(t), mid: func(ag *remoteAgent) { ag.send(dropCmd{}) }}
			}},
		{name: "close without hand-back", wantReason: "the agent closed the connection without a hand-back (status 1000: done)",
			setup: func(t *testing.T) setup {
				return setup{ag: newRemoteAgent(t), mid: func(ag *remoteAgent) { ag.send(closeCmd{websocket.StatusNormalClosure, "done"}) }}
			}},
		{name: "close with an error status", wantReason: "the agent closed the connection without a hand-back (status 1011: pipeline crashed)",
			setup: func(t *testing.T) setup {
				return setup{ag: newRemoteAgent(t), mid: func(ag *remoteAgent) { ag.send(closeCmd{websocket.StatusInternalError, "pipeline crashed"}) }}
			}},
		{name: "oversized message", wantReason: "the agent sent a message over 4096 bytes",
			setup: func(t *testing.T) setup {
				return setup{ag: newRemoteAgent(t), cfg: Config{MaxMessageBytes: 4096}, mid: func(ag *remoteAgent) { ag.send(mediaJSON(4000)) }}
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := tt.setup(t)
			fb := &recordingFactory{}
			cfg := st.cfg
			cfg.Fallback.Task = "menu"
			f := newTestFactory(t, nil, cfg, fb, nil)
			if st.ag != nil {
				st.addr = st.ag.Listener.Addr().String()
			}
			dialTo(f, st.addr)
			call := newFakeCall(testInfo(switchback.ReturnBYE))
			began := time.Now()
			a, err := f.NewAgent(t.Context(), call.info)
			if err != nil {
				t.Fatal(err)
			}
			if tt.within > 0 {
				if took := time.Since(began); took > tt.within+500*time.Millisecond {
					t.Errorf("NewAgent took %v, connectTimeout is %v", took, tt.within)
				}
			}
			done := startRun(t.Context(), a, call)
			if st.ag != nil {
				st.ag.handshake(t)
				st.mid(st.ag)
			}
			r := waitRun(t, done)
			if r.err != nil || r.hb.Output.CurrentTaskName != "menu-fallback" {
				t.Errorf("Run = %+v, %v; want the fallback's hand-back", r.hb, r.err)
			}
			if fb.count() != 1 {
				t.Errorf("the fallback made %d agents", fb.count())
			}
			got := call.eventsOf(switchback.EventAgentFallback)
			if len(got) != 1 || !strings.HasPrefix(got[0]["reason"], tt.wantReason) || got[0]["fallback"] != "task menu" {
				t.Errorf("fallback events = %v, want reason %q", got, tt.wantReason)
			}
			closeAgent(t, a)
		})
	}
}

// TestFallbackHandBack: with no fallback task, the call is handed back at
// once with the configured output, or as SYSTEM.
func TestFallbackHandBack(t *testing.T) {
	down, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := down.Addr().String()
	down.Close()
	for _, tt := range []struct {
		name string
		out  *Output
		want *switchback.OutputContext
	}{
		{"configured", &Output{TransferType: "AGENT", CurrentTaskName: "human", TransferVariables: map[string]string{"why": "bot down"}},
			&switchback.OutputContext{TransferType: switchback.TransferAgent, CurrentTaskName: "human", TransferVariables: map[string]string{"why": "bot down"}}},
		{"default", nil, &switchback.OutputContext{TransferType: switchback.TransferSystem, CurrentTaskName: "billing"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			f := newTestFactory(t, nil, Config{Fallback: Fallback{Output: tt.out}}, nil, nil)
			dialTo(f, addr)
			call := newFakeCall(testInfo(switchback.ReturnBYE))
			a, err := f.NewAgent(t.Context(), call.info)
			if err != nil {
				t.Fatal(err)
			}
			hb, err := a.Run(t.Context(), call)
			if err != nil || !reflect.DeepEqual(hb.Output, tt.want) {
				t.Errorf("Run = %+v, %v; want %+v", hb, err, tt.want)
			}
			if ev := call.eventsOf(switchback.EventAgentFallback); len(ev) != 1 || ev[0]["fallback"] != "hand-back" {
				t.Errorf("events = %v", ev)
			}
			closeAgent(t, a)
		})
	}
}

// TestFallbackFails: a fallback that cannot make its agent fails the call
// (the runtime hands it back as SYSTEM), saying both whys.
func TestFallbackFails(t *testing.T) {
	ag := newRemoteAgent(t)
	fb := &recordingFactory{err: errNoAgent}
	f := newTestFactory(t, ag.Server, Config{Fallback: Fallback{Task: "menu"}}, fb, nil)
	call := newFakeCall(testInfo(switchback.ReturnBYE))
	a, err := f.NewAgent(t.Context(), call.info)
	if err != nil {
		t.Fatal(err)
	}
	done := startRun(t.Context(), a, call)
	ag.handshake(t)
	ag.send(dropCmd{})
	r := waitRun(t, done)
	if r.err == nil || !strings.Contains(r.err.Error(), "dropped") || !strings.Contains(r.err.Error(), "no agent") {
		t.Errorf("Run error = %v", r.err)
	}
	closeAgent(t, a)
}

// TestConnectCancelled: a call that ends while the agent is dialled gets
// no fallback.
func TestConnectCancelled(t *testing.T) {
	silent, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	accepted, release := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(accepted)
		if c, err := silent.Accept(); err == nil {
			<-release
			c.Close()
		}
	}()
	defer func() { close(release); silent.Close(); <-accepted }()
	fb := &recordingFactory{}
	f := newTestFactory(t, nil, Config{Fallback: Fallback{Task: "menu"}}, fb, nil)
	dialTo(f, silent.Addr().String())
	ctx, cancel := context.WithCancelCause(t.Context())
	time.AfterFunc(100*time.Millisecond, func() { cancel(switchback.ErrCallerHungUp) })
	a, err := f.NewAgent(ctx, testInfo(switchback.ReturnBYE))
	if err != switchback.ErrCallerHungUp || a != nil || fb.count() != 0 {
		t.Errorf("NewAgent = %v, %v; fallback made %d", a, err, fb.count())
	}
}

// TestCloseWithoutRun: a call that is never answered still closes its
// stream.
func TestCloseWithoutRun(t *testing.T) {
	ag, _, a := connect(t, Config{}, switchback.ReturnBYE)
	closeAgent(t, a)
	ag.nextEvent(t, "stop")
	ag.closed(t)
	closeAgent(t, a) // twice is harmless
}

// TestAgentStopsReading: an agent that takes the stream but stops reading
// blocks Switchback's writes; past the write timeout the connection is cut
// and the fallback takes over, while the caller's audio was dropped, not
// queued without bound.
func TestAgentStopsReading(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		defer c.CloseNow()
		<-release // reads nothing
	}))
	srv.Listener = smallBuffers{srv.Listener}
	srv.Start()
	defer srv.Close()
	defer close(release)
	fb := &recordingFactory{}
	f := newTestFactory(t, nil, Config{Fallback: Fallback{Task: "menu"}}, fb, nil)
	f.writeTimeout = 200 * time.Millisecond
	d := &net.Dialer{}
	f.client = newHTTPClient(nil, func(ctx context.Context, network, _ string) (net.Conn, error) {
		c, err := d.DialContext(ctx, network, srv.Listener.Addr().String())
		if err == nil {
			c.(*net.TCPConn).SetWriteBuffer(4096)
		}
		return c, err
	})
	call := newFakeCall(testInfo(switchback.ReturnBYE))
	a, err := f.NewAgent(t.Context(), call.info)
	if err != nil {
		t.Fatal(err)
	}
	done := startRun(t.Context(), a, call)
	stop := make(chan struct{})
	fed := make(chan struct{})
	go func() {
		defer close(fed)
		for i := 0; ; i++ {
			select {
			case call.audio <- frame(switchback.LegCaller, i):
			case <-stop:
				return
			}
		}
	}()
	r := waitRun(t, done)
	close(stop)
	<-fed
	if r.err != nil || r.hb.Output.CurrentTaskName != "menu-fallback" {
		t.Errorf("Run = %+v, %v", r.hb, r.err)
	}
	ev := call.eventsOf(switchback.EventAgentFallback)
	if len(ev) != 1 || ev[0]["reason"] != "the agent stopped reading: a write waited over 200ms" {
		t.Errorf("fallback events = %v", ev)
	}
	if a.(*session).stats.mediaDropped.Load() == 0 {
		t.Error("no caller audio was dropped while the agent did not read")
	}
	closeAgent(t, a)
}

// smallBuffers shrinks the receive buffer of each accepted connection, so
// a peer that does not read blocks its sender soon.
type smallBuffers struct{ net.Listener }

func (l smallBuffers) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		c.(*net.TCPConn).SetReadBuffer(4096)
	}
	return c, err
}

// TestAgentAudioAroundTheTurn: what the agent sends before Run starts
// (while the caller's phone rings) is queued once it does, in order with
// what follows; audio and clears sent after its hand-back are counted as
// late and neither queued nor carried out.
func TestAgentAudioAroundTheTurn(t *testing.T) {
	ag, call, a := connect(t, Config{}, switchback.ReturnINVITE)
	ag.send(mediaJSON(160))
	ag.send(map[string]any{"event": "mark", "streamSid": "x", "mark": map[string]string{"name": "greeting"}})
	time.Sleep(50 * time.Millisecond) // Run has not started: nothing is queued yet
	call.mu.Lock()
	early := len(call.queue)
	call.mu.Unlock()
	if early != 0 {
		t.Errorf("%d items queued before Run started", early)
	}
	done := startRun(t.Context(), a, call)
	ag.send(mediaJSON(320))
	call.waitFor(t, "the audio around the mark queued", func(c *fakeCall) bool { return len(c.queue) == 3 })
	call.mu.Lock()
	first, _ := call.queue[0].([]int16)
	name, _ := call.queue[1].(string)
	last, _ := call.queue[2].([]int16)
	call.mu.Unlock()
	if len(first) != 160 || name != "greeting" || len(last) != 320 {
		t.Errorf("queue = %d samples, mark %q, %d samples; want 160, greeting, 320", len(first), name, len(last))
	}
	ag.send(handBackMsg(switchback.TransferAgent))
	waitRun(t, done)
	ctx, cancel := context.WithCancel(t.Context())
	followed := make(chan error, 1)
	go func() { followed <- a.(switchback.Follower).Follow(ctx, call) }()
	ag.send(mediaJSON(160))
	ag.send(map[string]any{"event": "clear", "streamSid": "x"})
	s := a.(*followingSession).session
	for deadline := time.Now().Add(5 * time.Second); s.stats.late.Load() < 2; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d messages counted late after the hand-back, want 2", s.stats.late.Load())
		}
	}
	cancel()
	if err := <-followed; err != nil {
		t.Errorf("Follow = %v", err)
	}
	call.mu.Lock()
	n, cleared := len(call.queue), call.cleared
	call.mu.Unlock()
	if n != 3 || cleared != 0 {
		t.Errorf("after the hand-back: %d items queued, %d clears; want 3 and 0", n, cleared)
	}
	closeAgent(t, a)
}
