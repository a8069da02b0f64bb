package config

import (
	"github.com/switchback/switchback/internal/agent/websocket"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestValidateAgents(t *testing.T) {
	dir := t.TempDir()
	wav := filepath.Join(dir, "hello.wav")
	writeFile(t, wav, "RIFF") // its contents are checked when audio is loaded, not here
	missing := filepath.Join(dir, "missing.wav")

	// menu is the demo tenant's menu for any task.
	menu := func(c *Config) *Menu { return c.Tenants[0].Agents[0].Menu }
	const m = "tenants[0].agents[0].menu"
	tests := []struct {
		name   string
		mutate func(c *Config)
		want   []string // every message, in order; none means valid
	}{
		{
			name:   "no agents is valid (calls are refused)",
			mutate: func(c *Config) { c.Tenants[0].Agents = nil },
		},
		{
			name:   "one agent for a task only is valid",
			mutate: func(c *Config) { c.Tenants[0].Agents = c.Tenants[0].Agents[1:2] },
		},
		{
			name:   "two agents for any task",
			mutate: func(c *Config) { c.Tenants[0].Agents[2].Task = "" },
			want:   []string{`tenants[0].agents[2].task: "" (any task) is also the task of agents[0]`},
		},
		{
			name:   "two agents for one task",
			mutate: func(c *Config) { c.Tenants[0].Agents[2].Task = "account" },
			want:   []string{`tenants[0].agents[2].task: "account" is also the task of agents[1]`},
		},
		{
			name: "one task in two tenants is valid",
			mutate: func(c *Config) {
				c.Tenants = append(c.Tenants, tenant("acme"))
				c.Tenants[1].Agents[0].Task = "account"
			},
		},
		{
			name:   "agent without a menu",
			mutate: func(c *Config) { c.Tenants[0].Agents[1].Menu = nil },
			want:   []string{`tenants[0].agents[1]: names no kind of agent: give it a menu or a websocket`},
		},
		{
			name: "a websocket agent falling back on a menu is valid",
			mutate: func(c *Config) {
				c.Tenants[0].Agents[1] = AgentConfig{Task: "account", WebSocket: &websocket.Config{URL: "ws://127.0.0.1:9/a",
					Fallback: websocket.Fallback{Task: ""}}}
				c.Tenants[0].Agents[1].WebSocket.Fallback.Task = "instant"
			},
		},
		{
			name: "an agent of two kinds",
			mutate: func(c *Config) {
				c.Tenants[0].Agents[1].WebSocket = &websocket.Config{URL: "ws://127.0.0.1:9/a"}
			},
			want: []string{`tenants[0].agents[1]: has both menu and websocket: an agent is of one kind`},
		},
		{
			name: "a websocket agent's own mistakes, by path",
			mutate: func(c *Config) {
				c.Tenants[0].Agents[1] = AgentConfig{Task: "account", WebSocket: &websocket.Config{URL: "http://x"}}
			},
			want: []string{`tenants[0].agents[1].websocket.url: must be ws:// or wss://`},
		},
		{
			name: "a fallback to no agent",
			mutate: func(c *Config) {
				c.Tenants[0].Agents[1] = AgentConfig{Task: "account", WebSocket: &websocket.Config{URL: "ws://h/a", Fallback: websocket.Fallback{Task: "nope"}}}
			},
			want: []string{`tenants[0].agents[1].websocket.fallback.task: "nope" is not the task of any of this tenant's agents`},
		},
		{
			name: "fallbacks in a circle",
			mutate: func(c *Config) {
				c.Tenants[0].Agents[1] = AgentConfig{Task: "account", WebSocket: &websocket.Config{URL: "ws://h/a", Fallback: websocket.Fallback{Task: "instant"}}}
				c.Tenants[0].Agents[2] = AgentConfig{Task: "instant", WebSocket: &websocket.Config{URL: "ws://h/b", Fallback: websocket.Fallback{Task: "account"}}}
			},
			want: []string{
				`tenants[0].agents[1].websocket.fallback.task: falls back in a circle (to agents[1])`,
				`tenants[0].agents[2].websocket.fallback.task: falls back in a circle (to agents[2])`,
			},
		},
		{name: "greeting file is valid", mutate: func(c *Config) { menu(c).Greeting = wav }},
		{name: "no greeting is valid", mutate: func(c *Config) { menu(c).Greeting = "" }},
		{
			name:   "greeting file missing",
			mutate: func(c *Config) { menu(c).Greeting = missing },
			want:   []string{m + `.greeting: cannot read "` + missing + `": no such file or directory`},
		},
		{
			name:   "greeting that is a directory",
			mutate: func(c *Config) { menu(c).Greeting = dir },
			want:   []string{m + `.greeting: "` + dir + `" is a directory, not a file`},
		},
		{
			name:   "unknown built-in greeting",
			mutate: func(c *Config) { menu(c).Greeting = "builtin:beep" },
			want:   []string{m + `.greeting: "builtin:beep" is not a built-in sound: the built-in sounds are builtin:chime`},
		},
		{
			name:   "choice prompt file missing",
			mutate: func(c *Config) { menu(c).ChoicePrompt = missing },
			want:   []string{m + `.choicePrompt: cannot read "` + missing + `": no such file or directory`},
		},
		{name: "choice prompt chime is valid", mutate: func(c *Config) { menu(c).ChoicePrompt = BuiltinChime }},
		{
			name: "collects in order, with every default",
			mutate: func(c *Config) {
				menu(c).Collect = []Collect{
					{Name: "a", Prompt: wav, MaxDigits: 1, Terminator: "*"},
					{Name: "b", Prompt: BuiltinChime, MaxDigits: 64, Terminator: ""},
					{Name: "c", MaxDigits: 16, Terminator: "D"},
				}
			},
		},
		{
			name: "collect without a name, or twice",
			mutate: func(c *Config) {
				menu(c).Collect = []Collect{{Name: "pin", MaxDigits: 4}, {MaxDigits: 4}, {Name: "pin", MaxDigits: 4}}
			},
			want: []string{
				m + `.collect[1].name: required: the variable the digits go into`,
				m + `.collect[2].name: "pin" is also the name of collect[0]`,
			},
		},
		{
			name:   "collect prompt missing",
			mutate: func(c *Config) { menu(c).Collect = []Collect{{Name: "pin", Prompt: missing, MaxDigits: 4}} },
			want:   []string{m + `.collect[0].prompt: cannot read "` + missing + `": no such file or directory`},
		},
		{
			name:   "collect of no digits",
			mutate: func(c *Config) { menu(c).Collect = []Collect{{Name: "pin"}} },
			want:   []string{m + `.collect[0].maxDigits: must be from 1 to 64, got 0`},
		},
		{
			name:   "collect of too many digits",
			mutate: func(c *Config) { menu(c).Collect = []Collect{{Name: "pin", MaxDigits: 65}} },
			want:   []string{m + `.collect[0].maxDigits: must be from 1 to 64, got 65`},
		},
		{
			name: "terminators that are not one digit",
			mutate: func(c *Config) {
				menu(c).Collect = []Collect{
					{Name: "a", MaxDigits: 4, Terminator: "##"},
					{Name: "b", MaxDigits: 4, Terminator: "x"},
					{Name: "c", MaxDigits: 4, Terminator: "d"},
				}
			},
			want: []string{
				m + `.collect[0].terminator: must be one DTMF digit (0-9 * # A-D), or "" for none, got "##"`,
				m + `.collect[1].terminator: must be one DTMF digit (0-9 * # A-D), or "" for none, got "x"`,
				m + `.collect[2].terminator: must be one DTMF digit (0-9 * # A-D), or "" for none, got "d"`,
			},
		},
		{
			name: "choices of every digit are valid",
			mutate: func(c *Config) {
				menu(c).Choices = map[string]Outcome{
					"0123456*": {TransferType: "AGENT"}, "789#ABCD": {TransferType: "SYSTEM"}, "#": {TransferType: "SYSTEM"},
				}
			},
		},
		{
			name:   "no choices is valid",
			mutate: func(c *Config) { menu(c).Choices = nil },
		},
		{
			name: "choice keys that are not DTMF, in key order",
			mutate: func(c *Config) {
				menu(c).Choices = map[string]Outcome{
					"1x": {TransferType: "AGENT"}, "": {TransferType: "AGENT"}, "123456789": {TransferType: "AGENT"}, "a": {TransferType: "AGENT"},
				}
			},
			want: []string{
				m + `.choices[""]: the key is not 1 to 8 DTMF digits (0-9 * # A-D)`,
				m + `.choices["123456789"]: the key is not 1 to 8 DTMF digits (0-9 * # A-D)`,
				m + `.choices["1x"]: the key is not 1 to 8 DTMF digits (0-9 * # A-D)`,
				m + `.choices["a"]: the key is not 1 to 8 DTMF digits (0-9 * # A-D)`,
			},
		},
		{
			name:   "zero digit timeout is valid",
			mutate: func(c *Config) { menu(c).DigitTimeout = 0 },
		},
		{
			name:   "negative digit timeout",
			mutate: func(c *Config) { menu(c).DigitTimeout = Duration(-time.Second) },
			want:   []string{m + `.digitTimeout: must not be negative (0 means do not wait)`},
		},
		{
			name: "outcome types",
			mutate: func(c *Config) {
				menu(c).Choices = map[string]Outcome{
					"1": {TransferType: "CALLER_DISCONNECT"}, "2": {TransferType: "agent"}, "3": {},
				}
				menu(c).Default.TransferType = "BYE"
			},
			want: []string{
				m + `.choices["1"].transferType: CALLER_DISCONNECT is the caller hanging up, not an outcome a menu chooses: use AGENT or SYSTEM`,
				m + `.choices["2"].transferType: must be AGENT or SYSTEM, got "agent"`,
				m + `.choices["3"].transferType: must be AGENT or SYSTEM, got ""`,
				m + `.default.transferType: must be AGENT or SYSTEM, got "BYE"`,
			},
		},
		{
			name: "outcome variables without names",
			mutate: func(c *Config) {
				menu(c).Default = Outcome{
					TransferType:       "SYSTEM",
					ReferenceVariables: []string{"a", ""},
					TransferVariables:  []string{""},
					Set:                map[string]string{"": "x", "k": ""},
				}
			},
			want: []string{
				m + `.default.referenceVariables[1]: a variable name must not be empty`,
				m + `.default.transferVariables[0]: a variable name must not be empty`,
				m + `.default.set: a variable name must not be empty`,
			},
		},
		{
			name: "problems of several agents, in order",
			mutate: func(c *Config) {
				c.Tenants[0].Agents[1].Menu.Collect[0].MaxDigits = 0
				c.Tenants[0].Agents[2].Menu.Default.TransferType = ""
				c.Tenants[0].Agents = append(c.Tenants[0].Agents, AgentConfig{Task: "x"})
			},
			want: []string{
				`tenants[0].agents[1].menu.collect[0].maxDigits: must be from 1 to 64, got 0`,
				`tenants[0].agents[2].menu.default.transferType: must be AGENT or SYSTEM, got ""`,
				`tenants[0].agents[3]: names no kind of agent: give it a menu or a websocket`,
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := Default()
			tt.mutate(&c)
			got := errorLines(c.Validate())
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("Validate() =\n  %s\nwant\n  %s", strings.Join(got, "\n  "), strings.Join(tt.want, "\n  "))
			}
		})
	}
}

