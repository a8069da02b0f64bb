package menu

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/switchback/switchback"
	"github.com/switchback/switchback/internal/config"
)

// fakeCall is a call whose caller pressed digits before the agent asks.
type fakeCall struct {
	input  *switchback.InputContext
	digits chan switchback.Digit
	conv   *switchback.Conversation
	mu     sync.Mutex
	played [][]int16
	state  json.RawMessage
	events []switchback.EventType
}

func newCall(digits string, vars map[string]string) *fakeCall {
	c := &fakeCall{input: &switchback.InputContext{TaskName: "call_routing", InputVariables: vars},
		digits: make(chan switchback.Digit, 32)}
	for _, d := range digits {
		c.digits <- switchback.Digit{Leg: switchback.LegCaller, Digit: d}
	}
	return c
}

func (c *fakeCall) Info() *switchback.CallInfo {
	return &switchback.CallInfo{TransferID: "t-1", Input: c.input, Conversation: c.conv}
}
func (c *fakeCall) Play(ctx context.Context, pcm []int16) error {
	c.mu.Lock()
	c.played = append(c.played, pcm)
	c.mu.Unlock()
	return nil
}
func (c *fakeCall) Enqueue(pcm []int16) error           { return c.Play(context.Background(), pcm) }
func (c *fakeCall) Mark(string) error                   { return nil }
func (c *fakeCall) Marks() <-chan string                { return nil }
func (c *fakeCall) Clear()                              {}
func (c *fakeCall) Digits() <-chan switchback.Digit     { return c.digits }
func (c *fakeCall) Audio() <-chan switchback.AudioFrame { return nil }
func (c *fakeCall) SaveState(s json.RawMessage) {
	c.mu.Lock()
	c.state = s
	c.mu.Unlock()
}
func (c *fakeCall) Record(t switchback.EventType, _ map[string]string) {
	c.mu.Lock()
	c.events = append(c.events, t)
	c.mu.Unlock()
}

func demoMenu(timeout time.Duration) config.Menu {
	return config.Menu{
		Collect: []config.Collect{{Name: "pin", MaxDigits: 4, Terminator: "#"}},
		Choices: map[string]config.Outcome{
			"1":  {TransferType: "AGENT", TaskName: "agent", ReferenceVariables: []string{"accountNumber", "pin"}},
			"2":  {TransferType: "SYSTEM", TransferVariables: []string{"pin", "missing"}, Set: map[string]string{"next": "close"}},
			"21": {TransferType: "SYSTEM", TaskName: "twenty-one"},
		},
		DigitTimeout: config.Duration(timeout),
		Default:      config.Outcome{TransferType: "SYSTEM", TaskName: "no_input"},
	}
}

func TestMenuOutcomes(t *testing.T) {
	vars := map[string]string{"accountNumber": "3434"}
	tests := []struct {
		name   string
		digits string
		want   string
	}{
		{"agent with collected pin", "1234#1", "AGENT agent ref=map[accountNumber:3434 pin:1234] xfer=map[]"},
		{"max digits ends the collect", "98762", "SYSTEM call_routing ref=map[] xfer=map[next:close pin:9876]"},
		{"longer choice wins over its prefix", "#21", "SYSTEM twenty-one ref=map[] xfer=map[]"},
		{"no choice: default", "12#", "SYSTEM no_input ref=map[] xfer=map[]"},
		{"invalid choice: default", "#9", "SYSTEM no_input ref=map[] xfer=map[]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := New("call_routing", demoMenu(50*time.Millisecond), Prompts{Greeting: []int16{1, 2, 3}})
			call := newCall(tt.digits, vars)
			hb, err := a.Run(context.Background(), call)
			if err != nil {
				t.Fatal(err)
			}
			out := hb.Output
			got := fmt.Sprintf("%s %s ref=%v xfer=%v", out.TransferType, out.CurrentTaskName, out.ReferenceVariables, out.TransferVariables)
			if got != tt.want {
				t.Fatalf("outcome %s, want %s", got, tt.want)
			}
			if len(call.played) != 1 {
				t.Fatalf("played %d prompts, want the greeting", len(call.played))
			}
		})
	}
}

