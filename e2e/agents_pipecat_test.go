package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// pipecatConfig is a gateway whose tenant "acme" sends every call to the
// pipecat example bot on BOT_PORT. The debug log says when the bot's
// audio is cleared.
const pipecatConfig = `
store: {driver: sqlite, dsn: %s}
sip:
  listen: 127.0.0.1:0
  rtpPorts: {min: %d, max: %d}
  rtpTimeout: 10s
  referTimeout: 5s
  returnTimeout: 5s
tenants:
  - id: acme
    sip: {user: acme, allow: [127.0.0.0/8]}
    agents:
      - websocket:
          url: ws://127.0.0.1:BOT_PORT/media
          authToken: bot-token
          connectTimeout: 5s
          fallback: {output: {transferType: SYSTEM, transferVariables: {reason: agent unavailable}}}
          hangUpOutput: {transferType: SYSTEM, transferVariables: {ended: bot}}
  - id: stale   # the bot's URL with a token the bot does not have
    sip: {user: stale, allow: [127.0.0.0/8]}
    agents:
      - websocket:
          url: ws://127.0.0.1:BOT_PORT/media
          authToken: not-the-bot-token
          fallback: {output: {transferType: SYSTEM, transferVariables: {reason: agent unavailable}}}
shutdown: {drainTimeout: 1m}
log: {level: debug}
`

// pipecatLeg is one call of the conversation conv-pc: its SIPp caller,
// watched by the capture.
type pipecatLeg struct {
	*sippCall
	id string
}

