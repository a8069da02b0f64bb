// Package storetest is the conformance suite every switchback.Store must
// pass. The SQLite and PostgreSQL stores run it on every test run, so the
// two never drift apart.
package storetest

import (
	"bytes"
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/switchback/switchback"
)

// Opener returns a fresh, empty store whose released numbers stay in
// quarantine for the given duration.
type Opener func(t *testing.T, quarantine time.Duration) switchback.Store

// Quarantine is the quarantine the suite opens stores with, unless a test
// says otherwise.
const Quarantine = 10 * time.Second

var t0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

// noLease and noClaim write and match calls without a node lease, as a
// single node without one does: the tests that are not about fencing.
var (
	noLease switchback.NodeLease
	noClaim switchback.CallClaim
)

// Run runs the whole suite against stores made by open.
func Run(t *testing.T, open Opener) {
	tests := []struct {
		name string
		fn   func(*testing.T, Opener)
	}{
		{"CreateAndGetSIP", testCreateAndGetSIP},
		{"CreateLeasesNumber", testCreateLeasesNumber},
		{"CreateIsIdempotent", testCreateIsIdempotent},
		{"TenantsAreSeparate", testTenantsAreSeparate},
		{"NoPoolIsUnprocessable", testNoPoolIsUnprocessable},
		{"PoolExhausted", testPoolExhausted},
		{"DedicatedBeforeShared", testDedicatedBeforeShared},
		{"LeastRecentlyReleasedFirst", testLeastRecentlyReleasedFirst},
		{"QuarantineHoldsReleasedNumber", testQuarantine},
		{"MatchMovesActiveToOngoing", testMatch},
		{"MatchRefusesExpired", testMatchRefusesExpired},
		{"MatchNumber", testMatchNumber},
		{"CompleteStoresOutputAndErasesPassword", testComplete},
		{"ExpireTransfer", testExpireTransfer},
		{"ExpireDue", testExpireDue},
		{"PendingExpiries", testPendingExpiries},
		{"ListNewestFirstWithCursor", testList},
		{"CountTransfers", testCount},
		{"NumbersAndSummaries", testNumbers},
		{"RemoveNumbers", testRemoveNumbers},
		{"APIKeys", testAPIKeys},
		{"ConcurrentLeasesNeverShareANumber", testConcurrentLeases},
		{"RacingMovesHaveOneWinner", testRacingMoves},
		{"ConcurrentRetriesCreateOnce", testConcurrentRetries},
		{"NonceKeyIsStable", testNonceKey},
		{"ConcurrentNonceKeysAgree", testConcurrentNonceKeys},
		{"ClaimNonceOnce", testClaimNonce},
		{"ConcurrentClaimsHaveOneWinner", testConcurrentClaims},
		{"PurgeKeepsLiveNonces", testPurgeKeepsLiveNonces},
		{"ReturnResult", testReturnResult},
		{"EndCall", testEndCall},
		{"AbandonCalls", testAbandonCalls},
		{"ConversationLegs", testConversationLegs},
		{"ConversationRecords", testConversationRecords},
		{"MatchRefusesSecondLiveLeg", testMatchRefusesSecondLiveLeg},
		{"CreateRefusedWhileLegLive", testCreateRefusedWhileLegLive},
		{"ConcurrentLegMatchesHaveOneWinner", testConcurrentLegMatches},
		{"NodeLeases", testNodeLeases},
		{"NodeLeaseExpires", testLeaseExpires},
		{"FencedWritesLeaveTheTakeoverIntact", testFencedWrites},
		{"TakeOverCallsOfDeadLeases", testTakeOverCalls},
		{"TakeOverLimit", testTakeOverLimit},
		{"CallLimit", testCallLimit},
		{"ConcurrentMatchesKeepTheCallLimit", testConcurrentCallLimit},
		{"ConcurrentTakeoversMoveEachCallOnce", testConcurrentTakeovers},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { tt.fn(t, open) })
	}
}

func sipTransfer(tenant, id string, now time.Time) *switchback.Transfer {
	return &switchback.Transfer{
		TenantID:               tenant,
		ID:                     id,
		ExternalConversationID: "conv-" + id,
		Type:                   switchback.TypeSIP,
		Status:                 switchback.StatusActive,
		InputContext: &switchback.InputContext{
			TaskName:       "call_routing",
			InputVariables: map[string]string{"accountNumber": "3434", "name": "John Doe"},
		},
		SIP: &switchback.SIP{
			ReturnURI:          "sip:user@sbc.example.com;User-to-User=UUI-1?X-Foo=1",
			ReturnTransferType: switchback.ReturnINVITE,
			ReturnAuthUsername: "sbc",
			ReturnAuthPassword: "s3cret",
		},
		CreatedAt:   now,
		ExpiresAt:   now.Add(time.Minute),
		RequestHash: "hash-" + id,
	}
}

func phoneTransfer(tenant, id, country string, now time.Time) *switchback.Transfer {
	return &switchback.Transfer{
		TenantID:               tenant,
		ID:                     id,
		ExternalConversationID: "conv-" + id,
		Type:                   switchback.TypePhoneNumber,
		Status:                 switchback.StatusActive,
		PhoneNumber:            &switchback.PhoneNumber{Country: country},
		CreatedAt:              now,
		ExpiresAt:              now.Add(time.Minute),
		RequestHash:            "hash-" + id,
	}
}

func addNumbers(t *testing.T, s switchback.Store, country, tenant string, e164s ...string) {
	t.Helper()
	var ns []switchback.Number
	for _, n := range e164s {
		ns = append(ns, switchback.Number{E164: n, Country: country, TenantID: tenant})
	}
	if _, err := s.AddNumbers(context.Background(), ns); err != nil {
		t.Fatalf("add numbers: %v", err)
	}
}

func mustCreate(t *testing.T, s switchback.Store, tr *switchback.Transfer) *switchback.Transfer {
	t.Helper()
	got, created, err := s.CreateTransfer(context.Background(), tr, tr.CreatedAt)
	if err != nil {
		t.Fatalf("create %s: %v", tr.ID, err)
	}
	if !created {
		t.Fatalf("create %s: created = false for a new id", tr.ID)
	}
	return got
}

