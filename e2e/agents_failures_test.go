package e2e

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/switchback/switchback/internal/media"
)

// failuresConfig is a gateway whose tenant "acme" has a websocket agent
// per way of failing, each with the menu as its fallback (its chime, then
// SYSTEM after a second without a digit), but one whose fallback hands the
// call back at once. AGENT is the scripted agent's base URL, DOWN a port
// nothing listens on.
const failuresConfig = `
store: {driver: sqlite, dsn: %s}
sip:
  listen: 127.0.0.1:0
  rtpPorts: {min: %d, max: %d}
  rtpTimeout: 10s
tenants:
  - id: acme
    sip: {user: acme, allow: [127.0.0.0/8]}
    rateLimit: {requestsPerSecond: 1000, burst: 1000}
    agents:
      - task: down
        websocket: {url: "ws://127.0.0.1:DOWN/media", fallback: {task: menu}}
      - task: down-handback
        websocket:
          url: "ws://127.0.0.1:DOWN/media"
          fallback: {output: {transferType: SYSTEM, transferVariables: {reason: agent unavailable}}}
      - task: refused
        websocket: {url: "AGENT/refuse", fallback: {task: menu}}
      - task: slow
        websocket: {url: "AGENT/slow", connectTimeout: 1s, fallback: {task: menu}}
      - task: scripted
        websocket: {url: "AGENT/media", fallback: {task: menu}}
      - task: menu
        menu: {greeting: "builtin:chime", digitTimeout: 1s, default: {transferType: SYSTEM, taskName: fallback_menu}}
log: {level: debug}
`

// Loudness of what the agents of these tests play: the scripted agent's
// tone (a sine of amplitude 4000, RMS about 2800) and the menu's chime
// (RMS about 8500).
const (
	toneAmplitude = 4000
	chimeRMS      = 6000
)

func isTone(f heardFrame) bool  { return f.rms > 1500 && f.rms < 4000 }
func isChime(f heardFrame) bool { return f.rms > chimeRMS }

// handBacksSent holds when the scripted agent sent its hand-back, by
// transfer id.
var handBacksSent sync.Map

