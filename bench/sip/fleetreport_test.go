package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestHighestRate(t *testing.T) {
	step := func(rate int, ok bool) StepResult {
		return StepResult{Server: "s", Round: 1, Rate: rate, Sustained: ok}
	}
	for _, tc := range []struct {
		name  string
		steps []StepResult
		want  string
	}{
		{"fails a step", []StepResult{step(100, true), step(200, true), step(300, false)}, "200"},
		{"never fails", []StepResult{step(100, true), step(200, true)}, "≥ 200"},
		{"fails the first", []StepResult{step(100, false)}, "none"},
		// A later step that passes after a failure does not count.
		{"passes after failing", []StepResult{step(100, true), step(200, false), step(300, true)}, "100"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := highest(tc.steps)[stepKey{"s", 1, 0}].String(); got != tc.want {
				t.Fatalf("highest = %q, want %q", got, tc.want)
			}
		})
	}
}

// TestFleetReport reports two rounds of made-up steps and finds the
// ratios and the verdicts.
func TestFleetReport(t *testing.T) {
	var lines []string
	add := func(v any) {
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		lines = append(lines, string(b))
	}
	// Round 1: the ceiling fails at 4000, one node at 600, two nodes at
	// 800. Round 2: the ceiling never fails, one node fails at 800, two
	// nodes at 800.
	for _, s := range []struct {
		server      string
		round, rate int
		ok          bool
		cpu         float64
	}{
		{"ceiling", 1, 400, true, 500}, {"ceiling", 1, 600, true, 450}, {"ceiling", 1, 4000, false, 300},
		{"one-node", 1, 400, true, 5000}, {"one-node", 1, 600, false, 4000},
		{"two-nodes", 1, 400, true, 5500}, {"two-nodes", 1, 600, true, 5000}, {"two-nodes", 1, 800, false, 5000},
		{"ceiling", 2, 400, true, 520}, {"ceiling", 2, 600, true, 480},
		{"one-node", 2, 400, true, 5200}, {"one-node", 2, 600, true, 4800}, {"one-node", 2, 800, false, 4000},
		{"two-nodes", 2, 400, true, 5600}, {"two-nodes", 2, 600, true, 5100}, {"two-nodes", 2, 800, false, 5000},
		{"slots-none", 1, 400, true, 4000}, {"slots-none", 1, 600, false, 4000},
		{"slots-100", 1, 400, true, 4400}, {"slots-100", 1, 600, false, 4000},
	} {
		add(StepResult{Kind: "step", Server: s.server, Round: s.round, Rate: s.rate, OK: s.rate * 10, Sustained: s.ok, CPUPerCallUs: s.cpu,
			Parts: []PartUsage{{Name: "kamailio", CPUPerCallUs: 100}, {Name: "node", CPUPerCallUs: s.cpu - 100}}})
	}
	add(SpreadResult{Kind: "spread", Server: "two-nodes", Round: 1, Rate: 400, Node: "node-a", Calls: 1900})
	add(SpreadResult{Kind: "spread", Server: "two-nodes", Round: 1, Rate: 400, Node: "node-b", Calls: 2100})
	path := filepath.Join(t.TempDir(), "results.jsonl")
	if err := os.WriteFile(path, []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	if err := runFleetReport([]string{path}, &out); err != nil {
		t.Fatal(err)
	}
	report := out.String()
	for _, want := range []string{
		"| 1 | 600 | 400 | 600 | 1.50 | 0.67 | 1.00 |",
		"| 2 | ≥ 600 | 600 | 600 | 1.00 | 1.00 ¹ | 1.00 ¹ |",
		"| median | | | | 1.25 | 0.83 | 1.00 |",
		"node-a 1900, node-b 2100",
		"| 400 | 510 (100 + 410) | 5100 (100 + 5000) | 5550 (100 + 5450) | 10.0× |",
		"| 1 | 400 | 400 | 1.00 |",
		"| 400 | 4000 | 4400 | 1.10 |",
		"| two nodes / one node, highest rate with zero failures, ≥ 0.90 (median of 2 rounds) | 1.25 | PASS |",
		"| maxCalls 100 / none, CPU per call (node + PostgreSQL), ≤ 1.10 (median of 1 steps) | 1.10 | PASS |",
	} {
		if !strings.Contains(report, want) {
			t.Errorf("the report lacks %q", want)
		}
	}
	if t.Failed() {
		t.Log(report)
	}
	if err := runFleetReport([]string{"-strict", "-target-slot-cpu", "1.05", path}, &out); err == nil {
		t.Error("-strict: no error for a missed target")
	}
}