// TestAgentPipecat runs a conversation of five calls through a real
// `switchback serve` whose agent is the pipecat example bot, each call
// placed by SIPp streaming recorded speech and RFC 4733 digits, what the
// caller hears captured on the wire: answered and greeted, a barge-in
// that clears the bot's audio within a frame, its echo, hand-backs by BYE,
// REFER and INVITE (stored before each), the conversation's state carried
// from call to call, listening to a bridged call, the caller hanging up,
// and a drain that lets the last call finish, hung up over Twilio's REST.
// Between them, a tenant whose agent signs with the wrong token is refused
// by the bot's own X-Twilio-Signature check, and its fallback hands back.
func TestAgentPipecat(t *testing.T) {
	requireSIPp(t)
	// The gateway first, so the bot knows the API its auto hang-up
	// reaches; it dials the bot's port only when a call comes.
	botPort := freeLoopbackTCPPort(t)
	g := startGatewayConfig(t, strings.ReplaceAll(pipecatConfig, "BOT_PORT", strconv.Itoa(botPort)), "acme", "stale")
	bot := startPipecatBot(t, botPort, "bot-token", g.URL)
	tap := startCapture(t)
	pcm := speech(t)[:8000*26/10] // one sentence, 2.6 s
	audio := t.TempDir()

	// call prepares a leg of conv-pc: the transfer, and its caller playing
	// the audio given; the test starts it once its triggers are set.
	call := func(t *testing.T, id, sip, scenario string, replace map[string]string, a *callerAudio) *pipecatLeg {
		t.Helper()
		g.create(t, "acme", fmt.Sprintf(`{"id":%q,"externalConversationId":"conv-pc","type":"SIP",
			"inputContext":{"taskName":"billing","inputVariables":{"customerId":"42"}}%s}`, id, sip))
		if replace == nil {
			replace = map[string]string{}
		}
		pcap := a.writePcap(t, audio, id+".pcap")
		for _, k := range []string{"PCAP_FILE", "CALLER_PCAP"} {
			replace[k] = pcap
		}
		c := newSIPpCall(t, g.sip, scenario, replace, "X-ASAPP-CallTransferId: "+id, "acme")
		tap.watch(c.sipPort, c.mediaPort)
		return &pipecatLeg{sippCall: c, id: id}
	}

	ok := t.Run("BYE: greeting, barge-in, echo, digit", func(t *testing.T) {
		a := new(callerAudio).silence(600 * time.Millisecond).audio(pcm).silence(1500 * time.Millisecond).digit('5').silence(4 * time.Second)
		leg := call(t, "pc-1", "", "dtmf.xml", nil, a)
		trig := tap.on(func(p packet) bool { return p.dst == leg.sipPort && p.sip("BYE ") })
		leg.start(t)
		// DESIGN.md invariant 3: the instant the caller sees the BYE, the
		// bot's hand-back is stored.
		r, bye := getAt(t, g, trig, leg.sippCall, leg.id)
		wantOutput(t, r, "AGENT", map[string]string{"digit": "5", "utterances": "1"})
		if ok, out := leg.wait(t); !ok {
			t.Fatalf("caller: %s\n%s", out, g.stderr)
		}
		heard := tap.heard(leg.mediaPort)
		cleared := clearedAt(t, g, 1)[0]
		t.Logf("heard %d frames; the bot's audio cleared at %s:%s", len(heard), cleared.Format("15:04:05.000"), describe(heard, cleared))
		// The bot greets over the speech's first words; the barge-in
		// clears its audio: what the caller hears goes silent within a
		// frame (20 ms, and 20 ms of slack).
		if loud := loudIn(heard, cleared.Add(-200*time.Millisecond), cleared); loud == 0 {
			t.Errorf("the bot's greeting was not playing in the 200 ms before the clear: %s", describe(heard, cleared))
		}
		if last := lastLoudBefore(heard, cleared.Add(500*time.Millisecond)); last.Sub(cleared) > 40*time.Millisecond {
			t.Errorf("the caller still heard the bot %v after the clear: %s", last.Sub(cleared), describe(heard, cleared))
		}
		// Then the echo of what the caller said, played out in full
		// before the BYE (finishAudio).
		digit := firstDigitFrom(tap, leg)
		if digit.IsZero() {
			t.Fatal("the capture saw no telephone-event from the caller")
		}
		echo := loudIn(heard, cleared.Add(500*time.Millisecond), bye.at)
		if echo < 50 {
			t.Errorf("the caller heard %d loud frames of echo; want over 50 (1 s)", echo)
		}
		if after := loudIn(heard, digit.Add(300*time.Millisecond), bye.at); after == 0 {
			t.Errorf("no echo heard after the digit: the hand-back cut the bot's audio short: %s", describe(heard, digit))
		}
		events := conversationEvents(t, g, "conv-pc", "pc-1")
		if ctx := events.first("custom.context"); ctx == nil || ctx["legs"] != "0" || ctx["state"] != "null" {
			t.Errorf("the first call's switchback.context as the bot recorded it: %v", ctx)
		}
		for _, want := range []string{"custom.barge-in", "transcript"} {
			if events.first(want) == nil {
				t.Errorf("no %s event: %v", want, events)
			}
		}
	})
	if !ok {
		return
	}

	ok = t.Run("REFER: the next call resumes the state", func(t *testing.T) {
		a := new(callerAudio).silence(time.Second).digit('7').silence(4 * time.Second)
		leg := call(t, "pc-2", `,"sip":{"returnURI":"sip:desk@127.0.0.1:5999","returnTransferType":"REFER"}`,
			"agent_caller_refer.xml", map[string]string{"NOTIFY_FINAL": "200 OK", "TRANSFER_ID": "pc-2"}, a)
		refer := tap.on(func(p packet) bool { return p.dst == leg.sipPort && p.sip("REFER ") })
		leg.start(t)
		r, referred := getAt(t, g, refer, leg.sippCall, leg.id)
		// The count of utterances goes on from the first call's state.
		wantOutput(t, r, "AGENT", map[string]string{"digit": "7", "utterances": "1"})
		if ok, out := leg.wait(t); !ok {
			t.Fatalf("caller: %s\n%s", out, g.stderr)
		}
		if loud := loudIn(tap.heard(leg.mediaPort), time.Time{}, referred.at); loud < 25 {
			t.Errorf("the caller heard %d loud frames before the REFER; the greeting is longer", loud)
		}
		ctx := conversationEvents(t, g, "conv-pc", "pc-2").first("custom.context")
		var state map[string]any
		if ctx != nil {
			json.Unmarshal([]byte(ctx["state"]), &state)
		}
		if ctx == nil || ctx["legs"] != "1" || ctx["returnTransferType"] != "REFER" || state["utterances"] != 1.0 || state["lastDigit"] != "5" {
			t.Errorf("switchback.context of the second call, as the bot recorded it: %v", ctx)
		}
	})
	if !ok {
		return
	}

	ok = t.Run("INVITE: the bot listens to the bridged call", func(t *testing.T) {
		uasPort, uasWait := sippUAS(t, "invite_return_uas_bye.xml", map[string]string{"HANGUP_MS": "5000"})
		tap.watch(uasPort)
		a := new(callerAudio).silence(500 * time.Millisecond).digit('3').silence(2500 * time.Millisecond).audio(pcm).silence(3 * time.Second)
		leg := call(t, "pc-3", fmt.Sprintf(`,"sip":{"returnURI":"sip:desk@127.0.0.1:%d","returnTransferType":"INVITE"}`, uasPort),
			"invite_return_caller_wait.xml", map[string]string{"CALLER_PT": "0", "CALLER_CODEC": "PCMU"}, a)
		invite := tap.on(func(p packet) bool { return p.dst == uasPort && p.sip("INVITE ") })
		leg.start(t)
		r, _ := getAt(t, g, invite, leg.sippCall, leg.id)
		wantOutput(t, r, "AGENT", map[string]string{"digit": "3", "utterances": "1"})
		if ok, out := leg.wait(t); !ok {
			t.Fatalf("caller: %s\n%s", out, g.stderr)
		}
		if ok, out := uasWait(); !ok {
			t.Fatalf("return leg: %s\n%s", out, g.stderr)
		}
		// While bridged the bot heard both legs, each on its track, and
		// transcribed the caller.
		deadline := time.Now().Add(3 * time.Second)
		for {
			events := conversationEvents(t, g, "conv-pc", "pc-3")
			inbound, outbound := 0, 0
			for _, e := range events.all("custom.listening") {
				in, _ := strconv.Atoi(e["inbound"])
				out, _ := strconv.Atoi(e["outbound"])
				inbound, outbound = max(inbound, in), max(outbound, out)
			}
			bridged := false
			for _, e := range events.all("transcript") {
				bridged = bridged || strings.Contains(e["text"], "bridged") && e["role"] == "caller"
			}
			if inbound >= 50 && outbound >= 50 && bridged && events.first("bridged") != nil {
				t.Logf("the bot heard %d inbound and %d outbound frames while bridged", inbound, outbound)
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("the bot's record of the bridged call: %d inbound, %d outbound frames, a bridged transcript %v: %v",
					inbound, outbound, bridged, events)
			}
			time.Sleep(100 * time.Millisecond)
		}
	})
	if !ok {
		return
	}

	ok = t.Run("the caller hangs up: stop, close, the last state kept", func(t *testing.T) {
		a := new(callerAudio).silence(600 * time.Millisecond).audio(pcm).silence(3 * time.Second)
		leg := call(t, "pc-4", "", "agent_caller_hangup.xml", map[string]string{"PAUSE_MS": "5000"}, a)
		leg.start(t)
		if ok, out := leg.wait(t); !ok {
			t.Fatalf("caller: %s\n%s", out, g.stderr)
		}
		waitStatus(t, g, "acme", "pc-4", "COMPLETED")
		r := g.get(t, "acme", "pc-4")
		if oc, _ := r.body["outputContext"].(map[string]any); oc["transferType"] != "CALLER_DISCONNECT" {
			t.Fatalf("after the caller hung up: %s", r.raw)
		}
		// The state the bot saved after echoing this call's utterance, on
		// top of what the earlier calls saved.
		c, err := newClient(g.keys["acme"]).do(context.Background(), "GET", g.URL+"/generativeagent/v1/conversations/conv-pc", "")
		if err != nil {
			t.Fatal(err)
		}
		if state, _ := c.body["state"].(map[string]any); state["utterances"] != 2.0 || state["lastDigit"] != "3" {
			t.Errorf("the conversation's state after the caller hung up: %v", c.body["state"])
		}
		// The bot got Twilio's stop, then the close.
		callSid := regexp.MustCompile(`call (CA[0-9a-f]{32}) for transfer pc-4`).FindStringSubmatch(bot.out.String())
		if callSid == nil {
			t.Fatalf("the bot did not log the call:\n%s", bot.out)
		}
		deadline := time.Now().Add(3 * time.Second)
		for {
			out := bot.out.String()
			stop := strings.Index(out, "stop: the stream of call "+callSid[1]+" ended")
			closed := strings.Index(out, "Switchback closed the stream of call "+callSid[1])
			if stop >= 0 && closed > stop {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("the bot did not see stop then the close (at %d and %d):\n%s", stop, closed, out)
			}
			time.Sleep(50 * time.Millisecond)
		}
	})
	if !ok {
		return
	}

	t.Run("a wrong signature: the bot refuses, the fallback hands back", func(t *testing.T) {
		g.create(t, "stale", `{"id":"stale-1","externalConversationId":"conv-stale","type":"SIP"}`)
		pcap := new(callerAudio).silence(3*time.Second).writePcap(t, audio, "stale-1.pcap")
		c := newSIPpCall(t, g.sip, "dtmf.xml", map[string]string{"PCAP_FILE": pcap}, "X-ASAPP-CallTransferId: stale-1", "stale")
		tap.watch(c.sipPort)
		trig := tap.on(func(p packet) bool { return p.dst == c.sipPort && p.sip("BYE ") })
		c.start(t)
		select {
		case <-trig:
		case <-time.After(15 * time.Second):
			t.Fatalf("no BYE:\n%s", g.stderr)
		}
		r := g.get(t, "stale", "stale-1")
		wantOutput(t, r, "SYSTEM", map[string]string{"reason": "agent unavailable"})
		if ok, out := c.wait(t); !ok {
			t.Fatalf("caller: %s\n%s", out, g.stderr)
		}
		cv, err := newClient(g.keys["stale"]).do(context.Background(), "GET", g.URL+"/generativeagent/v1/conversations/conv-stale", "")
		if err != nil || !strings.Contains(string(cv.raw), `"reason":"the agent refused the WebSocket handshake: HTTP 403"`) {
			t.Errorf("the conversation does not record the refusal: %v %s", err, cv.raw)
		}
		if !strings.Contains(bot.out.String(), "refused a handshake without a valid X-Twilio-Signature") {
			t.Errorf("the bot did not refuse the handshake:\n%s", bot.out)
		}
	})

	t.Run("a drain lets the call finish, hung up over REST", func(t *testing.T) {
		a := new(callerAudio).silence(2500 * time.Millisecond).digit('*').silence(4 * time.Second)
		leg := call(t, "pc-5", "", "dtmf.xml", nil, a)
		bye := tap.on(func(p packet) bool { return p.dst == leg.sipPort && p.sip("BYE ") })
		leg.start(t)
		waitOngoing(t, g, "acme", "pc-5")
		g.cmd.Process.Signal(syscall.SIGTERM)
		if ok, out := leg.wait(t); !ok {
			t.Fatalf("caller: %s\n%s", out, g.stderr)
		}
		select {
		case <-bye:
		default:
			t.Fatal("the caller got no BYE")
		}
		if code := exitCode(t, g.server, 30*time.Second); code != 0 {
			t.Fatalf("exit code %d after the drain: %s", code, g.stderr)
		}
		if !strings.Contains(bot.out.String(), "Successfully terminated Twilio call") {
			t.Errorf("pipecat's auto hang-up did not succeed:\n%s", bot.out)
		}
		g2 := restartGateway(t, g)
		wantOutput(t, g2.get(t, "acme", "pc-5"), "SYSTEM", map[string]string{"ended": "bot"})
	})
}

