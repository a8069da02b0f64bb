package agent

import (
	"encoding/json"
	"io"
	"net"

	"context"
	"github.com/switchback/switchback/internal/agent/websocket"
	"path/filepath"
	"strings"
	"testing"

	"github.com/switchback/switchback"
	"github.com/switchback/switchback/internal/config"
)

func TestRegistryPicksTheTasksAgent(t *testing.T) {
	instant := &config.Menu{Default: config.Outcome{TransferType: "SYSTEM"}}
	r, err := Load([]config.Tenant{
		{ID: "a", Agents: []config.AgentConfig{{Task: "billing", Menu: instant}, {Menu: instant}}},
		{ID: "b", Agents: []config.AgentConfig{{Task: "billing", Menu: instant}}},
		{ID: "c"},
	}, Deps{})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		tenant, task string
		found        bool
	}{
		{"a", "billing", true}, {"a", "other", true}, {"b", "billing", true},
		{"b", "other", false}, {"c", "", false}, {"nobody", "", false},
	} {
		_, err := r.NewAgent(context.Background(), &switchback.CallInfo{TenantID: tc.tenant, Input: &switchback.InputContext{TaskName: tc.task}, Conversation: nil})
		if (err == nil) != tc.found || (err != nil && switchback.ErrorCode(err) != switchback.ENOTFOUND) {
			t.Errorf("%s/%s: %v", tc.tenant, tc.task, err)
		}
	}
}

func TestRegistryResumesTheMenuTheConversationWasIn(t *testing.T) {
	r, err := Load([]config.Tenant{{ID: "a", Agents: []config.AgentConfig{
		{Task: "billing", Menu: &config.Menu{Default: config.Outcome{TransferType: "SYSTEM", TaskName: "billing"}}},
		{Menu: &config.Menu{Default: config.Outcome{TransferType: "SYSTEM", TaskName: "any"}}},
	}}}, Deps{})
	if err != nil {
		t.Fatal(err)
	}
	conv := &switchback.Conversation{State: []byte(`{"task":"billing","greeted":true}`)}
	a, err := r.NewAgent(context.Background(), &switchback.CallInfo{TenantID: "a", Input: &switchback.InputContext{TaskName: "other"}, Conversation: conv})
	if err != nil {
		t.Fatal(err)
	}
	billing, _ := r.NewAgent(context.Background(), &switchback.CallInfo{TenantID: "a", Input: &switchback.InputContext{TaskName: "billing"}, Conversation: nil})
	if a != billing {
		t.Fatal("a resumed conversation did not get the agent of the task it was in")
	}
	// A state naming a task without an agent falls back to the input's task.
	conv.State = []byte(`{"task":"gone"}`)
	if a, _ := r.NewAgent(context.Background(), &switchback.CallInfo{TenantID: "a", Input: &switchback.InputContext{TaskName: "billing"}, Conversation: conv}); a != billing {
		t.Fatal("a state naming an unknown task changed the agent")
	}
}

func TestLoadNamesTheBadGreeting(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "missing.wav")
	_, err := Load([]config.Tenant{{ID: "a", Agents: []config.AgentConfig{{Menu: &config.Menu{Greeting: missing}}}}}, Deps{})
	if err == nil || !strings.Contains(err.Error(), "tenants[0].agents[0].menu.greeting") {
		t.Fatalf("error = %v", err)
	}
}

func TestChimeIsAudible(t *testing.T) {
	pcm := Chime()
	var loud int
	for _, s := range pcm {
		if s > 4000 || s < -4000 {
			loud++
		}
	}
	if len(pcm) < 7000 || loud < len(pcm)/3 {
		t.Fatalf("chime: %d samples, %d loud", len(pcm), loud)
	}
}

func TestRegistryMakesWebSocketAgentsWithTheirFallback(t *testing.T) {
	// An agent nobody listens on: the call goes to the menu it falls back on.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	menuOut := config.Outcome{TransferType: "SYSTEM", TaskName: "menu"}
	r, err := Load([]config.Tenant{{ID: "a", Agents: []config.AgentConfig{
		{Task: "voice", WebSocket: &websocket.Config{URL: "ws://" + addr + "/agent", Fallback: websocket.Fallback{Task: "menu"}}},
		{Task: "menu", Menu: &config.Menu{Default: menuOut}},
	}}}, Deps{})
	if err != nil {
		t.Fatal(err)
	}
	a, err := r.NewAgent(context.Background(), &switchback.CallInfo{TenantID: "a", TransferID: "t", Input: &switchback.InputContext{TaskName: "voice"}})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if c, ok := a.(io.Closer); ok {
			c.Close()
		}
	}()
	hb, err := a.Run(context.Background(), nopCall{})
	if err != nil || hb.Output.CurrentTaskName != "menu" {
		t.Fatalf("the fallback's hand-back: %+v %v", hb, err)
	}
}

// nopCall is a call on which nothing happens.
type nopCall struct{}

func (nopCall) Info() *switchback.CallInfo {
	return &switchback.CallInfo{TenantID: "a", TransferID: "t", Input: &switchback.InputContext{TaskName: "voice"}}
}
func (nopCall) Audio() <-chan switchback.AudioFrame            { return nil }
func (nopCall) Digits() <-chan switchback.Digit                { return nil }
func (nopCall) Play(context.Context, []int16) error            { return nil }
func (nopCall) Enqueue([]int16) error                          { return nil }
func (nopCall) Mark(string) error                              { return nil }
func (nopCall) Marks() <-chan string                           { return nil }
func (nopCall) Clear()                                         {}
func (nopCall) SaveState(json.RawMessage)                      {}
func (nopCall) Record(switchback.EventType, map[string]string) {}
