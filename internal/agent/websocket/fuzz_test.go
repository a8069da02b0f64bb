package websocket

import (
	"log/slog"
	"testing"

	"github.com/switchback/switchback"
)

// FuzzParse: whatever an agent sends, the reader neither panics nor hands
// the call a message it did not check.
func FuzzParse(f *testing.F) {
	for _, seed := range []string{
		`{"event":"media","streamSid":"x","media":{"payload":"f39/"}}`,
		`{"event":"mark","mark":{"name":"a"}}`,
		`{"event":"clear"}`,
		`{"event":"switchback.handback","outputContext":{"transferType":"AGENT","transferVariables":{"a":"b"}},"state":{"x":1},"finishAudio":false}`,
		`{"event":"switchback.handback","outputContext":{"transferType":1}}`,
		`{"event":"switchback.state","state":[1,2]}`,
		`{"event":"switchback.transcript","role":"caller","text":"hi","final":false}`,
		`{"event":"switchback.event","type":"x.y","data":{"k":"v"}}`,
		`{"event":"media","media":{"payload":"!!"}}`,
		`not json`, `{}`, `[]`, `null`, `{"event":null}`,
	} {
		f.Add([]byte(seed))
	}
	fac, err := NewFactory("acme", Config{URL: testURL}, nil, Deps{})
	if err != nil {
		f.Fatal(err)
	}
	s := &session{f: fac, info: testInfo(switchback.ReturnBYE), log: slog.New(slog.DiscardHandler)}
	f.Fuzz(func(t *testing.T, b []byte) {
		m, ok := s.parse(b)
		if !ok {
			return
		}
		switch m.kind {
		case inMedia:
			if len(m.pcm) == 0 {
				t.Error("empty media passed on")
			}
		case inMark:
			if m.name == "" || len(m.name) > maxMarkName {
				t.Errorf("mark %q passed on", m.name)
			}
		case inHandBack:
			if m.err == nil {
				if tt := m.hb.Output.TransferType; tt != switchback.TransferAgent && tt != switchback.TransferSystem {
					t.Errorf("hand-back with transferType %q passed on", tt)
				}
			}
		case inTranscript, inCustom:
			if !validEventName(string(m.event)) || len(m.data["text"]) > maxTranscriptBytes {
				t.Errorf("event %q %v passed on", m.event, m.data)
			}
		case inState:
			if len(m.state) == 0 {
				t.Error("empty state passed on")
			}
		}
	})
}

// FuzzParseCallPath: the hang-up's path parser takes any path.
func FuzzParseCallPath(f *testing.F) {
	f.Add("/2010-04-01/Accounts/" + AccountSID("a") + "/Calls/" + CallSID("a", "b") + ".json")
	f.Add("/2010-04-01/Accounts//Calls/.json")
	f.Fuzz(func(t *testing.T, path string) {
		if acc, call, ok := parseCallPath(path); ok && (!validSID("AC", acc) || !validSID("CA", call)) {
			t.Errorf("parseCallPath(%q) = %q, %q", path, acc, call)
		}
	})
}
