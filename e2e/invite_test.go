package e2e

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/switchback/switchback/internal/media"
	_ "modernc.org/sqlite" // to read the gateway's store
)

// sippUAS runs a SIPp scenario that answers one call on a free port, in
// the background; wait returns whether it saw the call through, and its
// logs.
func sippUAS(t *testing.T, scenario string, replace map[string]string) (port int, wait func() (bool, string)) {
	t.Helper()
	dir := t.TempDir()
	body, err := os.ReadFile(filepath.Join("testdata", "sipp", scenario))
	if err != nil {
		t.Fatal(err)
	}
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	port = c.LocalAddr().(*net.UDPAddr).Port
	c.Close()
	text := string(body)
	for k, v := range replace {
		text = strings.ReplaceAll(text, k, strings.ReplaceAll(v, "PORT", strconv.Itoa(port)))
	}
	for k, v := range map[string]string{"TRANSFER_ID": `[A-Za-z0-9._~-]+`, "GATEWAY_SIP": `[0-9]+`, "DIGEST_URI": `[^&quot;]+`} {
		text = strings.ReplaceAll(text, k, v)
	}
	sf := filepath.Join(dir, scenario)
	writeFile(t, sf, text)
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
	cmd := exec.CommandContext(ctx, "sipp", "-sf", sf, "-m", "1", "-i", "127.0.0.1", "-p", strconv.Itoa(port),
		"-mp", fmt.Sprint(freeMediaPorts(t)), "-timeout", "30s", "-timeout_error",
		"-trace_err", "-error_file", filepath.Join(dir, "errors.log"),
		"-trace_msg", "-message_file", filepath.Join(dir, "messages.log"),
		"-trace_logs", "-log_file", filepath.Join(dir, "logs.log"), "-nostdin")
	cmd.Dir = dir
	var out lockedBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() { cancel(); <-done })
	time.Sleep(200 * time.Millisecond) // let it bind
	return port, func() (bool, string) {
		err := <-done
		done <- err
		logs, _ := os.ReadFile(filepath.Join(dir, "logs.log"))
		errs, _ := os.ReadFile(filepath.Join(dir, "errors.log"))
		msgs, _ := os.ReadFile(filepath.Join(dir, "messages.log"))
		if len(msgs) > 8000 {
			msgs = msgs[len(msgs)-8000:]
		}
		return err == nil, string(logs) + out.String() + string(errs) + "\n--- last SIP messages ---\n" + string(msgs)
	}
}

var bridgedEnd = regexp.MustCompile(`"msg":"bridged call ended".*"by":"caller".*"relayed_to_return":(\d+),"relayed_to_caller":(\d+)`)

