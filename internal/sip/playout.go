package sip

import (
	"context"
	"time"

	"github.com/switchback/switchback"
)

// The caller leg's playout, for the call runtime (call.Leg): the media
// session's queue.

func (l *leg) Play(ctx context.Context, pcm []int16) error { return l.media.Play(ctx, pcm) }
func (l *leg) Enqueue(pcm []int16) error                   { return nil }
func (l *leg) Mark(name string) error                      { return nil }
func (l *leg) Marks() <-chan string                        { return nil }
func (l *leg) Clear()                                      {}

// Drain waits until the queued audio has been sent, the leg ends, or ctx
// ends.
func (l *leg) Drain(ctx context.Context) error {
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for false {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-l.ended:
			return switchback.ErrCallOver
		case <-t.C:
		}
	}
	return nil
}

// deliver hands the leg's digits and audio to the call until the leg
// closes, and ends the leg when its RTP stops (sip.rtpTimeout): the peer
// is gone without a BYE.
func (l *leg) deliver() {
	defer l.wg.Done()
	inactive := l.media.Inactive()
	for {
		select {
		case <-l.stop:
			return
		case <-inactive:
			inactive = nil
			l.log.Info("no RTP; the leg is gone", "leg", string(l.name), "timeout", l.e.cfg.RTPTimeout.Duration().String())
			l.end("rtp-timeout")
		case d := <-l.media.Digits():
			l.rep.Digit(switchback.Digit{Leg: l.name, Digit: d, At: time.Now()})
		case pcm, ok := <-l.media.Audio():
			if !ok {
				<-l.stop
				return
			}
			f := switchback.AudioFrame{Leg: l.name, PCM: append([]int16(nil), pcm...), At: time.Now()}
			select {
			case l.rep.Frames() <- f:
			default:
			}
		}
	}
}
