package call

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/switchback/switchback"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// setup is one transfer, its runtime and the fakes around it.
type setup struct {
	trail     *trail
	transfers *fakeTransfers
	clock     *fakeClock
	rt        *Runtime
	leg       *fakeLeg
}

func newSetup(t *testing.T, ret switchback.ReturnTransferType, agent switchback.Agent, autoClock bool) *setup {
	t.Helper()
	tr := &trail{}
	tf := &fakeTransfers{trail: tr, t: &switchback.Transfer{TenantID: "acme", ID: "t1", ExternalConversationID: "conv-1",
		Type: switchback.TypeSIP, Status: switchback.StatusActive,
		InputContext: &switchback.InputContext{TaskName: "billing"},
		SIP:          &switchback.SIP{ReturnURI: "sip:back@example.com", ReturnTransferType: ret}}}
	clock := newFakeClock(autoClock)
	rt := New(Options{Transfers: tf, Agents: &factory{agent: agent}, Clock: clock})
	return &setup{trail: tr, transfers: tf, clock: clock, rt: rt, leg: newFakeLeg(tr)}
}

// start admits and starts the call, and returns it.
func (s *setup) start(t *testing.T) *Call {
	t.Helper()
	c, err := s.rt.Admit(context.Background(), Arrival{TenantID: "acme", TransferID: "t1", CallID: "cid", Source: "127.0.0.1:5070", Transport: "UDP"})
	if err != nil {
		t.Fatal(err)
	}
	c.Start(s.leg)
	return c
}

// wait waits for the runtime to hold no call.
func (s *setup) wait(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for s.rt.Active() > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("the call did not end:\n%s", s.trail)
		}
		time.Sleep(time.Millisecond)
	}
	s.rt.Stop()
}

func handsBack(out switchback.OutputTransferType) *fakeAgent {
	return &fakeAgent{closed: make(chan struct{}), run: func(ctx context.Context, call switchback.Call) (*switchback.HandBack, error) {
		call.SaveState(json.RawMessage(`{"step":2}`))
		return &switchback.HandBack{Output: &switchback.OutputContext{TransferType: out, CurrentTaskName: "agent"}}, nil
	}}
}

func TestOutputStoredBeforeTheSignal(t *testing.T) {
	for _, tc := range []struct {
		name   string
		ret    switchback.ReturnTransferType
		signal string
	}{
		{"BYE", switchback.ReturnBYE, "BYE"},
		{"REFER", switchback.ReturnREFER, "REFER"},
		{"INVITE", switchback.ReturnINVITE, "INVITE"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			agent := handsBack(switchback.TransferAgent)
			s := newSetup(t, tc.ret, agent, false)
			br := &fakeBridge{trail: s.trail, ended: make(chan struct{})}
			s.leg.invite = func(ctx context.Context, tr *switchback.Transfer, listen bool) (Bridge, switchback.ReturnResult) {
				// The return leg hangs up once bridged.
				br.by = "return"
				close(br.ended)
				return br, switchback.ReturnResult{Method: switchback.ReturnINVITE, SIPStatus: 200}
			}
			s.start(t)
			s.wait(t)
			s.trail.before(t, "stored output AGENT", tc.signal)
			if tc.ret == switchback.ReturnREFER {
				s.trail.before(t, "stored result REFER", "BYE")
			}
			if tc.ret == switchback.ReturnINVITE {
				s.trail.before(t, "stored result INVITE", "bridge closed")
				s.trail.before(t, "bridge closed", "recorded")
				if by := s.transfers.events(switchback.EventCallEnded); len(by) != 1 || by[0]["by"] != "return" {
					t.Errorf("call.ended events = %v, want one by return", by)
				}
			}
			st, out, r := s.transfers.status()
			if st != switchback.StatusCompleted || out.TransferType != switchback.TransferAgent || r == nil || r.Method != tc.ret {
				t.Errorf("transfer = %s %+v %+v", st, out, r)
			}
			if string(s.transfers.state) != `{"step":2}` {
				t.Errorf("state = %s", s.transfers.state)
			}
			if hb := s.rt.HandBacks(); len(hb) != 1 || hb[HandBackKind{Method: tc.ret}] != 1 {
				t.Errorf("HandBacks() = %v, want one %s without fallback", hb, tc.ret)
			}
			select {
			case <-agent.closed:
			default:
				t.Error("the agent was not closed")
			}
		})
	}
}

