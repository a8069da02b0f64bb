package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode"

	"github.com/switchback/switchback"
)

const transfersUsage = `Usage:
  switchback transfers create [flags]        create a call transfer
  switchback transfers get [flags] ID        show a call transfer
  switchback transfers list [flags]          list call transfers, newest first
  switchback transfers wait [flags] ID       wait until a call transfer reaches a status

Every command takes:
  --server URL          the gateway's API (default $SWITCHBACK_SERVER, else http://127.0.0.1:8080)
  --api-id ID           API key id (default $SWITCHBACK_API_ID)
  --api-secret SECRET   API key secret (default $SWITCHBACK_API_SECRET)
  --output table|json   table for people (default); json prints the server's JSON
  --timeout DURATION    how long to wait for the server's answer (default 10s;
                        wait adds its --wait to it)

create:
  --id ID               transfer id (default: a new tr-<random>)
  --conversation ID     externalConversationId (default: the transfer id)
  --type SIP|PHONE_NUMBER   (default SIP)
  --country CC          country of the temporary number (PHONE_NUMBER, required)
  --return-uri URI      where a SIP transfer's call goes back to
  --return-type BYE|REFER|INVITE
  --return-user USER, --return-password PASSWORD   credentials for a return INVITE
  --task NAME           inputContext.taskName
  --var KEY=VALUE       an inputContext.inputVariables entry; repeat for more
  --body FILE           send FILE ("-" for stdin) as the raw JSON request instead

list:
  --conversation ID     only this externalConversationId's transfers
  --page-size N         transfers per page (the server's default when unset)
  --page-token TOKEN    the page after a previous listing's nextPageToken
  --all                 follow nextPageToken until the last page

wait:
  --status LIST         comma-separated statuses to wait for (default COMPLETED,EXPIRED)
  --wait DURATION       how long the server waits (default 30s)

Exit status: 0 on success; 2 when wait's --wait passed before the transfer
reached one of --status (the transfer as it stands is still printed); 1 on
any other error.
`

// runTransfers is the API client: create, get, list and wait.
func runTransfers(ctx context.Context, args []string, getenv func(string) string, stdin io.Reader, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, transfersUsage)
		return errors.New("no transfers command given (create, get, list, wait)")
	}
	switch args[0] {
	case "create":
		return runTransfersCreate(ctx, args[1:], getenv, stdin, stdout, stderr)
	case "get":
		return runTransfersGet(ctx, args[1:], getenv, stdout, stderr)
	case "list":
		return runTransfersList(ctx, args[1:], getenv, stdout, stderr)
	case "wait":
		return runTransfersWait(ctx, args[1:], getenv, stdout, stderr)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, transfersUsage)
		return nil
	}
	fmt.Fprint(stderr, transfersUsage)
	return fmt.Errorf("unknown transfers command %q (create, get, list, wait)", args[0])
}

// basePath is where the call transfer resources live on the server.
const basePath = "/generativeagent/v1/call-transfers"

// waitTimeout is the error of a wait whose time ran out before the transfer
// reached a wanted status. It is not a failure of the client, so it has its
// own exit status (see exitCode).
type waitTimeout struct {
	ID     string
	Status string // the status the transfer was left in
	Want   string
	Waited time.Duration
}

func (e *waitTimeout) Error() string {
	return fmt.Sprintf("wait timed out after %s: transfer %s is %s, not %s", e.Waited, e.ID, e.Status, e.Want)
}

// exitCode is the process exit status for an error of run: 2 when a wait
// timed out, so scripts can tell "not yet" from a failure, 1 otherwise.
func exitCode(err error) int {
	var wt *waitTimeout
	switch {
	case err == nil:
		return 0
	case errors.As(err, &wt):
		return 2
	}
	return 1
}

// apiError is an error answer of the API, read from its envelope.
type apiError struct {
	Status    int
	Code      string
	Message   string
	RequestID string
}

func (e *apiError) Error() string {
	s := strconv.Itoa(e.Status)
	if e.Code != "" {
		s += " " + e.Code
	}
	s += ": " + e.Message
	if e.RequestID != "" {
		s += " (request " + e.RequestID + ")"
	}
	return s
}

