package transfer

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/switchback/switchback"
	"github.com/switchback/switchback/internal/sqlite"
)

func newService(t *testing.T, p Policy, now func() time.Time) *Service {
	t.Helper()
	db, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "s.db"), sqlite.Options{Quarantine: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return New(Options{Store: db, Clock: now, Policy: func(id string) (Policy, bool) { return p, id == "acme" }})
}

func sipRequest(id string, sip *switchback.SIP) *switchback.Transfer {
	return &switchback.Transfer{TenantID: "acme", ID: id, ExternalConversationID: "c", Type: switchback.TypeSIP, SIP: sip, RequestHash: "h-" + id}
}

func TestCreateAppliesTenantPolicy(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	clock := func() time.Time { return t0 }
	tests := []struct {
		name     string
		policy   Policy
		sip      *switchback.SIP
		wantType switchback.ReturnTransferType
		wantErr  string
	}{
		{"default BYE", Policy{SIPTTL: time.Minute, DefaultReturn: switchback.ReturnBYE}, &switchback.SIP{}, switchback.ReturnBYE, ""},
		{"default REFER with a URI", Policy{SIPTTL: time.Minute, DefaultReturn: switchback.ReturnREFER}, &switchback.SIP{ReturnURI: "sip:a@b"}, switchback.ReturnREFER, ""},
		{"default REFER without a URI", Policy{SIPTTL: time.Minute, DefaultReturn: switchback.ReturnREFER}, &switchback.SIP{}, "", switchback.EINVALID},
		{"explicit BYE beats the default", Policy{SIPTTL: time.Minute, DefaultReturn: switchback.ReturnINVITE}, &switchback.SIP{ReturnTransferType: switchback.ReturnBYE}, switchback.ReturnBYE, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newService(t, tt.policy, clock)
			got, err := s.Create(context.Background(), sipRequest("t", tt.sip))
			if code := switchback.ErrorCode(err); code != tt.wantErr {
				t.Fatalf("error %v, want code %q", err, tt.wantErr)
			}
			if err != nil {
				return
			}
			if got.SIP.ReturnTransferType != tt.wantType || !got.ExpiresAt.Equal(t0.Add(time.Minute)) || got.Status != switchback.StatusActive {
				t.Fatalf("created %+v %+v", got, got.SIP)
			}
		})
	}
}

func TestCreateRetryAndConflictAndUnknownTenant(t *testing.T) {
	s := newService(t, Policy{SIPTTL: time.Minute, DefaultReturn: switchback.ReturnBYE}, switchback.SystemClock)
	ctx := context.Background()
	first, err := s.Create(ctx, sipRequest("t", &switchback.SIP{}))
	if err != nil {
		t.Fatal(err)
	}
	again, err := s.Create(ctx, sipRequest("t", &switchback.SIP{}))
	if err != nil || !again.CreatedAt.Equal(first.CreatedAt) {
		t.Fatalf("retry: %v %v", again, err)
	}
	other := sipRequest("t", &switchback.SIP{})
	other.RequestHash = "different"
	if _, err := s.Create(ctx, other); switchback.ErrorCode(err) != switchback.ECONFLICT {
		t.Fatalf("conflicting reuse: %v", err)
	}
	stranger := sipRequest("x", &switchback.SIP{})
	stranger.TenantID = "nobody"
	if _, err := s.Create(ctx, stranger); switchback.ErrorCode(err) != switchback.EFORBIDDEN {
		t.Fatalf("unknown tenant: %v", err)
	}
}

func TestTimersFireInExpiryOrder(t *testing.T) {
	tm := newTimers()
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	tm.add(key{"a", "3"}, t0.Add(3*time.Second))
	tm.add(key{"a", "1"}, t0.Add(1*time.Second))
	tm.add(key{"a", "2"}, t0.Add(2*time.Second))
	tm.add(key{"a", "gone"}, t0.Add(time.Second/2))
	tm.remove(key{"a", "gone"})
	tm.add(key{"a", "3"}, t0.Add(1500*time.Millisecond)) // rescheduled
	if next, ok := tm.next(); !ok || !next.Equal(t0.Add(time.Second)) {
		t.Fatalf("next = %v %v", next, ok)
	}
	due := tm.due(t0.Add(1500 * time.Millisecond))
	if len(due) != 2 || due[0].id != "1" || due[1].id != "3" {
		t.Fatalf("due = %v", due)
	}
	if tm.len() != 1 {
		t.Fatalf("%d timers left, want 1", tm.len())
	}
}