// TestINVITEReturnBridgesTheCall: the return leg challenges, the gateway
// answers with the transfer's credentials (not its tenant's), sends the returnURI's headers as
// real headers, and relays audio and DTMF both ways until the caller hangs up.
func TestINVITEReturnBridgesTheCall(t *testing.T) {
	requireSIPp(t)
	g := startGateway(t)
	_, sipPort, _ := net.SplitHostPort(g.sip)
	// The return INVITE leaves from Switchback's SIP socket, names the
	// transfer, and its digest covers the Request-URI with its parameters.
	port, wait := sippUAS(t, "invite_return_uas.xml", map[string]string{
		"RURI":      `sip:desk@127\.0\.0\.1:PORT;x-line=7`,
		"AUTH_USER": "ret-user", "AUTH_PASS": "ret-pass",
		"TRANSFER_ID": "inv-1", "GATEWAY_SIP": sipPort, "DIGEST_URI": `sip:desk@127\.0\.0\.1:PORT;x-line=7`,
	})
	uri := fmt.Sprintf("sip:desk@127.0.0.1:%d;x-line=7?User-to-User=abc%%3Bencoding%%3Dhex&X-Foo=1", port)
	g.create(t, "acme", `{"id":"inv-1","externalConversationId":"conv-inv","type":"SIP","inputContext":{"taskName":"instant"},
		"sip":{"returnURI":"`+uri+`","returnTransferType":"INVITE","returnInviteAuthentication":{"username":"ret-user","password":"ret-pass"}}}`)
	ok, out := g.sipp(t, "invite_return_caller.xml", nil, "X-ASAPP-CallTransferId: inv-1", "acme")
	if !ok {
		_, uo := wait()
		t.Fatalf("caller: %s\n%s\nUAS:%s", out, g.stderr, uo)
	}
	ok, uasOut := wait()
	if !ok || !strings.Contains(uasOut, "AUTHVALID true") {
		t.Fatalf("return leg: %s\n%s", uasOut, g.stderr)
	}
	r := g.get(t, "acme", "inv-1")
	oc, _ := r.body["outputContext"].(map[string]any)
	rr, _ := r.body["returnResult"].(map[string]any)
	if r.str("status") != "COMPLETED" || oc["transferType"] != "SYSTEM" ||
		rr["method"] != "INVITE" || rr["sipStatus"] != 200.0 || rr["fallback"] != false {
		t.Fatalf("after the INVITE return: %s", r.raw)
	}
	// Media went both ways through the bridge.
	deadline := time.Now().Add(3 * time.Second)
	var m []string
	for m = bridgedEnd.FindStringSubmatch(g.stderr.String()); m == nil && time.Now().Before(deadline); m = bridgedEnd.FindStringSubmatch(g.stderr.String()) {
		time.Sleep(50 * time.Millisecond)
	}
	if m == nil {
		t.Fatalf("no bridged call ended by the caller in the log:\n%s", g.stderr)
	}
	toReturn, _ := strconv.Atoi(m[1])
	toCaller, _ := strconv.Atoi(m[2])
	t.Logf("relayed %d packets to the return leg, %d to the caller", toReturn, toCaller)
	if toReturn < 50 || toCaller < 20 {
		t.Fatalf("relayed %d packets to the return leg and %d to the caller", toReturn, toCaller)
	}
	// The conversation kept the bridged call's events: the bridge, the
	// digit the return leg sent, and who hung up.
	waitEvents(t, g, "acme", "conv-inv", "bridged:PCMA:PCMA", "digit:return:1", "call.ended:caller")
}

