package main

import (
	"context"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// flood sends unauthenticated INVITEs from many loopback addresses, one
// socket each, and counts what comes back to them.
type flood struct {
	socks []*net.UDPConn
	rate  int

	sent, sentBytes atomic.Int64
	got, gotBytes   atomic.Int64
	trying, final   atomic.Int64 // 100 Trying, and final answers (retransmissions included)
	readers         sync.WaitGroup
}

// newFlood binds n sockets on 127.10.0.1 and up.
func newFlood(n, rate int) (*flood, error) {
	f := &flood{rate: rate}
	for i := range n {
		ip := net.IPv4(127, 10, byte(i/250), byte(1+i%250))
		c, err := net.ListenUDP("udp", &net.UDPAddr{IP: ip})
		if err != nil {
			f.close()
			return nil, fmt.Errorf("bind %s: %w", ip, err)
		}
		f.socks = append(f.socks, c)
		f.readers.Add(1)
		go f.read(c)
	}
	return f, nil
}

// read counts the datagrams that come back to c until it is closed.
func (f *flood) read(c *net.UDPConn) {
	defer f.readers.Done()
	buf := make([]byte, 65536)
	for {
		n, _, err := c.ReadFrom(buf)
		if err != nil {
			return
		}
		f.got.Add(1)
		f.gotBytes.Add(int64(n))
		if strings.HasPrefix(string(buf[:min(n, 20)]), "SIP/2.0 100 ") {
			f.trying.Add(1)
		} else {
			f.final.Add(1)
		}
	}
}

func (f *flood) close() {
	for _, c := range f.socks {
		c.Close()
	}
	f.readers.Wait()
}

// run sends rate INVITEs a second, round robin over the sockets, in ticks
// of 10 ms, until ctx ends.
func (f *flood) run(ctx context.Context, target string) {
	to, err := net.ResolveUDPAddr("udp", target)
	if err != nil {
		logf("flood target %q: %v", target, err)
		return
	}
	const tick = 10 * time.Millisecond
	t := time.NewTicker(tick)
	defer t.Stop()
	start := time.Now()
	var seq int64
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			// As many as the rate asks by now: a late tick catches up.
			due := int64(now.Sub(start).Seconds() * float64(f.rate))
			for ; seq < due; seq++ {
				c := f.socks[seq%int64(len(f.socks))]
				msg := floodInvite(seq, c.LocalAddr().String())
				if n, err := c.WriteTo(msg, to); err == nil {
					f.sent.Add(1)
					f.sentBytes.Add(int64(n))
				}
			}
		}
	}
}

// floodInvite is an INVITE as a softphone sends its first one, with an SDP
// offer and no credentials, each with its own Call-ID and branch.
func floodInvite(seq int64, local string) []byte {
	sdp := "v=0\r\no=- " + fmt.Sprint(seq) + " 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n" +
		"m=audio 40000 RTP/AVP 0 8 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n" +
		"a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\na=ptime:20\r\n"
	return fmt.Appendf(nil, "INVITE sip:open@127.0.0.1 SIP/2.0\r\n"+
		"Via: SIP/2.0/UDP %s;branch=z9hG4bK-flood-%d\r\n"+
		"From: <sip:caller@%s>;tag=f%d\r\nTo: <sip:open@127.0.0.1>\r\n"+
		"Call-ID: flood-%d@bench\r\nCSeq: 1 INVITE\r\nMax-Forwards: 70\r\n"+
		"Contact: <sip:caller@%s>\r\nX-ASAPP-CallTransferId: flood-%d\r\n"+
		"Content-Type: application/sdp\r\nContent-Length: %d\r\n\r\n%s",
		local, seq, local, seq, seq, local, seq, len(sdp), sdp)
}

// floodTotals is what the flood sent and got back.
type floodTotals struct {
	Sent, SentBytes         int64
	Received, ReceivedBytes int64
	Trying, Final           int64
}

func (f *flood) totals() floodTotals {
	return floodTotals{Sent: f.sent.Load(), SentBytes: f.sentBytes.Load(), Received: f.got.Load(),
		ReceivedBytes: f.gotBytes.Load(), Trying: f.trying.Load(), Final: f.final.Load()}
}