// clientFlags are the flags every transfers command shares.
type clientFlags struct {
	server, apiID, apiSecret, output string
	timeout                          time.Duration
}

// newTransfersFlagSet returns the flag set of "transfers <name>" with the
// shared flags registered in cf.
func newTransfersFlagSet(name, synopsis string, stderr io.Writer, cf *clientFlags) *flag.FlagSet {
	return newClientFlagSet("transfers", name, synopsis, "table", stderr, cf)
}

// newClientFlagSet returns the flag set of the API client command
// "<group> <name>" with the shared flags registered in cf, printing output
// by default.
func newClientFlagSet(group, name, synopsis, output string, stderr io.Writer, cf *clientFlags) *flag.FlagSet {
	fs := flag.NewFlagSet(group+" "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: switchback %s %s\n\nFlags:\n", group, synopsis)
		fs.PrintDefaults()
		fmt.Fprintf(stderr, "\nRun \"switchback %s help\" for every command and the exit statuses.\n", group)
	}
	// Credentials and server default to the environment only after parsing,
	// so -h never prints the secret as a flag default.
	fs.StringVar(&cf.server, "server", "", "gateway API URL (default $SWITCHBACK_SERVER, else http://127.0.0.1:8080)")
	fs.StringVar(&cf.apiID, "api-id", "", "API key id (default $SWITCHBACK_API_ID)")
	fs.StringVar(&cf.apiSecret, "api-secret", "", "API key secret (default $SWITCHBACK_API_SECRET)")
	fs.StringVar(&cf.output, "output", output, "output format: table or json")
	fs.DurationVar(&cf.timeout, "timeout", 10*time.Second, "how long to wait for the server's answer")
	return fs
}

// parseArgs parses flags placed before, between or after the positional
// arguments, as in "get ID --output json", and returns the positional ones.
func parseArgs(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return pos, nil
		}
		if consumed := len(args) - len(rest); consumed > 0 && args[consumed-1] == "--" {
			return append(pos, rest...), nil
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}

// client checks the shared flags, fills them in from the environment and
// returns a client whose requests may take extra beyond --timeout.
func (cf *clientFlags) client(getenv func(string) string, extra time.Duration) (*apiClient, error) {
	if cf.output != "table" && cf.output != "json" {
		return nil, fmt.Errorf("--output: %q is not table or json", cf.output)
	}
	if cf.timeout <= 0 {
		return nil, fmt.Errorf("--timeout: must be more than 0, not %s", cf.timeout)
	}
	server := firstNonEmpty(cf.server, getenv("SWITCHBACK_SERVER"), "http://127.0.0.1:8080")
	u, err := url.Parse(server)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil || u.RawQuery != "" {
		return nil, fmt.Errorf("--server: %q is not an http:// or https:// URL such as http://127.0.0.1:8080", server)
	}
	id := firstNonEmpty(cf.apiID, getenv("SWITCHBACK_API_ID"))
	if id == "" {
		return nil, errors.New("no API key id: pass --api-id or set SWITCHBACK_API_ID")
	}
	secret := firstNonEmpty(cf.apiSecret, getenv("SWITCHBACK_API_SECRET"))
	if secret == "" {
		return nil, errors.New("no API key secret: pass --api-secret or set SWITCHBACK_API_SECRET")
	}
	return &apiClient{
		base: strings.TrimRight(server, "/"), id: id, secret: secret,
		http:    &http.Client{Timeout: cf.timeout + extra},
		timeout: cf.timeout + extra,
	}, nil
}

func firstNonEmpty(ss ...string) string {
	for _, s := range ss {
		if s != "" {
			return s
		}
	}
	return ""
}

// apiClient sends authenticated requests to one server.
type apiClient struct {
	base, id, secret string
	http             *http.Client
	timeout          time.Duration
}

// reply is a successful answer of the API.
type reply struct {
	header http.Header
	body   []byte
}