func TestReferFailureFallsBackToBYE(t *testing.T) {
	s := newSetup(t, switchback.ReturnREFER, handsBack(switchback.TransferSystem), false)
	s.leg.refer = func(ctx context.Context, tr *switchback.Transfer) switchback.ReturnResult {
		return switchback.ReturnResult{Method: switchback.ReturnREFER, SIPStatus: 603, Fallback: true, Reason: "REFER refused with 603"}
	}
	s.start(t)
	s.wait(t)
	s.trail.before(t, "stored result REFER fallback=true", "BYE")
	if n := s.rt.HandBacks(); len(n) != 1 || n[HandBackKind{Method: switchback.ReturnREFER, Fallback: true}] != 1 {
		t.Errorf("HandBacks() = %v, want one REFER that fell back", n)
	}
	hb := s.transfers.events(switchback.EventHandBack)
	if len(hb) != 1 || hb[0]["reason"] != "REFER refused with 603" || hb[0]["sipStatus"] != "603" {
		t.Errorf("handback events = %v", hb)
	}
}

func TestCallerHangsUpWhileTheAgentTalks(t *testing.T) {
	talking := make(chan struct{})
	agent := &fakeAgent{closed: make(chan struct{}), run: func(ctx context.Context, call switchback.Call) (*switchback.HandBack, error) {
		call.SaveState(json.RawMessage(`{"step":1}`))
		close(talking)
		<-ctx.Done()
		if !errors.Is(context.Cause(ctx), switchback.ErrCallerHungUp) {
			t.Errorf("cause = %v", context.Cause(ctx))
		}
		// The state saved as the agent stops is the one kept.
		call.SaveState(json.RawMessage(`{"step":"last"}`))
		return nil, ctx.Err()
	}}
	s := newSetup(t, switchback.ReturnREFER, agent, false)
	s.start(t)
	<-talking
	s.leg.hangup("caller")
	s.wait(t)
	st, out, _ := s.transfers.status()
	if st != switchback.StatusCompleted || out.TransferType != switchback.TransferCallerDisconnect {
		t.Fatalf("transfer = %s %+v", st, out)
	}
	if string(s.transfers.state) != `{"step":"last"}` {
		t.Errorf("state = %s, want the last one saved", s.transfers.state)
	}
	if s.trail.index("REFER") >= 0 || s.trail.index("BYE") >= 0 {
		t.Errorf("no hand-back and no BYE for a caller gone:\n%s", s.trail)
	}
	if by := s.transfers.events(switchback.EventCallEnded); len(by) != 1 || by[0]["by"] != "caller" {
		t.Errorf("call.ended = %v", by)
	}
	if n := s.rt.Ended()["caller"]; n != 1 {
		t.Errorf("ended by caller = %d", n)
	}
}

func TestRTPTimeoutEndsTheCallWithABye(t *testing.T) {
	agent := &fakeAgent{closed: make(chan struct{}), run: func(ctx context.Context, call switchback.Call) (*switchback.HandBack, error) {
		<-ctx.Done()
		return nil, ctx.Err()
	}}
	s := newSetup(t, switchback.ReturnBYE, agent, false)
	s.start(t)
	// The leg reports its media gone; Switchback still owes the BYE.
	s.leg.endOnce.Do(func() { s.leg.by = "rtp-timeout"; close(s.leg.ended) })
	s.wait(t)
	if by := s.transfers.events(switchback.EventCallEnded); len(by) != 1 || by[0]["by"] != "rtp-timeout" {
		t.Errorf("call.ended = %v", by)
	}
	s.trail.before(t, "stored output CALLER_DISCONNECT", "BYE")
}

