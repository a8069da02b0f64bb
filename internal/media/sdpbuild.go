package media

import (
	"errors"
	"math/rand/v2"
	"net/netip"
	"strconv"
	"strings"

	"github.com/pion/sdp/v3"
)

// DTMFPayloadType is the payload type Switchback offers telephone-events
// on (a dynamic one, RFC 3551 §6; 101 is what most endpoints use).
const DTMFPayloadType = 101

// dtmfFmtp lists the events Switchback takes: the sixteen DTMF digits and
// flash (RFC 4733 §2.4.1, §3.2).
const dtmfFmtp = "0-16"

// Origin is Switchback's o= line across the descriptions it sends on one
// call leg (RFC 4566 §5.2): the session id stays, and the version goes up
// by one each time the description changes, and only then (RFC 3264 §8).
// BuildSDP keeps it; it is not safe for concurrent use, as a leg's offers
// and answers follow one another anyway.
type Origin struct {
	// Username is the o= user; "-" when empty.
	Username  string
	SessionID uint64
	Version   uint64
	last      string // the last description built, with version 0
}

// NewOrigin returns an Origin with a random session id (below 2^63, as
// some parsers read it signed; RFC 4566 §5.2 asks only that it be unique).
func NewOrigin() *Origin {
	return &Origin{Username: "switchback", SessionID: rand.Uint64() >> 1, Version: 1}
}

// Description is what BuildSDP writes: one audio stream, or, answering an
// offer, that stream among the offer's others, which it rejects.
type Description struct {
	// Addr is where Switchback receives RTP: c= line and m= port. Its
	// address is the o= line's too.
	Addr netip.AddrPort
	// Formats are the payload formats, in order of preference: codecs,
	// then telephone-event. Each gets an rtpmap, and an fmtp if it has
	// parameters.
	Formats []Format
	// Direction is Switchback's direction.
	Direction Direction
	// Ptime is the packet time Switchback asks for, in milliseconds; 0
	// means 20.
	Ptime int
	// Offer, when set, makes the description an answer to it (RFC 3264
	// §6): as many m= lines as it has, in its order, its audio stream
	// answered with the fields above on the same transport, every other
	// one rejected with port 0.
	Offer *Offer
}

// OfferDescription describes an offer of codecs and telephone-events at
// addr, sendrecv: for an INVITE without SDP (a late offer, answered in
// the ACK) and for the test softphone.
func OfferDescription(addr netip.AddrPort, codecs []Codec) Description {
	d := Description{Addr: addr}
	for _, c := range codecs {
		d.Formats = append(d.Formats, Format{PayloadType: c.PayloadType(), Name: c.String(), ClockRate: SampleRate})
	}
	d.Formats = append(d.Formats, Format{PayloadType: DTMFPayloadType, Name: "telephone-event", ClockRate: SampleRate, Fmtp: dtmfFmtp})
	return d
}

// AnswerDescription describes the answer to offer that p settled, at
// addr.
func (p Params) AnswerDescription(addr netip.AddrPort, offer *Offer) Description {
	d := Description{
		Addr:      addr,
		Formats:   []Format{{PayloadType: p.PayloadType, Name: p.Codec.String(), ClockRate: SampleRate}},
		Direction: p.Direction,
		Offer:     offer,
	}
	if p.DTMF {
		d.Formats = append(d.Formats, Format{PayloadType: p.DTMFPayloadType, Name: "telephone-event", ClockRate: SampleRate, Fmtp: dtmfFmtp})
	}
	return d
}

// BuildSDP writes d as a session description (RFC 4566), with o's session
// id and version, bumping the version if the description differs from
// the last one built with o.
func BuildSDP(o *Origin, d Description) ([]byte, error) {
	if o == nil {
		return nil, errors.New("sdp: no origin")
	}
	if !d.Addr.IsValid() {
		return nil, errors.New("sdp: no address")
	}
	if len(d.Formats) == 0 {
		return nil, errors.New("sdp: no formats")
	}
	ip := d.Addr.Addr().Unmap()
	addrType := "IP4"
	if ip.Is6() {
		addrType = "IP6"
	}
	user := o.Username
	if user == "" {
		user = "-"
	}
	desc := sdp.SessionDescription{
		Origin: sdp.Origin{
			Username:       user,
			SessionID:      o.SessionID,
			NetworkType:    "IN",
			AddressType:    addrType,
			UnicastAddress: ip.String(),
		},
		SessionName: "switchback",
		ConnectionInformation: &sdp.ConnectionInformation{
			NetworkType: "IN",
			AddressType: addrType,
			Address:     &sdp.Address{Address: ip.String()},
		},
		TimeDescriptions: []sdp.TimeDescription{{}},
	}

	audio := &sdp.MediaDescription{
		MediaName: sdp.MediaName{
			Media:  "audio",
			Port:   sdp.RangedPort{Value: int(d.Addr.Port())},
			Protos: []string{"RTP", "AVP"},
		},
	}
	for _, f := range d.Formats {
		pt := strconv.Itoa(int(f.PayloadType))
		audio.MediaName.Formats = append(audio.MediaName.Formats, pt)
		rtpmap := pt + " " + f.Name + "/" + strconv.Itoa(f.ClockRate)
		if f.Channels > 1 {
			rtpmap += "/" + strconv.Itoa(f.Channels)
		}
		audio.Attributes = append(audio.Attributes, sdp.NewAttribute("rtpmap", rtpmap))
		if f.Fmtp != "" {
			audio.Attributes = append(audio.Attributes, sdp.NewAttribute("fmtp", pt+" "+f.Fmtp))
		}
	}
	ptime := d.Ptime
	if ptime == 0 {
		ptime = frameMillis
	}
	audio.Attributes = append(audio.Attributes,
		sdp.NewAttribute("ptime", strconv.Itoa(ptime)),
		sdp.NewPropertyAttribute(d.Direction.String()))

	if d.Offer == nil || d.Offer.Audio < 0 || d.Offer.Audio >= len(d.Offer.Media) {
		desc.MediaDescriptions = []*sdp.MediaDescription{audio}
	} else {
		for i, m := range d.Offer.Media {
			if i == d.Offer.Audio {
				audio.MediaName.Protos = strings.Split(m.Proto, "/")
				desc.MediaDescriptions = append(desc.MediaDescriptions, audio)
				continue
			}
			formats := m.Formats
			if len(formats) == 0 {
				formats = []string{"0"}
			}
			desc.MediaDescriptions = append(desc.MediaDescriptions, &sdp.MediaDescription{
				MediaName: sdp.MediaName{Media: m.Media, Protos: strings.Split(m.Proto, "/"), Formats: formats},
			})
		}
	}

	unversioned, err := desc.Marshal()
	if err != nil {
		return nil, err
	}
	if o.last != "" && o.last != string(unversioned) {
		o.Version++
	}
	o.last = string(unversioned)
	desc.Origin.SessionVersion = o.Version
	return desc.Marshal()
}