// maxReplyBytes bounds what is read of an answer; a page of 100 transfers
// is far smaller.
const maxReplyBytes = 16 << 20

// do sends one request and returns a 2xx answer, an *apiError for an error
// answer, or an error that names the server it could not reach.
func (c *apiClient) do(ctx context.Context, method, path string, query url.Values, body []byte) (*reply, error) {
	u := c.base + path
	if len(query) > 0 {
		u += "?" + query.Encode()
	}
	var r io.Reader
	if body != nil {
		r = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, r)
	if err != nil {
		return nil, fmt.Errorf("build request: %w", err)
	}
	req.Header.Set("asapp-api-id", c.id)
	req.Header.Set("asapp-api-secret", c.secret)
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", "switchback-cli")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	res, err := c.http.Do(req)
	if err != nil {
		return nil, c.transportError(ctx, err)
	}
	defer res.Body.Close()
	data, err := io.ReadAll(io.LimitReader(res.Body, maxReplyBytes))
	if err != nil {
		return nil, c.transportError(ctx, err)
	}
	if res.StatusCode/100 != 2 {
		return nil, decodeAPIError(res, data)
	}
	if !json.Valid(data) {
		return nil, fmt.Errorf("server %s answered %s with something that is not JSON: %s", c.base, res.Status, snippet(data))
	}
	return &reply{header: res.Header, body: data}, nil
}

// transportError says which server could not be reached, without the
// request URL's details (the secret is in headers, never in the URL).
func (c *apiClient) transportError(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return fmt.Errorf("request to %s: %w", c.base, ctx.Err())
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		if ue.Timeout() {
			return fmt.Errorf("server %s did not answer within %s (raise --timeout): %w", c.base, c.timeout, err)
		}
		err = ue.Err
	}
	return fmt.Errorf("could not reach server %s: %w", c.base, err)
}

// decodeAPIError reads the error envelope of an answer, or describes an
// answer that is not one (a proxy's error page, say).
func decodeAPIError(res *http.Response, data []byte) error {
	var env struct {
		Error *struct {
			RequestID string `json:"requestId"`
			Code      string `json:"code"`
			Message   string `json:"message"`
		} `json:"error"`
	}
	e := &apiError{Status: res.StatusCode, RequestID: res.Header.Get("X-Request-Id")}
	if json.Unmarshal(data, &env) == nil && env.Error != nil {
		e.Code, e.Message = env.Error.Code, env.Error.Message
		if env.Error.RequestID != "" {
			e.RequestID = env.Error.RequestID
		}
		return e
	}
	e.Message = http.StatusText(res.StatusCode)
	if len(bytes.TrimSpace(data)) > 0 {
		e.Message += ": " + snippet(data)
	}
	return e
}

// snippet is the start of a body, made safe to print.
func snippet(b []byte) string {
	s := strings.TrimSpace(string(b))
	if len(s) > 200 {
		s = s[:200] + "..."
	}
	return printable(s)
}

