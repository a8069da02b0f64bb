package main

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/switchback/switchback"
	"github.com/switchback/switchback/internal/call"
	"github.com/switchback/switchback/internal/media"
)

// leg is a caller's leg as the call runtime drives it (call.Leg), over a
// media.Session and without SIP: what internal/sip's leg does with its
// media, the audio and digits handed to the call on the Session's receive
// path and the playout queue for the agent, the same way. Signalling is
// what this benchmark leaves out: Bye ends the leg, and there is no
// REFER or INVITE to hand back by (every benchmark transfer returns by
// BYE).
type leg struct {
	media *media.Session
	rep   call.Reporter

	endOnce sync.Once
	ended   chan struct{}
	mu      sync.Mutex
	by      string

	stop      chan struct{} // closed by Close: deliver returns
	wg        sync.WaitGroup
	closeOnce sync.Once
	closed    chan struct{} // closed once Close is done
}

var _ call.Leg = (*leg)(nil)

func newLeg(sess *media.Session, rep call.Reporter) *leg {
	return &leg{media: sess, rep: rep, ended: make(chan struct{}), stop: make(chan struct{}), closed: make(chan struct{})}
}

// run hands the leg's audio and digits to its call until Close, as the
// SIP edge's leg does once the caller has acknowledged the answer.
func (l *leg) run() {
	frames := l.rep.Frames()
	l.media.SetAudioHandler(0, func(f media.Frame) bool {
		select {
		case frames <- switchback.AudioFrame{Leg: switchback.LegCaller, PCM: f.PCM, At: f.At}:
			return true
		default:
			return false
		}
	})
	l.wg.Add(1)
	go l.deliver()
}

func (l *leg) deliver() {
	defer l.wg.Done()
	for {
		select {
		case <-l.stop:
			return
		case d := <-l.media.Digits():
			l.rep.Digit(switchback.Digit{Leg: switchback.LegCaller, Digit: d, At: time.Now()})
		}
	}
}

func (l *leg) Play(ctx context.Context, pcm []int16) error { return l.media.Play(ctx, pcm) }
func (l *leg) Enqueue(pcm []int16) error                   { return l.media.Enqueue(pcm) }
func (l *leg) Mark(name string) error                      { return l.media.Mark(name) }
func (l *leg) Marks() <-chan string                        { return l.media.Marks() }
func (l *leg) Clear()                                      { l.media.Clear() }

func (l *leg) Drain(ctx context.Context) error {
	if l.media.WaitSent(ctx, l.ended) {
		return nil
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	return switchback.ErrCallOver
}

// end records that the leg is gone, and why: the load hung up ("caller").
func (l *leg) end(by string) {
	l.endOnce.Do(func() {
		l.mu.Lock()
		l.by = by
		l.mu.Unlock()
		close(l.ended)
	})
}

func (l *leg) Ended() <-chan struct{} { return l.ended }

func (l *leg) EndedBy() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.by
}

func (l *leg) Bye(context.Context) error {
	l.end("switchback")
	return nil
}

var errNoSIP = errors.New("the streaming benchmark has no SIP")

func (l *leg) Refer(context.Context, *switchback.Transfer) switchback.ReturnResult {
	return switchback.ReturnResult{Method: switchback.ReturnREFER, Fallback: true, Reason: errNoSIP.Error()}
}

func (l *leg) Invite(context.Context, *switchback.Transfer, bool) (call.Bridge, switchback.ReturnResult) {
	return nil, switchback.ReturnResult{Method: switchback.ReturnINVITE, Fallback: true, Reason: errNoSIP.Error()}
}

// Close releases the leg once the runtime is done with the call.
func (l *leg) Close() {
	l.closeOnce.Do(func() {
		close(l.stop)
		l.wg.Wait()
		l.media.Close()
		close(l.closed)
	})
}