// TestRunExpiresOnTimeAndWakesWaiters checks the expiry loop with the wall
// clock: a transfer's stored status is EXPIRED within 100 ms of its expiry.
func TestRunExpiresOnTimeAndWakesWaiters(t *testing.T) {
	s := newService(t, Policy{SIPTTL: 200 * time.Millisecond, DefaultReturn: switchback.ReturnBYE}, switchback.SystemClock)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { s.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	tr, err := s.Create(ctx, sipRequest("t", &switchback.SIP{}))
	if err != nil {
		t.Fatal(err)
	}
	got, reached, err := s.Wait(ctx, "acme", "t", []switchback.Status{switchback.StatusExpired}, 5*time.Second)
	if err != nil || !reached || got.Status != switchback.StatusExpired {
		t.Fatalf("wait: %v %v %v", got, reached, err)
	}
	for {
		stored, err := s.store.Transfer(ctx, "acme", "t")
		if err != nil {
			t.Fatal(err)
		}
		if stored.Status == switchback.StatusExpired {
			return
		}
		if time.Now().After(tr.ExpiresAt.Add(100 * time.Millisecond)) {
			t.Fatalf("stored status %s 100ms after expiry", stored.Status)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// TestConversationsUseTheClock checks what the service adds to the store's
// conversations and return results: legs read at now, times from the clock.
func TestConversationsUseTheClock(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	now := t0
	s := newService(t, Policy{SIPTTL: time.Minute, DefaultReturn: switchback.ReturnBYE}, func() time.Time { return now })
	ctx := context.Background()
	if _, err := s.Create(ctx, sipRequest("first", &switchback.SIP{})); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Match(ctx, "acme", "first"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Complete(ctx, "acme", "first", &switchback.OutputContext{TransferType: switchback.TransferSystem}); err != nil {
		t.Fatal(err)
	}
	now = t0.Add(time.Second)
	if err := s.SetReturnResult(ctx, "acme", "first", &switchback.ReturnResult{Method: switchback.ReturnBYE}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Create(ctx, sipRequest("second", &switchback.SIP{})); err != nil {
		t.Fatal(err)
	}
	now = t0.Add(2 * time.Second)
	if err := s.RecordConversation(ctx, &switchback.ConversationRecord{TenantID: "acme", ExternalID: "c",
		Events: []switchback.ConversationEvent{{TransferID: "first", Type: switchback.EventCallEnded}}}); err != nil {
		t.Fatal(err)
	}

	now = t0.Add(2 * time.Minute) // past the second leg's expiry, before any timer moved it
	c, err := s.Conversation(ctx, "acme", "c")
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Legs) != 2 || c.Legs[0].ID != "first" || c.Legs[1].ID != "second" {
		t.Fatalf("legs = %+v", c.Legs)
	}
	if c.Legs[1].Status != switchback.StatusExpired {
		t.Fatalf("an ACTIVE leg past its expiry reads %s, want EXPIRED", c.Legs[1].Status)
	}
	if r := c.Legs[0].ReturnResult; r == nil || !r.At.Equal(t0.Add(time.Second)) {
		t.Fatalf("return result %+v, want one stamped with the clock", r)
	}
	if !c.UpdatedAt.Equal(t0.Add(2*time.Second)) || len(c.Events) != 1 || !c.Events[0].At.Equal(t0.Add(2*time.Second)) {
		t.Fatalf("record at %v with events %+v, want the clock's time", c.UpdatedAt, c.Events)
	}
}

func TestSweepCompletesAbandonedCalls(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	var now time.Time = t0
	s := newService(t, Policy{SIPTTL: time.Hour, DefaultReturn: switchback.ReturnBYE}, func() time.Time { return now })
	s.maxCall = 4 * time.Hour
	ctx := context.Background()
	if _, err := s.Create(ctx, sipRequest("t", &switchback.SIP{})); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Match(ctx, "acme", "t"); err != nil {
		t.Fatal(err)
	}
	now = t0.Add(3 * time.Hour)
	s.sweepOnce(ctx)
	if got, _ := s.Get(ctx, "acme", "t"); got.Status != switchback.StatusOngoing {
		t.Fatalf("a 3-hour call was taken for abandoned: %s", got.Status)
	}
	now = t0.Add(4*time.Hour + time.Second)
	s.sweepOnce(ctx)
	got, _ := s.Get(ctx, "acme", "t")
	if got.Status != switchback.StatusCompleted || got.OutputContext.TransferType != switchback.TransferCallerDisconnect {
		t.Fatalf("after 4 hours: %s %+v", got.Status, got.OutputContext)
	}
}

// TestCallsCarryTheNodeLease: a match records the node's lease as the
// call's owner, and once the lease is lost every write for the call is
// refused.
func TestCallsCarryTheNodeLease(t *testing.T) {
	db, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "s.db"), sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	ctx := context.Background()
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	lease, err := db.AcquireNode(ctx, "a", 15*time.Second, t0)
	if err != nil {
		t.Fatal(err)
	}
	s := New(Options{Store: db, Clock: func() time.Time { return t0 }, Node: func() switchback.NodeLease { return lease },
		Policy: func(string) (Policy, bool) {
			return Policy{SIPTTL: time.Minute, DefaultReturn: switchback.ReturnBYE}, true
		}})
	for _, id := range []string{"t1", "t2"} {
		r := sipRequest(id, &switchback.SIP{})
		r.ExternalConversationID = "c-" + id
		if _, err := s.Create(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	got, err := s.Match(ctx, "acme", "t1")
	if err != nil || got.Owner != lease {
		t.Fatalf("match: %+v, %v; want owned by %v", got, err, lease)
	}
	if _, err := db.AcquireNode(ctx, "a", 15*time.Second, t0); err != nil { // a new start takes the id
		t.Fatal(err)
	}
	_, err = s.Complete(ctx, "acme", "t1", &switchback.OutputContext{TransferType: switchback.TransferAgent})
	wantFenced(t, err)
	_, err = s.EndCall(ctx, &switchback.CallEnd{TenantID: "acme", ID: "t1", Output: &switchback.OutputContext{TransferType: switchback.TransferAgent}})
	wantFenced(t, err)
	wantFenced(t, s.RecordConversation(ctx, &switchback.ConversationRecord{TenantID: "acme", ExternalID: "c-t1"}))
	_, err = s.Match(ctx, "acme", "t2")
	wantFenced(t, err)
}

func wantFenced(t *testing.T, err error) {
	t.Helper()
	if switchback.ErrorCode(err) != switchback.EFENCED {
		t.Fatalf("error %v, want EFENCED", err)
	}
}

// TestMatchAppliesTheTenantsCallLimit: the policy's MaxCalls bounds the
// tenant's calls ONGOING; a tenant without a policy has no limit.
func TestMatchAppliesTheTenantsCallLimit(t *testing.T) {
	s := newService(t, Policy{SIPTTL: time.Minute, DefaultReturn: switchback.ReturnBYE, MaxCalls: 1}, switchback.SystemClock)
	ctx := context.Background()
	for _, id := range []string{"t1", "t2"} {
		r := sipRequest(id, &switchback.SIP{})
		r.ExternalConversationID = "c-" + id
		if _, err := s.Create(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.Match(ctx, "acme", "t1"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Match(ctx, "acme", "t2"); switchback.ErrorCode(err) != switchback.EBUSY {
		t.Fatalf("second call past a limit of one: %v", err)
	}
	if _, err := s.Complete(ctx, "acme", "t1", &switchback.OutputContext{TransferType: switchback.TransferSystem}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Match(ctx, "acme", "t2"); err != nil {
		t.Fatalf("once the first call ended: %v", err)
	}
}
