package call

import (
	"context"
	"time"

	"github.com/switchback/switchback"
)

// Retry is how a call's store writes are retried when the store fails.
//
// A call's outcome must be stored before the call is handed back
// (DESIGN.md invariant 3), but a caller must not be held on a silent line
// while the store is down. So a write is tried Attempts times, waiting
// Backoff, then twice that, and so on up to MaxBackoff, between tries; if
// it still fails the call is handed back all the same, and its last write
// goes on being retried in the background for up to Background (or until
// the node stops), so that the outcome lands as soon as the store is
// back. A write the store refuses for good (the transfer is gone, or is
// no longer this call's) is not retried.
type Retry struct {
	Attempts   int
	Backoff    time.Duration
	MaxBackoff time.Duration
	Background time.Duration
	// Timeout bounds each try.
	Timeout time.Duration
}

// DefaultRetry tries a write for about 6 s before the hand-back, then for
// up to 5 minutes in the background.
var DefaultRetry = Retry{Attempts: 5, Backoff: 200 * time.Millisecond, MaxBackoff: 2 * time.Second,
	Background: 5 * time.Minute, Timeout: 5 * time.Second}

// permanent reports whether a store error will not go away by trying
// again.
func permanent(err error) bool {
	switch switchback.ErrorCode(err) {
	case switchback.EGONE, switchback.ENOTFOUND, switchback.EINVALID, switchback.ECONFLICT, switchback.EFENCED:
		return true
	}
	return false
}

// try makes one write with the retry's per-try timeout.
func (c *Call) try(e *switchback.CallEnd) error {
	ctx, cancel := context.WithTimeout(context.Background(), c.r.retry.Timeout)
	defer cancel()
	_, err := c.r.transfers.EndCall(ctx, e)
	return err
}

// write stores what the call leaves, retrying as Retry says; nil once it
// landed.
func (c *Call) write(e *switchback.CallEnd) error {
	e.TenantID, e.ID = c.t.TenantID, c.t.ID
	wait := c.r.retry.Backoff
	for attempt := 1; ; attempt++ {
		err := c.try(e)
		if err == nil {
			return nil
		}
		if permanent(err) {
			c.log.Error("store the end of the call: refused", "err", err)
			return err
		}
		if attempt >= c.r.retry.Attempts {
			c.log.Error("store the end of the call: the store keeps failing; the call is handed back without it for now", "err", err, "attempts", attempt)
			return err
		}
		c.log.Warn("store the end of the call; retrying", "err", err, "attempt", attempt)
		if !c.sleep(wait) {
			return err
		}
		wait = min(2*wait, c.r.retry.MaxBackoff)
	}
}

// writeLast stores the call's last write; if the store keeps failing it
// is retried in the background, after the hand-back.
func (c *Call) writeLast(e *switchback.CallEnd) {
	err := c.write(e)
	if err == nil || permanent(err) {
		return
	}
	if !c.r.addBackground() {
		return
	}
	go func() {
		defer c.r.wg.Done()
		deadline := c.r.clock.Now().Add(c.r.retry.Background)
		wait := c.r.retry.MaxBackoff
		for c.r.clock.Now().Before(deadline) {
			if !c.sleep(wait) {
				c.log.Error("the node stopped before the end of the call could be stored")
				return
			}
			err := c.try(e)
			if err == nil {
				c.log.Info("the end of the call is stored at last")
				return
			}
			if permanent(err) {
				c.log.Error("store the end of the call: refused", "err", err)
				return
			}
		}
		c.log.Error("gave up storing the end of the call", "after", c.r.retry.Background.String())
	}()
}

// sleep waits d on the runtime's clock; false if the runtime stopped.
func (c *Call) sleep(d time.Duration) bool {
	ch, stop := c.r.clock.After(d)
	defer stop()
	select {
	case <-ch:
		return true
	case <-c.r.quit:
		return false
	}
}

// addBackground registers a background write; false once stopped.
func (r *Runtime) addBackground() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.stopped {
		return false
	}
	r.wg.Add(1)
	return true
}

// record writes events (and state) for a call whose transfer is already
// complete: a bridged call's last events.
func (c *Call) flushJournal() {
	rec := c.journal.take()
	if rec == nil {
		return
	}
	wait := c.r.retry.Backoff
	for attempt := 1; ; attempt++ {
		ctx, cancel := context.WithTimeout(context.Background(), c.r.retry.Timeout)
		err := c.r.transfers.RecordConversation(ctx, rec)
		cancel()
		if err == nil {
			return
		}
		if permanent(err) || attempt >= c.r.retry.Attempts {
			c.log.Warn("record the conversation", "err", err)
			return
		}
		if !c.sleep(wait) {
			return
		}
		wait = min(2*wait, c.r.retry.MaxBackoff)
	}
}