func runTransfersCreate(ctx context.Context, args []string, getenv func(string) string, stdin io.Reader, stdout, stderr io.Writer) error {
	var cf clientFlags
	fs := newTransfersFlagSet("create", "create [flags]", stderr, &cf)
	id := fs.String("id", "", "transfer id (default: a new tr-<random>)")
	conv := fs.String("conversation", "", "externalConversationId (default: the transfer id)")
	typ := fs.String("type", string(switchback.TypeSIP), "transfer type: SIP or PHONE_NUMBER")
	country := fs.String("country", "", "ISO 3166 alpha-2 country of the temporary number (PHONE_NUMBER)")
	returnURI := fs.String("return-uri", "", "SIP URI the call is handed back to (SIP)")
	returnType := fs.String("return-type", "", "how the call is handed back: BYE, REFER or INVITE (SIP; default: the tenant's)")
	returnUser := fs.String("return-user", "", "username answering the return INVITE's challenge (SIP)")
	returnPassword := fs.String("return-password", "", "password answering the return INVITE's challenge (SIP)")
	task := fs.String("task", "", "inputContext.taskName")
	vars := map[string]string{}
	fs.Func("var", "inputContext.inputVariables entry KEY=VALUE; repeat for more", func(s string) error {
		k, v, ok := strings.Cut(s, "=")
		if !ok || k == "" {
			return fmt.Errorf("%q is not KEY=VALUE", s)
		}
		if _, dup := vars[k]; dup {
			return fmt.Errorf("%q is given twice", k)
		}
		vars[k] = v
		return nil
	})
	bodyFile := fs.String("body", "", `send this file ("-" for stdin) as the raw JSON request`)
	pos, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return fmt.Errorf("usage: switchback transfers create [flags] (unexpected %q)", pos[0])
	}

	var body []byte
	generated := false
	if *bodyFile != "" {
		var others []string
		fs.Visit(func(f *flag.Flag) {
			switch f.Name {
			case "body", "server", "api-id", "api-secret", "output", "timeout":
			default:
				others = append(others, "--"+f.Name)
			}
		})
		if len(others) > 0 {
			return fmt.Errorf("--body sends the request as it is; it cannot be combined with %s", strings.Join(others, ", "))
		}
		if body, err = readBody(*bodyFile, stdin); err != nil {
			return err
		}
	} else {
		if *id == "" {
			*id, generated = newTransferID(), true
		}
		if *conv == "" {
			*conv = *id
		}
		req, err := createRequestFromFlags(fs, *id, *conv, *typ, *country, *returnURI, *returnType, *returnUser, *returnPassword, *task, vars)
		if err != nil {
			return err
		}
		if body, err = json.Marshal(req); err != nil {
			return fmt.Errorf("encode request: %w", err)
		}
	}

	c, err := cf.client(getenv, 0)
	if err != nil {
		return err
	}
	rep, err := c.do(ctx, http.MethodPost, basePath, nil, body)
	if err != nil {
		// Unless the server answered or was never reached, it may have
		// created the transfer before the answer was lost; the same request
		// again is a safe retry.
		var ae *apiError
		var op *net.OpError
		outcomeKnown := errors.As(err, &ae) || (errors.As(err, &op) && op.Op == "dial") || ctx.Err() != nil
		if generated && !outcomeKnown {
			return fmt.Errorf("%w (transfer %s may have been created; run again with --id %s to retry safely)", err, *id, *id)
		}
		return err
	}
	return printOne(stdout, cf.output, rep.body)
}

// createRequest is the body of a create built from flags.
type createRequest struct {
	ID                     string                   `json:"id"`
	ExternalConversationID string                   `json:"externalConversationId"`
	Type                   string                   `json:"type"`
	PhoneNumber            *createPhoneNumber       `json:"phoneNumber,omitempty"`
	SIP                    *createSIP               `json:"sip,omitempty"`
	InputContext           *switchback.InputContext `json:"inputContext,omitempty"`
}

type createPhoneNumber struct {
	Country string `json:"country"`
}

type createSIP struct {
	ReturnURI                  string      `json:"returnURI,omitempty"`
	ReturnTransferType         string      `json:"returnTransferType,omitempty"`
	ReturnInviteAuthentication *createAuth `json:"returnInviteAuthentication,omitempty"`
}

type createAuth struct {
	Username string `json:"username"`
	Password string `json:"password,omitempty"`
}

