package call

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

// trail is the order in which things happened across the fakes.
type trail struct {
	mu    sync.Mutex
	steps []string
}

func (t *trail) add(format string, args ...any) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.steps = append(t.steps, fmt.Sprintf(format, args...))
}

func (t *trail) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return strings.Join(t.steps, "\n")
}

// index returns the position of the first step starting with prefix, or -1.
func (t *trail) index(prefix string) int {
	t.mu.Lock()
	defer t.mu.Unlock()
	for i, s := range t.steps {
		if strings.HasPrefix(s, prefix) {
			return i
		}
	}
	return -1
}

// before fails the test unless a step starting with a comes before one
// starting with b.
func (t *trail) before(tb testing.TB, a, b string) {
	tb.Helper()
	i, j := t.index(a), t.index(b)
	if i < 0 || j < 0 || i > j {
		tb.Fatalf("want %q before %q in:\n%s", a, b, t)
	}
}

// fakeTransfers is the transfer service as the runtime writes through it,
// in memory.
type fakeTransfers struct {
	trail *trail
	mu    sync.Mutex
	t     *switchback.Transfer
	conv  *switchback.Conversation
	// fail, when set, fails EndCall with it.
	fail  error
	ends  []switchback.CallEnd
	state json.RawMessage
	evs   []switchback.ConversationEvent
}

func (f *fakeTransfers) Match(ctx context.Context, tenantID, id string) (*switchback.Transfer, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.t == nil || f.t.ID != id {
		return nil, switchback.Errorf(switchback.ENOTFOUND, "no transfer %q", id)
	}
	f.t.Status = switchback.StatusOngoing
	cp := *f.t
	return &cp, nil
}

func (f *fakeTransfers) EndCall(ctx context.Context, e *switchback.CallEnd) (*switchback.Transfer, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fail != nil {
		f.trail.add("EndCall failed")
		return nil, f.fail
	}
	if e.Output != nil {
		if f.t.Status != switchback.StatusOngoing {
			return nil, switchback.Errorf(switchback.EGONE, "not ongoing")
		}
		f.t.Status = switchback.StatusCompleted
		f.t.OutputContext = e.Output
		f.trail.add("stored output %s", e.Output.TransferType)
	}
	if e.Result != nil {
		if f.t.Status != switchback.StatusCompleted {
			return nil, switchback.Errorf(switchback.EGONE, "not completed")
		}
		f.t.ReturnResult = e.Result
		f.trail.add("stored result %s fallback=%v", e.Result.Method, e.Result.Fallback)
	}
	if e.Record != nil {
		f.keep(e.Record)
	}
	f.ends = append(f.ends, *e)
	cp := *f.t
	return &cp, nil
}

func (f *fakeTransfers) keep(r *switchback.ConversationRecord) {
	if r.State != nil {
		f.state = r.State
	}
	f.evs = append(f.evs, r.Events...)
}

func (f *fakeTransfers) Conversation(ctx context.Context, tenantID, externalID string) (*switchback.Conversation, error) {
	if f.conv == nil {
		return nil, switchback.Errorf(switchback.ENOTFOUND, "none")
	}
	return f.conv, nil
}

func (f *fakeTransfers) RecordConversation(ctx context.Context, r *switchback.ConversationRecord) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.keep(r)
	f.trail.add("recorded %d events", len(r.Events))
	return nil
}

func (f *fakeTransfers) setFail(err error) {
	f.mu.Lock()
	f.fail = err
	f.mu.Unlock()
}

// events returns the conversation's events of type t, as data.
func (f *fakeTransfers) events(t switchback.EventType) []map[string]string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []map[string]string
	for _, e := range f.evs {
		if e.Type == t {
			out = append(out, e.Data)
		}
	}
	return out
}

func (f *fakeTransfers) status() (switchback.Status, *switchback.OutputContext, *switchback.ReturnResult) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.t.Status, f.t.OutputContext, f.t.ReturnResult
}

// fakeLeg is a caller leg whose SIP side is function fields.
type fakeLeg struct {
	trail   *trail
	ended   chan struct{}
	endOnce sync.Once
	mu      sync.Mutex
	by      string
	marks   chan string
	played  [][]int16
	cleared int
	drain   func(ctx context.Context) error
	refer   func(ctx context.Context, t *switchback.Transfer) switchback.ReturnResult
	invite  func(ctx context.Context, t *switchback.Transfer, listen bool) (Bridge, switchback.ReturnResult)
}

func newFakeLeg(tr *trail) *fakeLeg {
	return &fakeLeg{trail: tr, ended: make(chan struct{}), marks: make(chan string, 8)}
}