func wantCode(t *testing.T, err error, code string) {
	t.Helper()
	if got := switchback.ErrorCode(err); got != code {
		t.Fatalf("error code = %q (%v), want %q", got, err, code)
	}
}

func sameTime(a, b time.Time) bool { return a.Equal(b) }

func testCreateAndGetSIP(t *testing.T, open Opener) {
	s := open(t, Quarantine)
	ctx := context.Background()
	in := sipTransfer("acme", "t-1", t0)
	mustCreate(t, s, in)
	got, err := s.Transfer(ctx, "acme", "t-1")
	if err != nil {
		t.Fatal(err)
	}
	if got.ID != "t-1" || got.TenantID != "acme" || got.ExternalConversationID != "conv-t-1" ||
		got.Type != switchback.TypeSIP || got.Status != switchback.StatusActive || got.RequestHash != "hash-t-1" {
		t.Errorf("stored transfer = %+v", got)
	}
	if !sameTime(got.CreatedAt, t0) || !sameTime(got.ExpiresAt, t0.Add(time.Minute)) {
		t.Errorf("times = %v, %v", got.CreatedAt, got.ExpiresAt)
	}
	if !got.CallReceivedAt.IsZero() || !got.CompletedAt.IsZero() {
		t.Errorf("call received/completed set on a new transfer")
	}
	if got.InputContext == nil || got.InputContext.TaskName != "call_routing" || got.InputContext.InputVariables["name"] != "John Doe" {
		t.Errorf("input context = %+v", got.InputContext)
	}
	if got.SIP == nil || *got.SIP != *in.SIP {
		t.Errorf("sip = %+v, want %+v", got.SIP, in.SIP)
	}
	if got.PhoneNumber != nil || got.OutputContext != nil {
		t.Errorf("phone number or output context on a fresh SIP transfer")
	}

	bare := &switchback.Transfer{TenantID: "acme", ID: "t-2", ExternalConversationID: "c", Type: switchback.TypeSIP,
		Status: switchback.StatusActive, SIP: &switchback.SIP{ReturnTransferType: switchback.ReturnBYE},
		CreatedAt: t0, ExpiresAt: t0.Add(time.Minute), RequestHash: "h"}
	mustCreate(t, s, bare)
	got, err = s.Transfer(ctx, "acme", "t-2")
	if err != nil {
		t.Fatal(err)
	}
	if got.InputContext != nil {
		t.Errorf("input context = %+v, want nil", got.InputContext)
	}

	_, err = s.Transfer(ctx, "acme", "nope")
	wantCode(t, err, switchback.ENOTFOUND)
}

func testCreateLeasesNumber(t *testing.T, open Opener) {
	s := open(t, Quarantine)
	addNumbers(t, s, "US", "", "+12025550100")
	got := mustCreate(t, s, phoneTransfer("acme", "p-1", "US", t0))
	if got.PhoneNumber == nil || got.PhoneNumber.TransferNumber != "+12025550100" || got.PhoneNumber.Country != "US" ||
		!got.PhoneNumber.ReleasedAt.IsZero() {
		t.Fatalf("phone number = %+v", got.PhoneNumber)
	}
	stored, err := s.Transfer(context.Background(), "acme", "p-1")
	if err != nil {
		t.Fatal(err)
	}
	if stored.PhoneNumber == nil || stored.PhoneNumber.TransferNumber != "+12025550100" || stored.SIP != nil {
		t.Fatalf("stored = %+v", stored)
	}
	ns, err := s.Numbers(context.Background(), "US", t0)
	if err != nil {
		t.Fatal(err)
	}
	if len(ns) != 1 || ns[0].State != switchback.NumberLeased || ns[0].TransferID != "p-1" || ns[0].TransferTenant != "acme" ||
		!sameTime(ns[0].LeasedUntil, t0.Add(time.Minute)) {
		t.Fatalf("numbers = %+v", ns)
	}
}