// scriptedAgent is a websocket agent that fails on purpose, in the way
// the transfer's input variable "script" names: /refuse refuses the
// handshake, /slow never answers it, /media runs the script.
func startScriptedAgent(t *testing.T) *httptest.Server {
	t.Helper()
	mux := http.NewServeMux()
	mux.HandleFunc("/refuse", func(w http.ResponseWriter, r *http.Request) { http.Error(w, "no", http.StatusForbidden) })
	mux.HandleFunc("/slow", func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() })
	mux.HandleFunc("/media", func(w http.ResponseWriter, r *http.Request) {
		c, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		defer c.CloseNow()
		c.SetReadLimit(1 << 20)
		ctx, cancel := context.WithTimeout(r.Context(), 30*time.Second)
		defer cancel()
		// connected, start, switchback.context; then whatever comes.
		var start struct {
			Start struct {
				CustomParameters map[string]string `json:"customParameters"`
			} `json:"start"`
		}
		for i := 0; i < 3; i++ {
			_, b, err := c.Read(ctx)
			if err != nil {
				return
			}
			if i == 1 {
				json.Unmarshal(b, &start)
			}
		}
		marks := make(chan string, 8)
		go func() {
			for {
				_, b, err := c.Read(ctx)
				if err != nil {
					return
				}
				var m struct {
					Event string `json:"event"`
					Mark  struct {
						Name string `json:"name"`
					} `json:"mark"`
				}
				if json.Unmarshal(b, &m) == nil && m.Event == "mark" {
					marks <- m.Mark.Name
				}
			}
		}()
		send := func(v any) {
			b, _ := json.Marshal(v)
			c.Write(ctx, websocket.MessageText, b)
		}
		handBack := func(vars map[string]string) {
			send(map[string]any{"event": "switchback.handback", "outputContext": map[string]any{"transferType": "AGENT", "transferVariables": vars}})
		}
		// Three seconds of tone, sent at once: Switchback queues it.
		send(map[string]any{"event": "media", "media": map[string]any{"payload": tone(3 * time.Second)}})
		switch start.Start.CustomParameters["script"] {
		case "drop":
			time.Sleep(time.Second)
			c.CloseNow() // no close frame: the TCP connection just ends
		case "close":
			time.Sleep(time.Second)
			c.Close(websocket.StatusNormalClosure, "done")
		case "big":
			time.Sleep(time.Second)
			send(map[string]any{"event": "media", "media": map[string]any{"payload": strings.Repeat("f39/", 300<<10/4)}})
		case "garbage":
			for _, g := range []string{
				`not json`, `[1,2,3]`, `{"event":"media"}`, `{"event":"media","media":{"payload":"%%%"}}`,
				`{"event":"mark"}`, `{"event":"no-such-event"}`, `{"event":"switchback.event","type":"bad type!"}`,
				`{"event":"switchback.transcript","text":"no role"}`,
			} {
				c.Write(ctx, websocket.MessageText, []byte(g))
			}
			c.Write(ctx, websocket.MessageBinary, []byte{0xff, 0x00, 0x13, 0x37})
			send(map[string]any{"event": "mark", "mark": map[string]any{"name": "tone-done"}})
			select {
			case <-marks: // the tone was played, garbage and all
				handBack(map[string]string{"survived": "yes"})
			case <-ctx.Done():
				return
			}
		case "clear":
			time.Sleep(500 * time.Millisecond)
			send(map[string]any{"event": "clear"})
			time.Sleep(300 * time.Millisecond)
			handBacksSent.Store(start.Start.CustomParameters["transferId"], time.Now())
			handBack(map[string]string{"cleared": "yes"})
		}
		// Stay until Switchback closes the stream.
		<-ctx.Done()
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv
}

// tone is d of a 440 Hz sine, µ-law, base64: a media payload.
func tone(d time.Duration) string {
	n := int(d.Milliseconds()) * 8
	pcm := make([]int16, n)
	for i := range pcm {
		pcm[i] = int16(toneAmplitude * math.Sin(2*math.Pi*440*float64(i)/8000))
	}
	ulaw := make([]byte, n)
	media.EncodeULaw(ulaw, pcm)
	return base64.StdEncoding.EncodeToString(ulaw)
}

// startFailuresGateway starts a gateway on failuresConfig, its scripted
// agent and a capture.
func startFailuresGateway(t *testing.T) (*gateway, *capture) {
	t.Helper()
	agent := startScriptedAgent(t)
	cfg := strings.NewReplacer("AGENT", strings.Replace(agent.URL, "http://", "ws://", 1),
		"DOWN", strconv.Itoa(freeLoopbackTCPPort(t))).Replace(failuresConfig)
	return startGatewayConfig(t, cfg, "acme"), startCapture(t)
}

// failingCall is one call of the failure tests: the transfer, its SIPp
// caller (silence for a while, no digit), and what the capture saw.
type failingCall struct {
	*sippCall
	id               string
	invite, answered time.Time // the INVITE left, its 200 OK arrived
	bye              packet
	r                *apiResponse // the transfer the instant the BYE arrived
	heard            []heardFrame
}

func placeFailingCall(t *testing.T, g *gateway, tap *capture, id, task, script string) *failingCall {
	t.Helper()
	g.create(t, "acme", fmt.Sprintf(`{"id":%q,"externalConversationId":"conv-%s","type":"SIP",
		"inputContext":{"taskName":%q,"inputVariables":{"script":%q}}}`, id, id, task, script))
	pcap := new(callerAudio).silence(8*time.Second).writePcap(t, t.TempDir(), "silence.pcap")
	c := &failingCall{id: id, sippCall: newSIPpCall(t, g.sip, "dtmf.xml", map[string]string{"PCAP_FILE": pcap},
		"X-ASAPP-CallTransferId: "+id, "acme")}
	tap.watch(c.sipPort, c.mediaPort)
	invite := tap.on(func(p packet) bool { return p.src == c.sipPort && p.sip("INVITE ") })
	ok := tap.on(func(p packet) bool { return p.dst == c.sipPort && p.sip("SIP/2.0 200") })
	bye := tap.on(func(p packet) bool { return p.dst == c.sipPort && p.sip("BYE ") })
	c.start(t)
	c.r, c.bye = getAt(t, g, bye, c.sippCall, id)
	if ok, out := c.wait(t); !ok {
		t.Fatalf("caller: %s\n%s", out, g.stderr)
	}
	select {
	case p := <-invite:
		c.invite = p.at
	default:
		t.Fatal("the capture missed the INVITE")
	}
	select {
	case p := <-ok:
		c.answered = p.at
	default:
		t.Fatal("the capture missed the 200 OK")
	}
	c.heard = tap.heard(c.mediaPort)
	return c
}

// fallbackReason returns the reason and the fallback of the call's
// agent.fallback event, waiting a little for it to be stored.
func fallbackReason(t *testing.T, g *gateway, id string) (reason, fallback string) {
	t.Helper()
	deadline := time.Now().Add(3 * time.Second)
	for {
		if e := conversationEvents(t, g, "conv-"+id, id).first("agent.fallback"); e != nil {
			return e["reason"], e["fallback"]
		}
		if time.Now().After(deadline) {
			t.Fatalf("no agent.fallback event: %v", conversationEvents(t, g, "conv-"+id, id))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestAgentFailures is the failure matrix of docs/agents.md through a real
// `switchback serve`, with SIPp callers and a capture of what they hear: an
// agent that cannot be reached, refuses the handshake or does not answer
// in time leaves the call to its fallback, which answers it at once; one
// that drops, closes without a hand-back or sends a message too big loses
// the call to its fallback mid-call, the caller hearing the fallback right
// after the agent; garbage is ignored and counted while the call goes on.
// Every case ends with the documented outcome and reason.
func TestAgentFailures(t *testing.T) {
	requireSIPp(t)
	g, tap := startFailuresGateway(t)

	// Before the answer: the fallback answers, and its chime is what the
	// caller hears first.
	before := []struct {
		name, task, reason string
		rings              time.Duration // at least this long from INVITE to 200 OK
	}{
		{"agent down", "down", `^the agent is unreachable: dial tcp 127\.0\.0\.1:\d+: connect: connection refused$`, 0},
		{"handshake refused", "refused", `^the agent refused the WebSocket handshake: HTTP 403$`, 0},
		{"no answer in time", "slow", `^the agent did not answer within 1s$`, time.Second},
	}
	for i, tc := range before {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := placeFailingCall(t, g, tap, fmt.Sprintf("before-%d", i), tc.task, "")
			wantFallbackOutcome(t, g, c, tc.reason)
			rang := c.answered.Sub(c.invite)
			if rang < tc.rings || rang > tc.rings+1500*time.Millisecond {
				t.Errorf("answered %v after the INVITE; want %v and a little", rang, tc.rings)
			}
			first := firstWhere(c.heard, isChime)
			t.Logf("answered %v after the INVITE; the chime began %v after the answer", rang, first.Sub(c.answered))
			if first.IsZero() || first.Sub(c.answered) > 300*time.Millisecond {
				t.Errorf("the fallback's chime began %v after the answer: %s", first.Sub(c.answered), describe(c.heard, c.answered))
			}
		})
	}

	t.Run("agent down, immediate hand-back", func(t *testing.T) {
		t.Parallel()
		c := placeFailingCall(t, g, tap, "handback-1", "down-handback", "")
		wantOutput(t, c.r, "SYSTEM", map[string]string{"reason": "agent unavailable"})
		if d := c.bye.at.Sub(c.answered); d > 500*time.Millisecond {
			t.Errorf("the hand-back's BYE came %v after the answer", d)
		}
		if reason, fallback := fallbackReason(t, g, c.id); !strings.HasPrefix(reason, "the agent is unreachable") || fallback != "hand-back" {
			t.Errorf("agent.fallback: %q, %q", reason, fallback)
		}
	})

	// Mid-call: the agent's tone, then at once the fallback's chime.
	during := []struct{ name, script, reason string }{
		{"drop mid-call", "drop", `^the connection to the agent dropped: `},
		{"close without hand-back", "close", `^the agent closed the connection without a hand-back \(status 1000: done\)$`},
		{"message too big", "big", `^the agent sent a message over 262144 bytes$`},
	}
	for i, tc := range during {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := placeFailingCall(t, g, tap, fmt.Sprintf("during-%d", i), "scripted", tc.script)
			wantFallbackOutcome(t, g, c, tc.reason)
			chime := firstWhere(c.heard, isChime)
			tones := 0
			var lastTone time.Time
			for _, f := range c.heard {
				if isTone(f) && f.at.Before(chime) {
					tones++
					lastTone = f.at
				}
			}
			t.Logf("%d frames of the agent's tone, then the chime %v after the last", tones, chime.Sub(lastTone))
			// The agent's tone played for about the second before it failed,
			// not the three seconds it queued.
			if tones < 35 || tones > 75 {
				t.Errorf("the caller heard %d frames of the agent's tone before the fallback; want about 50", tones)
			}
			if chime.IsZero() || chime.Sub(lastTone) > 300*time.Millisecond {
				t.Errorf("the fallback's chime began %v after the agent's last audio: %s", chime.Sub(lastTone), describe(c.heard, lastTone))
			}
		})
	}

	t.Run("garbage", func(t *testing.T) {
		t.Parallel()
		c := placeFailingCall(t, g, tap, "garbage-1", "scripted", "garbage")
		wantOutput(t, c.r, "AGENT", map[string]string{"survived": "yes"})
		if n := loudIn(c.heard, time.Time{}, c.bye.at); n < 140 {
			t.Errorf("the caller heard %d loud frames; the agent's tone is 150", n)
		}
		if e := conversationEvents(t, g, "conv-"+c.id, c.id).first("agent.fallback"); e != nil {
			t.Errorf("garbage made the fallback take over: %v", e)
		}
		line := waitLogLine(t, g, `"msg":"websocket agent stream ended with drops".*"transferId":"garbage-1"|"transferId":"garbage-1".*"msg":"websocket agent stream ended with drops"`)
		var counts struct{ Malformed, Unknown int }
		json.Unmarshal([]byte(line), &counts)
		if counts.Malformed < 7 || counts.Unknown < 1 {
			t.Errorf("drops counted: %s", line)
		}
	})
}