func TestAgentFailureHandsBackAsSystem(t *testing.T) {
	for _, tc := range []struct {
		name   string
		run    func(ctx context.Context, call switchback.Call) (*switchback.HandBack, error)
		reason string
	}{
		{"error", func(context.Context, switchback.Call) (*switchback.HandBack, error) {
			return nil, errors.New("model unavailable")
		}, "model unavailable"},
		{"panic", func(context.Context, switchback.Call) (*switchback.HandBack, error) {
			panic("index out of range")
		}, "the agent panicked: index out of range"},
		{"bad outcome", func(context.Context, switchback.Call) (*switchback.HandBack, error) {
			return &switchback.HandBack{Output: &switchback.OutputContext{TransferType: "CALLER_DISCONNECT"}}, nil
		}, `transferType "CALLER_DISCONNECT"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newSetup(t, switchback.ReturnBYE, &fakeAgent{closed: make(chan struct{}), run: tc.run}, false)
			s.start(t)
			s.wait(t)
			_, out, _ := s.transfers.status()
			if out == nil || out.TransferType != switchback.TransferSystem || out.CurrentTaskName != "billing" {
				t.Fatalf("output = %+v, want SYSTEM in the input's task", out)
			}
			o := s.transfers.events(switchback.EventOutcome)
			if len(o) != 1 || !strings.Contains(o[0]["reason"], tc.reason) {
				t.Errorf("outcome events = %v, want the reason %q", o, tc.reason)
			}
			s.trail.before(t, "stored output SYSTEM", "BYE")
		})
	}
}

func TestNoAgentHandsBackAtOnce(t *testing.T) {
	s := newSetup(t, switchback.ReturnBYE, nil, false)
	s.rt.agents = &factory{err: switchback.Errorf(switchback.ENOTFOUND, "tenant has no agent")}
	s.start(t)
	s.wait(t)
	_, out, _ := s.transfers.status()
	if out == nil || out.TransferType != switchback.TransferSystem {
		t.Fatalf("output = %+v", out)
	}
}

func TestStoreDownAtHandBack(t *testing.T) {
	s := newSetup(t, switchback.ReturnBYE, handsBack(switchback.TransferAgent), false)
	stop := make(chan struct{})
	ticking := make(chan struct{})
	go func() { defer close(ticking); s.clock.run(100*time.Millisecond, stop) }()
	defer func() { close(stop); <-ticking }()
	s.transfers.setFail(errors.New("connection refused"))
	s.start(t)
	// The call is handed back after the bounded retries, without waiting
	// for the store.
	deadline := time.Now().Add(10 * time.Second)
	for s.trail.index("BYE") < 0 {
		if time.Now().After(deadline) {
			t.Fatalf("no BYE while the store is down:\n%s", s.trail)
		}
		time.Sleep(time.Millisecond)
	}
	if n := strings.Count(s.trail.String(), "EndCall failed"); n < DefaultRetry.Attempts {
		t.Errorf("%d tries before the hand-back, want %d", n, DefaultRetry.Attempts)
	}
	// The store comes back: the outcome lands in the background.
	s.transfers.setFail(nil)
	deadline = time.Now().Add(10 * time.Second)
	for {
		if st, out, _ := s.transfers.status(); st == switchback.StatusCompleted && out.TransferType == switchback.TransferAgent {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the outcome never landed:\n%s", s.trail)
		}
		time.Sleep(time.Millisecond)
	}
	s.wait(t)
}

func TestStoreRefusalIsNotRetried(t *testing.T) {
	s := newSetup(t, switchback.ReturnBYE, handsBack(switchback.TransferAgent), true)
	s.transfers.setFail(switchback.Errorf(switchback.EGONE, "completed by another node"))
	s.start(t)
	s.wait(t)
	if n := strings.Count(s.trail.String(), "EndCall failed"); n != 1 {
		t.Errorf("%d tries, want 1", n)
	}
	if s.trail.index("BYE") < 0 {
		t.Error("no BYE")
	}
}

func TestDrain(t *testing.T) {
	release := make(chan struct{})
	agent := &fakeAgent{closed: make(chan struct{}), run: func(ctx context.Context, call switchback.Call) (*switchback.HandBack, error) {
		<-release
		return &switchback.HandBack{Output: &switchback.OutputContext{TransferType: switchback.TransferAgent}}, nil
	}}
	s := newSetup(t, switchback.ReturnBYE, agent, false)
	s.start(t)
	idle := s.rt.Drain()
	if _, err := s.rt.Admit(context.Background(), Arrival{TenantID: "acme", TransferID: "t2"}); err != ErrDraining {
		t.Fatalf("Admit while draining = %v", err)
	}
	select {
	case <-idle:
		t.Fatal("idle with a call in progress")
	default:
	}
	close(release)
	select {
	case <-idle:
	case <-time.After(10 * time.Second):
		t.Fatal("not idle once the call ended")
	}
	// The call in progress ended normally.
	if _, out, _ := s.transfers.status(); out.TransferType != switchback.TransferAgent {
		t.Errorf("output = %+v", out)
	}
	s.wait(t)
}

// connectingFactory is the factory of an agent that takes a while to
// connect (a websocket agent dials before the call is answered): it waits
// for connect, or for its context to end.
type connectingFactory struct {
	agent   switchback.Agent
	dialing chan struct{} // closed once NewAgent waits
	connect chan struct{}
}

func (f *connectingFactory) NewAgent(ctx context.Context, info *switchback.CallInfo) (switchback.Agent, error) {
	close(f.dialing)
	select {
	case <-f.connect:
		return f.agent, nil
	case <-ctx.Done():
		return nil, context.Cause(ctx)
	}
}

// TestDrainWaitsForACallBeingAnswered: a drain that starts while a
// matched call's agent connects, before the answer, waits for that call
// too: it goes on to its normal end.
func TestDrainWaitsForACallBeingAnswered(t *testing.T) {
	s := newSetup(t, switchback.ReturnBYE, nil, false)
	f := &connectingFactory{agent: handsBack(switchback.TransferAgent), dialing: make(chan struct{}), connect: make(chan struct{})}
	s.rt.agents = f
	admitted := make(chan *Call, 1)
	go func() {
		c, err := s.rt.Admit(context.Background(), Arrival{TenantID: "acme", TransferID: "t1"})
		if err != nil {
			t.Errorf("Admit = %v", err)
		}
		admitted <- c
	}()
	<-f.dialing
	idle := s.rt.Drain()
	if n := s.rt.Active(); n != 1 {
		t.Errorf("Active while the call's agent connects = %d, want 1", n)
	}
	select {
	case <-idle:
		t.Fatal("idle while a matched call's agent connects")
	case <-time.After(50 * time.Millisecond):
	}
	close(f.connect)
	c := <-admitted
	if c == nil {
		t.FailNow()
	}
	c.Start(s.leg)
	select {
	case <-idle:
	case <-time.After(10 * time.Second):
		t.Fatal("not idle once the call ended")
	}
	if st, out, _ := s.transfers.status(); st != switchback.StatusCompleted || out.TransferType != switchback.TransferAgent {
		t.Errorf("transfer = %s %+v, want the agent's hand-back", st, out)
	}
	s.wait(t)
}

// TestStopWhileACallIsBeingAnswered: a stop cuts short the connecting of
// a matched call's agent and waits for the call to be started, which
// hangs it up with its outcome stored first.
func TestStopWhileACallIsBeingAnswered(t *testing.T) {
	s := newSetup(t, switchback.ReturnBYE, nil, false)
	f := &connectingFactory{dialing: make(chan struct{}), connect: make(chan struct{})}
	s.rt.agents = f
	admitted := make(chan *Call, 1)
	go func() {
		c, err := s.rt.Admit(context.Background(), Arrival{TenantID: "acme", TransferID: "t1"})
		if err != nil {
			t.Errorf("Admit = %v", err)
		}
		admitted <- c
	}()
	<-f.dialing
	stopped := make(chan struct{})
	go func() { s.rt.Stop(); close(stopped) }()
	var c *Call
	select {
	case c = <-admitted: // the stop ended the agent's connecting
	case <-time.After(10 * time.Second):
		close(f.connect)
		t.Fatal("the stop did not cut the agent's connecting short")
	}
	select {
	case <-stopped:
		t.Fatal("Stop returned before the admitted call was started")
	case <-time.After(50 * time.Millisecond):
	}
	if c == nil {
		t.FailNow()
	}
	c.Start(s.leg)
	select {
	case <-stopped:
	case <-time.After(10 * time.Second):
		t.Fatal("Stop did not return once the call was started")
	}
	if st, out, _ := s.transfers.status(); st != switchback.StatusCompleted || out.TransferType != switchback.TransferCallerDisconnect {
		t.Errorf("transfer = %s %+v", st, out)
	}
	s.trail.before(t, "stored output CALLER_DISCONNECT", "BYE")
}

func TestStopEndsCallsWithTheirOutcomeStored(t *testing.T) {
	talking := make(chan struct{})
	agent := &fakeAgent{closed: make(chan struct{}), run: func(ctx context.Context, call switchback.Call) (*switchback.HandBack, error) {
		call.SaveState(json.RawMessage(`{"step":7}`))
		close(talking)
		<-ctx.Done()
		if !errors.Is(context.Cause(ctx), switchback.ErrShutdown) {
			t.Errorf("cause = %v", context.Cause(ctx))
		}
		return nil, ctx.Err()
	}}
	s := newSetup(t, switchback.ReturnREFER, agent, false)
	s.start(t)
	<-talking
	s.rt.Stop()
	st, out, _ := s.transfers.status()
	if st != switchback.StatusCompleted || out.TransferType != switchback.TransferCallerDisconnect {
		t.Fatalf("transfer = %s %+v", st, out)
	}
	s.trail.before(t, "stored output CALLER_DISCONNECT", "BYE")
	if string(s.transfers.state) != `{"step":7}` {
		t.Errorf("state = %s", s.transfers.state)
	}
	if by := s.transfers.events(switchback.EventCallEnded); len(by) != 1 || by[0]["by"] != "shutdown" {
		t.Errorf("call.ended = %v", by)
	}
}

func TestStopWhileBridged(t *testing.T) {
	s := newSetup(t, switchback.ReturnINVITE, handsBack(switchback.TransferAgent), false)
	bridged := make(chan struct{})
	s.leg.invite = func(ctx context.Context, tr *switchback.Transfer, listen bool) (Bridge, switchback.ReturnResult) {
		close(bridged)
		return &fakeBridge{trail: s.trail, ended: make(chan struct{})}, switchback.ReturnResult{Method: switchback.ReturnINVITE, SIPStatus: 200}
	}
	s.start(t)
	<-bridged
	s.rt.Stop()
	s.trail.before(t, "stored result INVITE", "bridge hung up")
	s.trail.before(t, "bridge hung up", "recorded")
}

func TestFollowerHearsBothLegs(t *testing.T) {
	heard := make(chan switchback.AudioFrame, 2)
	followed := make(chan error, 1)
	agent := followingAgent{&fakeAgent{closed: make(chan struct{}),
		run: func(ctx context.Context, call switchback.Call) (*switchback.HandBack, error) {
			return &switchback.HandBack{Output: &switchback.OutputContext{TransferType: switchback.TransferAgent}}, nil
		},
		follow: func(ctx context.Context, call switchback.Call) error {
			followed <- call.Play(ctx, []int16{1})
			for range 2 {
				heard <- <-call.Audio()
			}
			call.Record(switchback.EventTranscript, map[string]string{"role": "caller", "text": "hello", "final": "true"})
			<-ctx.Done()
			return nil
		}}}
	s := newSetup(t, switchback.ReturnINVITE, agent, false)
	br := &fakeBridge{trail: s.trail, ended: make(chan struct{})}
	var c *Call
	s.leg.invite = func(ctx context.Context, tr *switchback.Transfer, listen bool) (Bridge, switchback.ReturnResult) {
		if !listen {
			t.Error("a following agent should be heard both legs")
		}
		c.Frames() <- switchback.AudioFrame{Leg: switchback.LegCaller}
		c.Frames() <- switchback.AudioFrame{Leg: switchback.LegReturn}
		return br, switchback.ReturnResult{Method: switchback.ReturnINVITE, SIPStatus: 200}
	}
	c, err := s.rt.Admit(context.Background(), Arrival{TenantID: "acme", TransferID: "t1"})
	if err != nil {
		t.Fatal(err)
	}
	c.Start(s.leg)
	if err := <-followed; err != switchback.ErrBridged {
		t.Errorf("Play while bridged = %v, want ErrBridged", err)
	}
	legs := map[switchback.Leg]bool{}
	for range 2 {
		legs[(<-heard).Leg] = true
	}
	if !legs[switchback.LegCaller] || !legs[switchback.LegReturn] {
		t.Errorf("legs heard = %v", legs)
	}
	br.by = "caller"
	close(br.ended)
	s.wait(t)
	if tr := s.transfers.events(switchback.EventTranscript); len(tr) != 1 || tr[0]["text"] != "hello" {
		t.Errorf("transcripts = %v", tr)
	}
}

func TestDigitsAreRecordedAndDelivered(t *testing.T) {
	got := make(chan switchback.Digit, 1)
	agent := &fakeAgent{closed: make(chan struct{}), run: func(ctx context.Context, call switchback.Call) (*switchback.HandBack, error) {
		got <- <-call.Digits()
		return &switchback.HandBack{Output: &switchback.OutputContext{TransferType: switchback.TransferAgent}}, nil
	}}
	s := newSetup(t, switchback.ReturnBYE, agent, false)
	c := s.start(t)
	c.Digit(switchback.Digit{Leg: switchback.LegCaller, Digit: '5'})
	if d := <-got; d.Digit != '5' {
		t.Errorf("digit = %c", d.Digit)
	}
	s.wait(t)
	if d := s.transfers.events(switchback.EventDigit); len(d) != 1 || d[0]["digit"] != "5" || d[0]["leg"] != "caller" {
		t.Errorf("digit events = %v", d)
	}
}

func TestFinishAudioDrainsBeforeTheHandBack(t *testing.T) {
	agent := &fakeAgent{closed: make(chan struct{}), run: func(ctx context.Context, call switchback.Call) (*switchback.HandBack, error) {
		call.Enqueue(make([]int16, 800))
		return &switchback.HandBack{Output: &switchback.OutputContext{TransferType: switchback.TransferAgent}, FinishAudio: true}, nil
	}}
	s := newSetup(t, switchback.ReturnBYE, agent, false)
	s.start(t)
	s.wait(t)
	s.trail.before(t, "drained", "stored output")
	if s.leg.cleared != 0 {
		t.Error("the audio was cleared")
	}
}

func TestResumedConversationReachesTheAgent(t *testing.T) {
	s := newSetup(t, switchback.ReturnBYE, handsBack(switchback.TransferAgent), false)
	s.transfers.conv = &switchback.Conversation{TenantID: "acme", ExternalID: "conv-1", State: json.RawMessage(`{"step":1}`)}
	f := &factory{agent: handsBack(switchback.TransferAgent)}
	s.rt.agents = f
	s.start(t)
	s.wait(t)
	if f.info == nil || f.info.Conversation == nil || string(f.info.Conversation.State) != `{"step":1}` {
		t.Fatalf("info = %+v", f.info)
	}
	if f.info.Input.TaskName != "billing" || f.info.Return != switchback.ReturnBYE {
		t.Errorf("info = %+v", f.info)
	}
}

func TestALegGoneWithoutItsByeStillGetsOne(t *testing.T) {
	s := newSetup(t, switchback.ReturnREFER, handsBack(switchback.TransferAgent), false)
	s.leg.refer = func(ctx context.Context, tr *switchback.Transfer) switchback.ReturnResult {
		// The caller's session timer lapses while the REFER waits.
		s.leg.endOnce.Do(func() { s.leg.by = "session-timer"; close(s.leg.ended) })
		return switchback.ReturnResult{Method: switchback.ReturnREFER, SIPStatus: 202, Reason: "gone"}
	}
	s.start(t)
	s.wait(t)
	s.trail.before(t, "stored result REFER", "BYE")
	if by := s.transfers.events(switchback.EventCallEnded); len(by) != 1 || by[0]["by"] != "session-timer" {
		t.Errorf("call.ended = %v", by)
	}
}

func TestAnAgentThatReturnsNothingHandsBackAsSystem(t *testing.T) {
	agent := &fakeAgent{closed: make(chan struct{}), run: func(context.Context, switchback.Call) (*switchback.HandBack, error) {
		return nil, nil
	}}
	s := newSetup(t, switchback.ReturnBYE, agent, false)
	s.start(t)
	s.wait(t)
	_, out, _ := s.transfers.status()
	if out == nil || out.TransferType != switchback.TransferSystem {
		t.Fatalf("output = %+v, want SYSTEM", out)
	}
	if o := s.transfers.events(switchback.EventOutcome); len(o) != 1 || !strings.Contains(o[0]["reason"], "no hand-back") {
		t.Errorf("outcome events = %v", o)
	}
	s.trail.before(t, "stored output SYSTEM", "BYE")
}

func TestCallerHangsUpWhileTheLastAudioPlays(t *testing.T) {
	agent := &fakeAgent{closed: make(chan struct{}), run: func(ctx context.Context, call switchback.Call) (*switchback.HandBack, error) {
		call.Enqueue(make([]int16, 8000))
		return &switchback.HandBack{Output: &switchback.OutputContext{TransferType: switchback.TransferAgent}, FinishAudio: true}, nil
	}}
	s := newSetup(t, switchback.ReturnBYE, agent, false)
	s.leg.drain = func(ctx context.Context) error {
		s.leg.hangup("caller")
		return switchback.ErrCallOver
	}
	s.start(t)
	s.wait(t)
	if by := s.transfers.events(switchback.EventCallEnded); len(by) != 1 || by[0]["by"] != "caller" {
		t.Errorf("call.ended = %v, want one by caller", by)
	}
	if s.trail.index("BYE") >= 0 {
		t.Errorf("a BYE to a caller gone:\n%s", s.trail)
	}
}

func TestDrainWaitsForAnAdmittedCallStartedOrAbandoned(t *testing.T) {
	for _, tc := range []struct {
		name     string
		answered bool
	}{
		{"answered", true},
		{"abandoned", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newSetup(t, switchback.ReturnBYE, handsBack(switchback.TransferAgent), false)
			// Admitted before the drain, and still being answered (the
			// 200 waits for its ACK) when it starts.
			c, err := s.rt.Admit(context.Background(), Arrival{TenantID: "acme", TransferID: "t1", CallID: "cid"})
			if err != nil {
				t.Fatal(err)
			}
			idle := s.rt.Drain()
			select {
			case <-idle:
				t.Fatal("idle while a call admitted before the drain is being answered")
			default:
			}
			if tc.answered {
				c.Start(s.leg)
			} else {
				c.Abandon("the caller went away before acknowledging the answer")
			}
			select {
			case <-idle:
			case <-time.After(10 * time.Second):
				t.Fatalf("not idle once the call ended:\n%s", s.trail)
			}
			want := switchback.TransferCallerDisconnect
			if tc.answered {
				// It ran to its normal end, not cut short by the drain.
				want = switchback.TransferAgent
			}
			if _, out, _ := s.transfers.status(); out == nil || out.TransferType != want {
				t.Errorf("output = %+v, want %s", out, want)
			}
			s.wait(t)
		})
	}
}
