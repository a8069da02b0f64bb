package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	_ "net/http/pprof" // -pprof
	"net/netip"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/switchback/switchback"
	"github.com/switchback/switchback/bench/internal/loadkit"
	"github.com/switchback/switchback/internal/agent"
	"github.com/switchback/switchback/internal/agent/websocket"
	"github.com/switchback/switchback/internal/call"
	"github.com/switchback/switchback/internal/config"
	"github.com/switchback/switchback/internal/media"
)

// The process under test: Switchback's media and call runtime without SIP.
// It holds calls of two kinds, set up and torn down over a line protocol
// on a loopback TCP port (one connection at a time), one request and one
// answer a line:
//
//	stream ID PEER_PORT
//	    -> ok PORT
//	    a streamed call: a Session on 127.0.0.1 in the port range, started
//	    (PCMU, telephone-event 101) towards the caller at PEER_PORT; the
//	    call admitted by the call runtime (internal/call), whose agent, the
//	    tenant's websocket agent (internal/agent/websocket), dials the echo
//	    agent before the call is "answered"; then the runtime runs the call
//	    on the Session as it does on a SIP leg. The caller sends to PORT.
//	bridge ID PEER_PORT ECHO_PORT
//	    -> ok PORT
//	    the same caller bridged instead (media.Bridge) to a second Session
//	    towards an RTP echo at ECHO_PORT: the floor, the RTP-only path
//	end ID
//	    -> ok DROPPED OVERFLOW SEND_LATE
//	    the caller hangs up: the call ends as the runtime ends any call
//	    whose caller left (the agent's stream stopped and closed), or the
//	    bridge stops; the answer counts the frames the caller's Session
//	    dropped on the way to the agent, the agent's audio the playout
//	    queue had no room for, and the packets sent over 20 ms late
//	mem
//	    -> ok GOROUTINES HEAP_BYTES STACK_BYTES CALLS
//	    after a garbage collection: the goroutines, the live heap, the
//	    goroutine stacks and the calls held
//
// Anything else, or a failure, answers "err MESSAGE".

var loopback = netip.MustParseAddr("127.0.0.1")

// benchTenant is the one tenant: every call is a transfer of it, and its
// one agent the websocket agent pointed at the echo agent.
const benchTenant = "bench"

// held is one call the process holds.
type held struct {
	leg  *leg              // a streamed call
	legs [2]*media.Session // a bridged call
	br   *media.Bridge
}

// switchbackServer holds the calls; one connection uses it at a time.
type switchbackServer struct {
	ports media.PortRange
	rt    *call.Runtime
	calls map[string]*held
}

