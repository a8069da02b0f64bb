package main

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"log/slog"
	"net"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/switchback/switchback/bench/internal/stamp"
	"github.com/switchback/switchback/internal/media"
)

// TestLoadInBothModes runs a short load of a few calls in each mode, the
// Switchback side and the agent served in this process: every frame
// comes back, is read, and has the agent's hold; the calls end cleanly.
func TestLoadInBothModes(t *testing.T) {
	agent := newAgentServer()
	agentSrv := httptest.NewServer(agent.routes())
	defer func() {
		agentSrv.Close()
		agent.closeRTP()
	}()
	rt, err := newRuntime("ws"+strings.TrimPrefix(agentSrv.URL, "http")+"/stream", slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer rt.Stop()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- serveSwitchback(ln, media.PortRange{}, rt) }()
	defer func() {
		ln.Close()
		if err := <-done; !errors.Is(err, net.ErrClosed) {
			t.Errorf("serveSwitchback: %v", err)
		}
	}()
	pid := strconv.Itoa(os.Getpid())
	for _, mode := range []string{"bridge", "stream"} {
		t.Run(mode, func(t *testing.T) {
			var out bytes.Buffer
			err := runLoad([]string{
				"-mode", mode, "-control", ln.Addr().String(), "-agent", agentSrv.URL, "-pids", pid, "-agent-pid", pid,
				"-calls", "4", "-warmup", "200ms", "-duration", "600ms", "-drain", "200ms",
			}, &out)
			if err != nil {
				t.Fatal(err)
			}
			var r Result
			if err := json.Unmarshal(out.Bytes(), &r); err != nil {
				t.Fatal(err)
			}
			// 4 callers, 30 frames each in 600 ms, give or take one at
			// each edge of the window.
			if r.Sent < 4*29 || r.Sent > 4*31 || r.Lost != 0 || r.Echoed != r.Sent || r.Wrong != 0 || r.Duplicates != 0 || r.NoHold != 0 {
				t.Errorf("sent %d, echoed %d, lost %d, wrong %d, duplicates %d, without the agent's hold %d",
					r.Sent, r.Echoed, r.Lost, r.Wrong, r.Duplicates, r.NoHold)
			}
			if (r.Silence > 0) != (mode == "stream") {
				t.Errorf("%d packets of silence", r.Silence)
			}
			if r.Dropped != 0 || r.Overflow != 0 {
				t.Errorf("Switchback dropped %d frames for the agent and %d of its audio", r.Dropped, r.Overflow)
			}
		})
	}
	if n := rt.Active(); n != 0 {
		t.Errorf("%d calls left in the runtime", n)
	}
}

// TestHoldBook: the agent keeps each frame's hold by its stamp, as sent
// over a WebSocket (base64) or in a datagram, and forgets them on reset.
func TestHoldBook(t *testing.T) {
	var b holdBook
	b.reset(3)
	frame := make([]byte, media.FrameSamples)
	read := time.Now()
	stamp.Write(frame, media.PCMU, read.UnixNano(), 2, 7)
	b.add(frame, read, read.Add(1500*time.Microsecond))
	stamp.Write(frame, media.PCMU, read.UnixNano(), 1, 0)
	b.addBase64(base64Std(frame), read, read.Add(20*time.Microsecond))
	stamp.Write(frame, media.PCMU, read.UnixNano(), 9, 0) // no such stream
	b.add(frame, read, read)
	got := b.snapshot()
	if len(got) != 3 || len(got[0]) != 0 || len(got[1]) < 1 || got[1][0] != 21 || len(got[2]) < 8 || got[2][7] != 1501 {
		t.Errorf("holds %v", got)
	}
	b.reset(1)
	if got := b.snapshot(); len(got) != 1 || len(got[0]) != 0 {
		t.Errorf("after reset: %v", got)
	}
}

func base64Std(b []byte) string { return base64.StdEncoding.EncodeToString(b) }
