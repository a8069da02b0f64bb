package call

import (
	"context"

	"github.com/switchback/switchback"
)

// Leg is the caller's leg of a call as the runtime drives it. The SIP edge
// implements it: the runtime decides what happens to the call and in which
// order, the leg knows how to do it in SIP and RTP.
type Leg interface {
	// Play queues audio for the caller and waits until it has been sent.
	Play(ctx context.Context, pcm []int16) error
	// Enqueue queues audio for the caller without waiting; what does not
	// fit the bounded queue is dropped and switchback.ErrPlayoutFull
	// returned.
	Enqueue(pcm []int16) error
	// Mark queues a named point in the audio, delivered on Marks once
	// the audio before it has been sent.
	Mark(name string) error
	// Marks delivers the marks reached, in order.
	Marks() <-chan string
	// Clear drops the queued audio; pending marks are delivered.
	Clear()
	// Drain waits until the queued audio has been sent, or ctx ends.
	Drain(ctx context.Context) error

	// Ended is closed once the leg is gone under the call: the caller
	// hung up, or its RTP or session timer lapsed.
	Ended() <-chan struct{}
	// EndedBy says why the leg ended: "caller", "rtp-timeout" or
	// "session-timer"; "" while it has not.
	EndedBy() string
	// Bye hangs up the leg from Switchback's side; nothing if the caller
	// already hung up, or Switchback did.
	Bye(ctx context.Context) error
	// Refer hands the caller to t's returnURI by a blind transfer and
	// follows it to its final NOTIFY, within the configured REFER timeout
	// or until ctx ends. The result says how it went; Fallback is set
	// when the transfer failed and the call must end by BYE.
	Refer(ctx context.Context, t *switchback.Transfer) switchback.ReturnResult
	// Invite places the return call to t's returnURI and, once it
	// answers, bridges it with this leg; listen asks for both legs' audio
	// while bridged. It gives up after the configured return timeout or
	// when ctx ends; then the Bridge is nil and the result says why.
	Invite(ctx context.Context, t *switchback.Transfer, listen bool) (Bridge, switchback.ReturnResult)
	// Close releases the leg once the call is over.
	Close()
}

// Bridge is the caller bridged to the return leg of an INVITE hand-back.
type Bridge interface {
	// Ended is closed once either leg is gone; the other has then been
	// hung up.
	Ended() <-chan struct{}
	// EndedBy says who ended it: "caller", "return", "rtp-timeout" or
	// "session-timer".
	EndedBy() string
	// Hangup ends both legs from Switchback's side.
	Hangup(ctx context.Context)
	// Close releases the bridge once it has ended.
	Close()
}

// Reporter is what a call's legs report to it as the call goes on: its
// audio, its digits and its events. A Call is one.
type Reporter interface {
	// Frames is where legs deliver audio, without blocking: a frame that
	// does not fit is dropped.
	Frames() chan<- switchback.AudioFrame
	// Digit takes a digit a leg received.
	Digit(d switchback.Digit)
	// Record adds an event to the call's conversation.
	Record(t switchback.EventType, data map[string]string)
}