// A menu's digitTimeout and a collect's terminator take their defaults only
// when the file leaves their keys out: 0 and "" are settings of their own.
func TestLoadMenuDefaults(t *testing.T) {
	tests := []struct {
		name string
		menu string // the YAML of tenants[0].agents[0].menu, in flow style
		want Menu
	}{
		{
			name: "digit timeout left out",
			menu: "{default: {transferType: SYSTEM}}",
			want: Menu{DigitTimeout: Duration(5 * time.Second), Default: Outcome{TransferType: "SYSTEM"}},
		},
		{
			name: "digit timeout of 0s",
			menu: "{digitTimeout: 0s, default: {transferType: SYSTEM}}",
			want: Menu{DigitTimeout: 0, Default: Outcome{TransferType: "SYSTEM"}},
		},
		{
			name: "digit timeout of 0 without a unit",
			menu: "{digitTimeout: 0, default: {transferType: SYSTEM}}",
			want: Menu{DigitTimeout: 0, Default: Outcome{TransferType: "SYSTEM"}},
		},
		{
			name: "digit timeout given",
			menu: "{digitTimeout: 1500ms, default: {transferType: SYSTEM}}",
			want: Menu{DigitTimeout: Duration(1500 * time.Millisecond), Default: Outcome{TransferType: "SYSTEM"}},
		},
		{
			name: "collect defaults",
			menu: "{collect: [{name: a}, {name: b, terminator: '', maxDigits: 0}, {name: c, terminator: '*', maxDigits: 3}], default: {transferType: SYSTEM}}",
			want: Menu{
				Collect: []Collect{
					{Name: "a", MaxDigits: 16, Terminator: "#"},
					{Name: "b", MaxDigits: 16, Terminator: ""},
					{Name: "c", MaxDigits: 3, Terminator: "*"},
				},
				DigitTimeout: Duration(5 * time.Second),
				Default:      Outcome{TransferType: "SYSTEM"},
			},
		},
		{
			name: "every field",
			menu: `{greeting: "builtin:chime", choicePrompt: "builtin:chime", digitTimeout: 2s,
				collect: [{name: pin, prompt: "builtin:chime", maxDigits: 4, terminator: "#"}],
				choices: {"1": {transferType: AGENT, taskName: t, referenceVariables: [pin], transferVariables: [x], set: {k: v}},
				          "*0": {transferType: SYSTEM}, 2: {transferType: SYSTEM}},
				default: {transferType: SYSTEM, taskName: d}}`,
			want: Menu{
				Greeting:     BuiltinChime,
				Collect:      []Collect{{Name: "pin", Prompt: BuiltinChime, MaxDigits: 4, Terminator: "#"}},
				ChoicePrompt: BuiltinChime,
				Choices: map[string]Outcome{
					"1": {TransferType: "AGENT", TaskName: "t", ReferenceVariables: []string{"pin"},
						TransferVariables: []string{"x"}, Set: map[string]string{"k": "v"}},
					"*0": {TransferType: "SYSTEM"},
					"2":  {TransferType: "SYSTEM"}, // an unquoted number is a string key too
				},
				DigitTimeout: Duration(2 * time.Second),
				Default:      Outcome{TransferType: "SYSTEM", TaskName: "d"},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			file := "tenants:\n  - id: acme\n    sip: {allow: [127.0.0.1]}\n    agents:\n      - menu: " + tt.menu + "\n"
			got, err := Load(writeConfig(t, file), nil)
			if err != nil {
				t.Fatalf("Load() error:\n%v", err)
			}
			if m := got.Tenants[0].Agents[0].Menu; !reflect.DeepEqual(*m, tt.want) {
				t.Errorf("menu =\n%s\nwant\n%s", dump(t, m), dump(t, tt.want))
			}
		})
	}
}

