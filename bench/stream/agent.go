package main

import (
	"context"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/signal"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/switchback/switchback/bench/internal/stamp"
	"github.com/switchback/switchback/internal/agent/websocket/echo"
	"github.com/switchback/switchback/internal/media"
)

// The agent's process: the echo agent both ways a call can reach it, and
// the time it held each frame, which the load takes off its round trips.
//
//	/stream          the echo agent (internal/agent/websocket/echo), the
//	                 websocket agent's URL
//	POST /rtp?stream=N  an RTP echo on a new loopback UDP socket, for a
//	                 bridged call: each packet goes back as it came to
//	                 where it came from; answers the socket's port
//	POST /reset?streams=N  closes the RTP echoes and forgets the holds;
//	                 makes room for streams 0 to N-1
//	GET /holds       the holds: JSON {"holds": [[µs+1 by index], ...]} by
//	                 stream, 0 where no frame of that index was echoed
//
// A frame's hold is from the moment the agent had read it (the WebSocket
// message, or the datagram) to the moment its echo was written: the
// agent's own time. The frame is known by the stamp in its payload.

// holdBook keeps the holds of the current run, by stream and index.
type holdBook struct {
	streams atomic.Pointer[[]streamHolds]
}

// streamHolds are one stream's holds, written by the one goroutine that
// echoes the stream and read once the run is over.
type streamHolds struct {
	mu sync.Mutex
	us []int32 // by index: hold in µs + 1; 0: none
}

func (b *holdBook) reset(n int) {
	s := make([]streamHolds, n)
	b.streams.Store(&s)
}

// add records that the frame stamped in payload (G.711, PCMU) was held
// from read to written.
func (b *holdBook) add(payload []byte, read, written time.Time) {
	_, stream, idx, ok := stamp.Read(payload, media.PCMU)
	streams := b.streams.Load()
	if !ok || streams == nil || int(stream) >= len(*streams) || idx > 1<<20 {
		return
	}
	h := &(*streams)[stream]
	us := written.Sub(read).Microseconds()
	h.mu.Lock()
	if int(idx) >= len(h.us) {
		h.us = append(h.us, make([]int32, int(idx)+1-len(h.us)+256)...)
	}
	h.us[idx] = int32(min(us, 1<<30)) + 1
	h.mu.Unlock()
}

func (b *holdBook) snapshot() [][]int32 {
	streams := b.streams.Load()
	if streams == nil {
		return nil
	}
	out := make([][]int32, len(*streams))
	for i := range *streams {
		h := &(*streams)[i]
		h.mu.Lock()
		out[i] = append([]int32(nil), h.us...)
		h.mu.Unlock()
	}
	return out
}

// addBase64 is add for a WebSocket payload: only the stamp's bytes are
// decoded.
func (b *holdBook) addBase64(payload string, read, written time.Time) {
	const n = (stamp.Bytes + 2) / 3 * 4 // base64 characters that hold the stamp
	if len(payload) < n {
		return
	}
	var src [n]byte
	var dst [n / 4 * 3]byte
	copy(src[:], payload)
	if _, err := base64.StdEncoding.Decode(dst[:], src[:]); err != nil {
		return
	}
	b.add(dst[:], read, written)
}

// agentServer is the agent's HTTP side.
type agentServer struct {
	holds holdBook
	echo  *echo.Handler

	mu   sync.Mutex
	rtp  []*net.UDPConn
	done sync.WaitGroup
}

func newAgentServer() *agentServer {
	a := &agentServer{}
	a.echo = echo.New(echo.Options{OnEcho: a.holds.addBase64})
	return a
}

func (a *agentServer) routes() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/stream", a.echo)
	mux.HandleFunc("POST /rtp", a.newRTPEcho)
	mux.HandleFunc("POST /reset", func(w http.ResponseWriter, r *http.Request) {
		n, err := strconv.Atoi(r.URL.Query().Get("streams"))
		if err != nil || n < 0 || n > 100000 {
			http.Error(w, "streams: want a count", http.StatusBadRequest)
			return
		}
		a.closeRTP()
		a.holds.reset(n)
	})
	mux.HandleFunc("GET /holds", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]any{"holds": a.holds.snapshot()})
	})
	return mux
}

// newRTPEcho opens an RTP echo: whatever comes to it goes back to where
// it came from, as it came.
func (a *agentServer) newRTPEcho(w http.ResponseWriter, r *http.Request) {
	c, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(loopback, 0)))
	if err != nil {
		http.Error(w, err.Error(), http.StatusServiceUnavailable)
		return
	}
	a.mu.Lock()
	a.rtp = append(a.rtp, c)
	a.done.Add(1)
	a.mu.Unlock()
	go func() {
		defer a.done.Done()
		buf := make([]byte, 1500)
		for {
			n, from, err := c.ReadFromUDPAddrPort(buf)
			if err != nil {
				if errors.Is(err, net.ErrClosed) {
					return
				}
				continue
			}
			read := time.Now()
			if _, err := c.WriteToUDPAddrPort(buf[:n], from); err != nil {
				continue
			}
			written := time.Now()
			if hl := rtpHeaderLen(buf[:n]); hl > 0 {
				a.holds.add(buf[hl:n], read, written)
			}
		}
	}()
	fmt.Fprintln(w, c.LocalAddr().(*net.UDPAddr).Port)
}

func (a *agentServer) closeRTP() {
	a.mu.Lock()
	for _, c := range a.rtp {
		c.Close()
	}
	a.rtp = nil
	a.mu.Unlock()
	a.done.Wait()
}

// rtpHeaderLen is the length of the RTP header of b, with its CSRCs and
// extension; 0 when b is no RTP packet.
func rtpHeaderLen(b []byte) int {
	if len(b) < 12 || b[0]>>6 != 2 {
		return 0
	}
	hl := 12 + 4*int(b[0]&0x0F)
	if b[0]&0x10 != 0 && len(b) >= hl+4 {
		hl += 4 + 4*int(binary.BigEndian.Uint16(b[hl+2:hl+4]))
	}
	if hl > len(b) {
		return 0
	}
	return hl
}

func runAgent(args []string) error {
	fs := flag.NewFlagSet("agent", flag.ContinueOnError)
	listen := fs.String("listen", "127.0.0.1:0", "loopback address of the agent's HTTP server")
	if err := fs.Parse(args); err != nil {
		return err
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return err
	}
	a := newAgentServer()
	defer a.closeRTP()
	srv := &http.Server{Handler: a.routes(), ReadHeaderTimeout: 5 * time.Second}
	fmt.Printf("agent on http://%s\n", ln.Addr())
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		srv.Close() // the echo agent's connections too: hijacked, they end with the process
	}()
	if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
