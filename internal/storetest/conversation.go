package storetest

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/switchback/switchback"
)

// leg is a SIP transfer of conversation ext created at now.
func leg(tenant, id, ext string, now time.Time) *switchback.Transfer {
	t := sipTransfer(tenant, id, now)
	t.ExternalConversationID = ext
	return t
}

func mustMatch(t *testing.T, s switchback.Store, tenant, id string, now time.Time) {
	t.Helper()
	if _, err := s.MatchTransfer(context.Background(), tenant, id, noClaim, now); err != nil {
		t.Fatalf("match %s: %v", id, err)
	}
}

func mustComplete(t *testing.T, s switchback.Store, tenant, id string, now time.Time) {
	t.Helper()
	if _, err := s.CompleteTransfer(context.Background(), tenant, id, &switchback.OutputContext{TransferType: switchback.TransferSystem}, noLease, now); err != nil {
		t.Fatalf("complete %s: %v", id, err)
	}
}

func wantStatus(t *testing.T, s switchback.Store, tenant, id string, want switchback.Status) {
	t.Helper()
	got, err := s.Transfer(context.Background(), tenant, id)
	if err != nil {
		t.Fatalf("get %s: %v", id, err)
	}
	if got.Status != want {
		t.Fatalf("%s is %s, want %s", id, got.Status, want)
	}
}