func runSwitchback(args []string) error {
	fs := flag.NewFlagSet("switchback", flag.ContinueOnError)
	control := fs.String("control", "127.0.0.1:0", "loopback TCP address of the line protocol")
	portRange := fs.String("ports", "24000-31999", "RTP port range, MIN-MAX (each Session takes an even port and the odd one above)")
	agentURL := fs.String("agent", "", "the echo agent's ws:// URL")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile of the whole run to this file")
	pprofAddr := fs.String("pprof", "", "serve net/http/pprof on this loopback address")
	if err := fs.Parse(args); err != nil {
		return err
	}
	ports, err := loadkit.ParsePorts(*portRange)
	if err != nil {
		return err
	}
	if *agentURL == "" {
		return errors.New("-agent: the echo agent's URL is needed")
	}
	stopProfile, err := loadkit.StartCPUProfile(*cpuProfile)
	if err != nil {
		return err
	}
	defer stopProfile()
	if *pprofAddr != "" {
		go http.ListenAndServe(*pprofAddr, nil)
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	rt, err := newRuntime(*agentURL, log)
	if err != nil {
		return err
	}
	defer rt.Stop()
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
	err = serveSwitchback(ln, ports, rt)
	if ctx.Err() != nil {
		return nil
	}
	return err
}

// newRuntime is the call runtime of a node whose one tenant's agent is a
// websocket agent at agentURL, built as switchback serve builds its own,
// on a store that holds every transfer asked for.
func newRuntime(agentURL string, log *slog.Logger) (*call.Runtime, error) {
	agents, err := agent.Load([]config.Tenant{{
		ID:     benchTenant,
		Agents: []config.AgentConfig{{WebSocket: &websocket.Config{URL: agentURL}}},
	}}, agent.Deps{Log: log})
	if err != nil {
		return nil, err
	}
	return call.New(call.Options{Transfers: transfers{}, Agents: agents, Log: log}), nil
}

// serveSwitchback serves the line protocol on ln, one connection at a
// time, until ln is closed, and then ends the calls left.
func serveSwitchback(ln net.Listener, ports media.PortRange, rt *call.Runtime) error {
	srv := &switchbackServer{ports: ports, rt: rt, calls: map[string]*held{}}
	defer srv.endAll()
	return loadkit.Serve(ln, srv.handle)
}

func (srv *switchbackServer) handle(f []string) (string, error) {
	if len(f) == 0 {
		return "", errors.New("empty request")
	}
	switch {
	case f[0] == "stream" && len(f) == 3:
		return srv.stream(f[1], f[2])
	case f[0] == "bridge" && len(f) == 4:
		return srv.bridge(f[1], f[2], f[3])
	case f[0] == "end" && len(f) == 2:
		return srv.end(f[1])
	case f[0] == "mem" && len(f) == 1:
		// A collection that also hands the freed memory back to the
		// kernel, so that the PSS before a step is not what an earlier,
		// larger step left behind.
		debug.FreeOSMemory()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return fmt.Sprintf("ok %d %d %d %d", runtime.NumGoroutine(), ms.HeapAlloc, ms.StackInuse, len(srv.calls)), nil
	}
	return "", fmt.Errorf("unknown request %q", strings.Join(f, " "))
}

// session listens on the port range and starts towards port on loopback.
func (srv *switchbackServer) session(port string) (*media.Session, error) {
	p, err := strconv.ParseUint(port, 10, 16)
	if err != nil {
		return nil, fmt.Errorf("peer port %q", port)
	}
	s, err := media.ListenRTP(loopback, srv.ports)
	if err != nil {
		return nil, err
	}
	if err := s.Start(media.Params{
		Codec: media.PCMU, PayloadType: media.PCMU.PayloadType(), DTMF: true, DTMFPayloadType: 101,
		Remote: netip.AddrPortFrom(loopback, uint16(p)),
	}); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// stream sets up a streamed call as the SIP edge does for an INVITE:
// ports first, then the match and the agent (which dials), then the
// answer, then the runtime takes the call.
func (srv *switchbackServer) stream(id, peer string) (string, error) {
	if _, dup := srv.calls[id]; dup {
		return "", fmt.Errorf("call %q exists", id)
	}
	p, err := strconv.ParseUint(peer, 10, 16)
	if err != nil {
		return "", fmt.Errorf("peer port %q", peer)
	}
	sess, err := media.ListenRTP(loopback, srv.ports)
	if err != nil {
		return "", err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := srv.rt.Admit(ctx, call.Arrival{TenantID: benchTenant, TransferID: id, CallID: id + "@streambench",
		From: "sip:caller@127.0.0.1", To: "sip:bench@127.0.0.1", Transport: "udp", Source: "127.0.0.1"})
	if err != nil {
		sess.Close()
		return "", err
	}
	if err := sess.Start(media.Params{
		Codec: media.PCMU, PayloadType: media.PCMU.PayloadType(), DTMF: true, DTMFPayloadType: 101,
		Remote: netip.AddrPortFrom(loopback, uint16(p)),
	}); err != nil {
		sess.Close()
		c.Abandon(err.Error())
		return "", err
	}
	l := newLeg(sess, c)
	l.run()
	c.Start(l)
	srv.calls[id] = &held{leg: l}
	return fmt.Sprintf("ok %d", sess.LocalAddr().Port()), nil
}

// bridge sets up the floor: the caller's Session bridged to one towards
// the RTP echo, as an INVITE hand-back bridges the caller to the return
// leg.
func (srv *switchbackServer) bridge(id, peer, echoPort string) (string, error) {
	if _, dup := srv.calls[id]; dup {
		return "", fmt.Errorf("call %q exists", id)
	}
	h := &held{}
	fail := func(err error) (string, error) {
		for _, s := range h.legs {
			if s != nil {
				s.Close()
			}
		}
		return "", err
	}
	var err error
	if h.legs[0], err = srv.session(peer); err != nil {
		return fail(err)
	}
	if h.legs[1], err = srv.session(echoPort); err != nil {
		return fail(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if h.br, err = media.NewBridge(ctx, h.legs[0], h.legs[1]); err != nil {
		return fail(err)
	}
	srv.calls[id] = h
	return fmt.Sprintf("ok %d", h.legs[0].LocalAddr().Port()), nil
}

// end hangs the caller up and waits for the call to be over.
func (srv *switchbackServer) end(id string) (string, error) {
	h, ok := srv.calls[id]
	if !ok {
		return "", fmt.Errorf("no call %q", id)
	}
	delete(srv.calls, id)
	var caller media.Stats
	if h.leg != nil {
		caller = h.leg.media.Stats()
		h.leg.end("caller")
		select {
		case <-h.leg.closed:
		case <-time.After(15 * time.Second):
			return "", fmt.Errorf("call %q did not end within 15 s", id)
		}
	} else {
		h.br.Stop()
		caller = h.legs[0].Stats()
		h.legs[0].Close()
		h.legs[1].Close()
	}
	return fmt.Sprintf("ok %d %d %d", caller.Dropped, caller.PlayoutOverflow, caller.SendLate), nil
}

func (srv *switchbackServer) endAll() {
	for id := range srv.calls {
		srv.end(id)
	}
}

// transfers is the store of the benchmark's node: every transfer asked
// for exists, is the tenant's, returns by BYE and starts a conversation;
// what a call writes at its end is taken and forgotten.
type transfers struct{}

func (transfers) Match(_ context.Context, tenantID, id string) (*switchback.Transfer, error) {
	now := time.Now()
	return &switchback.Transfer{TenantID: tenantID, ID: id, Type: switchback.TypeSIP, Status: switchback.StatusOngoing,
		InputContext: &switchback.InputContext{}, SIP: &switchback.SIP{}, CreatedAt: now, ExpiresAt: now.Add(time.Hour),
		CallReceivedAt: now}, nil
}

func (transfers) EndCall(_ context.Context, e *switchback.CallEnd) (*switchback.Transfer, error) {
	return &switchback.Transfer{TenantID: e.TenantID, ID: e.ID, Status: switchback.StatusCompleted, OutputContext: e.Output}, nil
}

func (transfers) Conversation(context.Context, string, string) (*switchback.Conversation, error) {
	return nil, switchback.Errorf(switchback.ENOTFOUND, "no conversation")
}

func (transfers) RecordConversation(context.Context, *switchback.ConversationRecord) error {
	return nil
}
