package call

import (
	"context"
	"encoding/json"

	"github.com/switchback/switchback"
)

// agentCall is a call as its agent sees it.
type agentCall struct {
	c   *Call
	leg Leg
}

var _ switchback.Call = (*agentCall)(nil)

func (a *agentCall) Info() *switchback.CallInfo          { return a.c.info }
func (a *agentCall) Audio() <-chan switchback.AudioFrame { return a.c.frames }
func (a *agentCall) Digits() <-chan switchback.Digit     { return a.c.digits }
func (a *agentCall) Marks() <-chan string                { return a.leg.Marks() }

func (a *agentCall) Play(ctx context.Context, pcm []int16) error {
	if a.c.bridged.Load() {
		return switchback.ErrBridged
	}
	return a.leg.Play(ctx, pcm)
}

func (a *agentCall) Enqueue(pcm []int16) error {
	if a.c.bridged.Load() {
		return switchback.ErrBridged
	}
	return a.leg.Enqueue(pcm)
}

func (a *agentCall) Mark(name string) error {
	if a.c.bridged.Load() {
		return switchback.ErrBridged
	}
	return a.leg.Mark(name)
}

func (a *agentCall) Clear() {
	if !a.c.bridged.Load() {
		a.leg.Clear()
	}
}

func (a *agentCall) SaveState(state json.RawMessage) {
	if !a.c.journal.saveState(state) {
		a.c.log.Warn("the agent's state is not JSON; not saved")
	}
}

func (a *agentCall) Record(t switchback.EventType, data map[string]string) {
	a.c.journal.record(t, data)
}
