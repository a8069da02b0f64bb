package media

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// normalMedia is one media section of a normalised description: its m=
// line, and its index among the sections handed to pion/sdp, -1 if it was
// left out.
type normalMedia struct {
	line MediaLine
	pion int
}

// RFC 4566 §5 line orders. An "r=" line belongs to the "t=" before it and
// sorts with it.
const (
	sessionOrder = "vosiuepcbtzka"
	mediaOrder   = "icbka"
	// singleLines are the types a description or a media section holds
	// at most once (pion/sdp rejects repeats).
	singleLines = "vosiuepczk"
)

// pionMedia and pionProtos are the m= line media and transport tokens
// pion/sdp accepts (IANA's registries, less what SIP never carries).
var (
	pionMedia  = []string{"audio", "video", "text", "application", "message"}
	pionProtos = []string{"UDP", "RTP", "AVP", "SAVP", "SAVPF", "TLS", "DTLS", "SCTP", "AVPF", "TCP", "MSRP", "BFCP", "UDT", "IX", "MRCPv2", "FEC"}
)

// sdpLine is one "<type>=<value>" line.
type sdpLine struct {
	typ  byte
	text string
}

// normalizeSDP rewrites a session description into the strict form
// pion/sdp parses, putting right what SIP gear in the field gets wrong:
//
//   - lines end in CRLF, LF or a mix, with trailing blanks and blank
//     lines between them: all become CRLF;
//   - session lines out of the RFC 4566 §5 order (v o s i u e p c b t r z
//     k a; a "c=" after "t=" is the usual one), and media lines out of
//     theirs (m i c b k a): both are sorted, stably, into order;
//   - a line that may appear once appearing again: the first is kept;
//   - no "s=" or no "t=" line: "s=-" and "t=0 0" are supplied;
//   - line types RFC 4566 does not define, and "b=" lines pion rejects:
//     dropped (RFC 4566 §5 has parsers ignore unknown attributes; types
//     are the same kind of extension in practice);
//   - media sections pion cannot parse (a T.38 "m=image ... udptl t38",
//     say): left out, but reported, so an answer still mirrors them.
func normalizeSDP(b []byte) (string, []normalMedia, error) {
	var (
		session  []sdpLine
		sections [][]sdpLine
	)
	for raw := range strings.SplitSeq(string(b), "\n") {
		l := strings.TrimRight(raw, "\r \t")
		if l == "" {
			continue
		}
		if len(l) < 2 || l[1] != '=' || l[0] < 'a' || l[0] > 'z' {
			return "", nil, fmt.Errorf("sdp: line %q is not <type>=<value>", shorten(l))
		}
		line := sdpLine{typ: l[0], text: l}
		switch {
		case line.typ == 'm':
			sections = append(sections, []sdpLine{line})
		case len(sections) > 0:
			sections[len(sections)-1] = append(sections[len(sections)-1], line)
		default:
			session = append(session, line)
		}
	}
	if len(session) == 0 && len(sections) == 0 {
		return "", nil, errNoSDP
	}

	for _, want := range []byte{'v', 'o'} {
		if !slices.ContainsFunc(session, func(l sdpLine) bool { return l.typ == want }) {
			return "", nil, fmt.Errorf("sdp: no %c= line", want)
		}
	}
	for _, l := range []sdpLine{{'s', "s=-"}, {'t', "t=0 0"}} {
		if !slices.ContainsFunc(session, func(m sdpLine) bool { return m.typ == l.typ }) {
			session = append(session, l) // sorted into place below
		}
	}
	var out strings.Builder
	out.Grow(len(b) + 32)
	for _, l := range sortLines(session, sessionOrder, true) {
		writeLine(&out, l.text)
	}

	var media []normalMedia
	pion := 0
	for _, sec := range sections {
		line, err := parseMLine(sec[0].text)
		if err != nil {
			return "", nil, err
		}
		nm := normalMedia{line: line, pion: -1}
		if pionAccepts(line) {
			nm.pion = pion
			pion++
			writeLine(&out, sec[0].text)
			for _, l := range sortLines(sec[1:], mediaOrder, false) {
				writeLine(&out, l.text)
			}
		}
		media = append(media, nm)
	}
	return out.String(), media, nil
}

// sortLines keeps the lines of the types order lists, once each for the
// single ones, and sorts them stably into that order.
func sortLines(lines []sdpLine, order string, session bool) []sdpLine {
	key := func(typ byte) int {
		if session && typ == 'r' {
			typ = 't'
		}
		return strings.IndexByte(order, typ)
	}
	seen := map[byte]bool{}
	sawT := false
	kept := lines[:0:0]
	for _, l := range lines {
		if key(l.typ) < 0 {
			continue
		}
		if strings.IndexByte(singleLines, l.typ) >= 0 {
			if seen[l.typ] {
				continue
			}
			seen[l.typ] = true
		}
		if session && l.typ == 'r' && !sawT {
			continue // a repeat time of no time description
		}
		sawT = sawT || l.typ == 't'
		if l.typ == 'b' && !validBandwidth(l.text[2:]) {
			continue
		}
		kept = append(kept, l)
	}
	slices.SortStableFunc(kept, func(a, b sdpLine) int { return key(a.typ) - key(b.typ) })
	return kept
}

// validBandwidth reports whether pion/sdp takes a "b=" value: a known
// or experimental ("X-") modifier and a number (RFC 4566 §5.8).
func validBandwidth(v string) bool {
	typ, n, ok := strings.Cut(v, ":")
	if !ok {
		return false
	}
	if _, err := strconv.ParseUint(n, 10, 64); err != nil {
		return false
	}
	return strings.HasPrefix(typ, "X-") || slices.Contains([]string{"CT", "AS", "TIAS", "RS", "RR"}, typ)
}

// parseMLine reads "m=<media> <port>[/<number of ports>] <proto> <fmt> ..."
// (RFC 4566 §5.14).
func parseMLine(text string) (MediaLine, error) {
	f := strings.Fields(text[2:])
	if len(f) < 3 {
		return MediaLine{}, fmt.Errorf("sdp: m= line %q has fewer than 3 fields", shorten(text))
	}
	portText, _, _ := strings.Cut(f[1], "/")
	port, err := strconv.ParseUint(portText, 10, 16)
	if err != nil {
		return MediaLine{}, fmt.Errorf("sdp: m= line %q: bad port", shorten(text))
	}
	return MediaLine{Media: f[0], Port: int(port), Proto: f[2], Formats: f[3:]}, nil
}

func pionAccepts(m MediaLine) bool {
	if !slices.Contains(pionMedia, m.Media) {
		return false
	}
	for p := range strings.SplitSeq(m.Proto, "/") {
		if !slices.Contains(pionProtos, p) {
			return false
		}
	}
	return true
}

func writeLine(b *strings.Builder, text string) {
	b.WriteString(text)
	b.WriteString("\r\n")
}

// shorten cuts a line quoted in an error to a readable length.
func shorten(s string) string {
	if len(s) > 40 {
		return s[:40] + "..."
	}
	return s
}