func TestZeroTimeoutHandsBackAtOnce(t *testing.T) {
	a := New("instant", config.Menu{Default: config.Outcome{TransferType: "SYSTEM", TaskName: "instant"}}, Prompts{})
	start := time.Now()
	hb, err := a.Run(context.Background(), newCall("", nil))
	if err != nil || hb.Output.CurrentTaskName != "instant" || time.Since(start) > 50*time.Millisecond {
		t.Fatalf("instant menu: %+v %v after %v", hb, err, time.Since(start))
	}
}

func TestHangupEndsTheMenu(t *testing.T) {
	a := New("call_routing", demoMenu(10*time.Second), Prompts{})
	ctx, cancel := context.WithCancelCause(context.Background())
	cancel(switchback.ErrCallerHungUp)
	if _, err := a.Run(ctx, newCall("", nil)); err != switchback.ErrCallerHungUp {
		t.Fatalf("a hung-up call ended with %v", err)
	}
}

func TestResumeSkipsTheGreetingAndKeepsWhatWasCollected(t *testing.T) {
	a := New("call_routing", demoMenu(50*time.Millisecond), Prompts{Greeting: []int16{1, 2, 3}, ChoicePrompt: []int16{4}})
	// The first call: greeting, PIN 1234, then the caller goes quiet and
	// hangs up while the menu is offered.
	first := newCall("1234#", map[string]string{"accountNumber": "3434"})
	ctx, cancel := context.WithCancelCause(context.Background())
	go func() { time.Sleep(20 * time.Millisecond); cancel(switchback.ErrCallerHungUp) }()
	a.menu.DigitTimeout = config.Duration(time.Second)
	if _, err := a.Run(ctx, first); err == nil {
		t.Fatal("the first call should end with the caller gone")
	}
	var st State
	if err := json.Unmarshal(first.state, &st); err != nil || !st.Greeted || st.Collected != 1 || st.Task != "call_routing" ||
		st.Variables["pin"] != "1234" || st.Variables["accountNumber"] != "3434" {
		t.Fatalf("saved state = %s (%v)", first.state, err)
	}
	if task, ok := ResumeTask(&switchback.Conversation{State: first.state}); !ok || task != "call_routing" {
		t.Fatalf("ResumeTask = %q, %v", task, ok)
	}

	// The second call of the conversation: no greeting, no PIN prompt,
	// straight to the menu; choice 1 hands back what the first collected.
	second := newCall("1", nil)
	second.conv = &switchback.Conversation{State: first.state}
	hb, err := a.Run(context.Background(), second)
	if err != nil {
		t.Fatal(err)
	}
	out := hb.Output
	if len(second.played) != 1 || len(second.played[0]) != 1 {
		t.Fatalf("the second call played %d prompts, want only the menu's", len(second.played))
	}
	if out.TransferType != "AGENT" || out.ReferenceVariables["pin"] != "1234" || out.ReferenceVariables["accountNumber"] != "3434" {
		t.Fatalf("second call's outcome = %+v", out)
	}

	// Another menu's state is not resumed.
	third := newCall("1234#1", nil)
	third.conv = &switchback.Conversation{State: json.RawMessage(`{"task":"billing","greeted":true,"collected":1}`)}
	if _, err := a.Run(context.Background(), third); err != nil {
		t.Fatal(err)
	}
	if len(third.played) != 2 {
		t.Fatalf("a call resuming another menu's state played %d prompts, want the greeting and the menu", len(third.played))
	}
	if _, ok := ResumeTask(&switchback.Conversation{State: json.RawMessage(`not json`)}); ok {
		t.Fatal("ResumeTask read a state that is not the menu's")
	}
}
