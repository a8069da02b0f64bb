package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"regexp"
	"strings"
	"testing"

	"github.com/switchback/switchback"
)

// finishLeg matches and completes a transfer as a call would, and records
// how its hand-back went.
func finishLeg(t *testing.T, api *transfersAPI, id string) {
	t.Helper()
	ctx := context.Background()
	if _, err := api.Svc.Match(ctx, transfersTenant, id); err != nil {
		t.Fatal(err)
	}
	if _, err := api.Svc.Complete(ctx, transfersTenant, id, &switchback.OutputContext{TransferType: switchback.TransferSystem}); err != nil {
		t.Fatal(err)
	}
	if err := api.Svc.SetReturnResult(ctx, transfersTenant, id, &switchback.ReturnResult{Method: switchback.ReturnREFER,
		SIPStatus: 202, NotifyStatus: 503, Fallback: true, Reason: "the target was unavailable"}); err != nil {
		t.Fatal(err)
	}
}

func TestTransfersGetShowsReturnResult(t *testing.T) {
	api := startTransfersAPI(t)
	api.ok("create", "--id", "tr-1", "--return-uri", "sip:back@pbx.example.com", "--return-type", "REFER")
	if out := api.ok("get", "tr-1"); strings.Contains(out, "Handed back") {
		t.Fatalf("a transfer not handed back shows a hand-back:\n%s", out)
	}
	finishLeg(t, api, "tr-1")

	out := api.ok("get", "tr-1")
	for _, re := range []string{`(?m)^Handed back by:\s+REFER$`, `(?m)^Return SIP status:\s+202$`, `(?m)^Return NOTIFY status:\s+503$`,
		`(?m)^Fallback:\s+ended by BYE instead$`, `(?m)^Return reason:\s+the target was unavailable$`, `(?m)^Handed back:\s+\d{4}-`} {
		if !regexp.MustCompile(re).MatchString(out) {
			t.Errorf("get table does not match %s:\n%s", re, out)
		}
	}
	v := api.okJSON("get", "tr-1")
	if field(v, "returnResult.method") != "REFER" || field(v, "returnResult.fallback") != true {
		t.Errorf("get --output json: returnResult = %v", v["returnResult"])
	}
}

func TestConversationsGet(t *testing.T) {
	api := startTransfersAPI(t)
	api.ok("create", "--id", "leg-1", "--conversation", "conv-7")
	finishLeg(t, api, "leg-1")
	api.ok("create", "--id", "leg-2", "--conversation", "conv-7")
	err := api.Svc.RecordConversation(context.Background(), &switchback.ConversationRecord{TenantID: transfersTenant, ExternalID: "conv-7",
		State: json.RawMessage(`{"menu":"main"}`),
		Events: []switchback.ConversationEvent{
			{TransferID: "leg-1", Type: switchback.EventDigit, Data: map[string]string{"digit": "1", "leg": "caller"}},
		}})
	if err != nil {
		t.Fatal(err)
	}

	// JSON by default, as the server wrote it, pretty-printed.
	r := api.runCommand("conversations", "", nil, "get", "conv-7")
	if r.Err != nil {
		t.Fatalf("conversations get: %v\n%s", r.Err, r.Stderr)
	}
	var v map[string]any
	if err := json.Unmarshal([]byte(r.Stdout), &v); err != nil || !strings.Contains(r.Stdout, "\n  \"") {
		t.Fatalf("output is not pretty JSON (%v):\n%s", err, r.Stdout)
	}
	legs, _ := v["legs"].([]any)
	if v["externalConversationId"] != "conv-7" || len(legs) != 2 || field(legs[0], "id") != "leg-1" ||
		field(legs[0], "returnResult.method") != "REFER" || field(v, "state.menu") != "main" {
		t.Errorf("conversation = %s", r.Stdout)
	}

	r = api.runCommand("conversations", "", nil, "get", "conv-7", "--output", "table")
	if r.Err != nil {
		t.Fatalf("conversations get --output table: %v", r.Err)
	}
	for _, re := range []string{`(?m)^Conversation:\s+conv-7$`, `(?m)^State:\s+\{"menu":"main"\}$`,
		`(?m)^leg-1\s+SIP\s+COMPLETED\s`, `(?m)^leg-2\s+SIP\s+ACTIVE\s`, `(?m)\sleg-1\s+digit\s+digit=1 leg=caller$`} {
		if !regexp.MustCompile(re).MatchString(r.Stdout) {
			t.Errorf("table does not match %s:\n%s", re, r.Stdout)
		}
	}

	var ae *apiError
	r = api.runCommand("conversations", "", nil, "get", "conv-nope")
	if !errors.As(r.Err, &ae) || ae.Status != 404 || ae.Code != "404-01" || !strings.Contains(ae.Message, "conv-nope") {
		t.Errorf("unknown conversation: %v", r.Err)
	}
	// An id that needs escaping in the path reaches the server whole.
	r = api.runCommand("conversations", "", nil, "get", "a/b c?d")
	if !errors.As(r.Err, &ae) || ae.Status != 404 || !strings.Contains(ae.Message, `"a/b c?d"`) {
		t.Errorf("escaped id: %v", r.Err)
	}
}

func TestConversationsUsage(t *testing.T) {
	api := startTransfersAPI(t)
	for _, tt := range []struct {
		name    string
		args    []string
		wantErr string
	}{
		{"no command", nil, "no conversations command"},
		{"unknown command", []string{"list"}, `unknown conversations command "list"`},
		{"get without id", []string{"get"}, "usage: switchback conversations get"},
		{"get two ids", []string{"get", "a", "b"}, "usage: switchback conversations get"},
		{"bad output", []string{"get", "x", "--output", "yaml"}, `--output: "yaml"`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := api.runCommand("conversations", "", nil, tt.args...)
			if r.Err == nil || !strings.Contains(r.Err.Error(), tt.wantErr) {
				t.Errorf("err = %v, want it to contain %q", r.Err, tt.wantErr)
			}
		})
	}
	r := api.runCommand("conversations", "", nil, "help")
	if r.Err != nil || !strings.Contains(r.Stdout, "EXTERNAL_ID") {
		t.Errorf("help: err %v\n%s", r.Err, r.Stdout)
	}
	r = api.runCommand("conversations", "", nil, "get", "-h")
	if !errors.Is(r.Err, flag.ErrHelp) || !strings.Contains(r.Stderr, "switchback conversations get") {
		t.Errorf("get -h: err %v\n%s", r.Err, r.Stderr)
	}
	r = api.runCommand("help", "", nil)
	if !strings.Contains(r.Stdout, "switchback conversations get EXTERNAL_ID") {
		t.Errorf("the usage does not list conversations:\n%s", r.Stdout)
	}
}