// Anchors and merge keys work inside menus as elsewhere, presets included.
func TestLoadMenuMerge(t *testing.T) {
	file := `
tenants:
  - id: acme
    sip: {allow: [127.0.0.1]}
    agents:
      - task: a
        menu: &menu
          greeting: builtin:chime
          collect: [{name: pin}]
          default: {transferType: SYSTEM}
      - task: b
        menu:
          <<: *menu
          digitTimeout: 0s
      - task: c
        menu: *menu
`
	got, err := Load(writeConfig(t, file), nil)
	if err != nil {
		t.Fatalf("Load() error:\n%v", err)
	}
	base := Menu{
		Greeting:     BuiltinChime,
		Collect:      []Collect{{Name: "pin", MaxDigits: 16, Terminator: "#"}},
		DigitTimeout: Duration(5 * time.Second),
		Default:      Outcome{TransferType: "SYSTEM"},
	}
	noWait := base
	noWait.DigitTimeout = 0
	for i, want := range []Menu{base, noWait, base} {
		if m := got.Tenants[0].Agents[i].Menu; !reflect.DeepEqual(*m, want) {
			t.Errorf("agents[%d].menu = %+v, want %+v", i, *m, want)
		}
	}
}

func TestLoadAgentErrors(t *testing.T) {
	// tenant is the start of a file whose tenant has what it needs but its agents.
	const tenant = "tenants:\n  - id: a\n    sip: {allow: [127.0.0.1]}\n    agents:\n"
	tests := []struct {
		name string
		file string
		want []string // every message, in order
	}{
		{
			name: "unknown key of an agent",
			file: tenant + "      - {taks: x, menu: {default: {transferType: SYSTEM}}}\n",
			want: []string{"switchback.yaml:5: tenants[0].agents[0].taks: unknown field; known fields here are menu, task"},
		},
		{
			name: "unknown key of a menu",
			file: tenant + "      - menu:\n          greting: builtin:chime\n          default: {transferType: SYSTEM}\n",
			want: []string{"switchback.yaml:6: tenants[0].agents[0].menu.greting: unknown field; " +
				"known fields here are choicePrompt, choices, collect, default, digitTimeout, greeting"},
		},
		{
			name: "key of a menu in the wrong case",
			file: tenant + "      - menu: {digittimeout: 1s, default: {transferType: SYSTEM}}\n",
			want: []string{"switchback.yaml:5: tenants[0].agents[0].menu.digittimeout: unknown field; did you mean digitTimeout?"},
		},
		{
			name: "unknown key of a collect",
			file: tenant + "      - menu:\n          collect: [{name: pin, max: 4}]\n          default: {transferType: SYSTEM}\n",
			want: []string{"switchback.yaml:6: tenants[0].agents[0].menu.collect[0].max: unknown field; " +
				"known fields here are maxDigits, name, prompt, terminator"},
		},
		{
			name: "unknown key of a choice's outcome",
			file: tenant + "      - menu:\n          choices:\n            \"#\": {transferType: AGENT, taskname: x}\n          default: {transferType: SYSTEM}\n",
			want: []string{`switchback.yaml:7: tenants[0].agents[0].menu.choices["#"].taskname: unknown field; did you mean taskName?`},
		},
		{
			name: "unknown key of the default outcome",
			file: tenant + "      - menu: {default: {transferType: SYSTEM, variables: [x]}}\n",
			want: []string{"switchback.yaml:5: tenants[0].agents[0].menu.default.variables: unknown field; " +
				"known fields here are referenceVariables, set, taskName, transferType, transferVariables"},
		},
		{
			name: "unknown key merged into a menu",
			file: tenant + "      - menu: &m {default: {transferType: SYSTEM}, colour: red}\n      - {task: b, menu: {<<: *m}}\n",
			want: []string{
				"switchback.yaml:5: tenants[0].agents[0].menu.colour: unknown field",
				"switchback.yaml:5: tenants[0].agents[1].menu.colour: unknown field",
			},
		},
		{
			name: "digit timeout without a unit",
			file: tenant + "      - menu:\n          digitTimeout: 5\n          default: {transferType: SYSTEM}\n",
			want: []string{`switchback.yaml:6: "5" is not a duration: write it with a unit, like 10s, 1m30s or 250ms`},
		},
		{
			name: "bad values in a menu, and after it",
			file: tenant + "      - menu:\n          collect: [{name: pin, maxDigits: many}]\n          default: {transferType: SYSTEM}\n" +
				"log: {level: [x]}\n",
			want: []string{
				"switchback.yaml:6: cannot unmarshal !!str `many` into int",
				"switchback.yaml:8: cannot unmarshal !!seq into string",
			},
		},
		{
			name: "a menu that is a list",
			file: tenant + "      - menu: [greeting]\n",
			want: []string{"switchback.yaml:5: a menu must be a mapping of its fields"},
		},
		{
			name: "a collect that is a string",
			file: tenant + "      - menu: {collect: [pin], default: {transferType: SYSTEM}}\n",
			want: []string{"switchback.yaml:5: a collect must be a mapping of its fields"},
		},
		{
			name: "a menu left empty",
			file: tenant + "      - menu:\n",
			want: []string{"tenants[0].agents[0]: names no kind of agent"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Load(writeConfig(t, tt.file), nil)
			if err == nil {
				t.Fatal("Load() succeeded, want an error")
			}
			if strings.Contains(err.Error(), "not found in type") {
				t.Errorf("Load() error names a Go type for an unknown key:\n%s", err)
			}
			got := errorLines(err)
			if len(got) != len(tt.want) {
				t.Fatalf("Load() error has %d messages, want %d:\n%s", len(got), len(tt.want), err)
			}
			for i, want := range tt.want {
				if !strings.Contains(got[i], want) {
					t.Errorf("message %d = %q, want it to contain %q", i, got[i], want)
				}
			}
		})
	}
}

