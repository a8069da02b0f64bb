package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/switchback/switchback"
	"github.com/switchback/switchback/internal/agent"
	"github.com/switchback/switchback/internal/agent/websocket"
	"github.com/switchback/switchback/internal/agent/websocket/echo"
	"github.com/switchback/switchback/internal/config"
	"github.com/switchback/switchback/internal/softphone"
)

const demoUsage = `Usage: switchback demo [flags]

The whole round trip of a call transfer in a few seconds, on the embedded
defaults: it starts the gateway in this process (a temporary SQLite store,
the API and SIP on free loopback ports), creates a call transfer through the
API, calls in with the softphone of "switchback call", hears the greeting,
presses 1 (an agent, please), is handed back by BYE, and fetches the
transfer at that instant to show its output context.

With --agent websocket the call is taken by a small echo agent over a real
WebSocket instead of the menu: Switchback dials it as it would any voice
agent built for Twilio Media Streams, streams the call's audio to it, plays
what it sends back, and takes its hand-back when the caller presses 1.

Flags:
`

// demoCallTimeout bounds the demo's call; it takes about two seconds.
const demoCallTimeout = 20 * time.Second

func runDemo(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, demoUsage)
		fs.PrintDefaults()
	}
	phoneNumber := fs.Bool("phone-number", false, "transfer by a temporary phone number (PHONE_NUMBER) and dial it, instead of SIP")
	record := fs.String("record", "", "save what the softphone heard to this WAV file")
	verbose := fs.Bool("verbose", false, "show the gateway's log and the softphone's events on stderr")
	agentKind := fs.String("agent", "menu", "the agent that takes the call: menu (built in) or websocket (an echo agent over a WebSocket)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *agentKind != "menu" && *agentKind != "websocket" {
		return fmt.Errorf("--agent: %q is not menu or websocket", *agentKind)
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("usage: switchback demo [flags] (unexpected %q)", fs.Arg(0))
	}
	detail := io.Discard
	if *verbose {
		detail = stderr
	}

	dir, err := os.MkdirTemp("", "switchback-demo-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	cfg := demoConfig(filepath.Join(dir, "demo.db"), *verbose)
	log := newLogger(cfg, detail)
	if *agentKind == "websocket" {
		url, stop, err := startEchoAgent(log)
		if err != nil {
			return err
		}
		defer stop()
		cfg.Tenants[0].Agents = []config.AgentConfig{{WebSocket: &websocket.Config{URL: url}}}
		fmt.Fprintf(stdout, "The call's agent is an echo agent on %s, over a WebSocket.\n", url)
	}
	store, err := openStore(ctx, cfg, true)
	if err != nil {
		return fmt.Errorf("open the demo store: %w", err)
	}
	defer store.Close()
	if err := loadPool(ctx, cfg, store, log); err != nil {
		return err
	}
	key, secret, err := switchback.NewAPIKey(config.DefaultTenantID, "demo", []string{switchback.ScopeCallTransfers}, switchback.SystemClock())
	if err != nil {
		return err
	}
	if err := store.CreateAPIKey(ctx, key); err != nil {
		return fmt.Errorf("create the demo key: %w", err)
	}
	g, err := listenOnFreePorts(ctx, cfg, store, log)
	if err != nil {
		return err
	}
	gatewayCtx, stopGateway := context.WithCancel(ctx)
	served := make(chan error, 1)
	go func() { served <- g.serve(gatewayCtx, nil) }()
	defer func() { stopGateway(); <-served }()

	apiURL := "http://" + g.apiAddr().String()
	api := &apiClient{base: apiURL, id: key.ID, secret: secret, http: &http.Client{Timeout: 10 * time.Second}, timeout: 10 * time.Second}
	fmt.Fprintf(stdout, "Switchback demo: the gateway runs in this process on its embedded defaults (API %s, SIP %s);\n", apiURL, g.edge.Addr())
	fmt.Fprintf(stdout, "a softphone plays the contact center's phone system.\n\n")

	// 1. The contact center creates the transfer.
	id := demoTransferID()
	req := createRequest{ID: id, ExternalConversationID: "conversation-" + id, Type: string(switchback.TypeSIP),
		InputContext: &switchback.InputContext{InputVariables: map[string]string{"accountNumber": "3434", "name": "Demo Caller"}}}
	if *phoneNumber {
		req.Type, req.PhoneNumber = string(switchback.TypePhoneNumber), &createPhoneNumber{Country: "US"}
	}
	body, err := json.Marshal(req)
	if err != nil {
		return fmt.Errorf("encode request: %w", err)
	}
	rep, err := api.do(ctx, http.MethodPost, basePath, nil, body)
	if err != nil {
		return fmt.Errorf("create the transfer: %w", err)
	}
	var created transferView
	if err := json.Unmarshal(rep.body, &created); err != nil {
		return fmt.Errorf("read the created transfer: %w", err)
	}
	number := ""
	if created.PhoneNumber != nil {
		number = ", number " + created.PhoneNumber.TransferNumber
	}
	fmt.Fprintf(stdout, "1. Created call transfer %s (%s, %s%s) via POST %s\n", created.ID, created.Type, created.Status, number, basePath)

	// 2-4. Its phone system sends the call, the agent answers, the caller
	// presses 1, and the call comes back.
	sipAddr := g.edge.Addr()
	plan := softphone.Plan{
		Target:      "sip:" + config.DefaultTenantID + "@" + sipAddr.String(),
		DialOptions: softphone.DialOptions{Record: *record != ""},
		DTMF:        "1",
		DTMFDelay:   defaultDTMFDelay,
		Timeout:     demoCallTimeout,
	}
	with := " with " + softphone.TransferIDHeader + ": " + id
	if *phoneNumber {
		if created.PhoneNumber == nil || created.PhoneNumber.TransferNumber == "" {
			return errors.New("the PHONE_NUMBER transfer came without a transferNumber")
		}
		plan.Target = "sip:" + created.PhoneNumber.TransferNumber + "@" + sipAddr.String()
		with = ", the leased number,"
	} else {
		plan.TransferID = id
	}
	ports, _ := parsePortRange(defaultPhoneRTP)
	phone, err := softphone.New(softphone.Options{LocalIP: netip.MustParseAddr("127.0.0.1"), RTPPorts: ports, Transport: "udp", Events: detail, Log: log})
	if err != nil {
		return err
	}
	defer phone.Close()
	call := phone.Run(ctx, plan)
	if !call.Answered {
		return fmt.Errorf("2. Called %s%s ... %s", plan.Target, with, call.End)
	}
	fmt.Fprintf(stdout, "2. Called %s%s ... %s\n", plan.Target, with, call.Answer)
	if !call.DigitsSent {
		return fmt.Errorf("3. The call ended before 1 was pressed: %s", call.End)
	}
	fmt.Fprintf(stdout, "3. Heard the greeting (%.1f s of audio), pressed 1\n", call.HeardBeforeDigits.Seconds())
	if call.HeardBeforeDigits <= 0 {
		return errors.New("3. The softphone heard nothing before it pressed 1")
	}
	if !call.HandedBack {
		return fmt.Errorf("4. Switchback did not hand the call back: %s", call.End)
	}
	fmt.Fprintf(stdout, "4. Switchback handed the call back: BYE\n")

	// 5. The contact center fetches the outcome the moment the call is back.
	path := basePath + "/" + id
	got, err := api.do(ctx, http.MethodGet, path, nil, nil)
	if err != nil {
		return fmt.Errorf("5. GET %s: %w", path, err)
	}
	fmt.Fprintf(stdout, "5. GET %s right away:\n", path)
	if err := printJSON(stdout, got.body); err != nil {
		return err
	}
	if *record != "" {
		if err := softphone.SaveWAV(*record, call.Recording); err != nil {
			return fmt.Errorf("--record: %w", err)
		}
	}

	var t transferView
	if err := json.Unmarshal(got.body, &t); err != nil {
		return fmt.Errorf("read the fetched transfer: %w", err)
	}
	if t.Status != string(switchback.StatusCompleted) || t.OutputContext == nil {
		return fmt.Errorf("the transfer is %s after the hand-back, not COMPLETED with an output context", t.Status)
	}
	oc := t.OutputContext
	if *agentKind == "websocket" {
		fmt.Fprintf(stdout, "\nThe transfer is %s: the echo agent handed the call back (transferType %s) with the digit\n", t.Status, oc.TransferType)
		fmt.Fprintf(stdout, "the caller pressed (%s) in transferVariables, stored before the BYE.\n", orDash(oc.TransferVariables["digit"]))
		if oc.TransferVariables["digit"] != "1" {
			return fmt.Errorf("the echo agent's hand-back does not carry the digit pressed: %+v", oc)
		}
		return nil
	}
	fmt.Fprintf(stdout, "\nThe transfer is %s: the caller asked for an agent (transferType %s, task %s),\n", t.Status, oc.TransferType, oc.CurrentTaskName)
	fmt.Fprintf(stdout, "and accountNumber %s came back in referenceVariables, stored before the BYE.\n", orDash(oc.ReferenceVariables["accountNumber"]))
	return nil
}

