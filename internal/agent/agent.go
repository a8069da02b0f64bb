// Package agent builds the agents that answer calls from the tenants'
// configuration: the agent of each tenant and task, whatever its kind
// (menu/, websocket/), with its audio loaded once at start.
package agent

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"os"

	"github.com/switchback/switchback"
	"github.com/switchback/switchback/internal/agent/menu"
	"github.com/switchback/switchback/internal/agent/websocket"
	"github.com/switchback/switchback/internal/config"
	"github.com/switchback/switchback/internal/media"
)

// Registry is the switchback.AgentFactory of a configuration: the agent
// of each tenant's tasks, whatever its kind.
type Registry struct {
	tenants map[string]tenantAgents
}

type tenantAgents struct {
	byTask   map[string]switchback.AgentFactory
	fallback switchback.AgentFactory // the agent of task "", or nil
}

var _ switchback.AgentFactory = (*Registry)(nil)

// Deps are what agents need beyond their configuration.
type Deps struct {
	// HangUps holds the live calls of websocket agents, for the
	// Twilio-style REST hang-up; nil makes a private one.
	HangUps *websocket.Registry
	Log     *slog.Logger
}

// Load builds every tenant's agents: menus with their audio loaded,
// websocket agents with their fallbacks. An audio file that cannot be read
// or decoded is an error naming the field.
func Load(tenants []config.Tenant, deps Deps) (*Registry, error) {
	if deps.HangUps == nil {
		deps.HangUps = websocket.NewRegistry()
	}
	r := &Registry{tenants: map[string]tenantAgents{}}
	cache := map[string][]int16{}
	for i, t := range tenants {
		ta := tenantAgents{byTask: map[string]switchback.AgentFactory{}}
		made := map[int]switchback.AgentFactory{}
		byTask := map[string]int{}
		for j, a := range t.Agents {
			if _, dup := byTask[a.Task]; !dup {
				byTask[a.Task] = j
			}
		}
		// build makes agent j, and first the agent its fallback names
		// (config.Validate refuses fallbacks in a circle; build does too,
		// for a configuration that was not validated).
		building := map[int]bool{}
		var build func(j int) (switchback.AgentFactory, error)
		build = func(j int) (switchback.AgentFactory, error) {
			if f, ok := made[j]; ok {
				return f, nil
			}
			if building[j] {
				return nil, fmt.Errorf("tenants[%d].agents[%d]: its fallbacks lead back to it", i, j)
			}
			building[j] = true
			a := t.Agents[j]
			path := fmt.Sprintf("tenants[%d].agents[%d]", i, j)
			var f switchback.AgentFactory
			switch {
			case a.Menu != nil:
				p, err := loadPrompts(*a.Menu, path+".menu", cache)
				if err != nil {
					return nil, err
				}
				f = one{menu.New(a.Task, *a.Menu, p)}
			case a.WebSocket != nil:
				var fallback switchback.AgentFactory
				if task := a.WebSocket.Fallback.Task; task != "" {
					k, ok := byTask[task]
					if !ok {
						return nil, fmt.Errorf("%s.websocket.fallback.task: %q is not the task of any of this tenant's agents", path, task)
					}
					var err error
					if fallback, err = build(k); err != nil {
						return nil, err
					}
				}
				ws, err := websocket.NewFactory(t.ID, *a.WebSocket, fallback, websocket.Deps{Registry: deps.HangUps, Log: deps.Log})
				if err != nil {
					return nil, fmt.Errorf("%s.%w", path, err)
				}
				f = ws
			default:
				return nil, fmt.Errorf("%s: names no kind of agent", path)
			}
			made[j] = f
			return f, nil
		}
		for j, a := range t.Agents {
			f, err := build(j)
			if err != nil {
				return nil, err
			}
			if a.Task == "" {
				ta.fallback = f
			} else {
				ta.byTask[a.Task] = f
			}
		}
		r.tenants[t.ID] = ta
	}
	return r, nil
}

// one is the factory of an agent that takes any number of calls at once.
type one struct{ agent switchback.Agent }

func (o one) NewAgent(context.Context, *switchback.CallInfo) (switchback.Agent, error) {
	return o.agent, nil
}

// NewAgent makes the agent for a tenant's task: on a conversation's later
// call, the one of the task its saved state was in; else the one configured
// for the input's task; else the tenant's agent for any task. An agent that
// connects somewhere does so within ctx. ENOTFOUND when there is none.
func (r *Registry) NewAgent(ctx context.Context, info *switchback.CallInfo) (switchback.Agent, error) {
	ta := r.tenants[info.TenantID]
	if task, ok := menu.ResumeTask(info.Conversation); ok {
		if f, ok := ta.byTask[task]; ok {
			return f.NewAgent(ctx, info)
		}
	}
	task := ""
	if info.Input != nil {
		task = info.Input.TaskName
	}
	if f, ok := ta.byTask[task]; ok {
		return f.NewAgent(ctx, info)
	}
	if ta.fallback != nil {
		return ta.fallback.NewAgent(ctx, info)
	}
	return nil, switchback.Errorf(switchback.ENOTFOUND, "tenant %q has no agent for task %q", info.TenantID, task)
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