// getAt waits for the packet trig hands over (a hand-back reaching its
// peer), then at once GETs the leg's transfer, and checks it reads
// COMPLETED: the outcome was stored before the hand-back went.
func getAt(t *testing.T, g *gateway, trig <-chan packet, caller *sippCall, id string) (*apiResponse, packet) {
	t.Helper()
	var p packet
	select {
	case p = <-trig:
	case <-caller.done:
		// The capture's reading may lag behind a caller that took the
		// hand-back and ended: a GET now is later, and must see it too.
		select {
		case p = <-trig:
		case <-time.After(2 * time.Second):
			_, out := caller.wait(t)
			t.Fatalf("the caller ended, and no hand-back reached its peer: %s\n%s", out, g.stderr)
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("no hand-back within 30 s:\n%s", g.stderr)
	}
	r := g.get(t, "acme", id)
	if r.str("status") != "COMPLETED" || r.body["outputContext"] == nil {
		t.Fatalf("%s the instant its hand-back reached the peer (%.12q): %s", id, p.payload, r.raw)
	}
	return r, p
}

// wantOutput checks a transfer's output context: its type, and variables
// among its transferVariables.
func wantOutput(t *testing.T, r *apiResponse, transferType string, vars map[string]string) {
	t.Helper()
	oc, _ := r.body["outputContext"].(map[string]any)
	tv, _ := oc["transferVariables"].(map[string]any)
	bad := r.str("status") != "COMPLETED" || oc["transferType"] != transferType
	for k, v := range vars {
		bad = bad || tv[k] != v
	}
	if bad {
		t.Fatalf("want COMPLETED, %s, %v: %s", transferType, vars, r.raw)
	}
}

var clearedLine = regexp.MustCompile(`"time":"([^"]+)"[^\n]*"msg":"the agent cleared its queued audio"`)

// clearedAt waits for the gateway to have logged n clears of an agent's
// audio and returns their times.
func clearedAt(t *testing.T, g *gateway, n int) []time.Time {
	t.Helper()
	deadline := time.Now().Add(3 * time.Second)
	for {
		var at []time.Time
		for _, m := range clearedLine.FindAllStringSubmatch(g.stderr.String(), -1) {
			ts, err := time.Parse(time.RFC3339Nano, m[1])
			if err != nil {
				t.Fatalf("log time %q: %v", m[1], err)
			}
			at = append(at, ts)
		}
		if len(at) >= n {
			return at
		}
		if time.Now().After(deadline) {
			t.Fatalf("the gateway logged %d clears, want %d:\n%s", len(at), n, g.stderr)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// loudIn counts the loud frames heard in [from, to).
func loudIn(heard []heardFrame, from, to time.Time) int {
	n := 0
	for _, f := range heard {
		if !f.at.Before(from) && f.at.Before(to) && f.rms >= loudRMS {
			n++
		}
	}
	return n
}

// lastLoudBefore returns the time of the last loud frame heard before t.
func lastLoudBefore(heard []heardFrame, t time.Time) time.Time {
	var last time.Time
	for _, f := range heard {
		if f.at.Before(t) && f.rms >= loudRMS {
			last = f.at
		}
	}
	return last
}

// describe shows the loudness of what was heard around t, for a failure.
func describe(heard []heardFrame, t time.Time) string {
	var b strings.Builder
	for _, f := range heard {
		if d := f.at.Sub(t); d > -300*time.Millisecond && d < 500*time.Millisecond {
			fmt.Fprintf(&b, "\n  %+5dms rms %5.0f", d.Milliseconds(), f.rms)
		}
	}
	return b.String()
}

// firstDigitFrom returns when the first telephone-event of the leg's
// caller reached the gateway.
func firstDigitFrom(tap *capture, leg *pipecatLeg) time.Time {
	tap.mu.Lock()
	defer tap.mu.Unlock()
	for _, p := range tap.packets {
		if p.src == leg.mediaPort && len(p.payload) > 12 && p.payload[1]&0x7f == 101 {
			return p.at
		}
	}
	return time.Time{}
}

// legEvents are the events of one leg of a conversation: type and data.
type legEvents []struct {
	typ  string
	data map[string]string
}

// first returns the data of the first event of type typ (empty, not nil,
// when it has none), or nil.
func (l legEvents) first(typ string) map[string]string {
	for _, e := range l {
		if e.typ == typ {
			if e.data == nil {
				return map[string]string{}
			}
			return e.data
		}
	}
	return nil
}

func (l legEvents) all(typ string) []map[string]string {
	var out []map[string]string
	for _, e := range l {
		if e.typ == typ {
			out = append(out, e.data)
		}
	}
	return out
}

func (l legEvents) String() string {
	var b strings.Builder
	for _, e := range l {
		fmt.Fprintf(&b, "\n  %s %v", e.typ, e.data)
	}
	return b.String()
}

// conversationEvents returns the events a conversation recorded for one
// of its transfers.
func conversationEvents(t *testing.T, g *gateway, conversation, transferID string) legEvents {
	t.Helper()
	c, err := newClient(g.keys["acme"]).do(context.Background(), "GET", g.URL+"/generativeagent/v1/conversations/"+conversation, "")
	if err != nil || c.status != 200 {
		t.Fatalf("conversation: %v %s", err, c.raw)
	}
	var body struct {
		Events []struct {
			TransferID string            `json:"transferId"`
			Type       string            `json:"type"`
			Data       map[string]string `json:"data"`
		} `json:"events"`
	}
	if err := json.Unmarshal(c.raw, &body); err != nil {
		t.Fatalf("conversation: %v %s", err, c.raw)
	}
	var out legEvents
	for _, e := range body.Events {
		if e.TransferID == transferID {
			out = append(out, struct {
				typ  string
				data map[string]string
			}{e.Type, e.Data})
		}
	}
	return out
}