// wantFallbackOutcome checks a call the menu fallback took: handed back as
// its default output, with an agent.fallback event whose reason matches.
func wantFallbackOutcome(t *testing.T, g *gateway, c *failingCall, reason string) {
	t.Helper()
	oc, _ := c.r.body["outputContext"].(map[string]any)
	if c.r.str("status") != "COMPLETED" || oc["transferType"] != "SYSTEM" || oc["currentTaskName"] != "fallback_menu" {
		t.Errorf("the fallback's outcome: %s", c.r.raw)
	}
	got, fallback := fallbackReason(t, g, c.id)
	if !regexp.MustCompile(reason).MatchString(got) || fallback != "task menu" {
		t.Errorf("agent.fallback: reason %q (want %s), fallback %q", got, reason, fallback)
	}
}

// firstWhere returns when the first frame ok accepts was heard.
func firstWhere(heard []heardFrame, ok func(heardFrame) bool) time.Time {
	for _, f := range heard {
		if ok(f) {
			return f.at
		}
	}
	return time.Time{}
}

// waitLogLine waits up to 3 s for a line of the gateway's log to match
// pattern, and returns it.
func waitLogLine(t *testing.T, g *gateway, pattern string) string {
	t.Helper()
	re := regexp.MustCompile(pattern)
	deadline := time.Now().Add(3 * time.Second)
	for {
		for _, line := range strings.Split(g.stderr.String(), "\n") {
			if re.MatchString(line) {
				return line
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no log line matches %s:\n%s", pattern, g.stderr)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestAgentClearDropsQueuedAudio: an agent queues three seconds of audio
// at once and clears it half a second in; what the caller hears goes
// silent within a frame, and the agent's hand-back (finishAudio) comes
// back at once, with nothing left to play.
func TestAgentClearDropsQueuedAudio(t *testing.T) {
	requireSIPp(t)
	g, tap := startFailuresGateway(t)
	c := placeFailingCall(t, g, tap, "clear-1", "scripted", "clear")
	wantOutput(t, c.r, "AGENT", map[string]string{"cleared": "yes"})
	cleared := clearedAt(t, g, 1)[0]
	t.Logf("the agent's audio cleared at %s:%s", cleared.Format("15:04:05.000"), describe(c.heard, cleared))
	if n := loudIn(c.heard, cleared.Add(-200*time.Millisecond), cleared); n < 8 {
		t.Errorf("the agent's tone was not playing before the clear: %s", describe(c.heard, cleared))
	}
	if last := lastLoudBefore(c.heard, c.bye.at); last.Sub(cleared) > 40*time.Millisecond {
		t.Errorf("the caller heard the agent %v after the clear: %s", last.Sub(cleared), describe(c.heard, cleared))
	}
	// The hand-back came 300 ms after the clear, with finishAudio: with
	// nothing left to play, it finished at once (returnResult.at), rather
	// than when the 2.5 s of tone left would have played out. (When the
	// caller gets the BYE after that also depends on the store's write,
	// which a machine busy with other tests can hold up.)
	sent, _ := handBacksSent.Load(c.id)
	rr, _ := c.r.body["returnResult"].(map[string]any)
	at, err := time.Parse(time.RFC3339Nano, fmt.Sprint(rr["at"]))
	if sentAt, ok := sent.(time.Time); !ok || err != nil {
		t.Errorf("the hand-back's time: sent %v, returnResult %s", sent, c.r.raw)
	} else if d := at.Sub(sentAt); d > time.Second {
		t.Errorf("the hand-back finished %v after the agent sent it (the BYE came %v after the clear)", d, c.bye.at.Sub(cleared))
	}
}