// createRequestFromFlags checks that the flags given fit the type, leaving
// the values themselves to the server, which names the field that is wrong.
func createRequestFromFlags(fs *flag.FlagSet, id, conv, typ, country, returnURI, returnType, user, password, task string, vars map[string]string) (*createRequest, error) {
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	req := &createRequest{ID: id, ExternalConversationID: conv, Type: strings.ToUpper(typ)}
	switch switchback.Type(req.Type) {
	case switchback.TypePhoneNumber:
		for _, f := range []string{"return-uri", "return-type", "return-user", "return-password"} {
			if set[f] {
				return nil, fmt.Errorf("--%s is only for --type SIP", f)
			}
		}
		if country == "" {
			return nil, errors.New("--country is required with --type PHONE_NUMBER")
		}
		req.PhoneNumber = &createPhoneNumber{Country: strings.ToUpper(country)}
	case switchback.TypeSIP:
		if set["country"] {
			return nil, errors.New("--country is only for --type PHONE_NUMBER")
		}
		if password != "" && user == "" {
			return nil, errors.New("--return-password needs --return-user")
		}
		req.SIP = &createSIP{ReturnURI: returnURI, ReturnTransferType: strings.ToUpper(returnType)}
		if user != "" {
			req.SIP.ReturnInviteAuthentication = &createAuth{Username: user, Password: password}
		}
		if *req.SIP == (createSIP{}) {
			req.SIP = nil
		}
	default:
		return nil, fmt.Errorf("--type: %q is not SIP or PHONE_NUMBER", typ)
	}
	if task != "" || len(vars) > 0 {
		req.InputContext = &switchback.InputContext{TaskName: task}
		if len(vars) > 0 {
			req.InputContext.InputVariables = vars
		}
	}
	return req, nil
}

func readBody(name string, stdin io.Reader) ([]byte, error) {
	var b []byte
	var err error
	if name == "-" {
		b, err = io.ReadAll(stdin)
	} else {
		b, err = os.ReadFile(name)
	}
	if err != nil {
		return nil, fmt.Errorf("--body: %w", err)
	}
	return b, nil
}

// newTransferID returns tr- and 12 random hex digits.
func newTransferID() string {
	var b [6]byte
	rand.Read(b[:])
	return "tr-" + hex.EncodeToString(b[:])
}

func runTransfersGet(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	var cf clientFlags
	fs := newTransfersFlagSet("get", "get [flags] ID", stderr, &cf)
	pos, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 || pos[0] == "" {
		return errors.New("usage: switchback transfers get [flags] ID")
	}
	c, err := cf.client(getenv, 0)
	if err != nil {
		return err
	}
	rep, err := c.do(ctx, http.MethodGet, basePath+"/"+url.PathEscape(pos[0]), nil, nil)
	if err != nil {
		return err
	}
	return printOne(stdout, cf.output, rep.body)
}

func runTransfersWait(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	var cf clientFlags
	fs := newTransfersFlagSet("wait", "wait [flags] ID   (exit status 2 when --wait passes first)", stderr, &cf)
	status := fs.String("status", "COMPLETED,EXPIRED", "comma-separated statuses to wait for")
	wait := fs.Duration("wait", 30*time.Second, "how long the server waits for one of --status")
	pos, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 || pos[0] == "" {
		return errors.New("usage: switchback transfers wait [flags] ID")
	}
	if *wait < 0 {
		return fmt.Errorf("--wait: must not be negative, not %s", *wait)
	}
	want := strings.ToUpper(strings.ReplaceAll(*status, " ", ""))
	c, err := cf.client(getenv, *wait)
	if err != nil {
		return err
	}
	q := url.Values{"waitForStatus": {want}, "timeout": {wait.String()}}
	rep, err := c.do(ctx, http.MethodGet, basePath+"/"+url.PathEscape(pos[0]), q, nil)
	if err != nil {
		return err
	}
	if err := printOne(stdout, cf.output, rep.body); err != nil {
		return err
	}
	var t transferView
	if err := json.Unmarshal(rep.body, &t); err != nil {
		return fmt.Errorf("read transfer: %w", err)
	}
	reached := slices.Contains(strings.Split(want, ","), t.Status)
	switch rep.header.Get("Switchback-Wait-Result") {
	case "reached":
		reached = true
	case "timeout":
		reached = false
	}
	if !reached {
		return &waitTimeout{ID: t.ID, Status: t.Status, Want: strings.ReplaceAll(want, ",", " or "), Waited: *wait}
	}
	return nil
}

