package e2e

import (
	"context"
	"fmt"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/switchback/switchback"
	"github.com/switchback/switchback/internal/postgres"
)

// TestFleetSpreading: 200 transfers, SIP and PSTN, created through either
// node's API and called through Kamailio's dispatcher, are all answered,
// by both nodes, and all end COMPLETED with their output context.
func TestFleetSpreading(t *testing.T) {
	f := startFleet(t, 2, true)
	a, b := f.nodes[0], f.nodes[1]
	const calls = 200
	rows := make([]string, calls)
	ids := make([]string, calls)
	var wg sync.WaitGroup
	errs := make(chan string, calls)
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < calls; i += 8 {
				nd := f.nodes[i%2]
				ids[i] = fmt.Sprintf("spread-%d", i)
				body := fmt.Sprintf(`{"id":%q,"externalConversationId":"conv-%d","type":"SIP","inputContext":{"taskName":"brief"}}`, ids[i], i)
				if i%4 >= 2 {
					body = fmt.Sprintf(`{"id":%q,"externalConversationId":"conv-%d","type":"PHONE_NUMBER","phoneNumber":{"country":"US"},"inputContext":{"taskName":"brief"}}`, ids[i], i)
				}
				r, err := newClient(f.keys["acme"]).do(context.Background(), "POST", nd.URL+"/generativeagent/v1/call-transfers", body)
				if err != nil || r.status != 200 {
					errs <- fmt.Sprintf("create %s on %s: %v %s", ids[i], nd.id, err, r.raw)
					continue
				}
				if pn, ok := r.body["phoneNumber"].(map[string]any); ok {
					rows[i] = "X-Carrier: pstn;" + pn["transferNumber"].(string) + ";"
				} else {
					rows[i] = "X-ASAPP-CallTransferId: " + ids[i] + ";acme;"
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Fatal(e)
	}

	start := time.Now()
	st := sippCalls(t, f.k.addr, "dispatched_bye.xml", map[string]string{"BYE_TIMEOUT": "15000"}, rows, 50, 120, 60*time.Second)
	took := time.Since(start)
	if st.ok != calls || st.failed != 0 {
		t.Fatalf("through the dispatcher: %d calls completed, %d failed, want %d and 0:\n%s\nkamailio:\n%s", st.ok, st.failed, calls, st.report, f.k.log)
	}
	na, nb := a.answered(t), b.answered(t)
	t.Logf("spreading: %d calls through the dispatcher in %v; node a answered %d, node b %d", calls, took.Round(100*time.Millisecond), na, nb)
	if na+nb != calls || na < calls/5 || nb < calls/5 {
		t.Errorf("node a answered %d calls and node b %d: want all %d, spread over both", na, nb, calls)
	}

	// Every transfer is COMPLETED with its output context, as either node
	// reads it.
	for i, id := range ids {
		r := f.get(t, f.nodes[(i+1)%2], "acme", id)
		oc, _ := r.body["outputContext"].(map[string]any)
		rr, _ := r.body["returnResult"].(map[string]any)
		if r.str("status") != "COMPLETED" || oc["transferType"] != "SYSTEM" || oc["currentTaskName"] != "brief" || rr["method"] != "BYE" {
			t.Fatalf("transfer %s after its call: %s", id, r.raw)
		}
	}
}

// TestFleetHandBacksThroughTheDispatcher: a call that came through the
// dispatcher is handed back by REFER (the REFER, the caller's NOTIFYs and
// the BYE all pass through Kamailio, record-routed) and by INVITE (a new
// call from the node to the returnURI, bridged with the caller's leg).
func TestFleetHandBacksThroughTheDispatcher(t *testing.T) {
	f := startFleet(t, 2, true)
	a := f.nodes[0]

	f.create(t, a, "acme", `{"id":"hb-refer","externalConversationId":"c-refer","type":"SIP","inputContext":{"taskName":"instant"},
		"sip":{"returnURI":"sip:desk@customer-sbc.example.com;User-to-User=UUI-1","returnTransferType":"REFER"}}`)
	ok, out := sippTo(t, f.k.addr, "refer_via_sbc.xml", map[string]string{"SBC_PORT": f.k.port()}, "X-ASAPP-CallTransferId: hb-refer", "acme")
	if !ok {
		t.Fatalf("REFER through the dispatcher: %s\nkamailio:\n%s", out, f.k.log)
	}
	r := f.waitTransfer(t, f.nodes[1], "acme", "hb-refer", 5*time.Second, func(r *apiResponse) bool { return r.body["returnResult"] != nil })
	if rr := r.body["returnResult"].(map[string]any); rr["method"] != "REFER" || rr["sipStatus"] != 202.0 || rr["notifyStatus"] != 200.0 || rr["fallback"] != false {
		t.Fatalf("REFER hand-back: %s", r.raw)
	}

	port, wait := sippUAS(t, "invite_return_uas.xml", map[string]string{
		"RURI": `sip:desk@127\.0\.0\.1:PORT`, "AUTH_USER": "ret-user", "AUTH_PASS": "ret-pass",
		"TRANSFER_ID": "hb-invite", "DIGEST_URI": `sip:desk@127\.0\.0\.1:PORT`,
		// From whichever node answered: its own address and port.
		`Via: SIP/2.0/UDP 127\.0\.0\.1:GATEWAY_SIP;`: `Via: SIP/2.0/UDP 127\.0\.0\.[23]:[0-9]+;`,
	})
	uri := fmt.Sprintf("sip:desk@127.0.0.1:%d?User-to-User=abc%%3Bencoding%%3Dhex&X-Foo=1", port)
	f.create(t, a, "acme", `{"id":"hb-invite","externalConversationId":"c-invite","type":"SIP","inputContext":{"taskName":"instant"},
		"sip":{"returnURI":"`+uri+`","returnTransferType":"INVITE","returnInviteAuthentication":{"username":"ret-user","password":"ret-pass"}}}`)
	ok, out = sippTo(t, f.k.addr, "dispatched_invite_return_caller.xml", nil, "X-ASAPP-CallTransferId: hb-invite", "acme")
	if !ok {
		_, uo := wait()
		t.Fatalf("caller through the dispatcher: %s\nreturn leg: %s\nkamailio:\n%s", out, uo, f.k.log)
	}
	if ok, uo := wait(); !ok {
		t.Fatalf("return leg: %s", uo)
	}
	r = f.get(t, f.nodes[1], "acme", "hb-invite")
	if rr, _ := r.body["returnResult"].(map[string]any); r.str("status") != "COMPLETED" || rr["method"] != "INVITE" || rr["sipStatus"] != 200.0 || rr["fallback"] != false {
		t.Fatalf("INVITE hand-back: %s", r.raw)
	}
	// The caller's in-dialog requests reached the node through the
	// dispatcher, and the node's came back through it.
	if n := strings.Count(f.k.log.String(), "is down"); n != 0 {
		t.Errorf("a node went down during the hand-backs:\n%s", f.k.log)
	}
}

// TestFleetNodeDeath kills one of two nodes (SIGKILL) while both hold
// calls. The survivor completes the dead node's calls with the node-lost
// reason within seconds (the lease's TTL, 3 s here), a new leg of one of
// their conversations is accepted, and new calls through the dispatcher
// go to the survivor, those sent to the dead node before the dispatcher
// noticed failing over to it.
func TestFleetNodeDeath(t *testing.T) {
	f := startFleet(t, 2, true)
	a, b := f.nodes[0], f.nodes[1]
	// Calls will keep coming while node a dies and until the dispatcher
	// has marked it down: ten a second for 4 s.
	const during = 40
	fresh := make([]string, during)
	for i := range during {
		id := fmt.Sprintf("fresh-%d", i)
		f.create(t, b, "acme", fmt.Sprintf(`{"id":%q,"externalConversationId":"conv-fresh-%d","type":"SIP","inputContext":{"taskName":"instant"}}`, id, i))
		fresh[i] = "X-ASAPP-CallTransferId: " + id + ";acme;"
	}
	// A second dispatcher, round robin, sends calls to the dead node until
	// it notices (call load, the first's, steers them away from a node
	// whose calls never ended): they fail over after the 1 s timer.
	rr := f.startDispatcher(t, 4)
	const held = 6
	rows := make([]string, held)
	for i := range held {
		id := fmt.Sprintf("held-%d", i)
		f.create(t, f.nodes[i%2], "acme", fmt.Sprintf(`{"id":%q,"externalConversationId":"conv-held-%d","type":"SIP","inputContext":{"taskName":"long"}}`, id, i))
		rows[i] = "X-ASAPP-CallTransferId: " + id + ";acme;"
	}
	// The held calls last 5 s on a live node; those of the dead node wait
	// for a BYE that never comes.
	heldDone := make(chan sippStats, 1)
	go func() {
		heldDone <- sippCalls(t, f.k.addr, "dispatched_bye.xml", map[string]string{"BYE_TIMEOUT": "10000"}, rows, 20, held, 40*time.Second)
	}()
	for i := range held {
		f.waitTransfer(t, b, "acme", fmt.Sprintf("held-%d", i), 10*time.Second, func(r *apiResponse) bool { return r.str("status") == "ONGOING" })
	}
	onA, onB := int(a.metric(t, "switchback_calls_active ")), int(b.metric(t, "switchback_calls_active "))
	if onA == 0 || onB == 0 || onA+onB != held {
		t.Fatalf("calls in progress: %d on node a, %d on node b; want %d on both", onA, onB, held)
	}
	store, err := postgres.Open(context.Background(), f.dsn, postgres.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	var lost []string // the dead node's transfers
	for i := range held {
		id := fmt.Sprintf("held-%d", i)
		tr, err := store.Transfer(context.Background(), "acme", id)
		if err != nil {
			t.Fatal(err)
		}
		if tr.Owner.Node == a.id {
			lost = append(lost, id)
		}
	}
	if len(lost) != onA {
		t.Fatalf("the store says node a owns %v; its metrics say %d calls", lost, onA)
	}

	freshDone := make(chan sippStats, 1)
	downs := f.dispatcherEvents(dispatcherDown, a)
	answeredB := b.answered(t)

	killed := time.Now()
	a.cmd.Process.Signal(syscall.SIGKILL)
	go func() {
		freshDone <- sippSplit(t, f.k, rr, "dispatched_bye.xml", map[string]string{"BYE_TIMEOUT": "10000"}, fresh, 10, 40*time.Second)
	}()
	markedDown := f.waitDispatcher(t, a, false, downs, 10*time.Second).Sub(killed)

	// The survivor takes the dead node's calls over once its lease lapses.
	var takenOver time.Duration
	for _, id := range lost {
		r := f.waitTransfer(t, b, "acme", id, 30*time.Second, func(r *apiResponse) bool { return r.str("status") == "COMPLETED" })
		if d := time.Since(killed); d > takenOver {
			takenOver = d
		}
		oc, _ := r.body["outputContext"].(map[string]any)
		rr, _ := r.body["returnResult"].(map[string]any)
		reason, _ := rr["reason"].(string)
		if oc["transferType"] != "CALLER_DISCONNECT" || !strings.Contains(reason, `node "node-a" lost (lease expired)`) {
			t.Fatalf("a call of the dead node: %s", r.raw)
		}
	}
	if n := b.metric(t, "switchback_calls_taken_over_total "); int(n) != len(lost) {
		t.Errorf("node b took over %v calls, want %d", n, len(lost))
	}

	// A new leg of one of the dead node's conversations is accepted, and
	// its call goes to the survivor.
	conv := "conv-" + lost[0]
	r := f.do(t, b, "acme", "POST", "/generativeagent/v1/call-transfers",
		fmt.Sprintf(`{"id":"next-leg","externalConversationId":%q,"type":"SIP","inputContext":{"taskName":"instant"}}`, conv))
	if r.status != 200 {
		t.Fatalf("a new leg of %s: %d %s", conv, r.status, r.raw)
	}
	if ok, out := sippTo(t, f.k.addr, "dispatched_bye.xml", map[string]string{"BYE_TIMEOUT": "10000"}, "X-ASAPP-CallTransferId: next-leg", "acme"); !ok {
		t.Fatalf("the new leg's call: %s\nkamailio:\n%s", out, f.k.log)
	}
	if r := f.get(t, b, "acme", "next-leg"); r.str("status") != "COMPLETED" {
		t.Fatalf("the new leg: %s", r.raw)
	}

	fs, hs := <-freshDone, <-heldDone
	if fs.ok+fs.failed != during {
		t.Fatalf("the calls placed during the failover: %d completed, %d failed of %d:\n%s", fs.ok, fs.failed, during, fs.report)
	}
	if got := b.answered(t) - answeredB; got != fs.ok+1+onB {
		t.Errorf("node b handed back %d calls since node a died, want the %d placed meanwhile, the new leg and its own %d", got, fs.ok, onB)
	}
	t.Logf("node death: the dispatcher marked the node down %v after SIGKILL; its %d calls were taken over within %v; "+
		"of %d calls placed during the failover (10/s, through a call-load and a round-robin dispatcher), %d failed, and %d (call load) and %d (round robin) "+
		"went to the dead node first and failed over after the 1 s timer; the calls held on the survivor: %d of %d completed",
		markedDown.Round(10*time.Millisecond), len(lost), takenOver.Round(10*time.Millisecond), during, fs.failed,
		failedOver(f.k, a), failedOver(rr, a), hs.ok, onB)
	if failedOver(rr, a) == 0 {
		t.Errorf("no call went to the dead node before the round-robin dispatcher noticed: the failover was not exercised\n%s", rr.log)
	}
	if fs.failed != 0 {
		t.Errorf("%d calls failed during the failover window:\n%s", fs.failed, fs.report)
	}
	if takenOver > 30*time.Second {
		t.Errorf("the dead node's calls were taken over %v after its death, over 30 s", takenOver)
	}
	// The survivor's held calls ran to their end; the dead node's callers
	// never got their BYE.
	if hs.ok != onB || hs.failed != onA {
		t.Errorf("held calls: %d completed and %d failed, want %d and %d:\n%s", hs.ok, hs.failed, onB, onA, hs.report)
	}
}

// TestFleetRollingRestart drains one node (SIGTERM) while calls run: it
// answers OPTIONS with 503, the dispatcher stops sending it calls, its
// calls end normally and it exits 0; started again, it takes calls. No
// call is dropped.
func TestFleetRollingRestart(t *testing.T) {
	f := startFleet(t, 2, true)
	a, b := f.nodes[0], f.nodes[1]
	rr := f.startDispatcher(t, 4) // see TestFleetNodeDeath
	const running = 6
	rows := make([]string, running)
	for i := range running {
		id := fmt.Sprintf("run-%d", i)
		f.create(t, f.nodes[i%2], "acme", fmt.Sprintf(`{"id":%q,"externalConversationId":"conv-run-%d","type":"SIP","inputContext":{"taskName":"long"}}`, id, i))
		rows[i] = "X-ASAPP-CallTransferId: " + id + ";acme;"
	}
	runDone := make(chan sippStats, 1)
	go func() {
		runDone <- sippCalls(t, f.k.addr, "dispatched_bye.xml", map[string]string{"BYE_TIMEOUT": "15000"}, rows, 20, running, 40*time.Second)
	}()
	for i := range running {
		f.waitTransfer(t, b, "acme", fmt.Sprintf("run-%d", i), 10*time.Second, func(r *apiResponse) bool { return r.str("status") == "ONGOING" })
	}
	onA := int(a.metric(t, "switchback_calls_active "))
	if onA == 0 {
		t.Fatal("node a holds no call to drain")
	}

	const during = 20
	fresh := make([]string, during)
	for i := range during {
		id := fmt.Sprintf("during-%d", i)
		f.create(t, a, "acme", fmt.Sprintf(`{"id":%q,"externalConversationId":"conv-during-%d","type":"SIP","inputContext":{"taskName":"instant"}}`, id, i))
		fresh[i] = "X-ASAPP-CallTransferId: " + id + ";acme;"
	}
	downs := f.dispatcherEvents(dispatcherDown, a)
	termed := time.Now()
	a.cmd.Process.Signal(syscall.SIGTERM)
	freshDone := make(chan sippStats, 1)
	go func() {
		freshDone <- sippSplit(t, f.k, rr, "dispatched_bye.xml", map[string]string{"BYE_TIMEOUT": "10000"}, fresh, 10, 40*time.Second)
	}()
	for deadline := time.Now().Add(5 * time.Second); optionsStatus(t, a.sip, "draining") != "SIP/2.0 503 Service Unavailable"; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("a draining node still answers OPTIONS with 200")
		}
	}
	markedDown := f.waitDispatcher(t, a, false, downs, 5*time.Second).Sub(termed)

	st := <-freshDone
	if st.ok != during {
		t.Fatalf("calls placed while node a drained: %d completed, %d failed, want %d:\n%s\nkamailio:\n%s", st.ok, st.failed, during, st.report, f.k.log)
	}
	t.Logf("rolling restart: the dispatcher marked the draining node down %v after SIGTERM; of %d calls placed meanwhile (10/s) %d failed, "+
		"and %d (call load) and %d (round robin) were refused by it (503) and went to the other node",
		markedDown.Round(10*time.Millisecond), during, st.failed, failedOver(f.k, a), failedOver(rr, a))
	if st := <-runDone; st.ok != running {
		t.Fatalf("calls in progress during the drain: %d completed, %d failed, want %d:\n%s", st.ok, st.failed, running, st.report)
	}
	if code := exitCode(t, a.server, 30*time.Second); code != 0 {
		t.Fatalf("node a exited %d after its drain:\n%s", code, a.stderr)
	}
	// Its calls ended normally, handed back by their agent; it took no new
	// one once draining.
	for i := range running {
		r := f.get(t, b, "acme", fmt.Sprintf("run-%d", i))
		oc, _ := r.body["outputContext"].(map[string]any)
		if r.str("status") != "COMPLETED" || oc["transferType"] != "SYSTEM" || oc["currentTaskName"] != "long" {
			t.Fatalf("a call in progress during the drain: %s", r.raw)
		}
	}
	if n := strings.Count(a.stderr.String(), `"msg":"call handed back"`); n != onA {
		t.Errorf("node a handed back %d calls, want the %d it held when it began to drain", n, onA)
	}

	// Started again under the same name and address, with a new lease, it
	// is probed back into use and takes calls.
	ups := f.dispatcherEvents(dispatcherUp, a)
	a.restart(t)
	f.waitDispatcher(t, a, true, ups, 10*time.Second)
	if m := a.metrics(t); !strings.Contains(m, `switchback_node_lease_epoch{node="node-a"} 2`+"\n") {
		t.Errorf("the restarted node's lease is not its second epoch:\n%s", grepLines(m, "switchback_node_lease"))
	}
	const after = 10
	again := make([]string, after)
	for i := range after {
		id := fmt.Sprintf("after-%d", i)
		f.create(t, b, "acme", fmt.Sprintf(`{"id":%q,"externalConversationId":"conv-after-%d","type":"SIP","inputContext":{"taskName":"brief"}}`, id, i))
		again[i] = "X-ASAPP-CallTransferId: " + id + ";acme;"
	}
	if st := sippCalls(t, f.k.addr, "dispatched_bye.xml", map[string]string{"BYE_TIMEOUT": "10000"}, again, 20, after, 30*time.Second); st.ok != after {
		t.Fatalf("calls after the restart: %d completed, %d failed:\n%s", st.ok, st.failed, st.report)
	}
	if n := a.answered(t); n == 0 {
		t.Errorf("the restarted node took none of %d calls", after)
	}
}

