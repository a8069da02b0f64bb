package main

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"regexp"
	"sort"
	"strconv"
	"time"
)

// rtpengine's ng control protocol: a UDP datagram holding a cookie, a
// space and a bencoded dictionary; the answer repeats the cookie. Only
// what offer, answer and delete need of bencode (BitTorrent's BEP 3
// encoding) is here: byte strings, integers, lists and dictionaries.

// bencode encodes v: string, []byte, int, []any, []string or map[string]any.
func bencode(buf *bytes.Buffer, v any) error {
	switch v := v.(type) {
	case string:
		fmt.Fprintf(buf, "%d:%s", len(v), v)
	case []byte:
		fmt.Fprintf(buf, "%d:", len(v))
		buf.Write(v)
	case int:
		fmt.Fprintf(buf, "i%de", v)
	case []string:
		buf.WriteByte('l')
		for _, s := range v {
			bencode(buf, s)
		}
		buf.WriteByte('e')
	case []any:
		buf.WriteByte('l')
		for _, x := range v {
			if err := bencode(buf, x); err != nil {
				return err
			}
		}
		buf.WriteByte('e')
	case map[string]any:
		keys := make([]string, 0, len(v))
		for k := range v {
			keys = append(keys, k)
		}
		sort.Strings(keys) // BEP 3: keys in sorted order
		buf.WriteByte('d')
		for _, k := range keys {
			bencode(buf, k)
			if err := bencode(buf, v[k]); err != nil {
				return err
			}
		}
		buf.WriteByte('e')
	default:
		return fmt.Errorf("bencode: cannot encode %T", v)
	}
	return nil
}

var errBencode = errors.New("bencode: malformed")

// bdecode decodes one value from b: string, int, []any or map[string]any,
// and returns what follows it.
func bdecode(b []byte) (any, []byte, error) {
	if len(b) == 0 {
		return nil, nil, errBencode
	}
	switch c := b[0]; {
	case c == 'i':
		end := bytes.IndexByte(b, 'e')
		if end < 0 {
			return nil, nil, errBencode
		}
		n, err := strconv.Atoi(string(b[1:end]))
		if err != nil {
			return nil, nil, errBencode
		}
		return n, b[end+1:], nil
	case c == 'l':
		var list []any
		b = b[1:]
		for len(b) > 0 && b[0] != 'e' {
			v, rest, err := bdecode(b)
			if err != nil {
				return nil, nil, err
			}
			list = append(list, v)
			b = rest
		}
		if len(b) == 0 {
			return nil, nil, errBencode
		}
		return list, b[1:], nil
	case c == 'd':
		dict := map[string]any{}
		b = b[1:]
		for len(b) > 0 && b[0] != 'e' {
			k, rest, err := bdecode(b)
			if err != nil {
				return nil, nil, err
			}
			key, ok := k.(string)
			if !ok {
				return nil, nil, errBencode
			}
			v, rest, err := bdecode(rest)
			if err != nil {
				return nil, nil, err
			}
			dict[key] = v
			b = rest
		}
		if len(b) == 0 {
			return nil, nil, errBencode
		}
		return dict, b[1:], nil
	case c >= '0' && c <= '9':
		colon := bytes.IndexByte(b, ':')
		if colon < 0 {
			return nil, nil, errBencode
		}
		n, err := strconv.Atoi(string(b[:colon]))
		if err != nil || n < 0 || colon+1+n > len(b) {
			return nil, nil, errBencode
		}
		return string(b[colon+1 : colon+1+n]), b[colon+1+n:], nil
	}
	return nil, nil, errBencode
}

// ngClient sends ng commands to one rtpengine and waits for each answer.
type ngClient struct {
	conn   *net.UDPConn
	prefix string
	n      int
	buf    []byte
}

func dialNG(addr string) (*ngClient, error) {
	ua, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		return nil, err
	}
	conn, err := net.DialUDP("udp", nil, ua)
	if err != nil {
		return nil, err
	}
	b := make([]byte, 4)
	rand.Read(b)
	return &ngClient{conn: conn, prefix: hex.EncodeToString(b), buf: make([]byte, 65536)}, nil
}

func (c *ngClient) Close() error { return c.conn.Close() }

// call sends cmd and returns the answer's dictionary; an answer whose
// result is not "ok" is an error. Each command has a cookie of its own:
// rtpengine answers a repeated cookie from its cache.
func (c *ngClient) call(cmd map[string]any) (map[string]any, error) {
	c.n++
	cookie := c.prefix + "-" + strconv.Itoa(c.n)
	var req bytes.Buffer
	req.WriteString(cookie + " ")
	if err := bencode(&req, cmd); err != nil {
		return nil, err
	}
	for attempt := 0; attempt < 3; attempt++ {
		if _, err := c.conn.Write(req.Bytes()); err != nil {
			return nil, err
		}
		c.conn.SetReadDeadline(time.Now().Add(2 * time.Second))
		for {
			n, err := c.conn.Read(c.buf)
			if err != nil {
				var ne net.Error
				if errors.As(err, &ne) && ne.Timeout() {
					break // send again
				}
				return nil, err
			}
			got, body, ok := bytes.Cut(c.buf[:n], []byte(" "))
			if !ok || string(got) != cookie {
				continue // a late answer to an earlier attempt
			}
			v, _, err := bdecode(body)
			if err != nil {
				return nil, err
			}
			dict, ok := v.(map[string]any)
			if !ok {
				return nil, errBencode
			}
			if r, _ := dict["result"].(string); r != "ok" && r != "pong" {
				reason, _ := dict["error-reason"].(string)
				return nil, fmt.Errorf("rtpengine %v: %s %s", cmd["command"], r, reason)
			}
			return dict, nil
		}
	}
	return nil, fmt.Errorf("rtpengine %v: no answer", cmd["command"])
}

var mAudioPort = regexp.MustCompile(`(?m)^m=audio (\d+) `)

// sdpPort returns the port of an SDP's audio stream.
func sdpPort(sdp string) (int, error) {
	m := mAudioPort.FindStringSubmatch(sdp)
	if m == nil {
		return 0, fmt.Errorf("no m=audio line in %q", sdp)
	}
	return strconv.Atoi(m[1])
}

// peerSDP is the SDP of a peer on 127.0.0.1:port sending codec, with
// telephone-event 101, as a SIP endpoint would offer or answer it.
func peerSDP(port int, codec string) string {
	pt := 0
	if codec == "PCMA" {
		pt = 8
	}
	return fmt.Sprintf("v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"+
		"m=audio %d RTP/AVP %d 101\r\na=rtpmap:%d %s/8000\r\na=rtpmap:101 telephone-event/8000\r\n"+
		"a=fmtp:101 0-15\r\na=ptime:20\r\na=sendrecv\r\n", port, pt, pt, codec)
}
