package storetest

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/switchback/switchback"
)

// Node leases are timed by the store's own clock where several nodes share
// it, not by the now passed in; so these tests run on the wall clock, pass
// it as now, and wait for real when a lease must lapse.

func wall() time.Time { return time.Now().UTC().Truncate(time.Microsecond) }

// lapse lets a current lease expire: renewed for a moment, then waited out,
// however long the test took to get here.
func lapse(t *testing.T, s switchback.Store, l switchback.NodeLease) {
	t.Helper()
	if err := s.RenewNode(context.Background(), l, time.Millisecond, wall()); err != nil {
		t.Fatalf("renew %v for a moment: %v", l, err)
	}
	time.Sleep(20 * time.Millisecond)
}

func mustAcquire(t *testing.T, s switchback.Store, id string, ttl time.Duration) switchback.NodeLease {
	t.Helper()
	l, err := s.AcquireNode(context.Background(), id, ttl, wall())
	if err != nil {
		t.Fatalf("acquire %s: %v", id, err)
	}
	return l
}

// liveTransfer is a SIP transfer created now that stays ACTIVE for an hour.
func liveTransfer(tenant, id, ext string) *switchback.Transfer {
	now := wall()
	t := leg(tenant, id, ext, now)
	t.ExpiresAt = now.Add(time.Hour)
	return t
}

func matchBy(t *testing.T, s switchback.Store, l switchback.NodeLease, tenant, id string) *switchback.Transfer {
	t.Helper()
	got, err := s.MatchTransfer(context.Background(), tenant, id, switchback.CallClaim{Owner: l}, wall())
	if err != nil {
		t.Fatalf("match %s by %s: %v", id, l, err)
	}
	return got
}

func nodeState(t *testing.T, s switchback.Store, id string) switchback.NodeState {
	t.Helper()
	nodes, err := s.Nodes(context.Background(), wall())
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range nodes {
		if n.Node == id {
			return n
		}
	}
	t.Fatalf("node %s not listed in %+v", id, nodes)
	return switchback.NodeState{}
}

// testNodeLeases: every acquisition is a new epoch, renewals keep only the
// latest alive, a release ends it, and the listing says which are live.
func testNodeLeases(t *testing.T, open Opener) {
	s := open(t, Quarantine)
	ctx := context.Background()
	if _, err := s.AcquireNode(ctx, "", time.Minute, wall()); switchback.ErrorCode(err) != switchback.EINVALID {
		t.Fatalf("acquire without an id: %v", err)
	}
	a1 := mustAcquire(t, s, "a", time.Minute)
	b1 := mustAcquire(t, s, "b", time.Minute)
	if a1 != (switchback.NodeLease{Node: "a", Epoch: 1}) || b1 != (switchback.NodeLease{Node: "b", Epoch: 1}) {
		t.Fatalf("first leases %v %v, want a@1 b@1", a1, b1)
	}
	if err := s.RenewNode(ctx, a1, time.Minute, wall()); err != nil {
		t.Fatalf("renew a current lease: %v", err)
	}
	a2 := mustAcquire(t, s, "a", time.Minute)
	if a2 != (switchback.NodeLease{Node: "a", Epoch: 2}) {
		t.Fatalf("a restarted as %v, want a@2", a2)
	}
	wantCode(t, s.RenewNode(ctx, a1, time.Minute, wall()), switchback.EFENCED)
	if err := s.RenewNode(ctx, a2, time.Minute, wall()); err != nil {
		t.Fatalf("renew the new epoch: %v", err)
	}
	if err := s.RenewNode(ctx, switchback.NodeLease{Node: "nobody", Epoch: 1}, time.Minute, wall()); switchback.ErrorCode(err) != switchback.EFENCED {
		t.Fatalf("renew a lease never acquired: %v", err)
	}

	nodes, err := s.Nodes(ctx, wall())
	if err != nil {
		t.Fatal(err)
	}
	if len(nodes) != 2 || nodes[0].NodeLease != a2 || nodes[1].NodeLease != b1 || !nodes[0].Live || !nodes[1].Live {
		t.Fatalf("nodes %+v, want a@2 and b@1, both live", nodes)
	}
	for _, n := range nodes {
		if n.AcquiredAt.IsZero() || n.RenewedAt.Before(n.AcquiredAt) || !n.ExpiresAt.After(n.RenewedAt) ||
			n.ExpiresAt.Sub(n.RenewedAt) > time.Minute || !n.ReleasedAt.IsZero() {
			t.Errorf("lease times %+v", n)
		}
	}

	if err := s.ReleaseNode(ctx, b1, wall()); err != nil {
		t.Fatal(err)
	}
	if b := nodeState(t, s, "b"); b.Live || b.ReleasedAt.IsZero() || b.Epoch != 1 {
		t.Fatalf("released lease listed as %+v", b)
	}
	wantCode(t, s.RenewNode(ctx, b1, time.Minute, wall()), switchback.EFENCED)
	if err := s.ReleaseNode(ctx, b1, wall()); err != nil {
		t.Fatalf("release a released lease: %v", err)
	}
	if err := s.ReleaseNode(ctx, a1, wall()); err != nil {
		t.Fatalf("release a superseded lease: %v", err)
	}
	if a := nodeState(t, s, "a"); !a.Live || a.Epoch != 2 {
		t.Fatalf("releasing a@1 touched a@2: %+v", a)
	}
	if b2 := mustAcquire(t, s, "b", time.Minute); b2.Epoch != 2 || !nodeState(t, s, "b").Live || !nodeState(t, s, "b").ReleasedAt.IsZero() {
		t.Fatalf("b after a new start: %v %+v", b2, nodeState(t, s, "b"))
	}
}

