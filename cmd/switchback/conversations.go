package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"text/tabwriter"
)

const conversationsUsage = `Usage:
  switchback conversations get [flags] EXTERNAL_ID   show a conversation: its legs, state and events

Flags:
  --server URL          the gateway's API (default $SWITCHBACK_SERVER, else http://127.0.0.1:8080)
  --api-id ID           API key id (default $SWITCHBACK_API_ID)
  --api-secret SECRET   API key secret (default $SWITCHBACK_API_SECRET)
  --output json|table   json prints the server's JSON (default); table a summary
  --timeout DURATION    how long to wait for the server's answer (default 10s)

EXTERNAL_ID is the externalConversationId the conversation's call transfers
were created with.

Exit status: 0 on success; 1 on any error.
`

// conversationsPath is where the conversation resources live on the server.
const conversationsPath = "/generativeagent/v1/conversations"

// runConversations is the API client for conversations.
func runConversations(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, conversationsUsage)
		return errors.New("no conversations command given (get)")
	}
	switch args[0] {
	case "get":
		return runConversationsGet(ctx, args[1:], getenv, stdout, stderr)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, conversationsUsage)
		return nil
	}
	fmt.Fprint(stderr, conversationsUsage)
	return fmt.Errorf("unknown conversations command %q (get)", args[0])
}

func runConversationsGet(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	var cf clientFlags
	// A conversation nests whole transfers and the agent's own state, so
	// its JSON is the default: a table can only summarise it.
	fs := newClientFlagSet("conversations", "get", "get [flags] EXTERNAL_ID", "json", stderr, &cf)
	pos, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 || pos[0] == "" {
		return errors.New("usage: switchback conversations get [flags] EXTERNAL_ID")
	}
	c, err := cf.client(getenv, 0)
	if err != nil {
		return err
	}
	rep, err := c.do(ctx, http.MethodGet, conversationsPath+"/"+url.PathEscape(pos[0]), nil, nil)
	if err != nil {
		return err
	}
	if cf.output == "json" {
		return printJSON(stdout, rep.body)
	}
	var conv conversationView
	if err := json.Unmarshal(rep.body, &conv); err != nil {
		return fmt.Errorf("read conversation: %w", err)
	}
	return printConversation(stdout, &conv)
}

// conversationView is what the table output reads of a conversation.
type conversationView struct {
	ExternalConversationID string          `json:"externalConversationId"`
	CreatedAt              string          `json:"createdAt"`
	UpdatedAt              string          `json:"updatedAt"`
	Legs                   []transferView  `json:"legs"`
	State                  json.RawMessage `json:"state"`
	Events                 []struct {
		At         string            `json:"at"`
		TransferID string            `json:"transferId"`
		Type       string            `json:"type"`
		Data       map[string]string `json:"data"`
	} `json:"events"`
}

// printConversation prints a conversation's summary, its legs one a row,
// its state as compact JSON and its events one a row.
func printConversation(w io.Writer, c *conversationView) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "Conversation:\t%s\n", orDash(printable(c.ExternalConversationID)))
	fmt.Fprintf(tw, "Created:\t%s\n", orDash(c.CreatedAt))
	fmt.Fprintf(tw, "Updated:\t%s\n", orDash(c.UpdatedAt))
	state := ""
	if len(c.State) > 0 {
		state = printable(string(c.State))
		if r := []rune(state); len(r) > 200 {
			state = string(r[:200]) + "... (--output json shows it all)"
		}
	}
	fmt.Fprintf(tw, "State:\t%s\n", orDash(state))
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(w)
	if len(c.Legs) == 0 {
		fmt.Fprintln(w, "no legs")
	} else if err := printTransferRows(w, c.Legs); err != nil {
		return err
	}
	fmt.Fprintln(w)
	if len(c.Events) == 0 {
		fmt.Fprintln(w, "no events")
		return nil
	}
	tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "AT\tTRANSFER\tEVENT\tDATA")
	for _, e := range c.Events {
		var data []string
		for _, k := range slices.Sorted(maps.Keys(e.Data)) {
			data = append(data, printable(k)+"="+printable(e.Data[k]))
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", orDash(e.At), orDash(printable(e.TransferID)), orDash(printable(e.Type)),
			orDash(strings.Join(data, " ")))
	}
	return tw.Flush()
}
