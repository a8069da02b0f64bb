package websocket

import (
	"context"
	"io"

	"github.com/switchback/switchback"
)

// Immediate returns the factory of an agent that hands the call back at
// once with out (transferType SYSTEM when nil; currentTaskName the input's
// taskName when empty): the fallback of a websocket agent whose
// configuration names no other agent.
func Immediate(out *Output) switchback.AgentFactory { return immediate{out: out} }

type immediate struct{ out *Output }

func (i immediate) NewAgent(context.Context, *switchback.CallInfo) (switchback.Agent, error) {
	return i, nil
}

// Run hands the call back without a word: the fallback was configured so.
func (i immediate) Run(_ context.Context, call switchback.Call) (*switchback.HandBack, error) {
	return &switchback.HandBack{Output: i.out.context(call.Info().Input)}, nil
}

// fallback is the agent that took a call its websocket agent could not,
// before the call was answered: it records why, then runs.
type fallback struct {
	switchback.Agent
	reason, name string
}

// fallbackFollower is a fallback whose agent keeps listening after an
// INVITE hand-back; the runtime finds Follow by a type assertion, so only
// an agent that has one may show one.
type fallbackFollower struct{ *fallback }

func wrapFallback(a switchback.Agent, reason, name string) switchback.Agent {
	fb := &fallback{Agent: a, reason: reason, name: name}
	if _, ok := a.(switchback.Follower); ok {
		return fallbackFollower{fb}
	}
	return fb
}

func (f *fallback) Run(ctx context.Context, call switchback.Call) (*switchback.HandBack, error) {
	call.Record(switchback.EventAgentFallback, map[string]string{"reason": f.reason, "fallback": f.name})
	return f.Agent.Run(ctx, call)
}

// Close closes the fallback's agent if it is an io.Closer.
func (f *fallback) Close() error {
	if c, ok := f.Agent.(io.Closer); ok {
		return c.Close()
	}
	return nil
}

func (f fallbackFollower) Follow(ctx context.Context, call switchback.Call) error {
	return f.Agent.(switchback.Follower).Follow(ctx, call)
}