func runTransfersList(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	var cf clientFlags
	fs := newTransfersFlagSet("list", "list [flags]", stderr, &cf)
	conv := fs.String("conversation", "", "only this externalConversationId's transfers")
	pageSize := fs.Int("page-size", 0, "transfers per page (default: the server's)")
	pageToken := fs.String("page-token", "", "start at this nextPageToken of a previous listing")
	all := fs.Bool("all", false, "follow nextPageToken until the last page")
	pos, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return fmt.Errorf("usage: switchback transfers list [flags] (unexpected %q)", pos[0])
	}
	c, err := cf.client(getenv, 0)
	if err != nil {
		return err
	}
	q := url.Values{}
	if *conv != "" {
		q.Set("externalConversationId", *conv)
	}
	if *pageSize != 0 {
		q.Set("pageSize", strconv.Itoa(*pageSize))
	}
	token := *pageToken
	var items []json.RawMessage
	seen := map[string]bool{}
	for {
		if token != "" {
			q.Set("pageToken", token)
		}
		rep, err := c.do(ctx, http.MethodGet, basePath, q, nil)
		if err != nil {
			return err
		}
		var page struct {
			CallTransfers []json.RawMessage `json:"callTransfers"`
			NextPageToken string            `json:"nextPageToken"`
		}
		if err := json.Unmarshal(rep.body, &page); err != nil {
			return fmt.Errorf("read page of transfers: %w", err)
		}
		if !*all && cf.output == "json" {
			return printJSON(stdout, rep.body)
		}
		items = append(items, page.CallTransfers...)
		token = page.NextPageToken
		if token == "" {
			break
		}
		if !*all {
			fmt.Fprintf(stderr, "more transfers: add --page-token %s, or --all\n", token)
			break
		}
		if seen[token] {
			return fmt.Errorf("server %s returned page token %q twice; stopping", c.base, token)
		}
		seen[token] = true
	}
	if cf.output == "json" {
		if items == nil {
			items = []json.RawMessage{}
		}
		b, err := json.Marshal(struct {
			CallTransfers []json.RawMessage `json:"callTransfers"`
		}{items})
		if err != nil {
			return fmt.Errorf("encode transfers: %w", err)
		}
		return printJSON(stdout, b)
	}
	ts := make([]transferView, len(items))
	for i, raw := range items {
		if err := json.Unmarshal(raw, &ts[i]); err != nil {
			return fmt.Errorf("read transfer: %w", err)
		}
	}
	if len(ts) == 0 {
		fmt.Fprintln(stderr, "no call transfers found")
		return nil
	}
	return printTransferRows(stdout, ts)
}

// transferView is what the table output reads of a transfer resource.
type transferView struct {
	ID                     string                    `json:"id"`
	ExternalConversationID string                    `json:"externalConversationId"`
	Status                 string                    `json:"status"`
	Type                   string                    `json:"type"`
	CreatedAt              string                    `json:"createdAt"`
	CallReceivedAt         string                    `json:"callReceivedAt"`
	CompletedAt            string                    `json:"completedAt"`
	ExpiresAt              string                    `json:"expiresAt"`
	ExpireAt               string                    `json:"expireAt"`
	InputContext           *switchback.InputContext  `json:"inputContext"`
	OutputContext          *switchback.OutputContext `json:"outputContext"`
	ReturnResult           *struct {
		Method       string `json:"method"`
		SIPStatus    int    `json:"sipStatus"`
		NotifyStatus int    `json:"notifyStatus"`
		Fallback     bool   `json:"fallback"`
		Reason       string `json:"reason"`
		At           string `json:"at"`
	} `json:"returnResult"`
	PhoneNumber *struct {
		TransferNumber string `json:"transferNumber"`
		Country        string `json:"country"`
	} `json:"phoneNumber"`
	SIP *struct {
		ReturnURI                  string `json:"returnURI"`
		ReturnUri                  string `json:"returnUri"`
		ReturnTransferType         string `json:"returnTransferType"`
		ReturnInviteAuthentication *struct {
			Username string `json:"username"`
		} `json:"returnInviteAuthentication"`
	} `json:"sip"`
}

// printOne prints a transfer resource in the chosen format.
func printOne(w io.Writer, format string, raw []byte) error {
	if format == "json" {
		return printJSON(w, raw)
	}
	var t transferView
	if err := json.Unmarshal(raw, &t); err != nil {
		return fmt.Errorf("read transfer: %w", err)
	}
	return printTransfer(w, &t)
}