func testReturnResult(t *testing.T, open Opener) {
	s := open(t, Quarantine)
	ctx := context.Background()
	mustCreate(t, s, sipTransfer("acme", "t-1", t0))
	r := &switchback.ReturnResult{Method: switchback.ReturnREFER, SIPStatus: 202, NotifyStatus: 503, Fallback: true,
		Reason: "the REFER target answered 503", At: t0.Add(40*time.Second + 123456*time.Microsecond)}

	err := s.SetReturnResult(ctx, "acme", "t-1", r, noLease, t0)
	wantCode(t, err, switchback.EGONE) // ACTIVE
	mustMatch(t, s, "acme", "t-1", t0.Add(time.Second))
	err = s.SetReturnResult(ctx, "acme", "t-1", r, noLease, t0)
	wantCode(t, err, switchback.EGONE) // ONGOING: the output context comes first
	err = s.SetReturnResult(ctx, "acme", "nope", r, noLease, t0)
	wantCode(t, err, switchback.ENOTFOUND)
	err = s.SetReturnResult(ctx, "globex", "t-1", r, noLease, t0)
	wantCode(t, err, switchback.ENOTFOUND)

	done, err := s.CompleteTransfer(ctx, "acme", "t-1", &switchback.OutputContext{TransferType: switchback.TransferAgent}, noLease, t0.Add(40*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if done.ReturnResult != nil {
		t.Fatalf("return result %+v before one was set", done.ReturnResult)
	}
	if err := s.SetReturnResult(ctx, "acme", "t-1", r, noLease, t0); err != nil {
		t.Fatal(err)
	}
	got, err := s.Transfer(ctx, "acme", "t-1")
	if err != nil {
		t.Fatal(err)
	}
	if got.ReturnResult == nil || *got.ReturnResult != *r {
		t.Fatalf("return result = %+v, want %+v", got.ReturnResult, r)
	}
	if got.Status != switchback.StatusCompleted || got.OutputContext == nil || got.OutputContext.TransferType != switchback.TransferAgent {
		t.Fatalf("setting the return result changed the transfer: %+v", got)
	}
	list, err := s.ListTransfers(ctx, switchback.TransferFilter{TenantID: "acme", Limit: 10})
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 1 || list[0].ReturnResult == nil || *list[0].ReturnResult != *r {
		t.Fatalf("listed = %+v", list)
	}

	// A later result replaces it; zero fields stay zero.
	bye := &switchback.ReturnResult{Method: switchback.ReturnBYE, At: t0.Add(41 * time.Second)}
	if err := s.SetReturnResult(ctx, "acme", "t-1", bye, noLease, t0); err != nil {
		t.Fatal(err)
	}
	got, _ = s.Transfer(ctx, "acme", "t-1")
	if got.ReturnResult == nil || *got.ReturnResult != *bye {
		t.Fatalf("replaced return result = %+v, want %+v", got.ReturnResult, bye)
	}
}

func legIDs(c *switchback.Conversation) string {
	var ids []string
	for _, l := range c.Legs {
		ids = append(ids, l.ID)
	}
	return strings.Join(ids, " ")
}

func testConversationLegs(t *testing.T, open Opener) {
	s := open(t, Quarantine)
	ctx := context.Background()
	mustCreate(t, s, leg("acme", "l-2", "c1", t0.Add(time.Second)))
	mustCreate(t, s, leg("acme", "l-1", "c1", t0.Add(time.Second))) // same instant: by id
	mustCreate(t, s, leg("acme", "l-0", "c1", t0))
	mustCreate(t, s, leg("acme", "other", "c2", t0))
	mustCreate(t, s, leg("globex", "g-1", "c1", t0.Add(time.Minute)))
	mustMatch(t, s, "acme", "l-0", t0.Add(2*time.Second))

	c, err := s.Conversation(ctx, "acme", "c1")
	if err != nil {
		t.Fatal(err)
	}
	if got := legIDs(c); got != "l-0 l-1 l-2" {
		t.Fatalf("legs = %s, want l-0 l-1 l-2 (oldest first, then by id)", got)
	}
	if c.TenantID != "acme" || c.ExternalID != "c1" || c.State != nil || c.Events != nil {
		t.Fatalf("conversation without a record = %+v", c)
	}
	if !sameTime(c.CreatedAt, t0) || !c.UpdatedAt.IsZero() {
		t.Fatalf("created %v updated %v; want the first leg's creation and no update", c.CreatedAt, c.UpdatedAt)
	}
	first := c.Legs[0]
	if first.Status != switchback.StatusOngoing || first.SIP == nil || first.SIP.ReturnURI == "" ||
		first.InputContext == nil || first.InputContext.TaskName != "call_routing" {
		t.Fatalf("a leg is not the whole transfer: %+v", first)
	}

	c, err = s.Conversation(ctx, "globex", "c1")
	if err != nil {
		t.Fatal(err)
	}
	if got := legIDs(c); got != "g-1" {
		t.Fatalf("globex's c1 legs = %s; another tenant's legs must not show", got)
	}
	_, err = s.Conversation(ctx, "acme", "nope")
	wantCode(t, err, switchback.ENOTFOUND)
	_, err = s.Conversation(ctx, "initech", "c1")
	wantCode(t, err, switchback.ENOTFOUND)

	// A record alone makes a conversation, of its tenant only.
	if err := s.RecordConversation(ctx, &switchback.ConversationRecord{TenantID: "globex", ExternalID: "c9"}, noLease, t0); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Conversation(ctx, "globex", "c9"); err != nil {
		t.Fatal(err)
	}
	_, err = s.Conversation(ctx, "acme", "c9")
	wantCode(t, err, switchback.ENOTFOUND)
}

func testConversationRecords(t *testing.T, open Opener) {
	s := open(t, Quarantine)
	ctx := context.Background()
	at := t0.Add(time.Second)
	err := s.RecordConversation(ctx, &switchback.ConversationRecord{
		TenantID: "acme", ExternalID: "c1", State: json.RawMessage(`{"step": "menu", "tries": 1}`),
		Events: []switchback.ConversationEvent{
			{At: at, TransferID: "l-1", Type: switchback.EventCallStarted, Data: map[string]string{"from": "sip:alice@example.com", "transport": "udp"}},
			{At: at, TransferID: "l-1", Type: switchback.EventPrompt, Data: map[string]string{"name": "welcome"}},
			{At: at, TransferID: "l-1", Type: switchback.EventDigit, Data: map[string]string{"digit": "1", "leg": "caller"}},
		},
	}, noLease, at)
	if err != nil {
		t.Fatal(err)
	}
	// No state: the stored one stays. An event without a time takes now.
	at2 := t0.Add(2 * time.Second)
	err = s.RecordConversation(ctx, &switchback.ConversationRecord{
		TenantID: "acme", ExternalID: "c1",
		Events: []switchback.ConversationEvent{{TransferID: "l-1", Type: switchback.EventHold}},
	}, noLease, at2)
	if err != nil {
		t.Fatal(err)
	}
	c, err := s.Conversation(ctx, "acme", "c1")
	if err != nil {
		t.Fatal(err)
	}
	if string(c.State) != `{"step": "menu", "tries": 1}` {
		t.Fatalf("state = %s, want the first record's, byte for byte", c.State)
	}
	if len(c.Legs) != 0 || !sameTime(c.CreatedAt, at) || !sameTime(c.UpdatedAt, at2) {
		t.Fatalf("legs %d, created %v, updated %v", len(c.Legs), c.CreatedAt, c.UpdatedAt)
	}
	var types []string
	for _, e := range c.Events {
		types = append(types, string(e.Type))
	}
	if got := strings.Join(types, " "); got != "call.started prompt digit hold" {
		t.Fatalf("events = %s, want them in the order recorded", got)
	}
	if e := c.Events[2]; !sameTime(e.At, at) || e.TransferID != "l-1" || e.Data["digit"] != "1" || e.Data["leg"] != "caller" {
		t.Fatalf("digit event = %+v", e)
	}
	if e := c.Events[3]; !sameTime(e.At, at2) || e.Data != nil {
		t.Fatalf("hold event = %+v; want now as its time and no data", e)
	}

	// A new state replaces the old one; a leg older than the record moves
	// the creation back.
	if err := s.RecordConversation(ctx, &switchback.ConversationRecord{TenantID: "acme", ExternalID: "c1", State: json.RawMessage(`[2]`)}, noLease, t0.Add(3*time.Second)); err != nil {
		t.Fatal(err)
	}
	mustCreate(t, s, leg("acme", "l-1", "c1", t0))
	c, err = s.Conversation(ctx, "acme", "c1")
	if err != nil {
		t.Fatal(err)
	}
	if string(c.State) != `[2]` || len(c.Events) != 4 || legIDs(c) != "l-1" ||
		!sameTime(c.CreatedAt, t0) || !sameTime(c.UpdatedAt, t0.Add(3*time.Second)) {
		t.Fatalf("after a state-only record: state %s, %d events, legs %q, created %v, updated %v",
			c.State, len(c.Events), legIDs(c), c.CreatedAt, c.UpdatedAt)
	}

	// The largest record allowed goes in whole and in order; one event more
	// is refused and changes nothing.
	big := &switchback.ConversationRecord{TenantID: "acme", ExternalID: "c2"}
	for i := 0; i < switchback.MaxEventsPerRecord; i++ {
		big.Events = append(big.Events, switchback.ConversationEvent{At: t0, Type: switchback.EventDigit,
			Data: map[string]string{"digit": fmt.Sprint(i)}})
	}
	if err := s.RecordConversation(ctx, big, noLease, t0); err != nil {
		t.Fatal(err)
	}
	big.Events = append(big.Events, big.Events[0])
	err = s.RecordConversation(ctx, big, noLease, t0)
	wantCode(t, err, switchback.EINVALID)
	c, err = s.Conversation(ctx, "acme", "c2")
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Events) != switchback.MaxEventsPerRecord {
		t.Fatalf("%d events after a refused record, want %d", len(c.Events), switchback.MaxEventsPerRecord)
	}
	for i, e := range c.Events {
		if e.Data["digit"] != fmt.Sprint(i) {
			t.Fatalf("event %d is %v: out of order", i, e.Data)
		}
	}

	for name, bad := range map[string]*switchback.ConversationRecord{
		"state not JSON":   {TenantID: "acme", ExternalID: "c3", State: json.RawMessage(`{"a":`)},
		"event no type":    {TenantID: "acme", ExternalID: "c3", Events: []switchback.ConversationEvent{{At: t0}}},
		"no external id":   {TenantID: "acme"},
		"no tenant at all": {ExternalID: "c3"},
	} {
		if err := s.RecordConversation(ctx, bad, noLease, t0); switchback.ErrorCode(err) != switchback.EINVALID {
			t.Errorf("%s: %v, want EINVALID", name, err)
		}
	}
	_, err = s.Conversation(ctx, "acme", "c3")
	wantCode(t, err, switchback.ENOTFOUND)
}

// testMatchRefusesSecondLiveLeg: two legs of one conversation are never
// ONGOING at once.
func testMatchRefusesSecondLiveLeg(t *testing.T, open Opener) {
	s := open(t, Quarantine)
	ctx := context.Background()
	addNumbers(t, s, "US", "", "+12025550100")
	mustCreate(t, s, leg("acme", "l-1", "c1", t0))
	mustCreate(t, s, leg("acme", "l-2", "c1", t0))
	p := phoneTransfer("acme", "p-3", "US", t0)
	p.ExternalConversationID = "c1"
	mustCreate(t, s, p)
	mustCreate(t, s, leg("globex", "g-1", "c1", t0))
	mustCreate(t, s, leg("acme", "other", "c2", t0))

	mustMatch(t, s, "acme", "l-1", t0.Add(time.Second))
	_, err := s.MatchTransfer(ctx, "acme", "l-2", noClaim, t0.Add(2*time.Second))
	wantCode(t, err, switchback.ECONFLICT)
	if msg := switchback.ErrorMessage(err); !strings.Contains(msg, `"c1"`) || !strings.Contains(msg, `"l-1"`) {
		t.Fatalf("conflict message %q names neither the conversation nor its live leg", msg)
	}
	wantStatus(t, s, "acme", "l-2", switchback.StatusActive)
	_, err = s.MatchNumber(ctx, "+12025550100", noClaim, t0.Add(2*time.Second))
	wantCode(t, err, switchback.ECONFLICT)
	wantStatus(t, s, "acme", "p-3", switchback.StatusActive)
	ns, _ := s.Numbers(ctx, "US", t0.Add(2*time.Second))
	if len(ns) != 1 || ns[0].State != switchback.NumberLeased || ns[0].TransferID != "p-3" {
		t.Fatalf("a refused match released the number: %+v", ns)
	}
	// An expired leg is gone whatever its conversation does.
	_, err = s.MatchTransfer(ctx, "acme", "l-2", noClaim, t0.Add(time.Minute))
	wantCode(t, err, switchback.EGONE)

	// Another tenant's conversation of the same id, and another
	// conversation, are not in the way.
	mustMatch(t, s, "globex", "g-1", t0.Add(2*time.Second))
	mustMatch(t, s, "acme", "other", t0.Add(2*time.Second))

	mustComplete(t, s, "acme", "l-1", t0.Add(3*time.Second))
	mustMatch(t, s, "acme", "l-2", t0.Add(4*time.Second))
	wantStatus(t, s, "acme", "l-2", switchback.StatusOngoing)
	_, err = s.MatchNumber(ctx, "+12025550100", noClaim, t0.Add(5*time.Second))
	wantCode(t, err, switchback.ECONFLICT)
	mustComplete(t, s, "acme", "l-2", t0.Add(6*time.Second))
	got, err := s.MatchNumber(ctx, "+12025550100", noClaim, t0.Add(7*time.Second))
	if err != nil || got.ID != "p-3" {
		t.Fatalf("match number after the live leg ended: %+v, %v", got, err)
	}
}

func testCreateRefusedWhileLegLive(t *testing.T, open Opener) {
	s := open(t, Quarantine)
	ctx := context.Background()
	addNumbers(t, s, "US", "", "+12025550100")
	first := mustCreate(t, s, leg("acme", "l-1", "c1", t0))
	mustMatch(t, s, "acme", "l-1", t0.Add(time.Second))

	_, _, err := s.CreateTransfer(ctx, leg("acme", "l-2", "c1", t0.Add(2*time.Second)), t0.Add(2*time.Second))
	wantCode(t, err, switchback.ECONFLICT)
	if msg := switchback.ErrorMessage(err); !strings.Contains(msg, `"l-1"`) {
		t.Fatalf("conflict message %q does not name the live leg", msg)
	}
	_, err = s.Transfer(ctx, "acme", "l-2")
	wantCode(t, err, switchback.ENOTFOUND)
	p := phoneTransfer("acme", "p-2", "US", t0.Add(2*time.Second))
	p.ExternalConversationID = "c1"
	_, _, err = s.CreateTransfer(ctx, p, t0.Add(2*time.Second))
	wantCode(t, err, switchback.ECONFLICT)
	if sum, _ := s.PoolSummaries(ctx, t0.Add(2*time.Second)); sum[0].Leased != 0 {
		t.Fatalf("a refused create leased a number: %+v", sum)
	}

	// A retry of the live leg's own create still gets it back.
	again, created, err := s.CreateTransfer(ctx, leg("acme", "l-1", "c1", t0), t0.Add(2*time.Second))
	if err != nil || created || again.ID != "l-1" || again.RequestHash != first.RequestHash || again.Status != switchback.StatusOngoing {
		t.Fatalf("retry of the live leg's create: %+v, created %v, %v", again, created, err)
	}

	mustCreate(t, s, leg("globex", "g-1", "c1", t0.Add(2*time.Second)))
	mustCreate(t, s, leg("acme", "other", "c2", t0.Add(2*time.Second)))
	mustComplete(t, s, "acme", "l-1", t0.Add(3*time.Second))
	mustCreate(t, s, leg("acme", "l-2", "c1", t0.Add(4*time.Second)))
}

// testConcurrentLegMatches matches many ACTIVE legs of one conversation
// at once, round after round: exactly one wins each round.
func testConcurrentLegMatches(t *testing.T, open Opener) {
	s := open(t, Quarantine)
	ConcurrentLegMatches(t, []switchback.Store{s})
}

// ConcurrentLegMatches races matches of the ACTIVE legs of one
// conversation through the given stores, which may be several nodes on one
// database: in every round exactly one leg becomes ONGOING and every other
// match is refused with ECONFLICT.
func ConcurrentLegMatches(t *testing.T, stores []switchback.Store) {
	ctx := context.Background()
	const legs = 8
	for round := 0; round < 5; round++ {
		now := t0.Add(time.Duration(round) * time.Second)
		for i := 0; i < legs; i++ {
			mustCreate(t, stores[0], leg("acme", fmt.Sprintf("r%d-%d", round, i), "c1", now))
		}
		var (
			wg      sync.WaitGroup
			mu      sync.Mutex
			winners []string
			start   = make(chan struct{})
		)
		for i := 0; i < legs; i++ {
			wg.Add(1)
			go func(s switchback.Store, id string) {
				defer wg.Done()
				<-start
				_, err := s.MatchTransfer(ctx, "acme", id, noClaim, now.Add(time.Millisecond))
				switch switchback.ErrorCode(err) {
				case "":
					mu.Lock()
					winners = append(winners, id)
					mu.Unlock()
				case switchback.ECONFLICT:
				default:
					t.Errorf("match %s: %v", id, err)
				}
			}(stores[i%len(stores)], fmt.Sprintf("r%d-%d", round, i))
		}
		close(start)
		wg.Wait()
		if len(winners) != 1 {
			t.Fatalf("round %d: %d legs matched (%v), want exactly one", round, len(winners), winners)
		}
		c, err := stores[0].Conversation(ctx, "acme", "c1")
		if err != nil {
			t.Fatal(err)
		}
		ongoing := 0
		for _, l := range c.Legs {
			if l.Status == switchback.StatusOngoing {
				ongoing++
			}
		}
		if ongoing != 1 {
			t.Fatalf("round %d: %d legs ONGOING", round, ongoing)
		}
		// The losers stay ACTIVE, and the next round's legs join them.
		mustComplete(t, stores[0], "acme", winners[0], now.Add(500*time.Millisecond))
	}
}

// testEndCall: completion, result and conversation record in one
// transaction, each optional, and nothing written when it is refused.
func testEndCall(t *testing.T, open Opener) {
	s := open(t, Quarantine)
	ctx := context.Background()
	tr := sipTransfer("acme", "e-1", t0)
	tr.ExternalConversationID = "conv-e"
	mustCreate(t, s, tr)
	out := &switchback.OutputContext{TransferType: switchback.TransferSystem, CurrentTaskName: "done"}
	res := &switchback.ReturnResult{Method: switchback.ReturnBYE, At: t0.Add(3 * time.Second)}
	rec := &switchback.ConversationRecord{TenantID: "acme", ExternalID: "conv-e", State: json.RawMessage(`{"step":2}`),
		Events: []switchback.ConversationEvent{{At: t0.Add(2 * time.Second), TransferID: "e-1", Type: switchback.EventOutcome},
			{At: t0.Add(3 * time.Second), TransferID: "e-1", Type: switchback.EventHandBack, Data: map[string]string{"method": "BYE"}}}}

	// Refused while ACTIVE: nothing is written, the record included.
	_, err := s.EndCall(ctx, &switchback.CallEnd{TenantID: "acme", ID: "e-1", Output: out, Result: res, Record: rec}, noLease, t0.Add(time.Second))
	wantCode(t, err, switchback.EGONE)
	if _, err := s.Conversation(ctx, "acme", "conv-e"); err != nil {
		t.Fatal(err)
	} else if c, _ := s.Conversation(ctx, "acme", "conv-e"); len(c.Events) != 0 || c.State != nil {
		t.Fatalf("a refused EndCall recorded %+v", c)
	}
	_, err = s.EndCall(ctx, &switchback.CallEnd{TenantID: "acme", ID: "nope", Output: out}, noLease, t0.Add(time.Second))
	wantCode(t, err, switchback.ENOTFOUND)
	bad := *rec
	bad.State = json.RawMessage(`{`)
	_, err = s.EndCall(ctx, &switchback.CallEnd{TenantID: "acme", ID: "e-1", Record: &bad}, noLease, t0.Add(time.Second))
	wantCode(t, err, switchback.EINVALID)

	mustMatch(t, s, "acme", "e-1", t0.Add(time.Second))
	got, err := s.EndCall(ctx, &switchback.CallEnd{TenantID: "acme", ID: "e-1", Output: out, Result: res, Record: rec}, noLease, t0.Add(3*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if got.Status != switchback.StatusCompleted || got.OutputContext == nil || got.OutputContext.CurrentTaskName != "done" ||
		got.ReturnResult == nil || *got.ReturnResult != *res || !sameTime(got.CompletedAt, t0.Add(3*time.Second)) {
		t.Fatalf("EndCall returned %+v", got)
	}
	if stored, _ := s.Transfer(ctx, "acme", "e-1"); stored.ReturnResult == nil || stored.Status != switchback.StatusCompleted {
		t.Fatalf("stored %+v", stored)
	}
	c, err := s.Conversation(ctx, "acme", "conv-e")
	if err != nil {
		t.Fatal(err)
	}
	if string(c.State) != `{"step":2}` || len(c.Events) != 2 || c.Events[1].Type != switchback.EventHandBack || c.Events[1].Data["method"] != "BYE" {
		t.Fatalf("conversation after EndCall: %+v", c)
	}

	// A second EndCall without an output adds a result and events to the
	// completed transfer; with an output it is refused.
	later := &switchback.ReturnResult{Method: switchback.ReturnINVITE, SIPStatus: 200, At: t0.Add(5 * time.Second)}
	_, err = s.EndCall(ctx, &switchback.CallEnd{TenantID: "acme", ID: "e-1", Output: out}, noLease, t0.Add(5*time.Second))
	wantCode(t, err, switchback.EGONE)
	got, err = s.EndCall(ctx, &switchback.CallEnd{TenantID: "acme", ID: "e-1", Result: later,
		Record: &switchback.ConversationRecord{TenantID: "acme", ExternalID: "conv-e",
			Events: []switchback.ConversationEvent{{TransferID: "e-1", Type: switchback.EventCallEnded}}}}, noLease, t0.Add(5*time.Second))
	if err != nil || got.ReturnResult == nil || *got.ReturnResult != *later {
		t.Fatalf("second EndCall: %+v, %v", got, err)
	}
	if c, _ := s.Conversation(ctx, "acme", "conv-e"); len(c.Events) != 3 || string(c.State) != `{"step":2}` {
		t.Fatalf("conversation after the second EndCall: %+v", c)
	}
	// Only a record: the transfer is returned as it is.
	got, err = s.EndCall(ctx, &switchback.CallEnd{TenantID: "acme", ID: "e-1", Record: &switchback.ConversationRecord{TenantID: "acme", ExternalID: "conv-e"}}, noLease, t0.Add(6*time.Second))
	if err != nil || got.ID != "e-1" || got.Status != switchback.StatusCompleted {
		t.Fatalf("record-only EndCall: %+v, %v", got, err)
	}
}

// testAbandonCalls: ONGOING transfers whose call arrived long ago are
// completed as CALLER_DISCONNECT, and their conversation takes a new leg.
func testAbandonCalls(t *testing.T, open Opener) {
	s := open(t, Quarantine)
	ctx := context.Background()
	for _, id := range []string{"old", "young", "done"} {
		tr := sipTransfer("acme", id, t0)
		tr.ExternalConversationID = "conv-" + id
		tr.ExpiresAt = t0.Add(2 * time.Hour)
		mustCreate(t, s, tr)
	}
	mustMatch(t, s, "acme", "old", t0.Add(time.Second))
	mustMatch(t, s, "acme", "young", t0.Add(90*time.Minute))
	mustMatch(t, s, "acme", "done", t0.Add(time.Second))
	if _, err := s.CompleteTransfer(ctx, "acme", "done", &switchback.OutputContext{TransferType: switchback.TransferAgent}, noLease, t0.Add(2*time.Second)); err != nil {
		t.Fatal(err)
	}
	now := t0.Add(5 * time.Hour)
	keys, err := s.AbandonCalls(ctx, now.Add(-4*time.Hour), now, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != 1 || keys[0].ID != "old" || keys[0].TenantID != "acme" {
		t.Fatalf("abandoned %+v, want only old", keys)
	}
	got, _ := s.Transfer(ctx, "acme", "old")
	if got.Status != switchback.StatusCompleted || got.OutputContext == nil || got.OutputContext.TransferType != switchback.TransferCallerDisconnect ||
		!sameTime(got.CompletedAt, now) {
		t.Fatalf("abandoned transfer: %+v", got)
	}
	for id, want := range map[string]switchback.Status{"young": switchback.StatusOngoing, "done": switchback.StatusCompleted} {
		if got, _ := s.Transfer(ctx, "acme", id); got.Status != want {
			t.Fatalf("%s is %s, want %s", id, got.Status, want)
		}
	}
	if done, _ := s.Transfer(ctx, "acme", "done"); done.OutputContext.TransferType != switchback.TransferAgent {
		t.Fatalf("a completed transfer was completed again: %+v", done.OutputContext)
	}
	// The abandoned call's conversation takes a new leg.
	next := sipTransfer("acme", "old-2", now)
	next.ExternalConversationID = "conv-old"
	mustCreate(t, s, next)
	mustMatch(t, s, "acme", "old-2", now.Add(time.Second))
	if keys, err := s.AbandonCalls(ctx, now.Add(-4*time.Hour), now, 10); err != nil || len(keys) != 0 {
		t.Fatalf("second sweep: %+v, %v", keys, err)
	}
}
