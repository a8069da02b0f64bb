package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/switchback/switchback/bench/internal/loadkit"
	"github.com/switchback/switchback/internal/media"
)

// The relay's line protocol, one request and one answer a line, over a
// loopback TCP connection (one at a time):
//
//	bridge ID CODEC_A CODEC_B PEER_A_PORT PEER_B_PORT
//	    -> ok LEG_A_PORT LEG_B_PORT
//	    two Sessions on 127.0.0.1 in the relay's port range, started with
//	    CODEC_A and CODEC_B (PCMU or PCMA, telephone-event 101) towards the
//	    peers on 127.0.0.1, and bridged: the caller sends to LEG_A_PORT,
//	    the callee to LEG_B_PORT
//	unbridge ID
//	    -> ok RELAYED_A RELAYED_B DROPPED TRANSCODED
//	    stops the bridge and closes both Sessions
//
// Anything else, or a failure, answers "err MESSAGE".

var loopback = netip.MustParseAddr("127.0.0.1")

// bridged is one call the relay holds.
type bridged struct {
	legs [2]*media.Session
	br   *media.Bridge
}

// relayServer holds the calls; it is used by one connection at a time.
type relayServer struct {
	ports media.PortRange
	calls map[string]*bridged
}

func runRelay(args []string) error {
	fs := flag.NewFlagSet("relay", flag.ContinueOnError)
	control := fs.String("control", "127.0.0.1:0", "loopback TCP address of the line protocol")
	portRange := fs.String("ports", "24000-31999", "RTP port range, MIN-MAX (each leg takes an even port and the odd one above)")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile of the whole run to this file")
	if err := fs.Parse(args); err != nil {
		return err
	}
	ports, err := loadkit.ParsePorts(*portRange)
	if err != nil {
		return err
	}
	stopProfile, err := loadkit.StartCPUProfile(*cpuProfile)
	if err != nil {
		return err
	}
	defer stopProfile()
	ln, err := net.Listen("tcp", *control)
	if err != nil {
		return err
	}
	fmt.Printf("control on %s\n", ln.Addr())
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		ln.Close()
	}()
	err = serveRelay(ln, ports)
	if ctx.Err() != nil {
		return nil
	}
	return err
}

// serveRelay serves the line protocol on ln, one connection at a time,
// until ln is closed, and then closes the calls left.
func serveRelay(ln net.Listener, ports media.PortRange) error {
	srv := &relayServer{ports: ports, calls: map[string]*bridged{}}
	defer srv.closeAll()
	return loadkit.Serve(ln, srv.handle)
}

func (srv *relayServer) handle(f []string) (string, error) {
	if len(f) == 0 {
		return "", errors.New("empty request")
	}
	switch f[0] {
	case "bridge":
		if len(f) != 6 {
			return "", errors.New("want: bridge ID CODEC_A CODEC_B PEER_A_PORT PEER_B_PORT")
		}
		return srv.bridge(f[1], f[2:4], f[4:6])
	case "unbridge":
		if len(f) != 2 {
			return "", errors.New("want: unbridge ID")
		}
		c, ok := srv.calls[f[1]]
		if !ok {
			return "", fmt.Errorf("no call %q", f[1])
		}
		delete(srv.calls, f[1])
		c.br.Stop()
		st := c.br.Stats()
		c.legs[0].Close()
		c.legs[1].Close()
		return fmt.Sprintf("ok %d %d %d %d", st.Legs[0].Relayed, st.Legs[1].Relayed,
			st.Legs[0].Dropped+st.Legs[1].Dropped, st.Legs[0].Transcoded+st.Legs[1].Transcoded), nil
	}
	return "", fmt.Errorf("unknown request %q", f[0])
}

func (srv *relayServer) bridge(id string, codecs, peers []string) (string, error) {
	if _, dup := srv.calls[id]; dup {
		return "", fmt.Errorf("call %q exists", id)
	}
	c := &bridged{}
	fail := func(err error) (string, error) {
		for _, s := range c.legs {
			if s != nil {
				s.Close()
			}
		}
		return "", err
	}
	for i := range 2 {
		codec, err := parseCodec(codecs[i])
		if err != nil {
			return fail(err)
		}
		port, err := strconv.ParseUint(peers[i], 10, 16)
		if err != nil {
			return fail(fmt.Errorf("peer port %q", peers[i]))
		}
		s, err := media.ListenRTP(loopback, srv.ports)
		if err != nil {
			return fail(err)
		}
		c.legs[i] = s
		p := media.Params{
			Codec: codec, PayloadType: codec.PayloadType(),
			DTMF: true, DTMFPayloadType: 101,
			Remote: netip.AddrPortFrom(loopback, uint16(port)),
		}
		if err := s.Start(p); err != nil {
			return fail(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	br, err := media.NewBridge(ctx, c.legs[0], c.legs[1])
	if err != nil {
		return fail(err)
	}
	c.br = br
	srv.calls[id] = c
	return fmt.Sprintf("ok %d %d", c.legs[0].LocalAddr().Port(), c.legs[1].LocalAddr().Port()), nil
}

func (srv *relayServer) closeAll() {
	for id, c := range srv.calls {
		c.br.Stop()
		c.legs[0].Close()
		c.legs[1].Close()
		delete(srv.calls, id)
	}
}

func parseCodec(s string) (media.Codec, error) {
	switch strings.ToUpper(s) {
	case "PCMU":
		return media.PCMU, nil
	case "PCMA":
		return media.PCMA, nil
	}
	return 0, fmt.Errorf("codec %q: want PCMU or PCMA", s)
}
