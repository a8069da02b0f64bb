package media

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
)

// Params are the media parameters of a call leg that an offer and answer
// settled (RFC 3264): what a Session sends and receives, and what the
// answer describes.
type Params struct {
	// Codec is the audio codec both sides use, and PayloadType the
	// payload type the offer gave it (its static one, almost always).
	Codec       Codec
	PayloadType uint8
	// DTMF says both sides take RFC 4733 telephone-events, with payload
	// type DTMFPayloadType.
	DTMF            bool
	DTMFPayloadType uint8
	// Remote is where the peer said it receives RTP. A Session sends
	// there until the peer's own packets show where it really is.
	Remote netip.AddrPort
	// Direction is Switchback's direction: the reverse of the peer's
	// (RFC 3264 §6.1). When it does not send, the peer has put the call
	// on hold.
	Direction Direction
	// Ptime is the packet time the peer asked for, in milliseconds, or
	// 0. Switchback sends 20 ms packets whatever it is: every endpoint
	// takes them (RFC 3551 §4.2 makes 20 ms the default), and it takes
	// any packet time the peer sends.
	Ptime int
}

// Negotiate picks the media parameters of an answer to offer (RFC 3264
// §6.1): the first codec in the offer's order that is among supported,
// telephone-events if offered, and the reverse of the offer's direction.
// It applies as well to the answer to an offer Switchback made: the
// answer's first codec is the one to use (RFC 3264 §7). When nothing is in
// common the error is a *NotAcceptableError (488).
func Negotiate(offer *Offer, supported []Codec) (Params, error) {
	p := Params{
		Remote:    offer.Addr,
		Direction: offer.Direction.Reverse(),
		Ptime:     offer.Ptime,
	}
	for _, f := range offer.Formats {
		if c := f.codec(); c != 0 && slices.Contains(supported, c) {
			p.Codec, p.PayloadType = c, f.PayloadType
			break
		}
	}
	if p.Codec == 0 {
		var offered, ours []string
		for _, f := range offer.Formats {
			if f.Name == "" {
				offered = append(offered, fmt.Sprint(f.PayloadType))
			} else {
				offered = append(offered, fmt.Sprintf("%s/%d", f.Name, f.ClockRate))
			}
		}
		for _, c := range supported {
			ours = append(ours, c.String())
		}
		return p, &NotAcceptableError{Reason: fmt.Sprintf("no codec in common: offered %s, supported %s",
			strings.Join(offered, " "), strings.Join(ours, " "))}
	}
	if te := offer.TelephoneEvent; te != nil {
		p.DTMF, p.DTMFPayloadType = true, te.PayloadType
	}
	return p, nil
}
