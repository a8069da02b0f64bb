package media

import (
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"sync/atomic"
)

// PortRange is the UDP ports RTP sessions bind, both ends included. The
// zero PortRange lets the system pick any free port (for tests).
type PortRange struct{ Min, Max int }

// nextPair rotates through a range's port pairs across the process, so a
// port just released is the last to be taken again: packets still in
// flight for the call that had it then reach no one rather than the next
// call.
var nextPair atomic.Uint32

func init() { nextPair.Store(rand.Uint32()) }

// ListenRTP binds a Session to a free pair of ports in ports on ip: an
// even port for RTP, and the odd one above it, which RTCP uses by
// convention (RFC 3550 §11), held so no one else takes it. RTCP is not
// spoken; what arrives there is left unread and dropped by the kernel.
// An unspecified ip binds every interface: the SIP layer then writes the
// address the peer can reach into the SDP.
//
// The Session does nothing until Start.
func ListenRTP(ip netip.Addr, ports PortRange) (*Session, error) {
	if ports == (PortRange{}) {
		conn, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(ip, 0)))
		if err != nil {
			return nil, fmt.Errorf("rtp: listen: %w", err)
		}
		return newSession(conn, nil), nil
	}
	if ports.Min < 1 || ports.Max > 65535 || ports.Min > ports.Max {
		return nil, fmt.Errorf("rtp: port range %d-%d is not within 1-65535", ports.Min, ports.Max)
	}
	first := ports.Min + ports.Min%2
	pairs := (ports.Max - first + 1) / 2
	if pairs <= 0 {
		return nil, fmt.Errorf("rtp: port range %d-%d holds no even port with the odd one above it", ports.Min, ports.Max)
	}
	start := int(nextPair.Add(1) % uint32(pairs))
	for i := range pairs {
		port := first + 2*((start+i)%pairs)
		conn, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(ip, uint16(port))))
		if err != nil {
			continue
		}
		rtcp, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(ip, uint16(port+1))))
		if err != nil {
			conn.Close()
			continue
		}
		_ = rtcp.SetReadBuffer(1024)
		return newSession(conn, rtcp), nil
	}
	return nil, fmt.Errorf("rtp: no free port pair in %d-%d on %s", ports.Min, ports.Max, ip)
}
