package menu

import (
	"context"
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
	digits chan rune
	hangup chan struct{}
	mu     sync.Mutex
	played [][]int16
}

func newCall(digits string, vars map[string]string) *fakeCall {
	c := &fakeCall{input: &switchback.InputContext{TaskName: "call_routing", InputVariables: vars},
		digits: make(chan rune, 32), hangup: make(chan struct{})}
	for _, d := range digits {
		c.digits <- d
	}
	return c
}

func (c *fakeCall) Input() *switchback.InputContext { return c.input }
func (c *fakeCall) TransferID() string              { return "t-1" }
func (c *fakeCall) Play(ctx context.Context, pcm []int16) error {
	c.mu.Lock()
	c.played = append(c.played, pcm)
	c.mu.Unlock()
	return nil
}
func (c *fakeCall) Digits() <-chan rune     { return c.digits }
func (c *fakeCall) Audio() <-chan []int16   { return nil }
func (c *fakeCall) Hangup() <-chan struct{} { return c.hangup }

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
			a := New(demoMenu(50*time.Millisecond), Prompts{Greeting: []int16{1, 2, 3}})
			call := newCall(tt.digits, vars)
			out, err := a.Run(context.Background(), call)
			if err != nil {
				t.Fatal(err)
			}
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
	a := New(config.Menu{Default: config.Outcome{TransferType: "SYSTEM", TaskName: "instant"}}, Prompts{})
	start := time.Now()
	out, err := a.Run(context.Background(), newCall("", nil))
	if err != nil || out.CurrentTaskName != "instant" || time.Since(start) > 50*time.Millisecond {
		t.Fatalf("instant menu: %+v %v after %v", out, err, time.Since(start))
	}
}

func TestHangupEndsTheMenu(t *testing.T) {
	a := New(demoMenu(10*time.Second), Prompts{})
	call := newCall("", nil)
	close(call.hangup)
	if _, err := a.Run(context.Background(), call); err == nil {
		t.Fatal("a hung-up call produced an outcome")
	}
}
