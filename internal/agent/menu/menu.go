// Package menu is the built-in menu agent: it plays a greeting, collects
// DTMF digits into named variables, offers a menu of choices, and hands the
// call back with the outcome its configuration maps the caller's choice to.
package menu

import (
	"context"
	"encoding/json"
	"sort"
	"strings"
	"time"

	"github.com/switchback/switchback"
	"github.com/switchback/switchback/internal/config"
)

// Prompts are a menu's audio, loaded once: 8 kHz mono 16-bit PCM, nil where
// the configuration has none.
type Prompts struct {
	Greeting     []int16
	ChoicePrompt []int16
	Collect      [][]int16 // one per config.Menu.Collect, in order
}

// Agent runs one menu. It is safe to use for many calls at once.
type Agent struct {
	task    string // the task it serves, named in its saved state
	menu    config.Menu
	prompts Prompts
	longest int // the longest choice, in digits
}

var _ switchback.Agent = (*Agent)(nil)

// New returns the agent of a task's menu whose prompts are already loaded.
func New(task string, m config.Menu, p Prompts) *Agent {
	a := &Agent{task: task, menu: m, prompts: p}
	for k := range m.Choices {
		a.longest = max(a.longest, len(k))
	}
	return a
}

// State is what the menu agent keeps between the calls of a conversation,
// so a caller who comes back resumes where they left off: no greeting
// again, the digits already collected kept, and the menu offered again.
type State struct {
	Task      string            `json:"task"`      // the task of the menu it was in
	Greeted   bool              `json:"greeted"`   // the greeting was played
	Collected int               `json:"collected"` // how many of the menu's collects are done
	Variables map[string]string `json:"variables,omitempty"`
}

// ResumeTask returns the task of the menu a conversation's saved state was
// in, if it holds a menu agent's state.
func ResumeTask(conv *switchback.Conversation) (string, bool) {
	st, ok := savedState(conv)
	return st.Task, ok
}

func savedState(conv *switchback.Conversation) (State, bool) {
	var st State
	if conv == nil || len(conv.State) == 0 {
		return st, false
	}
	if err := json.Unmarshal(conv.State, &st); err != nil {
		return State{}, false
	}
	return st, true
}

// Run plays the menu on call and returns the outcome the caller chose. On
// a conversation's later call it resumes from the state the earlier one
// saved, when that was this menu's.
func (a *Agent) Run(ctx context.Context, call switchback.Call) (*switchback.HandBack, error) {
	in := call.Info().Input
	r := &reader{call: call, timeout: a.menu.DigitTimeout.Duration()}
	st, ok := savedState(call.Info().Conversation)
	if !ok || st.Task != a.task {
		st = State{Task: a.task}
	}
	vars := map[string]string{}
	for k, v := range st.Variables {
		vars[k] = v
	}
	for k, v := range in.InputVariables {
		vars[k] = v
	}
	st.Variables = vars
	save := func() {
		if b, err := json.Marshal(st); err == nil {
			call.SaveState(b)
		}
	}
	save()
	if !st.Greeted {
		if err := a.play(ctx, call, "greeting", a.prompts.Greeting); err != nil {
			return nil, err
		}
		st.Greeted = true
		save()
	}
	for i := st.Collected; i < len(a.menu.Collect); i++ {
		c := a.menu.Collect[i]
		var prompt []int16
		if i < len(a.prompts.Collect) {
			prompt = a.prompts.Collect[i]
		}
		if err := a.play(ctx, call, "collect:"+c.Name, prompt); err != nil {
			return nil, err
		}
		digits, err := r.collect(ctx, c.MaxDigits, c.Terminator)
		if err != nil {
			return nil, err
		}
		vars[c.Name] = digits
		call.Record(switchback.EventVariable, map[string]string{"name": c.Name, "value": digits})
		st.Collected = i + 1
		save()
	}
	outcome := a.menu.Default
	if len(a.menu.Choices) > 0 {
		if err := a.play(ctx, call, "choices", a.prompts.ChoicePrompt); err != nil {
			return nil, err
		}
		choice, err := a.choose(ctx, r)
		if err != nil {
			return nil, err
		}
		if o, ok := a.menu.Choices[choice]; ok {
			outcome = o
		}
	}
	return &switchback.HandBack{Output: output(outcome, in, vars)}, nil
}