// testLeaseExpires: a lease not renewed within its TTL is dead for good.
func testLeaseExpires(t *testing.T, open Opener) {
	s := open(t, Quarantine)
	ctx := context.Background()
	a := mustAcquire(t, s, "a", time.Minute)
	if err := s.RenewNode(ctx, a, time.Minute, wall()); err != nil {
		t.Fatalf("renew within the TTL: %v", err)
	}
	lapse(t, s, a)
	wantCode(t, s.RenewNode(ctx, a, time.Minute, wall()), switchback.EFENCED)
	if n := nodeState(t, s, "a"); n.Live || !n.ReleasedAt.IsZero() {
		t.Fatalf("lapsed lease listed as %+v", n)
	}
	mustCreate(t, s, liveTransfer("acme", "x", "conv-x"))
	_, err := s.MatchTransfer(ctx, "acme", "x", switchback.CallClaim{Owner: a}, wall())
	wantCode(t, err, switchback.EFENCED)
	wantStatus(t, s, "acme", "x", switchback.StatusActive)
	if a2 := mustAcquire(t, s, "a", time.Minute); a2.Epoch != 2 {
		t.Fatalf("start after a lapse: %v", a2)
	}
	matchBy(t, s, switchback.NodeLease{Node: "a", Epoch: 2}, "acme", "x")
}

