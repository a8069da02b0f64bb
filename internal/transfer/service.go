// Package transfer runs the life of call transfers on top of a Store: it
// stamps new transfers with their expiry, tells a retried create from a
// conflicting one, expires transfers on time with timers and a sweep, and
// wakes clients waiting for a status. The HTTP API and the SIP edge both go
// through it, so every status move is seen by waiters.
package transfer

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/switchback/switchback"
)

// Policy is what a tenant's configuration decides about its transfers.
type Policy struct {
	PhoneNumberTTL time.Duration
	SIPTTL         time.Duration
	DefaultReturn  switchback.ReturnTransferType
	// MaxCalls, when positive, is how many calls the tenant may have
	// ONGOING at once across every node sharing the store: Match refuses
	// one more with EBUSY.
	MaxCalls int
}

// Options configure a Service.
type Options struct {
	Store switchback.Store
	Clock switchback.Clock
	Log   *slog.Logger
	// Policy returns a tenant's policy, and false for an unknown tenant.
	Policy func(tenantID string) (Policy, bool)
	// SweepInterval is how often the store is swept for due transfers that
	// no timer of this node covers (another node's, or a crashed one's).
	SweepInterval time.Duration
	// PollInterval is how often a waiter re-reads the store, to see moves
	// made by other nodes.
	PollInterval time.Duration
	// MaxCallDuration is how long after its call arrived an ONGOING
	// transfer is taken for abandoned (its node died with the call) and
	// completed as CALLER_DISCONNECT by the sweep; 0 never. It is the
	// backstop behind the takeover of a lost node's calls (internal/fleet).
	MaxCallDuration time.Duration
	// Node returns the lease of the node this service runs on (see
	// switchback.NodeLease): matches record it as the call's owner, and
	// every write for a call carries it, so the store refuses them
	// (EFENCED) once the lease is lost. Acquire the lease before the first
	// call (fleet.Start). Nil: no lease, as a single node without one runs;
	// its calls are never fenced and are left to the MaxCallDuration
	// backstop.
	Node func() switchback.NodeLease
}

// Service runs transfers' lifecycles. Start it with Run.
type Service struct {
	store   switchback.Store
	now     switchback.Clock
	log     *slog.Logger
	policy  func(string) (Policy, bool)
	sweep   time.Duration
	maxCall time.Duration
	poll    time.Duration
	node    func() switchback.NodeLease

	timers *timers
	hub    hub
}

