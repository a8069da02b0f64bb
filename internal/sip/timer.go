package sip

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/emiago/sipgo/sip"
)

// timerState is a leg's RFC 4028 session timer: one side refreshes the
// session every interval, or the other considers it gone.
type timerState struct {
	interval time.Duration // 0: no session timer
	// weRefresh is set when Switchback is the refresher: it sends an
	// UPDATE every half interval; otherwise the peer must refresh.
	weRefresh bool
}

// header is the Session-Expires value Switchback sends in a request of
// its own (request) or in its answer to the peer's. The refresher is
// named by its role in that transaction, not in the dialog (RFC 4028 §4,
// §7.4, §9): uac is the side that sent the request, uas the side that
// answers it.
func (t timerState) header(request bool) string {
	refresher := "uac"
	if t.weRefresh != request {
		refresher = "uas"
	}
	return strconv.Itoa(int(t.interval/time.Second)) + ";refresher=" + refresher
}

// minSE is the smallest session interval accepted (RFC 4028 §4).
const minSE = 90 * time.Second

// sessionExpires reads a Session-Expires header (or its compact form x):
// the interval and the refresher named, "" when none is.
func sessionExpires(m interface{ GetHeader(string) sip.Header }) (time.Duration, string) {
	h := m.GetHeader("Session-Expires")
	if h == nil {
		h = m.GetHeader("x")
	}
	if h == nil {
		return 0, ""
	}
	v, params, _ := strings.Cut(h.Value(), ";")
	secs, err := strconv.Atoi(strings.TrimSpace(v))
	if err != nil || secs <= 0 {
		return 0, ""
	}
	refresher := ""
	for _, p := range strings.Split(params, ";") {
		k, val, _ := strings.Cut(strings.TrimSpace(p), "=")
		if strings.EqualFold(k, "refresher") {
			refresher = strings.ToLower(strings.TrimSpace(val))
		}
	}
	return time.Duration(secs) * time.Second, refresher
}

// sessionTimer is the timer an INVITE asks Switchback, its UAS, to run:
// Switchback refreshes only when asked to (refresher=uas), as RFC 4028
// §9 lets the UAS choose when the UAC did not.
func sessionTimer(req *sip.Request) timerState {
	interval, refresher := sessionExpires(req)
	return timerState{interval: interval, weRefresh: refresher == "uas"}
}

// answeredTimer is the timer a 2xx to Switchback's INVITE settles (RFC
// 4028 §7.2): none without Session-Expires; Switchback refreshes when it
// names the UAC, or names no one.
func answeredTimer(res *sip.Response) timerState {
	interval, refresher := sessionExpires(res)
	return timerState{interval: interval, weRefresh: refresher != "uas"}
}

// refreshDeadline is when a session the peer refreshes is considered gone:
// the interval less min(32 s, a third of it) (RFC 4028 §10).
func refreshDeadline(interval time.Duration) time.Duration {
	return interval - min(32*time.Second, interval/3)
}

// runTimer runs the leg's session timer until the leg closes: it
// refreshes the session when Switchback is the refresher, and otherwise
// ends the leg when the peer's refreshes stop.
func (l *leg) runTimer() {
	defer l.wg.Done()
	for {
		l.mu.Lock()
		st := l.timer
		l.mu.Unlock()
		var wait time.Duration
		switch {
		case st.interval == 0:
			select {
			case <-l.stop:
				return
			case <-l.refreshed:
				continue
			}
		case st.weRefresh:
			wait = st.interval / 2
		default:
			wait = refreshDeadline(st.interval)
		}
		t := time.NewTimer(wait)
		select {
		case <-l.stop:
			t.Stop()
			return
		case <-l.refreshed:
			t.Stop()
			continue
		case <-t.C:
		}
		if !st.weRefresh {
			l.log.Info("session timer expired without a refresh; the leg is gone", "leg", string(l.name))
			l.end("session-timer")
			return
		}
		if err := l.refresh(); err != nil {
			l.log.Info("session refresh failed; the leg is gone", "leg", string(l.name), "err", err)
			l.end("session-timer")
			return
		}
	}
}

// refresh refreshes the session with an UPDATE without SDP (RFC 4028 §7.4
// and RFC 3311), as the refresher.
func (l *leg) refresh() error {
	l.mu.Lock()
	target, st := l.target, l.timer
	l.mu.Unlock()
	if target.Host == "" {
		return errors.New("the peer gave no Contact")
	}
	req := sip.NewRequest(sip.UPDATE, target)
	req.AppendHeader(sip.NewHeader("Session-Expires", st.header(true)))
	req.AppendHeader(sip.NewHeader("Supported", "timer"))
	l.e.bindLocal(req, l.transport)
	ctx, cancel := context.WithTimeout(l.base, 32*time.Second)
	defer cancel()
	res, err := l.d.Do(ctx, req)
	if err != nil {
		return err
	}
	if !res.IsSuccess() {
		return fmt.Errorf("UPDATE answered %d", res.StatusCode)
	}
	return nil
}
