package sip

import (
	"errors"
	"io"
	"net"
	"net/netip"

	"github.com/emiago/sipgo/sip"
)

// gatedListener hands sipgo's TCP and TLS transports connections whose
// messages have been through the gate.
type gatedListener struct {
	net.Listener
	e         *Edge
	transport string // "TCP" or "TLS"
}

// Accept returns the next connection, gated.
func (l *gatedListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	var from netip.AddrPort
	if a, ok := c.RemoteAddr().(*net.TCPAddr); ok {
		from = unmapped(a.AddrPort())
	}
	return &gatedConn{Conn: c, e: l.e, from: from, transport: l.transport, parser: sip.NewParser().NewSIPStream()}, nil
}

// gatedConn is a stream connection as sipgo reads it: the bytes of the
// messages the gate lets through, in order. It frames the stream with
// sipgo's own stream parser (RFC 3261 §18.3: by Content-Length), so it
// cuts messages exactly where sipgo will; it writes the gate's answers to
// the connection itself. A stream that cannot be framed (not SIP, or a
// message over sipgo's size limit) ends the connection, as sipgo would.
//
// Over a stream, no answer is retransmitted and a forged source cannot be
// answered (the TCP handshake proves the address), but each INVITE that
// sipgo took would still hold a transaction until its ACK or Timer H
// (RFC 3261 §17.2.1): so a connection gets the same gate as a datagram.
// ACKs, CANCELs and responses on a connection go through: over a
// reliable transport their transactions end at once (Timer J and K are
// zero).
type gatedConn struct {
	net.Conn
	e         *Edge
	from      netip.AddrPort
	transport string
	parser    *sip.ParserStream

	buf  [16 << 10]byte
	raw  []byte // bytes read and not yet framed (the parser holds them too)
	out  []byte // bytes let through and not yet read by sipgo
	gone bool   // framing failed: everything after is dropped
	err  error  // the read error to return once out is drained
}

// Read returns bytes of the messages the gate let through.
func (c *gatedConn) Read(p []byte) (int, error) {
	for len(c.out) == 0 {
		if c.err != nil {
			return 0, c.err
		}
		n, err := c.Conn.Read(c.buf[:])
		if n > 0 {
			c.take(c.buf[:n])
		}
		if err != nil {
			c.err = err
		}
	}
	n := copy(p, c.out)
	c.out = c.out[n:]
	if len(c.out) == 0 {
		c.out = c.out[:0:0] // let a large message's bytes go
	}
	return n, nil
}

// take frames data and gates each message it completes.
func (c *gatedConn) take(data []byte) {
	if c.gone {
		return
	}
	if len(c.raw) == 0 && len(data) <= 4 && len(trimCRLF(data)) == 0 {
		// A keep-alive between messages (RFC 5626 §3.5.1), for sipgo
		// to answer.
		c.out = append(c.out, data...)
		return
	}
	c.raw = append(c.raw, data...)
	c.parser.Write(data)
	for {
		msg, n, err := c.parser.ParseNext()
		if errors.Is(err, io.ErrUnexpectedEOF) {
			return
		}
		if err != nil {
			c.e.unparsable(c.from, c.transport, c.raw, err)
			c.drop()
			return
		}
		frame := c.raw[:n]
		c.raw = c.raw[n:]
		p := c.e.gate(msg, n, c.from, c.transport)
		switch {
		case p.pass:
			c.out = append(c.out, frame...)
		case p.reply != nil:
			c.Conn.Write(p.reply)
		}
		if len(c.raw) == 0 {
			c.raw = c.raw[:0:0]
			return
		}
	}
}

// drop gives up on the stream: sipgo reads what was let through, then the
// end of the connection, and closes it.
func (c *gatedConn) drop() {
	c.gone = true
	c.raw = nil
	c.parser.Close()
	if c.err == nil {
		c.err = io.EOF
	}
}

func trimCRLF(b []byte) []byte {
	for len(b) > 0 && (b[0] == '\r' || b[0] == '\n') {
		b = b[1:]
	}
	return b
}