// printJSON pretty-prints JSON as the server wrote it, keeping its field order.
func printJSON(w io.Writer, raw []byte) error {
	var buf bytes.Buffer
	if err := json.Indent(&buf, bytes.TrimSpace(raw), "", "  "); err != nil {
		return fmt.Errorf("format JSON: %w", err)
	}
	buf.WriteByte('\n')
	_, err := w.Write(buf.Bytes())
	return err
}

// printTransfer prints one transfer as aligned "Key: value" lines.
func printTransfer(w io.Writer, t *transferView) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	row := func(key, value string) {
		fmt.Fprintf(tw, "%s:\t%s\n", key, orDash(printable(value)))
	}
	vars := func(key string, m map[string]string) {
		if len(m) == 0 {
			return
		}
		label := key + ":"
		for _, k := range slices.Sorted(maps.Keys(m)) {
			fmt.Fprintf(tw, "%s\t%s=%s\n", label, printable(k), printable(m[k]))
			label = ""
		}
	}
	row("ID", t.ID)
	row("Conversation", t.ExternalConversationID)
	row("Type", t.Type)
	row("Status", t.Status)
	if p := t.PhoneNumber; p != nil {
		row("Number", p.TransferNumber)
		row("Country", p.Country)
	}
	if s := t.SIP; s != nil {
		row("Return URI", firstNonEmpty(s.ReturnURI, s.ReturnUri))
		row("Return type", s.ReturnTransferType)
		if a := s.ReturnInviteAuthentication; a != nil {
			row("Return user", a.Username)
		}
	}
	row("Expires", firstNonEmpty(t.ExpiresAt, t.ExpireAt))
	row("Created", t.CreatedAt)
	row("Call received", t.CallReceivedAt)
	row("Completed", t.CompletedAt)
	if ic := t.InputContext; ic != nil {
		if ic.TaskName != "" {
			row("Input task", ic.TaskName)
		}
		vars("Input variables", ic.InputVariables)
	}
	if oc := t.OutputContext; oc != nil {
		row("Output type", string(oc.TransferType))
		if oc.CurrentTaskName != "" {
			row("Output task", oc.CurrentTaskName)
		}
		vars("Reference variables", oc.ReferenceVariables)
		vars("Transfer variables", oc.TransferVariables)
	}
	if r := t.ReturnResult; r != nil {
		status := func(code int) string {
			if code == 0 {
				return ""
			}
			return strconv.Itoa(code)
		}
		row("Handed back by", r.Method)
		row("Return SIP status", status(r.SIPStatus))
		if r.NotifyStatus != 0 {
			row("Return NOTIFY status", status(r.NotifyStatus))
		}
		if r.Fallback {
			row("Fallback", "ended by BYE instead")
		}
		if r.Reason != "" {
			row("Return reason", r.Reason)
		}
		row("Handed back", r.At)
	}
	return tw.Flush()
}

// printTransferRows prints transfers one a row.
func printTransferRows(w io.Writer, ts []transferView) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tTYPE\tSTATUS\tNUMBER/RETURN\tCREATED")
	for _, t := range ts {
		var target string
		switch {
		case t.PhoneNumber != nil:
			target = t.PhoneNumber.TransferNumber
			if target == "" {
				target = "(" + t.PhoneNumber.Country + ")"
			}
		case t.SIP != nil:
			target = strings.TrimSpace(t.SIP.ReturnTransferType + " " + firstNonEmpty(t.SIP.ReturnURI, t.SIP.ReturnUri))
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", orDash(printable(t.ID)), orDash(t.Type), orDash(t.Status),
			orDash(printable(target)), orDash(t.CreatedAt))
	}
	return tw.Flush()
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// printable quotes a server-supplied string that holds control characters,
// so a variable's value cannot break the table or drive the terminal.
func printable(s string) string {
	for _, r := range s {
		if unicode.IsControl(r) || r == unicode.ReplacementChar {
			return strconv.Quote(s)
		}
	}
	return s
}
