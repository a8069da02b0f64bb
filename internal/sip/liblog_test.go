package sip

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/emiago/sipgo/sip"
)

// TestLibraryLinesGoThroughTheEdgesLog: what sipgo logs on its own (its
// connections log through sip.DefaultLogger) reaches the Edge's log in its
// format, a level lower, cut and escaped; its shutdown notes only at debug
// level; and a flood of its warnings is thinned.
func TestLibraryLinesGoThroughTheEdgesLog(t *testing.T) {
	c, log := captureLog(t)
	startEdgeWith(t, edgeSetup{log: log})
	lib := sip.DefaultLogger()
	lib.Warn("UDP ref went negative on try close", "src", "127.0.0.1:5060", "ref", -1)
	lib.Error("failed to parse", "data", strings.Repeat("\x00garbage\xff", 2000), "error", errors.New("bad\r\nline"))
	for range 100 {
		lib.Warn("something a peer caused")
	}
	var lines []map[string]any
	for _, line := range c.lines() {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("not a JSON line: %q", line)
		}
		lines = append(lines, m)
	}
	var parse, peer int
	for _, m := range lines {
		switch m["msg"] {
		case "UDP ref went negative on try close":
			t.Fatalf("a shutdown note logged at %v", m["level"])
		case "failed to parse":
			parse++
			data, _ := m["data"].(string)
			if m["level"] != "WARN" || len(data) > 4*maxLoggedBytes+32 || !strings.HasPrefix(data, `\x00garbage\xff`) || m["error"] != `bad\r\nline` {
				t.Fatalf("parse error line: %v", m)
			}
		case "something a peer caused":
			peer++
		}
	}
	if parse != 1 {
		t.Fatalf("%d parse error lines, want 1", parse)
	}
	if peer < libraryLinesBurst-2 || peer > libraryLinesBurst+2 {
		t.Fatalf("%d of 100 warnings at once logged, want about the burst of %d", peer, libraryLinesBurst)
	}
}
