package websocket

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"regexp"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/switchback/switchback"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden with what Switchback sends now")

// golden compares a message Switchback sent with testdata/name.golden: the
// message exactly as sent, then a newline. With -update it rewrites it.
func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name+".golden")
	got = append(bytes.Clone(got), '\n')
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to write it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs:\n got %s\nwant %s", name, got, want)
	}
}

// TestWireGolden pins every message Switchback sends, byte for byte, on a
// first call handed back by BYE and on a resumed call handed back by
// INVITE whose agent keeps listening.
func TestWireGolden(t *testing.T) {
	ctx := context.Background()
	t.Run("first leg, BYE", func(t *testing.T) {
		ag := newRemoteAgent(t)
		f := newTestFactory(t, ag.Server, Config{AuthToken: "s3cret"}, nil, nil)
		call := newFakeCall(testInfo(switchback.ReturnBYE))
		a, err := f.NewAgent(ctx, call.info)
		if err != nil {
			t.Fatal(err)
		}
		golden(t, "connected", ag.next(t))
		golden(t, "start", ag.next(t))
		golden(t, "context", ag.next(t))
		done := startRun(ctx, a, call)
		call.audio <- frame(switchback.LegCaller, 1)
		golden(t, "media-inbound", ag.next(t))
		call.audio <- frame(switchback.LegCaller, 2)
		ag.next(t)
		call.digits <- switchback.Digit{Leg: switchback.LegCaller, Digit: '5', At: t0}
		golden(t, "dtmf-inbound", ag.next(t))
		ag.send(mediaJSON(160))
		ag.send(map[string]any{"event": "mark", "streamSid": "x", "mark": map[string]string{"name": "greeting-done"}})
		call.waitFor(t, "the mark queued", func(c *fakeCall) bool { return len(c.queue) == 2 })
		call.play()
		golden(t, "mark", ag.next(t))
		ag.send(map[string]any{"event": "switchback.handback", "outputContext": map[string]any{"transferType": "AGENT"}})
		r := waitRun(t, done)
		if r.err != nil || r.hb == nil {
			t.Fatalf("Run = %+v", r)
		}
		golden(t, "stop", ag.next(t))
		if err := ag.closed(t); websocket.CloseStatus(err) != websocket.StatusNormalClosure {
			t.Errorf("close = %v, want 1000", err)
		}
		closeAgent(t, a)
	})
	t.Run("resumed leg, INVITE, listening", func(t *testing.T) {
		ag := newRemoteAgent(t)
		f := newTestFactory(t, ag.Server, Config{}, nil, nil)
		info := testInfo(switchback.ReturnINVITE)
		info.Conversation = resumedConversation()
		call := newFakeCall(info)
		a, err := f.NewAgent(ctx, call.info)
		if err != nil {
			t.Fatal(err)
		}
		ag.next(t)
		golden(t, "start-invite", ag.next(t))
		golden(t, "context-resumed", ag.next(t))
		done := startRun(ctx, a, call)
		ag.send(map[string]any{"event": "switchback.handback", "outputContext": map[string]any{"transferType": "SYSTEM"}})
		waitRun(t, done)
		fctx, cancel := context.WithCancel(ctx)
		followed := make(chan error, 1)
		go func() { followed <- a.(switchback.Follower).Follow(fctx, call) }()
		call.audio <- frame(switchback.LegReturn, 100)
		golden(t, "media-outbound", ag.next(t))
		call.digits <- switchback.Digit{Leg: switchback.LegReturn, Digit: '#', At: t0}
		golden(t, "dtmf-outbound", ag.next(t))
		cancel()
		if err := <-followed; err != nil {
			t.Errorf("Follow = %v", err)
		}
		closeAgent(t, a)
		golden(t, "stop-invite", ag.next(t))
		ag.closed(t)
	})
}

