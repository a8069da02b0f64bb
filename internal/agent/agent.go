// Package agent builds the agents that answer calls from the tenants'
// configuration: the agent of each tenant and task, with its audio loaded
// once at start.
package agent

import (
	"context"
	"fmt"
	"math"
	"os"

	"github.com/switchback/switchback"
	"github.com/switchback/switchback/internal/agent/menu"
	"github.com/switchback/switchback/internal/config"
	"github.com/switchback/switchback/internal/media"
)

// Registry is the switchback.AgentFactory of a configuration.
type Registry struct {
	tenants map[string]tenantAgents
}

type tenantAgents struct {
	byTask   map[string]switchback.Agent
	fallback switchback.Agent // the agent of task "", or nil
}

var _ switchback.AgentFactory = (*Registry)(nil)

// Load builds every tenant's agents, loading their audio. An audio file that
// cannot be read or decoded is an error naming the field.
func Load(tenants []config.Tenant) (*Registry, error) {
	r := &Registry{tenants: map[string]tenantAgents{}}
	cache := map[string][]int16{}
	for i, t := range tenants {
		ta := tenantAgents{byTask: map[string]switchback.Agent{}}
		for j, a := range t.Agents {
			if a.Menu == nil {
				continue
			}
			path := fmt.Sprintf("tenants[%d].agents[%d].menu", i, j)
			p, err := loadPrompts(*a.Menu, path, cache)
			if err != nil {
				return nil, err
			}
			agent := menu.New(a.Task, *a.Menu, p)
			if a.Task == "" {
				ta.fallback = agent
			} else {
				ta.byTask[a.Task] = agent
			}
		}
		r.tenants[t.ID] = ta
	}
	return r, nil
}

// NewAgent returns the agent for a tenant's task: on a conversation's later
// call, the one of the task its saved state was in; else the one configured
// for the input's task; else the tenant's agent for any task. ENOTFOUND when
// there is none.
func (r *Registry) NewAgent(ctx context.Context, info *switchback.CallInfo) (switchback.Agent, error) {
	tenantID, input, conv := info.TenantID, info.Input, info.Conversation
	ta := r.tenants[tenantID]
	if task, ok := menu.ResumeTask(conv); ok {
		if a, ok := ta.byTask[task]; ok {
			return a, nil
		}
	}
	task := ""
	if input != nil {
		task = input.TaskName
	}
	if a, ok := ta.byTask[task]; ok {
		return a, nil
	}
	if ta.fallback != nil {
		return ta.fallback, nil
	}
	return nil, switchback.Errorf(switchback.ENOTFOUND, "tenant %q has no agent for task %q", tenantID, task)
}

func loadPrompts(m config.Menu, path string, cache map[string][]int16) (menu.Prompts, error) {
	var p menu.Prompts
	var err error
	if p.Greeting, err = loadAudio(m.Greeting, path+".greeting", cache); err != nil {
		return p, err
	}
	if p.ChoicePrompt, err = loadAudio(m.ChoicePrompt, path+".choicePrompt", cache); err != nil {
		return p, err
	}
	for i, c := range m.Collect {
		pcm, err := loadAudio(c.Prompt, fmt.Sprintf("%s.collect[%d].prompt", path, i), cache)
		if err != nil {
			return p, err
		}
		p.Collect = append(p.Collect, pcm)
	}
	return p, nil
}

// loadAudio reads a prompt: "" is none, config.BuiltinChime the built-in
// chime, anything else a WAV file.
func loadAudio(src, field string, cache map[string][]int16) ([]int16, error) {
	switch src {
	case "":
		return nil, nil
	case config.BuiltinChime:
		return Chime(), nil
	}
	if pcm, ok := cache[src]; ok {
		return pcm, nil
	}
	f, err := os.Open(src)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", field, err)
	}
	defer f.Close()
	pcm, err := media.LoadWAV(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %s: %w", field, src, err)
	}
	cache[src] = pcm
	return pcm, nil
}

// Chime is the built-in greeting: three rising tones (C5, E5, G5), 0.3 s
// each with soft edges, about one second of 8 kHz audio. It needs no file,
// so the demo works on a bare install, and it is loud enough to tell from
// silence in a recording.
func Chime() []int16 {
	const rate = 8000
	notes := []float64{523.25, 659.25, 783.99}
	per := rate * 3 / 10
	out := make([]int16, 0, per*len(notes)+rate/10)
	for _, f := range notes {
		for i := 0; i < per; i++ {
			env := math.Min(1, math.Min(float64(i), float64(per-i))/200) // 25 ms fades
			out = append(out, int16(12000*env*math.Sin(2*math.Pi*f*float64(i)/rate)))
		}
	}
	return append(out, make([]int16, rate/10)...) // a little silence after
}