// New returns a Service; call Run to start its expiry loop.
func New(o Options) *Service {
	if o.Clock == nil {
		o.Clock = switchback.SystemClock
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.SweepInterval <= 0 {
		o.SweepInterval = time.Second
	}
	if o.PollInterval <= 0 {
		o.PollInterval = 250 * time.Millisecond
	}
	if o.Node == nil {
		o.Node = func() switchback.NodeLease { return switchback.NodeLease{} }
	}
	return &Service{
		store: o.Store, now: o.Clock, log: o.Log, policy: o.Policy,
		sweep: o.SweepInterval, poll: o.PollInterval, maxCall: o.MaxCallDuration, node: o.Node,
		timers: newTimers(),
		hub:    hub{waiters: map[key][]chan struct{}{}},
	}
}

// Create stores a new transfer for tenant t.TenantID, stamping its creation
// time and expiry from the tenant's policy and its request hash. If the
// tenant already has a transfer with that id made by an identical request,
// Create returns it (a safe retry); a different request gets ECONFLICT.
func (s *Service) Create(ctx context.Context, t *switchback.Transfer) (*switchback.Transfer, error) {
	p, ok := s.policy(t.TenantID)
	if !ok {
		return nil, switchback.Errorf(switchback.EFORBIDDEN, "tenant %q is not configured on this server", t.TenantID)
	}
	now := s.now()
	t.Status = switchback.StatusActive
	t.CreatedAt = now
	ttl := p.SIPTTL
	if t.Type == switchback.TypePhoneNumber {
		ttl = p.PhoneNumberTTL
	}
	t.ExpiresAt = now.Add(ttl)
	if t.Type == switchback.TypeSIP && t.SIP != nil && t.SIP.ReturnTransferType == "" {
		t.SIP.ReturnTransferType = p.DefaultReturn
		if t.SIP.ReturnURI == "" && p.DefaultReturn != switchback.ReturnBYE {
			return nil, switchback.FieldErrorf("sip.returnURI",
				"is required: this tenant hands calls back by %s unless sip.returnTransferType says BYE", p.DefaultReturn)
		}
	}
	stored, created, err := s.store.CreateTransfer(ctx, t, now)
	if err != nil {
		return nil, err
	}
	if !created {
		if stored.RequestHash != t.RequestHash {
			return nil, switchback.Errorf(switchback.ECONFLICT,
				"id: call transfer %q already exists with a different request; use a new id", t.ID)
		}
		return stored, nil
	}
	s.timers.add(key{stored.TenantID, stored.ID}, stored.ExpiresAt)
	return stored, nil
}

// Get returns a tenant's transfer as the client must see it: an ACTIVE
// transfer past its expiry reads EXPIRED.
func (s *Service) Get(ctx context.Context, tenantID, id string) (*switchback.Transfer, error) {
	t, err := s.store.Transfer(ctx, tenantID, id)
	if err != nil {
		return nil, err
	}
	t.Status = t.StatusAt(s.now())
	return t, nil
}

// List returns a page of a tenant's transfers, newest first.
func (s *Service) List(ctx context.Context, f switchback.TransferFilter) ([]*switchback.Transfer, error) {
	ts, err := s.store.ListTransfers(ctx, f)
	if err != nil {
		return nil, err
	}
	now := s.now()
	for _, t := range ts {
		t.Status = t.StatusAt(now)
	}
	return ts, nil
}

// Wait returns the transfer as soon as its status is one of want, or its
// current state once timeout has passed; reached says which.
func (s *Service) Wait(ctx context.Context, tenantID, id string, want []switchback.Status, timeout time.Duration) (t *switchback.Transfer, reached bool, err error) {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	poll := time.NewTicker(s.poll)
	defer poll.Stop()
	k := key{tenantID, id}
	for {
		// Register before reading, so a move between the read and the
		// select still wakes us.
		changed := s.hub.watch(k)
		t, err = s.Get(ctx, tenantID, id)
		if err != nil {
			s.hub.forget(k, changed)
			return nil, false, err
		}
		for _, w := range want {
			if t.Status == w {
				s.hub.forget(k, changed)
				return t, true, nil
			}
		}
		// An ACTIVE transfer reads EXPIRED at its expiry, whether or not a
		// timer has fired by then.
		var expiry <-chan time.Time
		var timer *time.Timer
		if t.Status == switchback.StatusActive {
			timer = time.NewTimer(max(t.ExpiresAt.Sub(s.now()), 0))
			expiry = timer.C
		}
		done := false
		select {
		case <-changed:
		case <-expiry:
		case <-poll.C:
		case <-deadline.C:
			done = true
		case <-ctx.Done():
			err = ctx.Err()
		}
		if timer != nil {
			timer.Stop()
		}
		s.hub.forget(k, changed)
		if err != nil {
			return nil, false, err
		}
		if done {
			t, err = s.Get(ctx, tenantID, id)
			return t, false, err
		}
	}
}

// Match moves a transfer ACTIVE→ONGOING for an arriving call, owned by
// this node. The call is refused with EBUSY when the tenant's policy has a
// MaxCalls and the tenant already has that many calls ONGOING, across
// every node sharing the store; with EFENCED once this node's lease is
// lost.
func (s *Service) Match(ctx context.Context, tenantID, id string) (*switchback.Transfer, error) {
	c := switchback.CallClaim{Owner: s.node()}
	if p, ok := s.policy(tenantID); ok {
		c.MaxCalls = p.MaxCalls
	}
	t, err := s.store.MatchTransfer(ctx, tenantID, id, c, s.now())
	if err == nil {
		s.moved(t)
	}
	return t, err
}

// MatchNumber moves the transfer leasing a dialled number ACTIVE→ONGOING,
// owned by this node, without a limit on its tenant's calls: the SIP edge
// names the transfer with NumberHolder and admits its call with Match.
func (s *Service) MatchNumber(ctx context.Context, e164 string) (*switchback.Transfer, error) {
	t, err := s.store.MatchNumber(ctx, e164, switchback.CallClaim{Owner: s.node()}, s.now())
	if err == nil {
		s.moved(t)
	}
	return t, err
}

// NumberHolder names the transfer leasing a dialled number, changing nothing.
func (s *Service) NumberHolder(ctx context.Context, e164 string) (switchback.TransferKey, error) {
	return s.store.NumberHolder(ctx, e164, s.now())
}

// Complete moves a transfer ONGOING→COMPLETED with its output context.
// Like every write for a call, it is refused with EFENCED once this node's
// lease is lost, or when another node's lease owns the call.
func (s *Service) Complete(ctx context.Context, tenantID, id string, out *switchback.OutputContext) (*switchback.Transfer, error) {
	t, err := s.store.CompleteTransfer(ctx, tenantID, id, out, s.node(), s.now())
	if err == nil {
		s.moved(t)
	}
	return t, err
}

// SetReturnResult records how a completed transfer's hand-back went,
// stamped with now when r has no time. Waiters are not woken: the status
// does not change.
func (s *Service) SetReturnResult(ctx context.Context, tenantID, id string, r *switchback.ReturnResult) error {
	if r != nil && r.At.IsZero() {
		stamped := *r
		stamped.At = s.now()
		r = &stamped
	}
	return s.store.SetReturnResult(ctx, tenantID, id, r, s.node(), s.now())
}

// EndCall writes what a call leaves as it ends, in one transaction (see
// switchback.CallEnd); a result without a time is stamped with now.
func (s *Service) EndCall(ctx context.Context, e *switchback.CallEnd) (*switchback.Transfer, error) {
	if e.Result != nil && e.Result.At.IsZero() {
		stamped, end := *e.Result, *e
		stamped.At = s.now()
		end.Result = &stamped
		e = &end
	}
	t, err := s.store.EndCall(ctx, e, s.node(), s.now())
	if err == nil && e.Output != nil {
		s.moved(t)
	}
	return t, err
}

// Conversation returns a tenant's conversation with each leg as Get shows
// it: an ACTIVE leg past its expiry reads EXPIRED.
func (s *Service) Conversation(ctx context.Context, tenantID, externalID string) (*switchback.Conversation, error) {
	c, err := s.store.Conversation(ctx, tenantID, externalID)
	if err != nil {
		return nil, err
	}
	now := s.now()
	for _, t := range c.Legs {
		t.Status = t.StatusAt(now)
	}
	return c, nil
}

// RecordConversation adds a leg's events and state to its conversation, now.
func (s *Service) RecordConversation(ctx context.Context, r *switchback.ConversationRecord) error {
	return s.store.RecordConversation(ctx, r, s.node(), s.now())
}

func (s *Service) moved(t *switchback.Transfer) {
	k := key{t.TenantID, t.ID}
	s.timers.remove(k)
	s.hub.notify(k)
}

// Run expires transfers until ctx ends: each transfer this node created or
// found pending at start by its own timer, and any other due one by the
// periodic sweep.
func (s *Service) Run(ctx context.Context) error {
	pending, err := s.store.PendingExpiries(ctx, 100000)
	if err != nil {
		s.log.Warn("load pending expiries; relying on the sweep", "err", err)
	}
	for _, p := range pending {
		s.timers.add(key{p.TenantID, p.ID}, p.ExpiresAt)
	}
	sweep := time.NewTicker(s.sweep)
	defer sweep.Stop()
	s.sweepOnce(ctx)
	for {
		next, ok := s.timers.next()
		var fire <-chan time.Time
		var timer *time.Timer
		if ok {
			timer = time.NewTimer(max(next.Sub(s.now()), 0))
			fire = timer.C
		}
		stop := func() {
			if timer != nil {
				timer.Stop()
			}
		}
		select {
		case <-ctx.Done():
			stop()
			return nil
		case <-s.timers.changed:
			stop()
		case <-fire:
			now := s.now()
			for _, k := range s.timers.due(now) {
				moved, err := s.store.ExpireTransfer(ctx, k.tenant, k.id, now)
				if err != nil {
					if ctx.Err() != nil {
						return nil
					}
					s.log.Warn("expire transfer; the sweep will retry", "tenant", k.tenant, "transfer", k.id, "err", err)
					continue
				}
				if moved {
					s.log.Info("transfer expired", "tenant", k.tenant, "transfer", k.id)
					s.hub.notify(k)
				}
			}
		case <-sweep.C:
			stop()
			s.sweepOnce(ctx)
		}
	}
}

func (s *Service) sweepOnce(ctx context.Context) {
	s.sweepAbandoned(ctx)
	for {
		keys, err := s.store.ExpireDue(ctx, s.now(), 500)
		if err != nil {
			if ctx.Err() == nil {
				s.log.Warn("sweep expired transfers", "err", err)
			}
			return
		}
		for _, k := range keys {
			s.log.Info("transfer expired", "tenant", k.TenantID, "transfer", k.ID, "by", "sweep")
			s.timers.remove(key{k.TenantID, k.ID})
			s.hub.notify(key{k.TenantID, k.ID})
		}
		if len(keys) < 500 {
			return
		}
	}
}

// sweepAbandoned completes the calls no node holds any more.
func (s *Service) sweepAbandoned(ctx context.Context) {
	if s.maxCall <= 0 {
		return
	}
	now := s.now()
	keys, err := s.store.AbandonCalls(ctx, now.Add(-s.maxCall), now, 100)
	if err != nil {
		if ctx.Err() == nil {
			s.log.Warn("sweep abandoned calls", "err", err)
		}
		return
	}
	for _, k := range keys {
		s.log.Warn("call abandoned: completed as a caller disconnect", "tenant", k.TenantID, "transfer", k.ID,
			"max_call_duration", s.maxCall.String())
		s.hub.notify(key{k.TenantID, k.ID})
	}
}

type key struct{ tenant, id string }

// hub wakes the waiters of a transfer when it moves.
type hub struct {
	mu      sync.Mutex
	waiters map[key][]chan struct{}
}

func (h *hub) watch(k key) chan struct{} {
	c := make(chan struct{})
	h.mu.Lock()
	h.waiters[k] = append(h.waiters[k], c)
	h.mu.Unlock()
	return c
}

func (h *hub) forget(k key, c chan struct{}) {
	h.mu.Lock()
	defer h.mu.Unlock()
	ws := h.waiters[k]
	for i, w := range ws {
		if w == c {
			ws[i] = ws[len(ws)-1]
			ws = ws[:len(ws)-1]
			break
		}
	}
	if len(ws) == 0 {
		delete(h.waiters, k)
	} else {
		h.waiters[k] = ws
	}
}

func (h *hub) notify(k key) {
	h.mu.Lock()
	ws := h.waiters[k]
	delete(h.waiters, k)
	h.mu.Unlock()
	for _, c := range ws {
		close(c)
	}
}