func (l *fakeLeg) hangup(by string) {
	l.endOnce.Do(func() {
		l.mu.Lock()
		l.by = by
		l.mu.Unlock()
		l.trail.add("leg ended by %s", by)
		close(l.ended)
	})
}

func (l *fakeLeg) Play(ctx context.Context, pcm []int16) error {
	l.mu.Lock()
	l.played = append(l.played, pcm)
	l.mu.Unlock()
	return nil
}
func (l *fakeLeg) Enqueue(pcm []int16) error { return l.Play(context.Background(), pcm) }
func (l *fakeLeg) Mark(name string) error    { l.marks <- name; return nil }
func (l *fakeLeg) Marks() <-chan string      { return l.marks }
func (l *fakeLeg) Clear() {
	l.mu.Lock()
	l.cleared++
	l.mu.Unlock()
}
func (l *fakeLeg) Drain(ctx context.Context) error {
	l.trail.add("drained")
	if l.drain != nil {
		return l.drain(ctx)
	}
	return nil
}
func (l *fakeLeg) Ended() <-chan struct{} { return l.ended }
func (l *fakeLeg) EndedBy() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.by
}
func (l *fakeLeg) Bye(ctx context.Context) error {
	if by := l.EndedBy(); by == "caller" || by == "switchback" {
		return nil
	}
	l.trail.add("BYE")
	l.hangup("switchback")
	return nil
}
func (l *fakeLeg) Refer(ctx context.Context, t *switchback.Transfer) switchback.ReturnResult {
	l.trail.add("REFER")
	if l.refer != nil {
		return l.refer(ctx, t)
	}
	return switchback.ReturnResult{Method: switchback.ReturnREFER, SIPStatus: 202, NotifyStatus: 200}
}
func (l *fakeLeg) Close() { l.trail.add("leg closed") }
func (l *fakeLeg) Invite(ctx context.Context, t *switchback.Transfer, listen bool) (Bridge, switchback.ReturnResult) {
	l.trail.add("INVITE listen=%v", listen)
	return l.invite(ctx, t, listen)
}

// fakeBridge is a bridged INVITE hand-back.
type fakeBridge struct {
	trail *trail
	ended chan struct{}
	by    string
}

func (b *fakeBridge) Ended() <-chan struct{} { return b.ended }
func (b *fakeBridge) EndedBy() string        { return b.by }
func (b *fakeBridge) Hangup(ctx context.Context) {
	b.trail.add("bridge hung up")
	b.by = "switchback"
	close(b.ended)
}
func (b *fakeBridge) Close() { b.trail.add("bridge closed") }

// fakeAgent is an agent whose Run and Follow are function fields.
type fakeAgent struct {
	run    func(ctx context.Context, call switchback.Call) (*switchback.HandBack, error)
	follow func(ctx context.Context, call switchback.Call) error
	closed chan struct{}
}

func (a *fakeAgent) Run(ctx context.Context, call switchback.Call) (*switchback.HandBack, error) {
	return a.run(ctx, call)
}
func (a *fakeAgent) Close() error { close(a.closed); return nil }

// followingAgent is a fakeAgent that follows.
type followingAgent struct{ *fakeAgent }

func (a followingAgent) Follow(ctx context.Context, call switchback.Call) error {
	return a.follow(ctx, call)
}

// factory makes one agent.
type factory struct {
	agent switchback.Agent
	err   error
	info  *switchback.CallInfo
}

func (f *factory) NewAgent(ctx context.Context, info *switchback.CallInfo) (switchback.Agent, error) {
	f.info = info
	return f.agent, f.err
}

// fakeClock is a clock whose timers fire when the test advances it, or at
// once when auto is set.
type fakeClock struct {
	mu      sync.Mutex
	now     time.Time
	auto    bool
	waiters []waiter
}

type waiter struct {
	at time.Time
	ch chan time.Time
}

func newFakeClock(auto bool) *fakeClock {
	return &fakeClock{now: time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC), auto: auto}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) After(d time.Duration) (<-chan time.Time, func()) {
	c.mu.Lock()
	defer c.mu.Unlock()
	ch := make(chan time.Time, 1)
	if c.auto {
		c.now = c.now.Add(d)
		ch <- c.now
		return ch, func() {}
	}
	c.waiters = append(c.waiters, waiter{at: c.now.Add(d), ch: ch})
	return ch, func() {}
}

// run advances the clock by step every millisecond until stop is closed.
func (c *fakeClock) run(step time.Duration, stop <-chan struct{}) {
	t := time.NewTicker(time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
			c.advance(step)
		}
	}
}

// advance moves the clock on, firing the timers due.
func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
	kept := c.waiters[:0]
	for _, w := range c.waiters {
		if !w.at.After(c.now) {
			w.ch <- c.now
		} else {
			kept = append(kept, w)
		}
	}
	c.waiters = kept
}
