package agent

import (
	"context"
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
	})
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
	}}})
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
	_, err := Load([]config.Tenant{{ID: "a", Agents: []config.AgentConfig{{Menu: &config.Menu{Greeting: missing}}}}})
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
