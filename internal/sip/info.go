package sip

import (
	"context"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/switchback/switchback"
	"github.com/switchback/switchback/internal/media"
)

// onInfo takes DTMF sent by SIP INFO. Bridged, the digit goes on to the
// other leg by INFO too.
func (l *leg) onInfo(req *sip.Request, tx sip.ServerTransaction) {
	ct := ""
	if h := req.ContentType(); h != nil {
		ct = h.Value()
	}
	d, ok := media.ParseInfoDTMF(ct, req.Body())
	if !ok {
		respond(tx, req, 415, "Unsupported Media Type", sip.NewHeader("Accept", "application/dtmf-relay, application/dtmf"))
		return
	}
	respond(tx, req, 200, "OK")
	if peer := l.bridgedTo(); peer != nil {
		l.rep.Digit(switchback.Digit{Leg: l.name, Digit: d, At: time.Now()})
		peer.sendInfo(d)
		return
	}
	// Deduplicated with the same press as an RFC 4733 event, then
	// delivered with the leg's other digits.
	l.media.InfoDigit(d)
}

// bridgedTo is the leg this one is bridged to, or nil.
func (l *leg) bridgedTo() *leg {
	l.peerMu.Lock()
	defer l.peerMu.Unlock()
	return l.peer
}

func (l *leg) setPeer(p *leg) {
	l.peerMu.Lock()
	l.peer = p
	l.peerMu.Unlock()
}

// sendInfo queues a digit to send to the leg's peer by INFO.
func (l *leg) sendInfo(d rune) {
	select {
	case l.infos <- d:
	default:
		l.log.Warn("too many digits waiting to go by INFO; dropped", "leg", string(l.name))
	}
}

// sendInfos sends the queued digits by INFO (application/dtmf-relay), one
// at a time so they keep their order and their CSeqs, until the leg
// closes.
func (l *leg) sendInfos() {
	defer l.wg.Done()
	for {
		select {
		case <-l.stop:
			return
		case d := <-l.infos:
			l.mu.Lock()
			target := l.target
			l.mu.Unlock()
			req := sip.NewRequest(sip.INFO, target)
			req.SetBody([]byte("Signal=" + string(d) + "\r\nDuration=160\r\n"))
			req.AppendHeader(sip.NewHeader("Content-Type", "application/dtmf-relay"))
			l.e.bindLocal(req, l.transport)
			ctx, cancel := context.WithTimeout(l.base, 10*time.Second)
			if _, err := l.d.Do(ctx, req); err != nil {
				l.log.Info("pass a digit on by INFO", "leg", string(l.name), "err", err)
			}
			cancel()
		}
	}
}
