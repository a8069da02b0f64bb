package sip

import (
	"context"
	"sync"
	"time"

	"github.com/switchback/switchback"
	"github.com/switchback/switchback/internal/media"
)

// bridge is the caller bridged to an INVITE hand-back's return leg: the
// media relayed between them, digits from either noted and passed on,
// until either hangs up, when the other is hung up too. It implements
// call.Bridge.
type bridge struct {
	caller, ret *leg
	mb          *media.Bridge

	ended   chan struct{}
	endOnce sync.Once
	byMu    sync.Mutex
	by      string // who ended it: the first to claim it
	stop    chan struct{}
	wg      sync.WaitGroup
	closed  sync.Once
}

func newBridge(caller, ret *leg, mb *media.Bridge) *bridge {
	b := &bridge{caller: caller, ret: ret, mb: mb, ended: make(chan struct{}), stop: make(chan struct{})}
	b.wg.Add(2)
	go b.watch()
	go b.digits()
	return b
}

// watch ends the bridge when either leg ends, and hangs up the other.
func (b *bridge) watch() {
	defer b.wg.Done()
	var gone, other *leg
	select {
	case <-b.stop:
		return
	case <-b.caller.ended:
		gone, other = b.caller, b.ret
	case <-b.ret.ended:
		gone, other = b.ret, b.caller
	}
	by := gone.EndedBy()
	ctx, cancel := context.WithTimeout(context.Background(), byeTimeout)
	defer cancel()
	if !gone.peerHungUp() {
		// Its media or session timer lapsed: the BYE is ours to send.
		gone.Bye(ctx)
	}
	other.Bye(ctx)
	b.end(by)
}

func (b *bridge) end(by string) {
	b.claim(by)
	b.endOnce.Do(func() { close(b.ended) })
}

// claim names who ends the bridge, unless someone already did.
func (b *bridge) claim(by string) {
	b.byMu.Lock()
	defer b.byMu.Unlock()
	if b.by == "" {
		b.by = by
	}
}

func (b *bridge) endedBy() string {
	b.byMu.Lock()
	defer b.byMu.Unlock()
	return b.by
}

// digits passes on the RFC 4733 digits either leg sends: the media relays
// them, and the call notes them.
func (b *bridge) digits() {
	defer b.wg.Done()
	for d := range b.mb.Digits() {
		leg := switchback.LegCaller
		if d.Leg == 1 {
			leg = switchback.LegReturn
		}
		b.caller.rep.Digit(switchback.Digit{Leg: leg, Digit: d.Digit, At: time.Now()})
	}
}

// Ended implements call.Bridge.
func (b *bridge) Ended() <-chan struct{} { return b.ended }

// EndedBy implements call.Bridge.
func (b *bridge) EndedBy() string {
	select {
	case <-b.ended:
		return b.endedBy()
	default:
		return ""
	}
}

// Hangup implements call.Bridge: both legs are hung up. The bridge ends by
// the shutdown, not by the BYE it sends first, which watch sees too.
func (b *bridge) Hangup(ctx context.Context) {
	b.claim("shutdown")
	b.ret.Bye(ctx)
	b.caller.Bye(ctx)
	b.end("shutdown")
}

// Close implements call.Bridge: the relaying stops and the return leg is
// released. The caller's leg goes with its call.
func (b *bridge) Close() {
	b.closed.Do(func() {
		close(b.stop)
		b.mb.Stop()
		b.wg.Wait()
		b.caller.setPeer(nil)
		st := b.mb.Stats()
		// dropped_to_*: packets not sent to a leg on hold (or unreachable).
		b.caller.log.Info("bridged call ended", "by", b.endedBy(), "relayed_to_return", st.Legs[0].Relayed, "relayed_to_caller", st.Legs[1].Relayed,
			"transcoded", st.Legs[0].Transcoded+st.Legs[1].Transcoded,
			"dropped_to_return", st.Legs[0].Dropped, "dropped_to_caller", st.Legs[1].Dropped)
		b.ret.close()
	})
}
