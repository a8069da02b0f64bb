package softphone

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/switchback/switchback/internal/media"
)

const (
	// PromptWait is how long past Plan.DTMFDelay a Run waits for the far
	// end's prompt to be over before pressing the digits anyway.
	PromptWait = 10 * time.Second
	// byeTimeout bounds the BYE a Run sends at the end of a call.
	byeTimeout = 5 * time.Second
)

// Plan is one call of Run: where it goes, and what the phone does once
// it is answered.
type Plan struct {
	// Target is a SIP URI or a phone number (see ParseTarget).
	Target string
	DialOptions
	// Play, if set, is played once the call is answered (8 kHz mono
	// linear PCM; LoadWAV reads a file); PlayName names it in the events.
	Play     []int16
	PlayName string
	// DTMF are pressed DTMFDelay after the answer, or once the far end's
	// prompt is over if it is still playing then (for at most
	// PromptWait more); by SIP INFO if InfoDTMF, else by RFC 4733.
	DTMF      string
	DTMFDelay time.Duration
	InfoDTMF  bool
	// HangupAfter, if set, hangs up that long after the answer; else the
	// phone waits for the far end's BYE.
	HangupAfter time.Duration
	// Timeout, if set, bounds the whole call, ringing included; else ctx
	// alone does.
	Timeout time.Duration
}

// Report is how a call of Run went.
type Report struct {
	// Answered is set once the call was answered; Answer is the final
	// response and codec, as "200 OK (PCMU)".
	Answered bool
	Answer   string
	// Status is the final status of the INVITE (200, or the refusal's),
	// and Reason its reason phrase; 0 and "" if none came.
	Status int
	Reason string
	// HandedBack is set when the far end hung up with a BYE.
	HandedBack bool
	// ReferTo is the Refer-To of the last REFER the far end sent, and
	// ReferAccepted whether the phone took it (DialOptions.DeclineRefer).
	ReferTo       string
	ReferAccepted bool
	// End says how the call ended, for people.
	End string
	// Err is why the call did not go as planned; nil when it was answered
	// and ended by the far end's BYE or by HangupAfter.
	Err      error
	Duration time.Duration // from the answer to the end
	Stats    media.Stats
	// Frames counts the 20 ms frames the far end sent, Heard is their
	// length, HeardBeforeDigits the part heard before the first digit was
	// pressed, and Level the loudness of all of it (see Call.Level).
	Frames                   int64
	Heard, HeardBeforeDigits time.Duration
	Level                    float64
	// DigitsSent is set once the phone began pressing Plan.DTMF;
	// DigitsHeard are the digits the far end sent.
	DigitsSent  bool
	DigitsHeard string
	// Recording is what the far end sent, with DialOptions.Record.
	Recording []int16
}

// Run places one call as plan says and reports how it went: it dials,
// plays plan.Play and presses plan.DTMF once answered, and waits for the
// far end to hang up (or HangupAfter, plan.Timeout, ctx), then hangs up
// itself if the far end did not. Nothing it started runs after it returns.
func (p *Phone) Run(ctx context.Context, plan Plan) *Report {
	if plan.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeoutCause(ctx, plan.Timeout, fmt.Errorf("the time limit of %s passed", plan.Timeout))
		defer cancel()
	}
	events := p.newEventLog()
	r := &Report{}
	target, dest, err := ParseTarget(plan.Target, plan.Proxy)
	if err != nil {
		r.End, r.Err = err.Error(), err
		return r
	}
	via := ""
	if dest != uriHostPort(target) {
		via = " via " + dest
	}
	events.printf("calling %s%s over %s", target.String(), via, p.transport)
	c, err := p.dial(ctx, target, dest, plan.DialOptions, events)
	if err != nil {
		var refused *RefusedError
		if errors.As(err, &refused) {
			r.End = "refused with " + statusLine(refused.Response)
			r.Status, r.Reason = refused.Response.StatusCode, refused.Response.Reason
		} else {
			r.End = err.Error()
		}
		r.Err = err
		return r
	}
	defer c.Close()
	res := c.dialog.InviteResponse
	r.Answered, r.Answer, r.Status, r.Reason = true, c.Answer(), res.StatusCode, res.Reason

	callCtx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	var digitsErr error
	if plan.Play != nil {
		wg.Go(func() {
			events.printf("playing %s (%.1f s)", plan.PlayName, float64(len(plan.Play))/media.SampleRate)
			if c.Play(callCtx, plan.Play) == nil {
				events.printf("played %s", plan.PlayName)
			}
		})
	}
	if plan.DTMF != "" {
		wg.Go(func() {
			if sleepCtx(callCtx, plan.DTMFDelay) != nil || c.WaitForPause(callCtx, PromptWait) != nil {
				return
			}
			r.HeardBeforeDigits, r.DigitsSent = c.Heard(), true
			if err := c.SendDigits(callCtx, plan.DTMF, plan.InfoDTMF); err != nil && callCtx.Err() == nil {
				events.printf("DTMF failed: %v", err)
				digitsErr = err
			}
		})
	}
	var hangup <-chan time.Time
	if plan.HangupAfter > 0 {
		t := time.NewTimer(plan.HangupAfter)
		defer t.Stop()
		hangup = t.C
	}

	select {
	case <-c.Ended():
		r.HandedBack = true
		r.End = "BYE from the far end (the call was handed back)"
		if to, accepted := c.Refer(); accepted {
			r.End = "REFER to " + to + ", then BYE from the far end (the call was handed back)"
		}
	case <-hangup:
		r.End = fmt.Sprintf("we hung up after %s (--hangup-after)", plan.HangupAfter)
	case <-ctx.Done():
		r.Err = fmt.Errorf("no BYE from the far end: %w", context.Cause(ctx))
		if errors.Is(ctx.Err(), context.Canceled) {
			r.Err = errors.New("interrupted")
		}
		r.End = fmt.Sprintf("we hung up: %v", r.Err)
	}
	stop()
	wg.Wait()
	if !r.HandedBack {
		bye, done := context.WithTimeout(context.WithoutCancel(ctx), byeTimeout)
		if err := c.Hangup(bye); err != nil {
			events.printf("%v", err)
		} else {
			events.printf("sent BYE")
		}
		done()
	}
	c.Close()
	if r.Err == nil {
		r.Err = digitsErr
	}
	r.ReferTo, r.ReferAccepted = c.Refer()
	r.Duration = time.Since(c.answered)
	r.Stats = c.Stats()
	r.Frames, r.Heard, r.Level = c.Frames(), c.Heard(), c.Level()
	r.DigitsHeard = c.DigitsHeard()
	if plan.Record {
		r.Recording = c.Recording()
	}
	return r
}

// LoadWAV reads a WAV file as 8 kHz mono linear PCM, for Plan.Play (see
// media.LoadWAV for the formats it takes).
func LoadWAV(name string) ([]int16, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return media.LoadWAV(f)
}

// SaveWAV writes pcm, 8 kHz mono linear PCM such as Report.Recording, to
// a WAV file (16-bit).
func SaveWAV(name string, pcm []int16) error {
	f, err := os.Create(name)
	if err != nil {
		return err
	}
	if err := media.WriteWAV(f, pcm, media.SampleRate); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