// startEchoAgent serves the built-in echo agent on a free loopback port,
// greeting with the chime, and returns its ws:// URL.
func startEchoAgent(log *slog.Logger) (url string, stop func(), err error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, fmt.Errorf("listen for the echo agent: %w", err)
	}
	srv := &http.Server{Handler: echo.New(echo.Options{Greeting: agent.Chime(), Log: log}), ReadHeaderTimeout: 5 * time.Second}
	done := make(chan struct{})
	go func() { srv.Serve(ln); close(done) }()
	return "ws://" + ln.Addr().String() + "/", func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
		srv.Close()
		<-done
	}, nil
}

// demoConfig is the embedded default configuration, with its store in
// dsn and the API and SIP on free loopback ports. The environment does not
// change it: the demo is the same everywhere.
func demoConfig(dsn string, verbose bool) config.Config {
	cfg := config.Default()
	cfg.Store = config.Store{Driver: config.DriverSQLite, DSN: dsn}
	cfg.API.Listen = "127.0.0.1:0"
	cfg.SIP.Listen = "127.0.0.1:0"
	cfg.Log = config.Log{Level: "warn", Format: "text"}
	if verbose {
		cfg.Log.Level = "info"
	}
	return cfg
}

// listenOnFreePorts is listenGateway for a configuration with SIP on port
// 0. The edge then binds UDP to a free port and TCP to the same one, which
// a TCP socket may hold already; it tries again, on another port, a few
// times.
func listenOnFreePorts(ctx context.Context, cfg config.Config, store switchback.Store, log *slog.Logger) (*gateway, error) {
	for attempt := 1; ; attempt++ {
		g, err := listenGateway(ctx, cfg, store, log)
		if err == nil || !errors.Is(err, syscall.EADDRINUSE) || attempt == 5 {
			return g, err
		}
	}
}

// demoTransferID returns demo- and 8 random hex digits.
func demoTransferID() string {
	var b [4]byte
	rand.Read(b[:])
	return "demo-" + hex.EncodeToString(b[:])
}
