package config

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
)

func TestDurationYAML(t *testing.T) {
	tests := []struct {
		name    string
		yaml    string
		want    time.Duration
		wantErr string
	}{
		{name: "seconds", yaml: "d: 10s", want: 10 * time.Second},
		{name: "minutes and seconds", yaml: "d: 1m30s", want: 90 * time.Second},
		{name: "milliseconds", yaml: "d: 250ms", want: 250 * time.Millisecond},
		{name: "quoted", yaml: `d: "2h"`, want: 2 * time.Hour},
		{name: "zero needs no unit", yaml: "d: 0", want: 0},
		{name: "negative", yaml: "d: -5s", want: -5 * time.Second},
		{name: "bare number", yaml: "d: 10", wantErr: `line 1: "10" is not a duration: write it with a unit, like 10s, 1m30s or 250ms`},
		{name: "word", yaml: "d: soon", wantErr: `line 1: "soon" is not a duration`},
		{name: "list", yaml: "\nd: [10s]", wantErr: `line 2: a duration must be a value like 10s, not a list or mapping`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var v struct {
				D Duration `yaml:"d"`
			}
			err := yaml.Unmarshal([]byte(tt.yaml), &v)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error = %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if v.D.Duration() != tt.want {
				t.Errorf("got %v, want %v", v.D, tt.want)
			}
		})
	}
}

func TestDurationMarshal(t *testing.T) {
	v := struct {
		D Duration `yaml:"d" json:"d"`
	}{Duration(90 * time.Second)}
	y, err := yaml.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	if string(y) != "d: 1m30s\n" {
		t.Errorf("yaml.Marshal = %q, want %q", y, "d: 1m30s\n")
	}
	j, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	if string(j) != `{"d":"1m30s"}` {
		t.Errorf("json.Marshal = %s", j)
	}
	if s := Duration(250 * time.Millisecond).String(); s != "250ms" {
		t.Errorf("String() = %q, want 250ms", s)
	}
}
