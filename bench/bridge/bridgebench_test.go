package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"net"
	"os"
	"reflect"
	"strconv"
	"testing"

	"github.com/switchback/switchback/internal/media"
)

func TestBencodeRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   any
		wire string
	}{
		{"string", "offer", "5:offer"},
		{"int", -42, "i-42e"},
		{"list", []any{"a", 1}, "l1:ai1ee"},
		{"dict sorted", map[string]any{"sdp": "v=0", "command": "offer"}, "d7:command5:offer3:sdp3:v=0e"},
		{"nested", map[string]any{"codec": map[string]any{"mask": []any{"PCMU"}}}, "d5:codecd4:maskl4:PCMUeee"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var buf bytes.Buffer
			if err := bencode(&buf, tc.in); err != nil {
				t.Fatal(err)
			}
			if buf.String() != tc.wire {
				t.Errorf("encoded %q, want %q", buf.String(), tc.wire)
			}
			back, rest, err := bdecode(buf.Bytes())
			if err != nil || len(rest) != 0 || !reflect.DeepEqual(back, tc.in) {
				t.Errorf("decoded %#v (rest %q, %v), want %#v", back, rest, err, tc.in)
			}
		})
	}
	for _, bad := range []string{"", "i12", "5:abc", "l1:a", "d1:a", "di1ei2ee", "x"} {
		if _, _, err := bdecode([]byte(bad)); err == nil {
			t.Errorf("bdecode(%q) succeeded", bad)
		}
	}
}

func TestSDPPort(t *testing.T) {
	port, err := sdpPort(peerSDP(30002, "PCMA"))
	if err != nil || port != 30002 {
		t.Errorf("sdpPort = %d, %v; want 30002", port, err)
	}
	if _, err := sdpPort("v=0\r\n"); err == nil {
		t.Error("a port in an SDP without m=audio")
	}
}

// TestLoadThroughSwitchbackRelay runs a short load of a few calls through
// the relay's line protocol, served in this process: nothing is lost,
// every packet is read, and the relay transcodes what it should.
func TestLoadThroughSwitchbackRelay(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- serveRelay(ln, media.PortRange{}) }()
	defer func() {
		ln.Close()
		if err := <-done; !errors.Is(err, net.ErrClosed) {
			t.Errorf("serveRelay: %v", err)
		}
	}()
	for _, codecs := range []string{"PCMU/PCMU", "PCMU/PCMA"} {
		t.Run(codecs, func(t *testing.T) {
			var out bytes.Buffer
			err := runLoad([]string{
				"-relay", "switchback", "-control", ln.Addr().String(), "-pids", strconv.Itoa(os.Getpid()),
				"-calls", "4", "-codecs", codecs, "-warmup", "200ms", "-duration", "600ms", "-drain", "200ms",
			}, &out)
			if err != nil {
				t.Fatal(err)
			}
			var r LoadResult
			if err := json.Unmarshal(out.Bytes(), &r); err != nil {
				t.Fatal(err)
			}
			// 8 streams, 30 packets each in 600 ms, give or take one at
			// each edge of the window.
			if r.Sent < 8*29 || r.Sent > 8*31 || r.Lost != 0 || r.Wrong != 0 || r.Duplicates != 0 || r.SSRCChanges != 0 {
				t.Errorf("sent %d, lost %d, wrong %d, duplicates %d, SSRC changes %d", r.Sent, r.Lost, r.Wrong, r.Duplicates, r.SSRCChanges)
			}
			if wantTranscoded := codecs != "PCMU/PCMU"; (r.RelayTranscoded > 0) != wantTranscoded || r.RelayDropped != 0 {
				t.Errorf("relay transcoded %d, dropped %d", r.RelayTranscoded, r.RelayDropped)
			}
		})
	}
}