func resumedConversation() *switchback.Conversation {
	at := t0.Add(-10 * time.Minute)
	return &switchback.Conversation{
		TenantID: "acme", ExternalID: "conv-1",
		Legs: []*switchback.Transfer{{
			TenantID: "acme", ID: "tr-0", ExternalConversationID: "conv-1", Type: switchback.TypeSIP,
			Status: switchback.StatusCompleted, CreatedAt: at, CallReceivedAt: at.Add(time.Second),
			CompletedAt:  at.Add(time.Minute),
			InputContext: &switchback.InputContext{TaskName: "billing"},
			OutputContext: &switchback.OutputContext{TransferType: switchback.TransferAgent, CurrentTaskName: "billing",
				TransferVariables: map[string]string{"reason": "dispute"}},
			SIP: &switchback.SIP{ReturnURI: "sip:ivr@pbx.example", ReturnAuthPassword: "never-shown"},
		}, {
			// The call's own leg, as the store lists it: not an earlier one,
			// so not in switchback.context.
			TenantID: "acme", ID: "tr-1", ExternalConversationID: "conv-1", Type: switchback.TypeSIP,
			Status: switchback.StatusOngoing, CreatedAt: t0.Add(-time.Second), CallReceivedAt: t0,
			InputContext: &switchback.InputContext{TaskName: "billing"},
		}},
		State: json.RawMessage(`{"step":"confirm","attempts":2}`),
		Events: []switchback.ConversationEvent{
			{At: at.Add(time.Second), TransferID: "tr-0", Type: switchback.EventCallStarted, Data: map[string]string{"from": "sip:+15551230000@carrier.example"}},
			{At: at.Add(2 * time.Second), TransferID: "tr-0", Type: switchback.EventTranscript, Data: map[string]string{"role": "caller", "text": "I want to dispute a charge", "final": "true"}},
		},
		CreatedAt: at, UpdatedAt: at.Add(time.Minute),
	}
}

// mediaJSON is an agent's media message of n samples of a tone.
func mediaJSON(n int) map[string]any {
	ulaw := make([]byte, n)
	for i := range ulaw {
		ulaw[i] = byte(0x20 + i%32)
	}
	return map[string]any{"event": "media", "streamSid": "x", "media": map[string]string{"payload": base64.StdEncoding.EncodeToString(ulaw)}}
}

// TestAppendMediaIsJSON: the hand-written media message is what
// encoding/json would write.
func TestAppendMediaIsJSON(t *testing.T) {
	ulaw := []byte{0xff, 0x7f, 0x00, 0x80, 0x10}
	got := appendMedia(nil, "MZ00112233445566778899aabbccddeeff", trackOutbound, 12, 7, 140, ulaw)
	want, _ := json.Marshal(mediaMsg{
		Event: "media", SequenceNumber: "12", StreamSID: "MZ00112233445566778899aabbccddeeff",
		Media: mediaBody{Track: trackOutbound, Chunk: "7", Timestamp: "140", Payload: base64.StdEncoding.EncodeToString(ulaw)},
	})
	if !bytes.Equal(got, want) {
		t.Errorf("appendMedia =\n%s\nwant\n%s", got, want)
	}
	if n := testing.AllocsPerRun(100, func() {
		got = appendMedia(got[:0], "MZ00112233445566778899aabbccddeeff", trackInbound, 1<<40, 1<<40, 1<<40, make([]byte, 160))
	}); n != 0 {
		t.Errorf("appendMedia allocates %v times", n)
	}
}

var sidPattern = map[string]*regexp.Regexp{
	"AC": regexp.MustCompile(`^AC[0-9a-f]{32}$`),
	"CA": regexp.MustCompile(`^CA[0-9a-f]{32}$`),
	"MZ": regexp.MustCompile(`^MZ[0-9a-f]{32}$`),
}

func TestSIDs(t *testing.T) {
	for prefix, got := range map[string]string{
		"AC": AccountSID("acme"), "CA": CallSID("acme", "tr-1"), "MZ": streamSID("acme", "tr-1", testURL),
	} {
		if !sidPattern[prefix].MatchString(got) {
			t.Errorf("%s SID %q is not %s and 32 lowercase hex digits", prefix, got, prefix)
		}
	}
	// Stable across restarts, nodes and releases: a hang-up may reach
	// another process than the one that told the agent the sid.
	if got := AccountSID("acme"); got != "AC3d8610ae8633139aedd21c6a153e895a" {
		t.Errorf("AccountSID(acme) = %s, changed", got)
	}
	if got := CallSID("acme", "tr-1"); got != "CA0b4a883df2a8a354dbd3e76e89d2f9ab" {
		t.Errorf("CallSID(acme, tr-1) = %s, changed", got)
	}
	// Parts are length-prefixed: ("ab","c") and ("a","bc") differ.
	if CallSID("ab", "c") == CallSID("a", "bc") || AccountSID("acme") == AccountSID("acme2") {
		t.Error("SIDs of different inputs collide")
	}
}

// TestSendMediaAllocs: a caller's frame goes to the agent's queue without
// allocating (the media path runs 50 times a second per call).
func TestSendMediaAllocs(t *testing.T) {
	f := newTestFactory(t, nil, Config{}, nil, nil)
	s := &session{f: f, ids: ids{stream: streamSID("acme", "tr-1", testURL)}, start: t0, out: make(chan *[]byte, 1)}
	fr := frame(switchback.LegCaller, 1)
	if n := testing.AllocsPerRun(200, func() {
		s.sendMedia(trackInbound, &s.inChunk, fr)
		bufPool.Put(<-s.out)
	}); n != 0 {
		t.Errorf("sendMedia allocates %v times a frame", n)
	}
}