// waitEvents waits up to 3 s for the conversation to have recorded every
// event of want, each written type:leg for digits (with the digit after),
// holds and unholds, call.ended:by, bridged:callerCodec:returnCodec, and
// its bare type for the others. It returns all it saw.
func waitEvents(t *testing.T, g *gateway, tenant, conversation string, want ...string) []string {
	t.Helper()
	deadline := time.Now().Add(3 * time.Second)
	for {
		c, err := newClient(g.keys[tenant]).do(context.Background(), "GET", g.URL+"/generativeagent/v1/conversations/"+conversation, "")
		if err != nil || c.status != 200 {
			t.Fatalf("conversation: %v %s", err, c.raw)
		}
		var seen []string
		for _, e := range c.body["events"].([]any) {
			ev := e.(map[string]any)
			d, _ := ev["data"].(map[string]any)
			switch ev["type"] {
			case "digit":
				seen = append(seen, fmt.Sprintf("digit:%v:%v", d["leg"], d["digit"]))
			case "bridged":
				seen = append(seen, fmt.Sprintf("bridged:%v:%v", d["callerCodec"], d["returnCodec"]))
			case "hold", "unhold":
				seen = append(seen, fmt.Sprintf("%v:%v", ev["type"], d["leg"]))
			case "call.ended":
				seen = append(seen, fmt.Sprintf("call.ended:%v", d["by"]))
			default:
				seen = append(seen, ev["type"].(string))
			}
		}
		missing := ""
		for _, w := range want {
			if !contains(seen, w) {
				missing = w
			}
		}
		if missing == "" {
			return seen
		}
		if time.Now().After(deadline) {
			t.Fatalf("conversation events lack %s: %v", missing, seen)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestINVITEReturnRefusedFallsBackToBYE: a return leg that refuses the call
// leaves the caller handed back by BYE, and the result says so.
func TestINVITEReturnRefusedFallsBackToBYE(t *testing.T) {
	requireSIPp(t)
	g := startGateway(t)
	port, wait := sippUAS(t, "invite_return_refused.xml", map[string]string{"STATUS": "486 Busy Here"})
	g.create(t, "acme", fmt.Sprintf(`{"id":"inv-2","externalConversationId":"c","type":"SIP","inputContext":{"taskName":"instant"},
		"sip":{"returnURI":"sip:desk@127.0.0.1:%d","returnTransferType":"INVITE"}}`, port))
	ok, out := g.sipp(t, "transfer_bye.xml", nil, "X-ASAPP-CallTransferId: inv-2", "acme")
	if !ok {
		t.Fatalf("caller: %s\n%s", out, g.stderr)
	}
	if ok, out := wait(); !ok {
		t.Fatalf("return leg: %s", out)
	}
	// The result is recorded before the fallback BYE.
	r := g.get(t, "acme", "inv-2")
	rr, _ := r.body["returnResult"].(map[string]any)
	if r.str("status") != "COMPLETED" || rr["method"] != "INVITE" || rr["sipStatus"] != 486.0 || rr["fallback"] != true {
		t.Fatalf("after the refused INVITE return: %s", r.raw)
	}
}

// TestINVITEReturnPassesTheCallersINFODigits: while bridged, a digit the
// caller sends by SIP INFO goes on to the return leg by INFO, and the
// conversation logs it as the caller's.
func TestINVITEReturnPassesTheCallersINFODigits(t *testing.T) {
	requireSIPp(t)
	g := startGateway(t)
	port, wait := sippUAS(t, "invite_return_info_uas.xml", map[string]string{"DIGIT": "5"})
	g.create(t, "acme", fmt.Sprintf(`{"id":"inv-info","externalConversationId":"conv-info","type":"SIP","inputContext":{"taskName":"instant"},
		"sip":{"returnURI":"sip:desk@127.0.0.1:%d","returnTransferType":"INVITE"}}`, port))
	if ok, out := g.sipp(t, "invite_return_info_caller.xml", nil, "X-ASAPP-CallTransferId: inv-info", "acme"); !ok {
		t.Fatalf("caller: %s\n%s", out, g.stderr)
	}
	if ok, uas := wait(); !ok {
		t.Fatalf("return leg: %s\n%s", uas, g.stderr)
	}
	deadline := time.Now().Add(3 * time.Second)
	for {
		c, err := newClient(g.keys["acme"]).do(context.Background(), "GET", g.URL+"/generativeagent/v1/conversations/conv-info", "")
		if err != nil || c.status != 200 {
			t.Fatalf("conversation: %v %s", err, c.raw)
		}
		for _, e := range c.body["events"].([]any) {
			ev := e.(map[string]any)
			if d, _ := ev["data"].(map[string]any); ev["type"] == "digit" && d["leg"] == "caller" && d["digit"] == "5" {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no digit 5 from the caller in the conversation: %s", c.raw)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// pcmaCaller fills invite_return_caller_wait.xml in for a caller that
// offers PCMA and plays SIPp's PCMA capture.
var pcmaCaller = map[string]string{"CALLER_PT": "8", "CALLER_CODEC": "PCMA", "CALLER_PCAP": "/usr/share/sip-tester/g711a.pcap"}

// loggedAt reads the times a SIPp scenario logged as "NAME_AT seconds
// microseconds" (its gettimeofday action).
var loggedAtLine = regexp.MustCompile(`(?m)^([A-Z]+)_AT (\d+)(?:\.0+)? (\d+)(?:\.0+)?$`)

func loggedAt(t *testing.T, out, name string) time.Time {
	t.Helper()
	for _, m := range loggedAtLine.FindAllStringSubmatch(out, -1) {
		if m[1] == name {
			s, _ := strconv.ParseInt(m[2], 10, 64)
			us, _ := strconv.ParseInt(m[3], 10, 64)
			return time.Unix(s, us*1000)
		}
	}
	t.Fatalf("SIPp logged no %s_AT:\n%s", name, out)
	return time.Time{}
}

// TestINVITEReturnNotAnsweredIsCancelled: a return leg that rings past
// sip.returnTimeout (2 s here) is cancelled, the caller is handed back by
// BYE, and the result says why.
func TestINVITEReturnNotAnsweredIsCancelled(t *testing.T) {
	requireSIPp(t)
	g := startGateway(t)
	port, wait := sippUAS(t, "invite_return_ringing.xml", nil)
	g.create(t, "acme", fmt.Sprintf(`{"id":"inv-ring","externalConversationId":"c","type":"SIP","inputContext":{"taskName":"instant"},
		"sip":{"returnURI":"sip:desk@127.0.0.1:%d","returnTransferType":"INVITE"}}`, port))
	ok, out := g.sipp(t, "invite_return_caller_wait.xml", pcmaCaller, "X-ASAPP-CallTransferId: inv-ring", "acme")
	if !ok {
		t.Fatalf("caller: %s\n%s", out, g.stderr)
	}
	ok, uasOut := wait()
	if !ok {
		t.Fatalf("return leg: %s\n%s", uasOut, g.stderr)
	}
	// The timer runs from before the INVITE goes: the CANCEL may come a
	// hair under 2 s after the INVITE arrived, never much less.
	rang := loggedAt(t, uasOut, "CANCEL").Sub(loggedAt(t, uasOut, "INVITE"))
	held := loggedAt(t, out, "BYE").Sub(loggedAt(t, out, "ACK"))
	t.Logf("the return leg rang %v before the CANCEL; the caller got the BYE %v after its ACK", rang, held)
	if rang < 1900*time.Millisecond || rang > 4*time.Second {
		t.Fatalf("CANCEL %v after the INVITE, want about the 2 s returnTimeout", rang)
	}
	if held < 2*time.Second {
		t.Fatalf("the caller got the BYE %v after its ACK, before the 2 s returnTimeout", held)
	}
	r := g.get(t, "acme", "inv-ring")
	rr, _ := r.body["returnResult"].(map[string]any)
	reason, _ := rr["reason"].(string)
	// No final response came but the 487 to our own CANCEL: the result has
	// no sipStatus.
	if _, has := rr["sipStatus"]; r.str("status") != "COMPLETED" || rr["method"] != "INVITE" || rr["fallback"] != true ||
		has || !strings.Contains(reason, "did not answer within 2s") {
		t.Fatalf("after the unanswered INVITE return: %s", r.raw)
	}
}

// bridgedCallEnded waits up to 3 s for the gateway to log the end of a
// bridged call, and returns the fields of that log line.
func bridgedCallEnded(t *testing.T, g *gateway) map[string]any {
	t.Helper()
	deadline := time.Now().Add(3 * time.Second)
	for {
		for _, line := range strings.Split(g.stderr.String(), "\n") {
			if !strings.Contains(line, `"msg":"bridged call ended"`) {
				continue
			}
			var fields map[string]any
			if err := json.Unmarshal([]byte(line), &fields); err != nil {
				t.Fatalf("log line %q: %v", line, err)
			}
			return fields
		}
		if time.Now().After(deadline) {
			t.Fatalf("no bridged call ended in the log:\n%s", g.stderr)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestINVITEReturnLegHangsUpFirst: the return leg's BYE ends the bridged
// call, and Switchback hangs up the caller.
func TestINVITEReturnLegHangsUpFirst(t *testing.T) {
	requireSIPp(t)
	g := startGateway(t)
	port, wait := sippUAS(t, "invite_return_uas_bye.xml", map[string]string{"HANGUP_MS": "1500"})
	g.create(t, "acme", fmt.Sprintf(`{"id":"inv-bye","externalConversationId":"conv-bye","type":"SIP","inputContext":{"taskName":"instant"},
		"sip":{"returnURI":"sip:desk@127.0.0.1:%d","returnTransferType":"INVITE"}}`, port))
	ok, out := g.sipp(t, "invite_return_caller_wait.xml", pcmaCaller, "X-ASAPP-CallTransferId: inv-bye", "acme")
	if !ok {
		t.Fatalf("caller: %s\n%s", out, g.stderr)
	}
	ok, uasOut := wait()
	if !ok {
		t.Fatalf("return leg: %s\n%s", uasOut, g.stderr)
	}
	if after := loggedAt(t, out, "BYE").Sub(loggedAt(t, uasOut, "BYE")); after < 0 || after > 2*time.Second {
		t.Fatalf("the caller got its BYE %v after the return leg sent its own", after)
	}
	r := g.get(t, "acme", "inv-bye")
	rr, _ := r.body["returnResult"].(map[string]any)
	if r.str("status") != "COMPLETED" || rr["method"] != "INVITE" || rr["sipStatus"] != 200.0 || rr["fallback"] != false {
		t.Fatalf("after the INVITE return: %s", r.raw)
	}
	if f := bridgedCallEnded(t, g); f["by"] != "return" || f["relayed_to_return"].(float64) == 0 || f["relayed_to_caller"].(float64) == 0 {
		t.Fatalf("bridged call ended: %v", f)
	}
	waitEvents(t, g, "acme", "conv-bye", "bridged:PCMA:PCMA", "call.ended:return")
}

// TestINVITEReturnHoldOnEitherLeg: each leg of a bridged call holds it
// (re-INVITE a=sendonly) and takes it off hold (a=sendrecv) in turn;
// Switchback answers a=recvonly then a=sendrecv, stops relaying to the
// leg that holds, and the conversation records hold and unhold for both.
func TestINVITEReturnHoldOnEitherLeg(t *testing.T) {
	requireSIPp(t)
	g := startGateway(t)
	port, wait := sippUAS(t, "invite_return_uas_hold.xml", nil)
	g.create(t, "acme", fmt.Sprintf(`{"id":"inv-hold","externalConversationId":"conv-hold","type":"SIP","inputContext":{"taskName":"instant"},
		"sip":{"returnURI":"sip:desk@127.0.0.1:%d","returnTransferType":"INVITE"}}`, port))
	ok, out := g.sipp(t, "invite_return_caller_hold.xml", nil, "X-ASAPP-CallTransferId: inv-hold", "acme")
	if !ok {
		t.Fatalf("caller: %s\n%s", out, g.stderr)
	}
	ok, uasOut := wait()
	if !ok {
		t.Fatalf("return leg: %s\n%s", uasOut, g.stderr)
	}
	waitEvents(t, g, "acme", "conv-hold", "bridged:PCMA:PCMA", "hold:caller", "unhold:caller", "hold:return", "unhold:return", "call.ended:caller")
	// Each leg held for 1.5 s while the other played audio (some 30
	// packets a second): what came for the held leg was not sent.
	f := bridgedCallEnded(t, g)
	t.Logf("bridged call ended: %v", f)
	if f["dropped_to_caller"].(float64) == 0 || f["dropped_to_return"].(float64) == 0 ||
		f["relayed_to_caller"].(float64) == 0 || f["relayed_to_return"].(float64) == 0 {
		t.Fatalf("relayed or held back nothing for a leg: %v", f)
	}
}

// pcmuCapture writes SIPp's PCMA capture over again as PCMU (payload type
// 0, each payload transcoded) into a temporary file, and returns its path:
// Debian's SIPp ships no PCMU audio.
func pcmuCapture(t *testing.T) string {
	t.Helper()
	data, err := os.ReadFile("/usr/share/sip-tester/g711a.pcap")
	if err != nil {
		t.Fatal(err)
	}
	// A little-endian pcap of Ethernet frames.
	if len(data) < 24 || le32(data) != 0xa1b2c3d4 || le32(data[20:]) != 1 {
		t.Fatal("g711a.pcap is not the little-endian Ethernet capture expected")
	}
	n := 0
	for off := 24; off+16 <= len(data); {
		size := int(le32(data[off+8:]))
		frame := data[off+16 : min(off+16+size, len(data))]
		off += 16 + size
		// Ethernet, IPv4, UDP, then RTP without CSRCs (RFC 3550 §5.1).
		if len(frame) < 14+20 || frame[12] != 0x08 || frame[13] != 0x00 || frame[14+9] != 17 {
			continue
		}
		ip := frame[14:]
		udp := ip[int(ip[0]&0x0f)*4:]
		if len(udp) < 8+12 {
			continue
		}
		udp[6], udp[7] = 0, 0 // no UDP checksum (RFC 768): the payload changes
		rtp := udp[8:]
		if rtp[0]>>6 != 2 || rtp[0]&0x0f != 0 || rtp[1]&0x7f != 8 {
			continue
		}
		rtp[1] &= 0x80 // payload type 0, the marker bit kept
		media.ALawToULaw(rtp[12:], rtp[12:])
		n++
	}
	if n == 0 {
		t.Fatal("no PCMA packet in g711a.pcap")
	}
	path := filepath.Join(t.TempDir(), "g711u.pcap")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// le32 reads a little-endian uint32 (the package's binary is the
// switchback command).
func le32(b []byte) uint32 {
	return uint32(b[0]) | uint32(b[1])<<8 | uint32(b[2])<<16 | uint32(b[3])<<24
}

// TestINVITEReturnTranscodes: a caller that offers only PCMU bridged to a
// return leg that answers only PCMA: the audio is transcoded between them.
func TestINVITEReturnTranscodes(t *testing.T) {
	requireSIPp(t)
	g := startGateway(t)
	port, wait := sippUAS(t, "invite_return_uas_bye.xml", map[string]string{"HANGUP_MS": "2000"})
	g.create(t, "acme", fmt.Sprintf(`{"id":"inv-x","externalConversationId":"conv-x","type":"SIP","inputContext":{"taskName":"instant"},
		"sip":{"returnURI":"sip:desk@127.0.0.1:%d","returnTransferType":"INVITE"}}`, port))
	ok, out := g.sipp(t, "invite_return_caller_wait.xml", map[string]string{"CALLER_PT": "0", "CALLER_CODEC": "PCMU", "CALLER_PCAP": pcmuCapture(t)},
		"X-ASAPP-CallTransferId: inv-x", "acme")
	if !ok {
		t.Fatalf("caller: %s\n%s", out, g.stderr)
	}
	if ok, uasOut := wait(); !ok {
		t.Fatalf("return leg: %s\n%s", uasOut, g.stderr)
	}
	if r := g.get(t, "acme", "inv-x"); !strings.Contains(string(r.raw), `"returnResult":{"method":"INVITE","sipStatus":200,"fallback":false`) {
		t.Fatalf("after the INVITE return: %s", r.raw)
	}
	waitEvents(t, g, "acme", "conv-x", "bridged:PCMU:PCMA", "call.ended:return")
	f := bridgedCallEnded(t, g)
	t.Logf("bridged call ended: %v", f)
	toReturn, toCaller, transcoded := f["relayed_to_return"].(float64), f["relayed_to_caller"].(float64), f["transcoded"].(float64)
	// Every audio packet relayed either way was transcoded; only RFC 4733
	// events (none here) go through as they are.
	if toReturn == 0 || toCaller == 0 || transcoded != toReturn+toCaller {
		t.Fatalf("relayed %v to the return leg and %v to the caller, transcoded %v", toReturn, toCaller, transcoded)
	}
}

// TestINVITEReturnWithTheTenantsCredentials: a transfer without
// sip.returnInviteAuthentication answers the return leg's challenge with
// its tenant's tenants[].sip.returnAuth.
func TestINVITEReturnWithTheTenantsCredentials(t *testing.T) {
	requireSIPp(t)
	g := startGateway(t)
	port, wait := sippUAS(t, "invite_return_uas.xml", map[string]string{
		"RURI":      `sip:desk@127\.0\.0\.1:PORT`,
		"AUTH_USER": "acme-desk", "AUTH_PASS": "acme-desk-pass",
	})
	uri := fmt.Sprintf("sip:desk@127.0.0.1:%d?User-to-User=abc%%3Bencoding%%3Dhex&X-Foo=1", port)
	g.create(t, "acme", `{"id":"inv-tenant","externalConversationId":"c","type":"SIP","inputContext":{"taskName":"instant"},
		"sip":{"returnURI":"`+uri+`","returnTransferType":"INVITE"}}`)
	ok, out := g.sipp(t, "invite_return_caller.xml", nil, "X-ASAPP-CallTransferId: inv-tenant", "acme")
	if !ok {
		t.Fatalf("caller: %s\n%s", out, g.stderr)
	}
	if ok, uasOut := wait(); !ok || !strings.Contains(uasOut, "AUTHVALID true") {
		t.Fatalf("return leg: %s\n%s", uasOut, g.stderr)
	}
	r := g.get(t, "acme", "inv-tenant")
	if rr, _ := r.body["returnResult"].(map[string]any); rr["sipStatus"] != 200.0 || rr["fallback"] != false {
		t.Fatalf("after the INVITE return: %s", r.raw)
	}
}

// storedReturnPassword reads a transfer's return password straight from
// the gateway's SQLite file.
func storedReturnPassword(t *testing.T, g *gateway, tenant, id string) string {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+filepath.Join(g.dir, "sb.db")+"?mode=ro&_pragma=busy_timeout(5000)")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var pass string
	err = db.QueryRow(`SELECT return_auth_password FROM transfers WHERE tenant_id = ? AND id = ?`, tenant, id).Scan(&pass)
	if err != nil {
		t.Fatalf("read transfer %s from the store: %v", id, err)
	}
	return pass
}

// TestINVITEReturnPasswordErased: the transfer's return password answers
// the return leg's challenge, and once the transfer is finished it is gone
// from the store; no GET and no log line ever shows it.
func TestINVITEReturnPasswordErased(t *testing.T) {
	requireSIPp(t)
	g := startGateway(t)
	const password = "Erase-Me-7f3a9c"
	port, wait := sippUAS(t, "invite_return_uas.xml", map[string]string{
		"RURI":      `sip:desk@127\.0\.0\.1:PORT`,
		"AUTH_USER": "ret-user", "AUTH_PASS": password,
	})
	uri := fmt.Sprintf("sip:desk@127.0.0.1:%d?User-to-User=abc%%3Bencoding%%3Dhex&X-Foo=1", port)
	created := g.create(t, "acme", `{"id":"inv-pw","externalConversationId":"conv-pw","type":"SIP","inputContext":{"taskName":"instant"},
		"sip":{"returnURI":"`+uri+`","returnTransferType":"INVITE","returnInviteAuthentication":{"username":"ret-user","password":"`+password+`"}}}`)
	// Kept while the transfer may still be handed back, so the query reads
	// the right column.
	if got := storedReturnPassword(t, g, "acme", "inv-pw"); got != password {
		t.Fatalf("stored return password of the ACTIVE transfer = %q", got)
	}
	shown := [][]byte{created.raw, g.get(t, "acme", "inv-pw").raw}
	ok, out := g.sipp(t, "invite_return_caller.xml", nil, "X-ASAPP-CallTransferId: inv-pw", "acme")
	if !ok {
		t.Fatalf("caller: %s\n%s", out, g.stderr)
	}
	if ok, uasOut := wait(); !ok || !strings.Contains(uasOut, "AUTHVALID true") {
		t.Fatalf("return leg: %s\n%s", uasOut, g.stderr)
	}
	r := g.get(t, "acme", "inv-pw")
	if rr, _ := r.body["returnResult"].(map[string]any); r.str("status") != "COMPLETED" || rr["sipStatus"] != 200.0 {
		t.Fatalf("after the INVITE return: %s", r.raw)
	}
	if got := storedReturnPassword(t, g, "acme", "inv-pw"); got != "" {
		t.Fatalf("stored return password of the COMPLETED transfer = %q, want it erased", got)
	}
	bridgedCallEnded(t, g) // the call is over: the log is complete
	list, err := newClient(g.keys["acme"]).do(context.Background(), "GET", g.URL+"/generativeagent/v1/call-transfers", "")
	if err != nil {
		t.Fatal(err)
	}
	if list.status != 200 || !strings.Contains(string(list.raw), `"inv-pw"`) {
		t.Fatalf("list: %s", list.raw)
	}
	conv, err := newClient(g.keys["acme"]).do(context.Background(), "GET", g.URL+"/generativeagent/v1/conversations/conv-pw", "")
	if err != nil {
		t.Fatal(err)
	}
	if conv.status != 200 {
		t.Fatalf("conversation: %s", conv.raw)
	}
	shown = append(shown, r.raw, list.raw, conv.raw, []byte(g.stdout.String()), []byte(g.stderr.String()))
	for i, b := range shown {
		if strings.Contains(string(b), password) {
			t.Fatalf("the return password shows in output %d: %s", i, b)
		}
	}
}

// TestShutdownWhileBridged: SIGINT (a stop at once) while an INVITE hand-back is bridged
// hangs up both legs and exits cleanly.
func TestShutdownWhileBridged(t *testing.T) {
	requireSIPp(t)
	g := startGateway(t)
	port, wait := sippUAS(t, "invite_return_uas.xml", map[string]string{
		"RURI":      `sip:desk@127\.0\.0\.1:PORT;x-line=7`,
		"AUTH_USER": "ret-user", "AUTH_PASS": "ret-pass",
	})
	uri := fmt.Sprintf("sip:desk@127.0.0.1:%d;x-line=7?User-to-User=abc%%3Bencoding%%3Dhex&X-Foo=1", port)
	g.create(t, "acme", `{"id":"inv-down","externalConversationId":"conv-down","type":"SIP","inputContext":{"taskName":"instant"},
		"sip":{"returnURI":"`+uri+`","returnTransferType":"INVITE","returnInviteAuthentication":{"username":"ret-user","password":"ret-pass"}}}`)
	caller := make(chan string, 1)
	go func() {
		ok, out := g.sipp(t, "invite_return_caller_wait.xml", pcmaCaller, "X-ASAPP-CallTransferId: inv-down", "acme")
		if !ok {
			caller <- out
		}
		close(caller)
	}()
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(g.stderr.String(), "return leg answered; bridging") {
		if time.Now().After(deadline) {
			t.Fatalf("the call was never bridged:\n%s", g.stderr)
		}
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(time.Second) // the return leg's scenario is waiting for its BYE by then
	// SIGINT stops at once (SIGTERM would let the bridged call run on).
	g.cmd.Process.Signal(syscall.SIGINT)
	select {
	case <-g.done:
	case <-time.After(15 * time.Second):
		t.Fatalf("the gateway did not stop:\n%s", g.stderr)
	}
	if code := g.cmd.ProcessState.ExitCode(); code != 0 || strings.Contains(g.stderr.String(), "panic") {
		t.Fatalf("the gateway exited %d:\n%s", code, g.stderr)
	}
	if out, bad := <-caller; bad {
		t.Fatalf("caller: %s", out)
	}
	if ok, out := wait(); !ok {
		t.Fatalf("return leg: %s", out)
	}
	if f := bridgedCallEnded(t, g); f["by"] != "shutdown" {
		t.Fatalf("bridged call ended: %v", f)
	}
}