func TestAgent(t *testing.T) {
	demo := Default().Tenants[0]
	forTask := demo
	forTask.Agents = demo.Agents[1:] // "account" and "instant", none for any task
	tests := []struct {
		name     string
		tenant   Tenant
		task     string
		wantTask string // the Task of the agent found
		wantOK   bool
	}{
		{name: "exact task", tenant: demo, task: "account", wantTask: "account", wantOK: true},
		{name: "another exact task", tenant: demo, task: "instant", wantTask: "instant", wantOK: true},
		{name: "other task falls back to any task", tenant: demo, task: "billing", wantTask: "", wantOK: true},
		{name: "no task", tenant: demo, task: "", wantTask: "", wantOK: true},
		{name: "tasks are case-sensitive", tenant: demo, task: "Account", wantTask: "", wantOK: true},
		{name: "exact task without a fallback", tenant: forTask, task: "instant", wantTask: "instant", wantOK: true},
		{name: "other task without a fallback", tenant: forTask, task: "billing"},
		{name: "no agents", tenant: Tenant{ID: "x"}, task: "account"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := tt.tenant.Agent(tt.task)
			if ok != tt.wantOK || got.Task != tt.wantTask || (ok && got.Menu == nil) {
				t.Errorf("Agent(%q) = %+v, %v; want task %q, %v", tt.task, got, ok, tt.wantTask, tt.wantOK)
			}
		})
	}
	// The fallback is the demo's menu for any task, not another.
	if got, _ := demo.Agent("billing"); got.Menu != demo.Agents[0].Menu {
		t.Errorf("Agent(billing) is not agents[0]")
	}
}

// The demo's instant agent hands the call back at once: nothing to play and
// nothing to wait for.
func TestDemoInstantAgent(t *testing.T) {
	a, ok := Default().Tenants[0].Agent("instant")
	if !ok || a.Task != "instant" {
		t.Fatalf("Agent(instant) = %+v, %v", a, ok)
	}
	m := a.Menu
	if m.Greeting != "" || m.ChoicePrompt != "" || len(m.Collect) != 0 || len(m.Choices) != 0 || m.DigitTimeout != 0 ||
		m.Default.TransferType != "SYSTEM" || m.Default.TaskName != "instant" {
		t.Errorf("instant menu = %+v", *m)
	}
}