// TestFleetFencing steals a node's lease, as a second start under its id
// would: the node stops taking calls, another node completes its call,
// and the fenced node, on its next heartbeat, hangs up its caller without
// writing over that outcome, and exits with an error.
func TestFleetFencing(t *testing.T) {
	f := startFleet(t, 2, false)
	a, b := f.nodes[0], f.nodes[1]
	f.create(t, a, "acme", `{"id":"fence-1","externalConversationId":"conv-fence","type":"SIP"}`)
	f.create(t, a, "acme", `{"id":"fence-late","externalConversationId":"conv-late","type":"SIP","inputContext":{"taskName":"instant"}}`)
	called := make(chan string, 1)
	go func() {
		ok, out := sippTo(t, a.sip, "transfer_bye.xml", nil, "X-ASAPP-CallTransferId: fence-1", "acme")
		if !ok {
			called <- out
		}
		close(called)
	}()
	f.waitTransfer(t, b, "acme", "fence-1", 10*time.Second, func(r *apiResponse) bool { return r.str("status") == "ONGOING" })

	store, err := postgres.Open(context.Background(), f.dsn, postgres.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	stolen, err := store.AcquireNode(context.Background(), a.id, time.Minute, time.Now())
	if err != nil || stolen.Epoch != 2 {
		t.Fatalf("steal node a's lease: %v %v", stolen, err)
	}
	// Whether or not it has noticed yet, node a takes no call: the store
	// refuses its match (503), or it refuses the call itself (503), or it
	// is gone.
	got := inviteStatus(t, a.sip, "fence-late", 3*time.Second)
	if got != "" && got != "SIP/2.0 503 Service Unavailable" {
		t.Fatalf("a call to the fenced node was answered %q", got)
	}
	t.Logf("fencing: a call to the node once its lease was stolen got %q", got)
	if r := f.get(t, b, "acme", "fence-late"); r.str("status") != "ACTIVE" {
		t.Fatalf("the fenced node used a transfer: %s", r.raw)
	}
	if code := exitCode(t, a.server, 15*time.Second); code != 1 || !strings.Contains(a.stderr.String(), "node lease lost") {
		t.Fatalf("the fenced node exited %d:\n%s", code, a.stderr)
	}
	if out, bad := <-called; bad {
		t.Fatalf("the fenced node's caller was not hung up: %s", out)
	}

	// Node b completed the call; what node a did as it stopped wrote
	// nothing over it.
	r := f.waitTransfer(t, b, "acme", "fence-1", 10*time.Second, func(r *apiResponse) bool { return r.str("status") == "COMPLETED" })
	oc, _ := r.body["outputContext"].(map[string]any)
	rr, _ := r.body["returnResult"].(map[string]any)
	if reason, _ := rr["reason"].(string); oc["transferType"] != "CALLER_DISCONNECT" || !strings.Contains(reason, `node "node-a" lost (lease superseded)`) {
		t.Fatalf("the fenced node's call: %s", r.raw)
	}
	c := f.do(t, b, "acme", "GET", "/generativeagent/v1/conversations/conv-fence", "")
	var ended []string
	for _, e := range c.body["events"].([]any) {
		ev := e.(map[string]any)
		if ev["type"] == string(switchback.EventCallEnded) {
			data, _ := ev["data"].(map[string]any)
			ended = append(ended, fmt.Sprint(data["by"]))
		}
	}
	if len(ended) != 1 || ended[0] != switchback.EndedByNodeLost {
		t.Fatalf("call.ended events %v: the fenced node wrote over the takeover:\n%s", ended, c.raw)
	}
	// The transfer the fenced node refused is good on node b.
	if ok, out := sippTo(t, b.sip, "transfer_bye.xml", nil, "X-ASAPP-CallTransferId: fence-late", "acme"); !ok {
		t.Fatalf("the refused transfer on node b: %s", out)
	}
}

// TestFleetMaxCalls: a tenant's calls spread over two nodes are refused
// past its limit (3), across the fleet, with 486 and Retry-After, through
// the dispatcher and on either node directly: not past twice the limit.
func TestFleetMaxCalls(t *testing.T) {
	f := startFleet(t, 2, true)
	a, b := f.nodes[0], f.nodes[1]
	var held []chan string
	for i := range 3 {
		id := fmt.Sprintf("cap-%d", i)
		f.create(t, f.nodes[i%2], "capped", fmt.Sprintf(`{"id":%q,"externalConversationId":"conv-cap-%d","type":"SIP"}`, id, i))
		done := make(chan string, 1)
		held = append(held, done)
		go func() {
			ok, out := sippTo(t, f.k.addr, "dispatched_bye.xml", map[string]string{"BYE_TIMEOUT": "25000"}, "X-ASAPP-CallTransferId: "+id, "capped")
			if !ok {
				done <- out
			}
			close(done)
		}()
		f.waitTransfer(t, b, "capped", id, 10*time.Second, func(r *apiResponse) bool { return r.str("status") == "ONGOING" })
	}
	onA, onB := int(a.metric(t, "switchback_calls_active ")), int(b.metric(t, "switchback_calls_active "))
	if onA == 0 || onB == 0 || onA+onB != 3 {
		t.Fatalf("the tenant's calls: %d on node a, %d on node b; want 3 on both", onA, onB)
	}

	f.create(t, a, "capped", `{"id":"cap-sip","externalConversationId":"conv-cap-sip","type":"SIP"}`)
	r := f.create(t, b, "capped", `{"id":"cap-pstn","externalConversationId":"conv-cap-pstn","type":"PHONE_NUMBER","phoneNumber":{"country":"US"}}`)
	number := r.body["phoneNumber"].(map[string]any)["transferNumber"].(string)
	for _, tc := range []struct{ name, target, header, user string }{
		{"SIP through the dispatcher", f.k.addr, "X-ASAPP-CallTransferId: cap-sip", "capped"},
		{"PSTN through the dispatcher", f.k.addr, "X-Carrier: pstn", number},
		{"SIP on node a", a.sip, "X-ASAPP-CallTransferId: cap-sip", "capped"},
		{"SIP on node b", b.sip, "X-ASAPP-CallTransferId: cap-sip", "capped"},
		{"PSTN on node a", a.sip, "X-Carrier: pstn", number},
		{"PSTN on node b", b.sip, "X-Carrier: pstn", number},
	} {
		if ok, out := sippTo(t, tc.target, "dispatched_refused.xml", map[string]string{"EXPECTED_STATUS": "486"}, tc.header, tc.user); !ok {
			t.Errorf("%s: not refused with 486 and Retry-After: %s", tc.name, out)
		}
	}
	for _, id := range []string{"cap-sip", "cap-pstn"} {
		if r := f.get(t, a, "capped", id); r.str("status") != "ACTIVE" {
			t.Fatalf("a refused call used its transfer: %s", r.raw)
		}
	}
	// No call was let through meanwhile on either node.
	if onA, onB := int(a.metric(t, "switchback_calls_active ")), int(b.metric(t, "switchback_calls_active ")); onA+onB != 3 {
		t.Fatalf("the tenant has %d calls on node a and %d on node b, over its limit of 3", onA, onB)
	}
	// The calls held at the limit were whole calls: stopped at once
	// (SIGINT), each node hangs its own up with a BYE, which SIPp answers.
	a.cmd.Process.Signal(os.Interrupt)
	b.cmd.Process.Signal(os.Interrupt)
	for i, done := range held {
		select {
		case out, failed := <-done:
			if failed {
				t.Errorf("held call %d: %s", i, out)
			}
		case <-time.After(20 * time.Second):
			t.Errorf("held call %d did not end once its node stopped", i)
		}
	}
}
