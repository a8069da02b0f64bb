package sip

import (
	"context"
	"time"

	"github.com/switchback/switchback"
	"github.com/switchback/switchback/internal/media"
)

// The caller leg's playout, for the call runtime (call.Leg): the media
// session's queue.

func (l *leg) Play(ctx context.Context, pcm []int16) error { return l.media.Play(ctx, pcm) }
func (l *leg) Enqueue(pcm []int16) error                   { return l.media.Enqueue(pcm) }
func (l *leg) Mark(name string) error                      { return l.media.Mark(name) }
func (l *leg) Marks() <-chan string                        { return l.media.Marks() }
func (l *leg) Clear()                                      { l.media.Clear() }

// Drain waits until the queued audio has been sent, the leg ends, or ctx
// ends.
func (l *leg) Drain(ctx context.Context) error {
	if l.media.WaitSent(ctx, l.ended) {
		return nil
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	return switchback.ErrCallOver
}

// hear hands the leg's audio to its call, on the media's receive path:
// each frame goes on the call's channel, or is dropped if the call is
// behind.
func (l *leg) hear() {
	frames := l.rep.Frames()
	l.media.SetAudioHandler(0, func(f media.Frame) bool {
		select {
		case frames <- switchback.AudioFrame{Leg: l.name, PCM: f.PCM, At: f.At}:
			return true
		default:
			return false
		}
	})
}

// deliver hands the leg's digits to the call until the leg closes, and
// ends the leg when its RTP stops (sip.rtpTimeout): the peer is gone
// without a BYE.
func (l *leg) deliver() {
	defer l.wg.Done()
	inactive := l.media.Inactive()
	for {
		select {
		case <-l.stop:
			return
		case <-inactive:
			inactive = nil
			if l.referring.Load() {
				l.log.Info("no RTP while the caller is transferred; the REFER's timeout decides", "leg", string(l.name))
				continue
			}
			l.log.Info("no RTP; the leg is gone", "leg", string(l.name), "timeout", l.e.cfg.RTPTimeout.Duration().String())
			l.end("rtp-timeout")
		case d := <-l.media.Digits():
			l.rep.Digit(switchback.Digit{Leg: l.name, Digit: d, At: time.Now()})
		}
	}
}