// play plays a prompt, if the menu has one, and logs it by name.
func (a *Agent) play(ctx context.Context, call switchback.Call, name string, pcm []int16) error {
	if len(pcm) == 0 {
		return nil
	}
	call.Record(switchback.EventPrompt, map[string]string{"name": name})
	return call.Play(ctx, pcm)
}

// reader reads the caller's digits, with one digit of push-back.
type reader struct {
	call    switchback.Call
	timeout time.Duration
	back    rune // a digit read ahead, or 0
}

// collect reads digits until max of them, the terminator, or a digit
// timeout. A terminator pressed right after the last digit is consumed, so
// "1234#" fills a four-digit field and leaves nothing behind.
func (r *reader) collect(ctx context.Context, max int, terminator string) (string, error) {
	var b strings.Builder
	for b.Len() < max {
		d, ok, err := r.digit(ctx, r.timeout)
		if err != nil {
			return "", err
		}
		if !ok || string(d) == terminator {
			return b.String(), nil
		}
		b.WriteRune(d)
	}
	if d, ok, err := r.digit(ctx, 0); err == nil && ok && string(d) != terminator {
		r.back = d
	}
	return b.String(), nil
}

// digit waits up to timeout for the caller's next digit; a zero timeout
// takes only a digit already pressed.
func (r *reader) digit(ctx context.Context, timeout time.Duration) (rune, bool, error) {
	if r.back != 0 {
		d := r.back
		r.back = 0
		return d, true, nil
	}
	if timeout <= 0 {
		select {
		case d := <-r.call.Digits():
			return d.Digit, true, nil
		default:
			return 0, false, nil
		}
	}
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case d := <-r.call.Digits():
		return d.Digit, true, nil
	case <-t.C:
		return 0, false, nil
	case <-ctx.Done():
		return 0, false, context.Cause(ctx)
	}
}

// choose reads digits until they spell a choice, can no longer become one,
// or a digit timeout passes.
func (a *Agent) choose(ctx context.Context, r *reader) (string, error) {
	typed := ""
	for len(typed) < a.longest {
		d, ok, err := r.digit(ctx, r.timeout)
		if err != nil || !ok {
			return typed, err
		}
		typed += string(d)
		if _, done := a.menu.Choices[typed]; done && !a.prefixOfLonger(typed) {
			return typed, nil
		}
		if !a.prefixOfAny(typed) {
			return typed, nil
		}
	}
	return typed, nil
}

func (a *Agent) prefixOfAny(s string) bool {
	for k := range a.menu.Choices {
		if strings.HasPrefix(k, s) {
			return true
		}
	}
	return false
}

func (a *Agent) prefixOfLonger(s string) bool {
	for k := range a.menu.Choices {
		if len(k) > len(s) && strings.HasPrefix(k, s) {
			return true
		}
	}
	return false
}

// output builds the output context of an outcome from the input and the
// variables known by then (input variables and collected digits).
func output(o config.Outcome, in *switchback.InputContext, vars map[string]string) *switchback.OutputContext {
	out := &switchback.OutputContext{
		TransferType:    switchback.OutputTransferType(o.TransferType),
		CurrentTaskName: o.TaskName,
	}
	if out.CurrentTaskName == "" {
		out.CurrentTaskName = in.TaskName
	}
	out.ReferenceVariables = pick(vars, o.ReferenceVariables)
	out.TransferVariables = pick(vars, o.TransferVariables)
	if len(o.Set) > 0 {
		if out.TransferVariables == nil {
			out.TransferVariables = map[string]string{}
		}
		keys := make([]string, 0, len(o.Set))
		for k := range o.Set {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			out.TransferVariables[k] = o.Set[k]
		}
	}
	return out
}

// pick copies the named variables that are known; unknown names are left out.
func pick(vars map[string]string, names []string) map[string]string {
	var out map[string]string
	for _, n := range names {
		if v, ok := vars[n]; ok {
			if out == nil {
				out = map[string]string{}
			}
			out[n] = v
		}
	}
	return out
}
