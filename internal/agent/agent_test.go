package agent

import (
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
		_, err := r.NewAgent(tc.tenant, &switchback.InputContext{TaskName: tc.task})
		if (err == nil) != tc.found || (err != nil && switchback.ErrorCode(err) != switchback.ENOTFOUND) {
			t.Errorf("%s/%s: %v", tc.tenant, tc.task, err)
		}
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