func testCreateIsIdempotent(t *testing.T, open Opener) {
	s := open(t, Quarantine)
	addNumbers(t, s, "US", "", "+12025550100", "+12025550101")
	first := mustCreate(t, s, phoneTransfer("acme", "p-1", "US", t0))
	again := phoneTransfer("acme", "p-1", "US", t0.Add(time.Second))
	again.RequestHash = "other"
	got, created, err := s.CreateTransfer(context.Background(), again, t0.Add(time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if created {
		t.Fatal("created = true for a taken id")
	}
	if got.RequestHash != "hash-p-1" || got.PhoneNumber.TransferNumber != first.PhoneNumber.TransferNumber || !sameTime(got.CreatedAt, t0) {
		t.Fatalf("returned %+v, want the stored transfer", got)
	}
	sum, err := s.PoolSummaries(context.Background(), t0.Add(time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if len(sum) != 1 || sum[0].Leased != 1 || sum[0].Free != 1 {
		t.Fatalf("a retried create leased another number: %+v", sum)
	}
}

func testTenantsAreSeparate(t *testing.T, open Opener) {
	s := open(t, Quarantine)
	ctx := context.Background()
	mustCreate(t, s, sipTransfer("acme", "same", t0))
	mustCreate(t, s, sipTransfer("globex", "same", t0))
	_, err := s.Transfer(ctx, "initech", "same")
	wantCode(t, err, switchback.ENOTFOUND)
	_, err = s.MatchTransfer(ctx, "initech", "same", noClaim, t0)
	wantCode(t, err, switchback.ENOTFOUND)
	if _, err := s.MatchTransfer(ctx, "acme", "same", noClaim, t0); err != nil {
		t.Fatal(err)
	}
	g, err := s.Transfer(ctx, "globex", "same")
	if err != nil || g.Status != switchback.StatusActive {
		t.Fatalf("other tenant's transfer changed: %+v %v", g, err)
	}
}

func testNoPoolIsUnprocessable(t *testing.T, open Opener) {
	s := open(t, Quarantine)
	addNumbers(t, s, "US", "", "+12025550100")
	addNumbers(t, s, "GB", "globex", "+442079460000")
	_, _, err := s.CreateTransfer(context.Background(), phoneTransfer("acme", "p-1", "FR", t0), t0)
	wantCode(t, err, switchback.EUNPROCESSABLE)
	// A number dedicated to another tenant is no pool for this one.
	_, _, err = s.CreateTransfer(context.Background(), phoneTransfer("acme", "p-2", "GB", t0), t0)
	wantCode(t, err, switchback.EUNPROCESSABLE)
	_, err = s.Transfer(context.Background(), "acme", "p-1")
	wantCode(t, err, switchback.ENOTFOUND)
}

func testPoolExhausted(t *testing.T, open Opener) {
	s := open(t, Quarantine)
	addNumbers(t, s, "US", "", "+12025550100", "+12025550101")
	mustCreate(t, s, phoneTransfer("acme", "p-1", "US", t0))
	mustCreate(t, s, phoneTransfer("acme", "p-2", "US", t0))
	_, _, err := s.CreateTransfer(context.Background(), phoneTransfer("acme", "p-3", "US", t0), t0)
	wantCode(t, err, switchback.EEXHAUSTED)
	_, err = s.Transfer(context.Background(), "acme", "p-3")
	wantCode(t, err, switchback.ENOTFOUND)
}

func testDedicatedBeforeShared(t *testing.T, open Opener) {
	s := open(t, Quarantine)
	addNumbers(t, s, "US", "", "+12025550100")
	addNumbers(t, s, "US", "acme", "+12025550199")
	got := mustCreate(t, s, phoneTransfer("acme", "p-1", "US", t0))
	if got.PhoneNumber.TransferNumber != "+12025550199" {
		t.Fatalf("leased %s, want the dedicated +12025550199", got.PhoneNumber.TransferNumber)
	}
	got = mustCreate(t, s, phoneTransfer("globex", "p-1", "US", t0))
	if got.PhoneNumber.TransferNumber != "+12025550100" {
		t.Fatalf("other tenant leased %s, want the shared +12025550100", got.PhoneNumber.TransferNumber)
	}
	_, _, err := s.CreateTransfer(context.Background(), phoneTransfer("globex", "p-2", "US", t0), t0)
	wantCode(t, err, switchback.EEXHAUSTED)
}

func testLeastRecentlyReleasedFirst(t *testing.T, open Opener) {
	s := open(t, time.Second)
	ctx := context.Background()
	addNumbers(t, s, "US", "", "+12025550100", "+12025550101", "+12025550102")
	// Lease all three, then release them in the order 102, 100, 101.
	for i := 0; i < 3; i++ {
		mustCreate(t, s, phoneTransfer("acme", fmt.Sprintf("p-%d", i), "US", t0))
	}
	byNumber := map[string]string{}
	for i := 0; i < 3; i++ {
		tr, _ := s.Transfer(ctx, "acme", fmt.Sprintf("p-%d", i))
		byNumber[tr.PhoneNumber.TransferNumber] = tr.ID
	}
	for i, n := range []string{"+12025550102", "+12025550100", "+12025550101"} {
		if _, err := s.MatchTransfer(ctx, "acme", byNumber[n], noClaim, t0.Add(time.Duration(i+1)*time.Second)); err != nil {
			t.Fatal(err)
		}
	}
	later := t0.Add(time.Minute)
	for i, want := range []string{"+12025550102", "+12025550100", "+12025550101"} {
		got := mustCreate(t, s, phoneTransfer("acme", fmt.Sprintf("q-%d", i), "US", later))
		if got.PhoneNumber.TransferNumber != want {
			t.Fatalf("lease %d took %s, want %s (released longest ago)", i, got.PhoneNumber.TransferNumber, want)
		}
	}
}

func testQuarantine(t *testing.T, open Opener) {
	s := open(t, 10*time.Second)
	ctx := context.Background()
	addNumbers(t, s, "US", "", "+12025550100")
	mustCreate(t, s, phoneTransfer("acme", "p-1", "US", t0))
	released := t0.Add(5 * time.Second)
	if _, err := s.MatchTransfer(ctx, "acme", "p-1", noClaim, released); err != nil {
		t.Fatal(err)
	}
	ns, err := s.Numbers(ctx, "", released.Add(time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if ns[0].State != switchback.NumberQuarantined || !sameTime(ns[0].QuarantineUntil, released.Add(10*time.Second)) ||
		!sameTime(ns[0].ReleasedAt, released) {
		t.Fatalf("number after release = %+v", ns[0])
	}
	justBefore := released.Add(10*time.Second - time.Microsecond)
	_, _, err = s.CreateTransfer(ctx, phoneTransfer("acme", "p-2", "US", justBefore), justBefore)
	wantCode(t, err, switchback.EEXHAUSTED)
	end := released.Add(10 * time.Second)
	got := mustCreate(t, s, phoneTransfer("acme", "p-3", "US", end))
	if got.PhoneNumber.TransferNumber != "+12025550100" {
		t.Fatalf("leased %s after quarantine", got.PhoneNumber.TransferNumber)
	}
}

func testMatch(t *testing.T, open Opener) {
	s := open(t, Quarantine)
	ctx := context.Background()
	mustCreate(t, s, sipTransfer("acme", "t-1", t0))
	at := t0.Add(3 * time.Second)
	got, err := s.MatchTransfer(ctx, "acme", "t-1", noClaim, at)
	if err != nil {
		t.Fatal(err)
	}
	if got.Status != switchback.StatusOngoing || !sameTime(got.CallReceivedAt, at) {
		t.Fatalf("matched = %+v", got)
	}
	if got.SIP == nil || got.SIP.ReturnAuthPassword != "s3cret" {
		t.Fatalf("match must keep the return password for the INVITE return: %+v", got.SIP)
	}
	_, err = s.MatchTransfer(ctx, "acme", "t-1", noClaim, at)
	wantCode(t, err, switchback.EGONE)
	_, err = s.MatchTransfer(ctx, "acme", "missing", noClaim, at)
	wantCode(t, err, switchback.ENOTFOUND)
	stored, _ := s.Transfer(ctx, "acme", "t-1")
	if stored.Status != switchback.StatusOngoing || !sameTime(stored.CallReceivedAt, at) {
		t.Fatalf("stored after match = %+v", stored)
	}
}

func testMatchRefusesExpired(t *testing.T, open Opener) {
	s := open(t, Quarantine)
	ctx := context.Background()
	mustCreate(t, s, sipTransfer("acme", "t-1", t0))
	_, err := s.MatchTransfer(ctx, "acme", "t-1", noClaim, t0.Add(time.Minute))
	wantCode(t, err, switchback.EGONE)
	stored, _ := s.Transfer(ctx, "acme", "t-1")
	if stored.Status != switchback.StatusActive {
		t.Fatalf("a refused match changed the status to %s", stored.Status)
	}
}

func testMatchNumber(t *testing.T, open Opener) {
	s := open(t, Quarantine)
	ctx := context.Background()
	addNumbers(t, s, "US", "", "+12025550100", "+12025550101")
	mustCreate(t, s, phoneTransfer("acme", "p-1", "US", t0))
	// NumberHolder names the holder and changes nothing.
	k, err := s.NumberHolder(ctx, "+12025550100", t0)
	if err != nil || k.TenantID != "acme" || k.ID != "p-1" || k.ExpiresAt.IsZero() {
		t.Fatalf("NumberHolder = %+v, %v", k, err)
	}
	_, err = s.NumberHolder(ctx, "+12025550101", t0)
	wantCode(t, err, switchback.ENOTFOUND)
	_, err = s.NumberHolder(ctx, "+12025550100", t0.Add(time.Minute))
	wantCode(t, err, switchback.ENOTFOUND)
	if st, _ := s.Transfer(ctx, "acme", "p-1"); st.Status != switchback.StatusActive {
		t.Fatalf("NumberHolder changed the status to %s", st.Status)
	}
	_, err = s.MatchNumber(ctx, "+12025550101", noClaim, t0)
	wantCode(t, err, switchback.ENOTFOUND)
	_, err = s.MatchNumber(ctx, "+19999999999", noClaim, t0)
	wantCode(t, err, switchback.ENOTFOUND)
	_, err = s.MatchNumber(ctx, "+12025550100", noClaim, t0.Add(time.Minute))
	wantCode(t, err, switchback.ENOTFOUND)
	got, err := s.MatchNumber(ctx, "+12025550100", noClaim, t0.Add(time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if got.ID != "p-1" || got.TenantID != "acme" || got.Status != switchback.StatusOngoing {
		t.Fatalf("matched = %+v", got)
	}
	if got.PhoneNumber == nil || got.PhoneNumber.TransferNumber != "+12025550100" || !sameTime(got.PhoneNumber.ReleasedAt, t0.Add(time.Second)) {
		t.Fatalf("the transfer must keep showing its number and when it released it: %+v", got.PhoneNumber)
	}
	// The number was released: a repeated dial reaches nothing.
	_, err = s.MatchNumber(ctx, "+12025550100", noClaim, t0.Add(2*time.Second))
	wantCode(t, err, switchback.ENOTFOUND)
	_, err = s.NumberHolder(ctx, "+12025550100", t0.Add(2*time.Second))
	wantCode(t, err, switchback.ENOTFOUND)
	ns, _ := s.Numbers(ctx, "US", t0.Add(2*time.Second))
	for _, n := range ns {
		if n.E164 == "+12025550100" && n.State != switchback.NumberQuarantined {
			t.Fatalf("matched number state = %s, want quarantined", n.State)
		}
	}
}

func testComplete(t *testing.T, open Opener) {
	s := open(t, Quarantine)
	ctx := context.Background()
	mustCreate(t, s, sipTransfer("acme", "t-1", t0))
	out := &switchback.OutputContext{
		TransferType:       switchback.TransferSystem,
		CurrentTaskName:    "AccountInquiry",
		ReferenceVariables: map[string]string{"account_balance": "1250.00"},
		TransferVariables:  map[string]string{"priority": "high"},
	}
	_, err := s.CompleteTransfer(ctx, "acme", "t-1", out, noLease, t0)
	wantCode(t, err, switchback.EGONE)
	if _, err := s.MatchTransfer(ctx, "acme", "t-1", noClaim, t0.Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	at := t0.Add(30 * time.Second)
	got, err := s.CompleteTransfer(ctx, "acme", "t-1", out, noLease, at)
	if err != nil {
		t.Fatal(err)
	}
	if got.Status != switchback.StatusCompleted || !sameTime(got.CompletedAt, at) {
		t.Fatalf("completed = %+v", got)
	}
	stored, _ := s.Transfer(ctx, "acme", "t-1")
	if stored.OutputContext == nil || stored.OutputContext.TransferType != switchback.TransferSystem ||
		stored.OutputContext.CurrentTaskName != "AccountInquiry" ||
		stored.OutputContext.ReferenceVariables["account_balance"] != "1250.00" ||
		stored.OutputContext.TransferVariables["priority"] != "high" {
		t.Fatalf("output context = %+v", stored.OutputContext)
	}
	if stored.SIP.ReturnAuthPassword != "" {
		t.Fatal("return password not erased on completion")
	}
	if stored.SIP.ReturnAuthUsername != "sbc" || stored.SIP.ReturnURI != "sip:user@sbc.example.com;User-to-User=UUI-1?X-Foo=1" {
		t.Fatalf("completion changed the sip object: %+v", stored.SIP)
	}
	_, err = s.CompleteTransfer(ctx, "acme", "t-1", out, noLease, at)
	wantCode(t, err, switchback.EGONE)
	_, err = s.CompleteTransfer(ctx, "acme", "nope", out, noLease, at)
	wantCode(t, err, switchback.ENOTFOUND)

	// A caller who hangs up first leaves no variables.
	mustCreate(t, s, sipTransfer("acme", "t-2", t0))
	if _, err := s.MatchTransfer(ctx, "acme", "t-2", noClaim, t0); err != nil {
		t.Fatal(err)
	}
	if _, err := s.CompleteTransfer(ctx, "acme", "t-2", &switchback.OutputContext{TransferType: switchback.TransferCallerDisconnect}, noLease, at); err != nil {
		t.Fatal(err)
	}
	stored, _ = s.Transfer(ctx, "acme", "t-2")
	if stored.OutputContext.TransferType != switchback.TransferCallerDisconnect || stored.OutputContext.ReferenceVariables != nil {
		t.Fatalf("caller disconnect output = %+v", stored.OutputContext)
	}
}

func testExpireTransfer(t *testing.T, open Opener) {
	s := open(t, 10*time.Second)
	ctx := context.Background()
	addNumbers(t, s, "US", "", "+12025550100")
	mustCreate(t, s, phoneTransfer("acme", "p-1", "US", t0))
	mustCreate(t, s, sipTransfer("acme", "t-1", t0))
	moved, err := s.ExpireTransfer(ctx, "acme", "p-1", t0.Add(59*time.Second))
	if err != nil || moved {
		t.Fatalf("expired before its time: %v %v", moved, err)
	}
	at := t0.Add(time.Minute)
	for _, id := range []string{"p-1", "t-1"} {
		moved, err = s.ExpireTransfer(ctx, "acme", id, at)
		if err != nil || !moved {
			t.Fatalf("expire %s at expiry: %v %v", id, moved, err)
		}
		moved, err = s.ExpireTransfer(ctx, "acme", id, at)
		if err != nil || moved {
			t.Fatalf("expired %s twice: %v %v", id, moved, err)
		}
	}
	p, _ := s.Transfer(ctx, "acme", "p-1")
	if p.Status != switchback.StatusExpired || !sameTime(p.PhoneNumber.ReleasedAt, at) {
		t.Fatalf("expired transfer = %+v %+v", p, p.PhoneNumber)
	}
	tr, _ := s.Transfer(ctx, "acme", "t-1")
	if tr.Status != switchback.StatusExpired || tr.SIP.ReturnAuthPassword != "" {
		t.Fatalf("expired sip transfer = %+v %+v", tr, tr.SIP)
	}
	ns, _ := s.Numbers(ctx, "US", at)
	if ns[0].State != switchback.NumberQuarantined || !sameTime(ns[0].QuarantineUntil, at.Add(10*time.Second)) {
		t.Fatalf("number after expiry = %+v", ns[0])
	}
	// An ongoing transfer never expires.
	mustCreate(t, s, sipTransfer("acme", "t-2", t0))
	if _, err := s.MatchTransfer(ctx, "acme", "t-2", noClaim, t0); err != nil {
		t.Fatal(err)
	}
	if moved, _ := s.ExpireTransfer(ctx, "acme", "t-2", at.Add(time.Hour)); moved {
		t.Fatal("an ONGOING transfer expired")
	}
	if moved, _ := s.ExpireTransfer(ctx, "acme", "missing", at); moved {
		t.Fatal("expired a missing transfer")
	}
}

func testExpireDue(t *testing.T, open Opener) {
	s := open(t, Quarantine)
	ctx := context.Background()
	addNumbers(t, s, "US", "", "+12025550100", "+12025550101")
	for i := 0; i < 5; i++ {
		tr := sipTransfer("acme", fmt.Sprintf("t-%d", i), t0)
		tr.ExpiresAt = t0.Add(time.Duration(i+1) * time.Second)
		mustCreate(t, s, tr)
	}
	p := phoneTransfer("globex", "p-1", "US", t0)
	p.ExpiresAt = t0.Add(2 * time.Second)
	mustCreate(t, s, p)
	got, err := s.ExpireDue(ctx, t0.Add(2*time.Second), 100)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 {
		t.Fatalf("expired %d (%v), want t-0, t-1 and globex/p-1", len(got), got)
	}
	got, err = s.ExpireDue(ctx, t0.Add(10*time.Second), 1)
	if err != nil || len(got) != 1 {
		t.Fatalf("limit 1: %v %v", got, err)
	}
	got, err = s.ExpireDue(ctx, t0.Add(10*time.Second), 100)
	if err != nil || len(got) != 2 {
		t.Fatalf("rest: %v %v", got, err)
	}
	counts, _ := s.CountTransfers(ctx)
	if counts[switchback.StatusExpired] != 6 || counts[switchback.StatusActive] != 0 {
		t.Fatalf("counts = %v", counts)
	}
	sum, _ := s.PoolSummaries(ctx, t0.Add(10*time.Second))
	if sum[0].Leased != 0 {
		t.Fatalf("a number stayed leased after its transfer expired: %+v", sum)
	}
}

func testPendingExpiries(t *testing.T, open Opener) {
	s := open(t, Quarantine)
	ctx := context.Background()
	for i, d := range []time.Duration{30, 10, 20} {
		tr := sipTransfer("acme", fmt.Sprintf("t-%d", i), t0)
		tr.ExpiresAt = t0.Add(d * time.Second)
		mustCreate(t, s, tr)
	}
	if _, err := s.MatchTransfer(ctx, "acme", "t-1", noClaim, t0); err != nil {
		t.Fatal(err)
	}
	got, err := s.PendingExpiries(ctx, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].ID != "t-2" || got[1].ID != "t-0" || !sameTime(got[0].ExpiresAt, t0.Add(20*time.Second)) ||
		got[0].TenantID != "acme" {
		t.Fatalf("pending = %+v", got)
	}
}

func testList(t *testing.T, open Opener) {
	s := open(t, Quarantine)
	ctx := context.Background()
	for i := 0; i < 7; i++ {
		tr := sipTransfer("acme", fmt.Sprintf("t-%d", i), t0.Add(time.Duration(i)*time.Millisecond))
		if i%2 == 0 {
			tr.ExternalConversationID = "conv-even"
		}
		mustCreate(t, s, tr)
	}
	// Two created in the same microsecond are ordered by id.
	mustCreate(t, s, sipTransfer("acme", "u-a", t0.Add(10*time.Millisecond)))
	mustCreate(t, s, sipTransfer("acme", "u-b", t0.Add(10*time.Millisecond)))
	mustCreate(t, s, sipTransfer("globex", "g-1", t0.Add(time.Second)))

	var ids []string
	f := switchback.TransferFilter{TenantID: "acme", Limit: 4}
	for page := 0; page < 5; page++ {
		got, err := s.ListTransfers(ctx, f)
		if err != nil {
			t.Fatal(err)
		}
		for _, tr := range got {
			ids = append(ids, tr.ID)
		}
		if len(got) < f.Limit {
			break
		}
		last := got[len(got)-1]
		f.After = &switchback.Cursor{CreatedAt: last.CreatedAt, ID: last.ID}
	}
	want := "[u-b u-a t-6 t-5 t-4 t-3 t-2 t-1 t-0]"
	if fmt.Sprint(ids) != want {
		t.Fatalf("paged listing = %v, want %s", ids, want)
	}
	got, err := s.ListTransfers(ctx, switchback.TransferFilter{TenantID: "acme", ExternalConversationID: "conv-even", Limit: 10})
	if err != nil {
		t.Fatal(err)
	}
	ids = nil
	for _, tr := range got {
		ids = append(ids, tr.ID)
	}
	if fmt.Sprint(ids) != "[t-6 t-4 t-2 t-0]" {
		t.Fatalf("by conversation = %v", ids)
	}
}

func testCount(t *testing.T, open Opener) {
	s := open(t, Quarantine)
	ctx := context.Background()
	for i := 0; i < 3; i++ {
		mustCreate(t, s, sipTransfer("acme", fmt.Sprintf("t-%d", i), t0))
	}
	if _, err := s.MatchTransfer(ctx, "acme", "t-0", noClaim, t0); err != nil {
		t.Fatal(err)
	}
	counts, err := s.CountTransfers(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if counts[switchback.StatusActive] != 2 || counts[switchback.StatusOngoing] != 1 || counts[switchback.StatusCompleted] != 0 {
		t.Fatalf("counts = %v", counts)
	}
}

func testNumbers(t *testing.T, open Opener) {
	s := open(t, 5*time.Second)
	ctx := context.Background()
	addNumbers(t, s, "US", "", "+12025550101", "+12025550100", "+12025550102")
	addNumbers(t, s, "GB", "acme", "+442079460000")
	n, err := s.AddNumbers(ctx, []switchback.Number{{E164: "+12025550100", Country: "US"}, {E164: "+12025550103", Country: "US"}})
	if err != nil || n != 1 {
		t.Fatalf("re-adding: added %d, %v; want 1", n, err)
	}
	mustCreate(t, s, phoneTransfer("acme", "p-1", "US", t0))
	mustCreate(t, s, phoneTransfer("acme", "p-2", "US", t0))
	if _, err := s.MatchTransfer(ctx, "acme", "p-2", noClaim, t0); err != nil {
		t.Fatal(err)
	}
	all, err := s.Numbers(ctx, "", t0.Add(time.Second))
	if err != nil {
		t.Fatal(err)
	}
	var order []string
	for _, ns := range all {
		order = append(order, ns.E164)
	}
	if fmt.Sprint(order) != "[+442079460000 +12025550100 +12025550101 +12025550102 +12025550103]" {
		t.Fatalf("order = %v", order)
	}
	if all[0].TenantID != "acme" || all[0].Country != "GB" {
		t.Fatalf("dedicated number = %+v", all[0])
	}
	sum, err := s.PoolSummaries(ctx, t0.Add(time.Second))
	if err != nil {
		t.Fatal(err)
	}
	want := "[{GB 1 0 0 1} {US 4 1 1 2}]"
	if fmt.Sprint(sum) != want {
		t.Fatalf("summaries = %v, want %s", sum, want)
	}
	// Quarantine ends on its own: the number reads free without any write.
	sum, _ = s.PoolSummaries(ctx, t0.Add(5*time.Second))
	if fmt.Sprint(sum) != "[{GB 1 0 0 1} {US 4 1 0 3}]" {
		t.Fatalf("summaries after quarantine = %v", sum)
	}
	us, _ := s.Numbers(ctx, "US", t0.Add(time.Second))
	if len(us) != 4 {
		t.Fatalf("US numbers = %d", len(us))
	}
}

func testRemoveNumbers(t *testing.T, open Opener) {
	s := open(t, Quarantine)
	ctx := context.Background()
	addNumbers(t, s, "US", "", "+12025550100", "+12025550101")
	mustCreate(t, s, phoneTransfer("acme", "p-1", "US", t0))
	err := s.RemoveNumbers(ctx, []string{"+12025550100", "+12025550101"})
	wantCode(t, err, switchback.ECONFLICT)
	err = s.RemoveNumbers(ctx, []string{"+19999999999"})
	wantCode(t, err, switchback.ENOTFOUND)
	ns, _ := s.Numbers(ctx, "", t0)
	if len(ns) != 2 {
		t.Fatalf("a refused removal removed numbers: %d left", len(ns))
	}
	tr, _ := s.Transfer(ctx, "acme", "p-1")
	free := "+12025550100"
	if tr.PhoneNumber.TransferNumber == free {
		free = "+12025550101"
	}
	if err := s.RemoveNumbers(ctx, []string{free}); err != nil {
		t.Fatal(err)
	}
	ns, _ = s.Numbers(ctx, "", t0)
	if len(ns) != 1 || ns[0].E164 == free {
		t.Fatalf("after removal: %+v", ns)
	}
}

func testAPIKeys(t *testing.T, open Opener) {
	s := open(t, Quarantine)
	ctx := context.Background()
	k, secret, err := switchback.NewAPIKey("acme", "ivr", []string{switchback.ScopeCallTransfers}, t0)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.CreateAPIKey(ctx, k); err != nil {
		t.Fatal(err)
	}
	wantCode(t, s.CreateAPIKey(ctx, k), switchback.ECONFLICT)
	got, err := s.APIKey(ctx, k.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.TenantID != "acme" || got.Name != "ivr" || !got.Allows(switchback.ScopeCallTransfers) || got.Revoked() ||
		!sameTime(got.CreatedAt, t0) {
		t.Fatalf("key = %+v", got)
	}
	if !got.Verify(secret) || got.Verify(secret+"x") {
		t.Fatal("stored hash does not verify the secret")
	}
	noScope, _, _ := switchback.NewAPIKey("acme", "", nil, t0.Add(time.Second))
	if err := s.CreateAPIKey(ctx, noScope); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.APIKey(ctx, noScope.ID); got.Allows(switchback.ScopeCallTransfers) {
		t.Fatal("a key without scopes allows call transfers")
	}
	if err := s.RevokeAPIKey(ctx, k.ID, t0.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	got, _ = s.APIKey(ctx, k.ID)
	if !got.Revoked() || !sameTime(got.RevokedAt, t0.Add(time.Hour)) {
		t.Fatalf("revoked key = %+v", got)
	}
	wantCode(t, s.RevokeAPIKey(ctx, "sbk_missing", t0), switchback.ENOTFOUND)
	_, err = s.APIKey(ctx, "sbk_missing")
	wantCode(t, err, switchback.ENOTFOUND)
	keys, err := s.APIKeys(ctx, "acme")
	if err != nil || len(keys) != 2 || keys[0].ID != k.ID {
		t.Fatalf("keys = %v %v", keys, err)
	}
	other, _, _ := switchback.NewAPIKey("globex", "", nil, t0)
	if err := s.CreateAPIKey(ctx, other); err != nil {
		t.Fatal(err)
	}
	if keys, _ := s.APIKeys(ctx, ""); len(keys) != 3 {
		t.Fatalf("all keys = %d", len(keys))
	}
}

// testConcurrentLeases hammers a small pool from many goroutines while a
// sweeper expires leases, and checks invariants 1 and 2 on every number.
func testConcurrentLeases(t *testing.T, open Opener) {
	const quarantine = 20 * time.Millisecond
	s := open(t, quarantine)
	ctx := context.Background()
	addNumbers(t, s, "US", "", "+12025550100", "+12025550101", "+12025550102", "+12025550103")

	type lease struct {
		number     string
		start, end time.Time // the lease holds [start, end)
	}
	var (
		mu        sync.Mutex
		leases    []lease
		exhausted int
		clockMu   sync.Mutex
		clock     = t0
	)
	// A shared logical clock that only moves forward keeps the test free of
	// wall-clock flakiness while still interleaving real transactions.
	tick := func() time.Time {
		clockMu.Lock()
		defer clockMu.Unlock()
		clock = clock.Add(time.Millisecond)
		return clock
	}
	var wg sync.WaitGroup
	for w := 0; w < 6; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := 0; i < 60; i++ {
				now := tick()
				tr := phoneTransfer("acme", fmt.Sprintf("w%d-%d", w, i), "US", now)
				tr.ExpiresAt = now.Add(5 * time.Millisecond)
				got, _, err := s.CreateTransfer(ctx, tr, now)
				if switchback.ErrorCode(err) == switchback.EEXHAUSTED {
					mu.Lock()
					exhausted++
					mu.Unlock()
					continue
				} else if err != nil {
					t.Errorf("create: %v", err)
					return
				}
				end := got.ExpiresAt
				if i%2 == 0 {
					m := tick()
					if _, err := s.MatchTransfer(ctx, "acme", got.ID, noClaim, m); err == nil {
						end = m
					}
				}
				mu.Lock()
				leases = append(leases, lease{got.PhoneNumber.TransferNumber, now, end})
				mu.Unlock()
			}
		}(w)
	}
	stop := make(chan struct{})
	swept := make(chan struct{})
	go func() {
		defer close(swept)
		for {
			select {
			case <-stop:
				return
			default:
			}
			if _, err := s.ExpireDue(ctx, tick(), 50); err != nil {
				t.Errorf("sweep: %v", err)
				return
			}
		}
	}()
	wg.Wait()
	close(stop)
	<-swept
	if len(leases) == 0 || exhausted == 0 {
		t.Fatalf("the race did not exercise the pool: %d leases, %d exhausted", len(leases), exhausted)
	}
	// Invariants 1 and 2: for each number, leases never overlap, and the
	// next lease starts no sooner than quarantine after the last one ended.
	// A lease that expired ended no later than when the sweep released it,
	// which this check treats conservatively as its expiry.
	by := map[string][]lease{}
	for _, l := range leases {
		by[l.number] = append(by[l.number], l)
	}
	for n, ls := range by {
		for i := range ls {
			for j := range ls {
				if i == j {
					continue
				}
				a, b := ls[i], ls[j]
				if !a.start.Before(b.start) {
					continue
				}
				if b.start.Before(a.end.Add(quarantine)) {
					t.Fatalf("number %s leased at %v while held or quarantined by a lease [%v, %v)", n,
						b.start.Sub(t0), a.start.Sub(t0), a.end.Sub(t0))
				}
			}
		}
	}
}

// testRacingMoves races a match against an expiry and two completions: each
// race has exactly one winner.
func testRacingMoves(t *testing.T, open Opener) {
	s := open(t, Quarantine)
	ctx := context.Background()
	for i := 0; i < 20; i++ {
		id := fmt.Sprintf("t-%d", i)
		tr := sipTransfer("acme", id, t0)
		tr.ExpiresAt = t0.Add(time.Second)
		mustCreate(t, s, tr)
		var wg sync.WaitGroup
		var matched, expired bool
		wg.Add(2)
		go func() {
			defer wg.Done()
			_, err := s.MatchTransfer(ctx, "acme", id, noClaim, t0.Add(999*time.Millisecond))
			matched = err == nil
		}()
		go func() {
			defer wg.Done()
			expired, _ = s.ExpireTransfer(ctx, "acme", id, t0.Add(time.Second))
		}()
		wg.Wait()
		if matched == expired {
			t.Fatalf("%s: matched=%v expired=%v, want exactly one", id, matched, expired)
		}
		if !matched {
			continue
		}
		var wins int
		var mu sync.Mutex
		for j := 0; j < 2; j++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, err := s.CompleteTransfer(ctx, "acme", id, &switchback.OutputContext{TransferType: switchback.TransferAgent}, noLease, t0.Add(2*time.Second))
				if err == nil {
					mu.Lock()
					wins++
					mu.Unlock()
				} else if switchback.ErrorCode(err) != switchback.EGONE {
					t.Errorf("losing completion: %v", err)
				}
			}()
		}
		wg.Wait()
		if wins != 1 {
			t.Fatalf("%s: %d completions won", id, wins)
		}
	}
}

// testConcurrentRetriesCreateOnce sends one create many times at once, as a
// client retrying over several connections would: exactly one creates the
// transfer, every other gets it back, and only one number is leased.
func testConcurrentRetries(t *testing.T, open Opener) {
	s := open(t, Quarantine)
	ctx := context.Background()
	addNumbers(t, s, "US", "", "+12025550100", "+12025550101", "+12025550102")
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		created int
		numbers = map[string]bool{}
	)
	for i := 0; i < 12; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			got, c, err := s.CreateTransfer(ctx, phoneTransfer("acme", "p-1", "US", t0), t0)
			if err != nil {
				t.Errorf("retry: %v", err)
				return
			}
			mu.Lock()
			defer mu.Unlock()
			if c {
				created++
			}
			numbers[got.PhoneNumber.TransferNumber] = true
		}()
	}
	wg.Wait()
	if created != 1 || len(numbers) != 1 {
		t.Fatalf("%d creations, numbers %v; want one of each", created, numbers)
	}
	sum, _ := s.PoolSummaries(ctx, t0)
	if sum[0].Leased != 1 {
		t.Fatalf("retries leased %d numbers", sum[0].Leased)
	}
}

// testNonceKey checks the SIP nonce key: 32 bytes, the same on every call,
// and not changed by a caller that scribbles on the slice it got.
func testNonceKey(t *testing.T, open Opener) {
	s := open(t, Quarantine)
	ctx := context.Background()
	k1, err := s.NonceKey(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(k1) != 32 {
		t.Fatalf("nonce key is %d bytes, want 32", len(k1))
	}
	if bytes.Equal(k1, make([]byte, 32)) {
		t.Fatal("nonce key is all zeros")
	}
	want := bytes.Clone(k1)
	k1[0] ^= 0xff
	k2, err := s.NonceKey(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(k2, want) {
		t.Fatalf("second nonce key %x, first %x", k2, want)
	}
}

// testConcurrentNonceKeys asks a fresh store for its key from several
// goroutines at once: whoever creates it, all get the same one.
func testConcurrentNonceKeys(t *testing.T, open Opener) {
	s := open(t, Quarantine)
	ctx := context.Background()
	keys := make([][]byte, 8)
	var wg sync.WaitGroup
	for i := range keys {
		wg.Add(1)
		go func() {
			defer wg.Done()
			k, err := s.NonceKey(ctx)
			if err != nil {
				t.Errorf("nonce key: %v", err)
			}
			keys[i] = k
		}()
	}
	wg.Wait()
	for i, k := range keys {
		if len(k) != 32 || !bytes.Equal(k, keys[0]) {
			t.Fatalf("key %d = %x, key 0 = %x", i, k, keys[0])
		}
	}
}

func mustClaim(t *testing.T, s switchback.Store, nonce string, expiresAt, now time.Time, want bool) {
	t.Helper()
	got, err := s.ClaimNonce(context.Background(), nonce, expiresAt, now)
	if err != nil {
		t.Fatalf("claim %s: %v", nonce, err)
	}
	if got != want {
		t.Fatalf("claim %s at %v: first use = %v, want %v", nonce, now, got, want)
	}
}

func testClaimNonce(t *testing.T, open Opener) {
	s := open(t, Quarantine)
	exp := t0.Add(30 * time.Second)
	mustClaim(t, s, "n-1", exp, t0, true)
	mustClaim(t, s, "n-1", exp, t0, false)
	mustClaim(t, s, "n-1", exp, t0.Add(10*time.Second), false)
	mustClaim(t, s, "n-2", exp, t0, true)
}

// testConcurrentClaims races eight claims of one nonce, as a replayed
// request reaching several nodes at once would: exactly one wins.
func testConcurrentClaims(t *testing.T, open Opener) {
	s := open(t, Quarantine)
	ctx := context.Background()
	for round := 0; round < 5; round++ {
		nonce := fmt.Sprintf("race-%d", round)
		var (
			wg   sync.WaitGroup
			mu   sync.Mutex
			wins int
		)
		for i := 0; i < 8; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				first, err := s.ClaimNonce(ctx, nonce, t0.Add(30*time.Second), t0)
				if err != nil {
					t.Errorf("claim: %v", err)
					return
				}
				if first {
					mu.Lock()
					wins++
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
		if wins != 1 {
			t.Fatalf("%s: %d of 8 claims were first", nonce, wins)
		}
	}
}

// testPurgeKeepsLiveNonces lets claims purge expired nonces and checks that
// no live nonce is forgotten on the way.
func testPurgeKeepsLiveNonces(t *testing.T, open Opener) {
	s := open(t, Quarantine)
	for i := 0; i < 120; i++ {
		mustClaim(t, s, fmt.Sprintf("old-%d", i), t0.Add(time.Second), t0, true)
	}
	live := t0.Add(time.Hour)
	mustClaim(t, s, "live", live, t0, true)
	// Later claims may purge the expired ones, a bounded number at a time.
	later := t0.Add(time.Minute)
	for i := 0; i < 5; i++ {
		mustClaim(t, s, fmt.Sprintf("new-%d", i), live, later, true)
		mustClaim(t, s, "live", live, later, false)
	}
	for i := 0; i < 5; i++ {
		mustClaim(t, s, fmt.Sprintf("new-%d", i), live, later, false)
	}
	// An expired nonce may or may not be remembered; either answer is
	// allowed, but the question must not fail.
	if _, err := s.ClaimNonce(context.Background(), "old-0", t0.Add(time.Second), later); err != nil {
		t.Fatalf("claim expired nonce: %v", err)
	}
}