// testFencedWrites: once a node's lease is superseded, nothing it writes
// for its call lands, and what the node that took the call over decided
// stays as it was.
func testFencedWrites(t *testing.T, open Opener) {
	s := open(t, Quarantine)
	ctx := context.Background()
	a1 := mustAcquire(t, s, "a", time.Minute)
	b := mustAcquire(t, s, "b", time.Minute)
	mustCreate(t, s, liveTransfer("acme", "x", "conv-x"))
	mustCreate(t, s, liveTransfer("acme", "y", "conv-y"))
	if got := matchBy(t, s, a1, "acme", "x"); got.Owner != a1 || got.Status != switchback.StatusOngoing {
		t.Fatalf("matched %+v, want ONGOING owned by %v", got, a1)
	}
	if got, _ := s.Transfer(ctx, "acme", "x"); got.Owner != a1 {
		t.Fatalf("stored owner %v, want %v", got.Owner, a1)
	}
	state := json.RawMessage(`{"step":1}`)
	if err := s.RecordConversation(ctx, &switchback.ConversationRecord{TenantID: "acme", ExternalID: "conv-x", State: state,
		Events: []switchback.ConversationEvent{{TransferID: "x", Type: switchback.EventPrompt}}}, a1, wall()); err != nil {
		t.Fatal(err)
	}
	out := &switchback.OutputContext{TransferType: switchback.TransferAgent, CurrentTaskName: "late"}

	// Only the owner writes a call, even while every lease is current.
	_, err := s.CompleteTransfer(ctx, "acme", "x", out, b, wall())
	wantCode(t, err, switchback.EFENCED)
	_, err = s.CompleteTransfer(ctx, "acme", "x", out, noLease, wall())
	wantCode(t, err, switchback.EFENCED)
	_, err = s.EndCall(ctx, &switchback.CallEnd{TenantID: "acme", ID: "x", Record: &switchback.ConversationRecord{
		TenantID: "acme", ExternalID: "conv-x", State: json.RawMessage(`{"step":"b"}`)}}, b, wall())
	wantCode(t, err, switchback.EFENCED)

	// a restarts (or an operator takes its id): a@1 is superseded.
	a2 := mustAcquire(t, s, "a", time.Minute)
	_, err = s.CompleteTransfer(ctx, "acme", "x", out, a1, wall())
	wantCode(t, err, switchback.EFENCED)
	_, err = s.CompleteTransfer(ctx, "acme", "x", out, a2, wall())
	wantCode(t, err, switchback.EFENCED) // the call is a@1's, not the new epoch's
	_, err = s.EndCall(ctx, &switchback.CallEnd{TenantID: "acme", ID: "x", Output: out,
		Result: &switchback.ReturnResult{Method: switchback.ReturnBYE, At: wall()}}, a1, wall())
	wantCode(t, err, switchback.EFENCED)
	err = s.RecordConversation(ctx, &switchback.ConversationRecord{TenantID: "acme", ExternalID: "conv-x",
		State: json.RawMessage(`{"step":"fenced"}`)}, a1, wall())
	wantCode(t, err, switchback.EFENCED)
	_, err = s.MatchTransfer(ctx, "acme", "y", switchback.CallClaim{Owner: a1}, wall())
	wantCode(t, err, switchback.EFENCED)
	wantStatus(t, s, "acme", "y", switchback.StatusActive)
	wantStatus(t, s, "acme", "x", switchback.StatusOngoing)

	calls, err := s.TakeOverCalls(ctx, b, wall(), 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(calls) != 1 || calls[0].ID != "x" || calls[0].Owner != a1 || calls[0].Reason != switchback.LeaseSuperseded {
		t.Fatalf("took over %+v, want x of a@1, superseded", calls)
	}
	decided, _ := s.Transfer(ctx, "acme", "x")

	// Every write the fenced node still tries after the takeover is refused.
	err = s.SetReturnResult(ctx, "acme", "x", &switchback.ReturnResult{Method: switchback.ReturnREFER, SIPStatus: 202, At: wall()}, a1, wall())
	wantCode(t, err, switchback.EFENCED)
	_, err = s.EndCall(ctx, &switchback.CallEnd{TenantID: "acme", ID: "x",
		Result: &switchback.ReturnResult{Method: switchback.ReturnBYE, At: wall()},
		Record: &switchback.ConversationRecord{TenantID: "acme", ExternalID: "conv-x", State: json.RawMessage(`{"step":"late"}`)}}, a1, wall())
	wantCode(t, err, switchback.EFENCED)
	_, err = s.EndCall(ctx, &switchback.CallEnd{TenantID: "acme", ID: "x",
		Record: &switchback.ConversationRecord{TenantID: "acme", ExternalID: "conv-x", State: json.RawMessage(`{"step":"late"}`)}}, a1, wall())
	wantCode(t, err, switchback.EFENCED)
	_, err = s.CompleteTransfer(ctx, "acme", "x", out, a1, wall())
	wantCode(t, err, switchback.EFENCED)

	got, _ := s.Transfer(ctx, "acme", "x")
	if got.Status != switchback.StatusCompleted || got.OutputContext == nil ||
		got.OutputContext.TransferType != switchback.TransferCallerDisconnect || got.OutputContext.CurrentTaskName != "" ||
		got.ReturnResult == nil || *got.ReturnResult != *decided.ReturnResult || !got.CompletedAt.Equal(decided.CompletedAt) {
		t.Fatalf("the takeover's outcome changed: %+v, was %+v", got, decided)
	}
	c, err := s.Conversation(ctx, "acme", "conv-x")
	if err != nil {
		t.Fatal(err)
	}
	if string(c.State) != `{"step":1}` {
		t.Fatalf("conversation state %s, want the one a@1 saved while current", c.State)
	}
	if len(c.Events) != 2 || c.Events[0].Type != switchback.EventPrompt || c.Events[1].Type != switchback.EventCallEnded ||
		c.Events[1].Data["by"] != switchback.EndedByNodeLost {
		t.Fatalf("conversation events %+v, want the prompt then the takeover's call.ended", c.Events)
	}
}

// testTakeOverCalls: a live node completes exactly the ONGOING calls of
// dead leases, keeps their conversations' state and frees them for their
// next leg; calls of live leases, calls without an owner and transfers in
// any other status are left alone.
func testTakeOverCalls(t *testing.T, open Opener) {
	s := open(t, Quarantine)
	ctx := context.Background()
	a := mustAcquire(t, s, "a", time.Minute)
	b := mustAcquire(t, s, "b", time.Minute)
	for _, tr := range []*switchback.Transfer{
		liveTransfer("acme", "x1", "c1"), liveTransfer("globex", "x2", ""), liveTransfer("acme", "done", "c2"),
		liveTransfer("acme", "y", "c3"), liveTransfer("acme", "z", "c4"), liveTransfer("acme", "u", "c5"),
	} {
		mustCreate(t, s, tr)
	}
	matchBy(t, s, a, "acme", "x1")
	matchBy(t, s, a, "globex", "x2")
	matchBy(t, s, a, "acme", "done")
	if _, err := s.CompleteTransfer(ctx, "acme", "done", &switchback.OutputContext{TransferType: switchback.TransferSystem}, a, wall()); err != nil {
		t.Fatal(err)
	}
	matchBy(t, s, b, "acme", "y")
	if _, err := s.MatchTransfer(ctx, "acme", "u", noClaim, wall()); err != nil { // matched without a lease
		t.Fatal(err)
	}
	if err := s.RecordConversation(ctx, &switchback.ConversationRecord{TenantID: "acme", ExternalID: "c1",
		State: json.RawMessage(`{"step":3}`)}, a, wall()); err != nil {
		t.Fatal(err)
	}

	if calls, err := s.TakeOverCalls(ctx, b, wall(), 10); err != nil || len(calls) != 0 {
		t.Fatalf("takeover while every lease is live: %+v, %v", calls, err)
	}
	lapse(t, s, a) // a is gone
	_, err := s.TakeOverCalls(ctx, a, wall(), 10)
	wantCode(t, err, switchback.EFENCED) // a dead node takes nothing over

	now := wall()
	calls, err := s.TakeOverCalls(ctx, b, now, 10)
	if err != nil {
		t.Fatal(err)
	}
	sort.Slice(calls, func(i, j int) bool { return calls[i].ID < calls[j].ID })
	want := []switchback.OrphanedCall{
		{TransferKey: switchback.TransferKey{TenantID: "acme", ID: "x1"}, Owner: a, Reason: switchback.LeaseExpired},
		{TransferKey: switchback.TransferKey{TenantID: "globex", ID: "x2"}, Owner: a, Reason: switchback.LeaseExpired},
	}
	if len(calls) != len(want) {
		t.Fatalf("took over %+v, want x1 and x2", calls)
	}
	for i := range want {
		got := calls[i]
		got.ExpiresAt = time.Time{}
		if got != want[i] {
			t.Errorf("took over %+v, want %+v", calls[i], want[i])
		}
	}
	for _, k := range []struct{ tenant, id string }{{"acme", "x1"}, {"globex", "x2"}} {
		got, _ := s.Transfer(ctx, k.tenant, k.id)
		wantResult := switchback.ReturnResult{Method: switchback.ReturnBYE, Reason: `node "a" lost (lease expired)`, At: now}
		if got.Status != switchback.StatusCompleted || !got.CompletedAt.Equal(now) || got.OutputContext == nil ||
			got.OutputContext.TransferType != switchback.TransferCallerDisconnect || got.ReturnResult == nil ||
			*got.ReturnResult != wantResult || got.SIP.ReturnAuthPassword != "" || got.Owner != a {
			t.Errorf("%s taken over as %+v (result %+v)", k.id, got, got.ReturnResult)
		}
	}
	for id, st := range map[string]switchback.Status{"done": switchback.StatusCompleted, "y": switchback.StatusOngoing,
		"z": switchback.StatusActive, "u": switchback.StatusOngoing} {
		wantStatus(t, s, "acme", id, st)
	}
	if done, _ := s.Transfer(ctx, "acme", "done"); done.OutputContext.TransferType != switchback.TransferSystem || done.ReturnResult != nil {
		t.Errorf("a completed call was taken over: %+v", done)
	}

	c, err := s.Conversation(ctx, "acme", "c1")
	if err != nil {
		t.Fatal(err)
	}
	last := c.Events[len(c.Events)-1]
	if string(c.State) != `{"step":3}` || last.Type != switchback.EventCallEnded || last.TransferID != "x1" || !last.At.Equal(now) ||
		fmt.Sprint(last.Data) != fmt.Sprint(map[string]string{"by": "node-lost", "node": "a", "epoch": "1", "reason": "lease expired"}) {
		t.Fatalf("conversation after the takeover: state %s, events %+v", c.State, c.Events)
	}
	// The conversation takes its next leg, on the live node.
	mustCreate(t, s, liveTransfer("acme", "x1-next", "c1"))
	matchBy(t, s, b, "acme", "x1-next")
	if calls, err := s.TakeOverCalls(ctx, b, wall(), 10); err != nil || len(calls) != 0 {
		t.Fatalf("second takeover: %+v, %v", calls, err)
	}

	// A node that exits cleanly with a call left: taken over at once.
	c3 := mustAcquire(t, s, "c", time.Minute)
	mustCreate(t, s, liveTransfer("acme", "v", "c6"))
	matchBy(t, s, c3, "acme", "v")
	if err := s.ReleaseNode(ctx, c3, wall()); err != nil {
		t.Fatal(err)
	}
	calls, err = s.TakeOverCalls(ctx, noLease, wall(), 10)
	if err != nil || len(calls) != 1 || calls[0].ID != "v" || calls[0].Reason != switchback.LeaseReleased {
		t.Fatalf("takeover of a released lease: %+v, %v", calls, err)
	}
	if v, _ := s.Transfer(ctx, "acme", "v"); v.ReturnResult == nil || !strings.Contains(v.ReturnResult.Reason, "lease released") {
		t.Fatalf("released lease's call: %+v", v)
	}
}

// testTakeOverLimit: a takeover moves at most limit calls, oldest call
// first, and the next one the rest.
func testTakeOverLimit(t *testing.T, open Opener) {
	s := open(t, Quarantine)
	ctx := context.Background()
	dead := mustAcquire(t, s, "dead", time.Minute)
	for i := 0; i < 5; i++ {
		id := fmt.Sprintf("t%d", i)
		mustCreate(t, s, liveTransfer("acme", id, "conv-"+id))
		matchBy(t, s, dead, "acme", id)
	}
	mustAcquire(t, s, "dead", time.Minute) // restarted: the first epoch's calls are orphans
	first, err := s.TakeOverCalls(ctx, noLease, wall(), 3)
	if err != nil || len(first) != 3 || first[0].ID != "t0" {
		t.Fatalf("first takeover: %+v, %v", first, err)
	}
	rest, err := s.TakeOverCalls(ctx, noLease, wall(), 3)
	if err != nil || len(rest) != 2 {
		t.Fatalf("second takeover: %+v, %v", rest, err)
	}
}

// testCallLimit: a match past the tenant's limit of calls ONGOING is
// refused with EBUSY and leaves the transfer ACTIVE; other tenants and
// unlimited matches are not held back, and a refusal for another reason
// says that reason.
func testCallLimit(t *testing.T, open Opener) {
	s := open(t, Quarantine)
	ctx := context.Background()
	addNumbers(t, s, "US", "", "+12025550100")
	for _, id := range []string{"l1", "l2", "l3"} {
		mustCreate(t, s, liveTransfer("acme", id, "conv-"+id))
	}
	mustCreate(t, s, liveTransfer("globex", "g1", "conv-g1"))
	limit := switchback.CallClaim{MaxCalls: 2}
	for _, id := range []string{"l1", "l2"} {
		if _, err := s.MatchTransfer(ctx, "acme", id, limit, wall()); err != nil {
			t.Fatalf("match %s under the limit: %v", id, err)
		}
	}
	_, err := s.MatchTransfer(ctx, "acme", "l3", limit, wall())
	wantCode(t, err, switchback.EBUSY)
	wantStatus(t, s, "acme", "l3", switchback.StatusActive)
	if _, err := s.MatchTransfer(ctx, "globex", "g1", limit, wall()); err != nil {
		t.Fatalf("another tenant: %v", err)
	}
	_, err = s.MatchTransfer(ctx, "acme", "nope", limit, wall())
	wantCode(t, err, switchback.ENOTFOUND)
	_, err = s.MatchTransfer(ctx, "acme", "l1", limit, wall())
	wantCode(t, err, switchback.EGONE)

	p := liveTransfer("acme", "p1", "conv-p1")
	p.Type, p.SIP, p.PhoneNumber = switchback.TypePhoneNumber, nil, &switchback.PhoneNumber{Country: "US"}
	mustCreate(t, s, p)
	_, err = s.MatchNumber(ctx, "+12025550100", limit, wall())
	wantCode(t, err, switchback.EBUSY)
	wantStatus(t, s, "acme", "p1", switchback.StatusActive)

	mustComplete(t, s, "acme", "l1", wall())
	if _, err := s.MatchTransfer(ctx, "acme", "l3", limit, wall()); err != nil {
		t.Fatalf("match once a call ended: %v", err)
	}
	if _, err := s.MatchNumber(ctx, "+12025550100", switchback.CallClaim{MaxCalls: 3}, wall()); err != nil {
		t.Fatalf("match a number under a higher limit: %v", err)
	}
	// No limit: never refused.
	mustCreate(t, s, liveTransfer("acme", "l4", "conv-l4"))
	if _, err := s.MatchTransfer(ctx, "acme", "l4", noClaim, wall()); err != nil {
		t.Fatalf("match without a limit: %v", err)
	}
	// A lowered limit counts the calls matched under the higher one.
	mustCreate(t, s, liveTransfer("acme", "l5", "conv-l5"))
	_, err = s.MatchTransfer(ctx, "acme", "l5", switchback.CallClaim{MaxCalls: 2}, wall())
	wantCode(t, err, switchback.EBUSY)

	// A call its node lost frees its slot once taken over.
	dead := mustAcquire(t, s, "dead", time.Minute)
	mustCreate(t, s, liveTransfer("initech", "i1", "conv-i1"))
	mustCreate(t, s, liveTransfer("initech", "i2", "conv-i2"))
	if _, err := s.MatchTransfer(ctx, "initech", "i1", switchback.CallClaim{Owner: dead, MaxCalls: 1}, wall()); err != nil {
		t.Fatal(err)
	}
	_, err = s.MatchTransfer(ctx, "initech", "i2", switchback.CallClaim{MaxCalls: 1}, wall())
	wantCode(t, err, switchback.EBUSY)
	mustAcquire(t, s, "dead", time.Minute)
	if calls, err := s.TakeOverCalls(ctx, noLease, wall(), 10); err != nil || len(calls) != 1 {
		t.Fatalf("takeover: %+v, %v", calls, err)
	}
	if _, err := s.MatchTransfer(ctx, "initech", "i2", switchback.CallClaim{MaxCalls: 1}, wall()); err != nil {
		t.Fatalf("match once the lost call was taken over: %v", err)
	}
}

// testConcurrentCallLimit races matches against a limit on one store.
func testConcurrentCallLimit(t *testing.T, open Opener) {
	ConcurrentCallLimit(t, []switchback.Store{open(t, Quarantine)})
}

// ConcurrentCallLimit races 50 matches of one tenant's transfers for 10
// call slots through the given stores, which may be several nodes on one
// database: exactly 10 win, every other match is refused with EBUSY, and
// exactly 10 transfers are ONGOING.
func ConcurrentCallLimit(t *testing.T, stores []switchback.Store) {
	ctx := context.Background()
	const calls, limit = 50, 10
	for i := 0; i < calls; i++ {
		id := fmt.Sprintf("c%d", i)
		mustCreate(t, stores[0], liveTransfer("acme", id, "conv-"+id))
	}
	var (
		wg         sync.WaitGroup
		mu         sync.Mutex
		won, busy  int
		start      = make(chan struct{})
		claimLimit = switchback.CallClaim{MaxCalls: limit}
	)
	for i := 0; i < calls; i++ {
		wg.Add(1)
		go func(s switchback.Store, id string) {
			defer wg.Done()
			<-start
			_, err := s.MatchTransfer(ctx, "acme", id, claimLimit, wall())
			mu.Lock()
			defer mu.Unlock()
			switch switchback.ErrorCode(err) {
			case "":
				won++
			case switchback.EBUSY:
				busy++
			default:
				t.Errorf("match %s: %v", id, err)
			}
		}(stores[i%len(stores)], fmt.Sprintf("c%d", i))
	}
	close(start)
	wg.Wait()
	counts, err := stores[0].CountTransfers(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if won != limit || busy != calls-limit || counts[switchback.StatusOngoing] != limit {
		t.Fatalf("%d matched, %d busy, %d ONGOING; want %d, %d, %d", won, busy, counts[switchback.StatusOngoing], limit, calls-limit, limit)
	}
}

// testConcurrentTakeovers races takeovers on one store.
func testConcurrentTakeovers(t *testing.T, open Opener) {
	ConcurrentTakeovers(t, []switchback.Store{open(t, Quarantine)})
}

// ConcurrentTakeovers orphans 60 calls, then has 6 nodes, spread over the
// given stores, take them over at once in small batches: each call is
// taken over exactly once, and its conversation gets one node-lost event.
func ConcurrentTakeovers(t *testing.T, stores []switchback.Store) {
	ctx := context.Background()
	const calls, takers = 60, 6
	dead := mustAcquire(t, stores[0], "dead", time.Minute)
	for i := 0; i < calls; i++ {
		id := fmt.Sprintf("o%d", i)
		mustCreate(t, stores[0], liveTransfer("acme", id, "conv-"+id))
		matchBy(t, stores[0], dead, "acme", id)
	}
	mustAcquire(t, stores[0], "dead", time.Minute) // a restart orphans the first epoch's calls
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		taken = map[string]int{}
		start = make(chan struct{})
	)
	for i := 0; i < takers; i++ {
		s := stores[i%len(stores)]
		l := mustAcquire(t, s, fmt.Sprintf("taker-%d", i), time.Minute)
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			for {
				got, err := s.TakeOverCalls(ctx, l, wall(), 4)
				if err != nil {
					t.Errorf("takeover by %s: %v", l, err)
					return
				}
				mu.Lock()
				for _, c := range got {
					taken[c.ID]++
				}
				mu.Unlock()
				if len(got) == 0 {
					return
				}
			}
		}()
	}
	close(start)
	wg.Wait()
	if len(taken) != calls {
		t.Fatalf("%d calls taken over, want %d", len(taken), calls)
	}
	for id, n := range taken {
		if n != 1 {
			t.Errorf("%s taken over %d times", id, n)
		}
	}
	for i := 0; i < calls; i += 7 {
		id := fmt.Sprintf("o%d", i)
		c, err := stores[0].Conversation(ctx, "acme", "conv-"+id)
		if err != nil {
			t.Fatal(err)
		}
		if len(c.Events) != 1 || c.Events[0].Data["by"] != switchback.EndedByNodeLost || c.Legs[0].Status != switchback.StatusCompleted {
			t.Errorf("%s: events %+v, leg %s", id, c.Events, c.Legs[0].Status)
		}
	}
}
