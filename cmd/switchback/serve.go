package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"runtime/debug"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/switchback/switchback"
	"github.com/switchback/switchback/internal/agent"
	"github.com/switchback/switchback/internal/agent/websocket"
	"github.com/switchback/switchback/internal/call"
	"github.com/switchback/switchback/internal/config"
	"github.com/switchback/switchback/internal/fleet"
	"github.com/switchback/switchback/internal/httpapi"
	"github.com/switchback/switchback/internal/postgres"
	sipedge "github.com/switchback/switchback/internal/sip"
	"github.com/switchback/switchback/internal/sqlite"
	"github.com/switchback/switchback/internal/transfer"
)

// loadConfig parses the --config flag shared by the commands that use the store.
func loadConfig(fs *flag.FlagSet, args []string, getenv func(string) string) (config.Config, error) {
	path := fs.String("config", getenv("SWITCHBACK_CONFIG"), "YAML config file (default: built-in defaults; env SWITCHBACK_CONFIG)")
	if err := fs.Parse(args); err != nil {
		return config.Config{}, err
	}
	return config.Load(*path, getenv)
}

// openStore opens the configured store. The server asks for SQLite's
// transfer cache, which also keeps a second server off the same file; the
// administration commands do without it and may run beside the server.
func openStore(ctx context.Context, cfg config.Config, server bool) (switchback.Store, error) {
	q := cfg.Pool.Quarantine.Duration()
	switch cfg.Store.Driver {
	case config.DriverPostgres:
		return postgres.Open(ctx, cfg.Store.DSN, postgres.Options{Quarantine: q})
	default:
		return sqlite.Open(ctx, cfg.Store.DSN, sqlite.Options{Quarantine: q, Cache: server})
	}
}

func newLogger(cfg config.Config, w io.Writer) *slog.Logger {
	var level slog.Level
	level.UnmarshalText([]byte(cfg.Log.Level))
	opts := &slog.HandlerOptions{Level: level}
	if cfg.Log.Format == "text" {
		return slog.New(slog.NewTextHandler(w, opts))
	}
	return slog.New(slog.NewJSONHandler(w, opts))
}

func runServe(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfg, err := loadConfig(fs, args, getenv)
	if err != nil {
		return err
	}
	log := newLogger(cfg, stderr)
	if getenv("GOGC") == "" {
		// A server with memory to spare: collect half as often, which frees
		// CPU for requests. GOGC in the environment still wins.
		debug.SetGCPercent(200)
	}
	store, err := openStore(ctx, cfg, true)
	if err != nil {
		return fmt.Errorf("open %s store: %w", cfg.Store.Driver, err)
	}
	defer store.Close()

	if err := loadPool(ctx, cfg, store, log); err != nil {
		return err
	}
	if err := ensureDemoKey(ctx, cfg, store, stdout); err != nil {
		return err
	}
	g, err := listenGateway(ctx, cfg, store, log)
	if err != nil {
		return err
	}
	return g.serve(ctx, func() {
		log.Info("switchback serving", "api", "http://"+g.apiAddr().String(), "sip", g.edge.Addr().String(), "store", cfg.Store.Driver,
			"node", g.node.Lease().String())
		// SIP first: a script that waits for the API line then has both.
		fmt.Fprintf(stdout, "Switchback SIP on %s (UDP and TCP)\n", g.edge.Addr())
		fmt.Fprintf(stdout, "Switchback API on http://%s (store: %s)\n", g.apiAddr(), cfg.Store.Driver)
	})
}

// loadPool adds the configured numbers the store's pool does not have yet.
func loadPool(ctx context.Context, cfg config.Config, store switchback.Store, log *slog.Logger) error {
	numbers, err := cfg.PoolNumbers()
	if err != nil {
		return err
	}
	if added, err := store.AddNumbers(ctx, numbers); err != nil {
		return fmt.Errorf("load the number pool: %w", err)
	} else if added > 0 {
		log.Info("added numbers to the pool", "count", added)
	}
	return nil
}

// gateway is Switchback on an open store, with its API and SIP listeners
// bound: what serve runs, and what demo runs in-process.
type gateway struct {
	log   *slog.Logger
	svc   *transfer.Service
	calls *call.Runtime
	edge  *sipedge.Edge
	ln    net.Listener
	srv   *http.Server
	// node is the node's lease in the store, held from before the first
	// call until the calls have ended.
	node *fleet.Node
	// drainTimeout bounds a drain (shutdown.drainTimeout).
	drainTimeout time.Duration
}

// errFenced is what serve returns once the node has lost its lease: the
// process exits with an error, for its supervisor to start it again under
// a new lease.
var errFenced = errors.New("this node lost its lease (fenced): its calls were ended; start it again to take calls")

// heartbeats makes the node's heartbeat: fleet.NewTicker, or a ticker a
// test drives by hand.
var heartbeats = fleet.NewTicker

type drainKey struct{}

// withDrain attaches to ctx a channel whose closing asks a server to
// drain: to refuse new calls and stop once its calls have ended. Ending
// ctx itself stops it at once.
func withDrain(ctx context.Context, drain <-chan struct{}) context.Context {
	return context.WithValue(ctx, drainKey{}, drain)
}

// drainRequested is the drain channel of ctx; nil (never) if it has none.
func drainRequested(ctx context.Context) <-chan struct{} {
	ch, _ := ctx.Value(drainKey{}).(<-chan struct{})
	return ch
}

// listenGateway builds the transfer service, the API and the SIP edge on
// store, binds the configured API and SIP addresses, and acquires the
// node's lease.
func listenGateway(ctx context.Context, cfg config.Config, store switchback.Store, log *slog.Logger) (*gateway, error) {
	// The lease is acquired once the SIP address is bound, which names the
	// node by default, and before any call: every call is owned by it.
	var node *fleet.Node
	svc := transfer.New(transfer.Options{
		Node:  func() switchback.NodeLease { return node.Lease() },
		Store: store, Log: log,
		Policy: func(id string) (transfer.Policy, bool) {
			t, ok := cfg.Tenant(id)
			return transfer.Policy{PhoneNumberTTL: t.PhoneNumberTTL.Duration(), SIPTTL: t.SIPTTL.Duration(),
				DefaultReturn: switchback.ReturnTransferType(t.DefaultReturnTransferType), MaxCalls: t.SIP.MaxCalls}, ok
		},
		SweepInterval: cfg.Expiry.SweepInterval.Duration(), MaxCallDuration: cfg.Expiry.MaxCallDuration.Duration(),
	})
	hangUps := websocket.NewRegistry()
	agents, err := agent.Load(cfg.Tenants, agent.Deps{HangUps: hangUps, Log: log})
	if err != nil {
		return nil, err
	}
	calls := call.New(call.Options{Transfers: svc, Agents: agents, Log: log})
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	api := httpapi.NewServer(httpapi.Deps{
		Store: store, Transfers: svc, Log: log, Registry: reg, Draining: calls.Draining,
		Routes:       map[string]http.Handler{websocket.HangUpPrefix: websocket.HangUpHandler(hangUps, log)},
		MaxBodyBytes: cfg.API.MaxBodyBytes, MaxWait: cfg.API.MaxWait.Duration(),
		AuthFailureLimit: httpapi.RateLimit{RequestsPerSecond: cfg.API.AuthFailureLimit.RequestsPerSecond, Burst: cfg.API.AuthFailureLimit.Burst},
		Tenant: func(id string) (httpapi.Tenant, bool) {
			t, ok := cfg.Tenant(id)
			return httpapi.Tenant{RequestsPerSecond: t.RateLimit.RequestsPerSecond, Burst: t.RateLimit.Burst}, ok
		},
	})

	answerLatency := newAnswerLatency()
	edge, err := sipedge.New(sipedge.Options{Config: cfg, Transfers: svc, Nonces: store, Calls: calls, Log: log,
		Answered: func(d time.Duration) { answerLatency.Observe(d.Seconds()) }})
	if err != nil {
		return nil, err
	}
	if err := edge.Listen(); err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", cfg.API.Listen)
	if err != nil {
		return nil, fmt.Errorf("api.listen: %w", err)
	}
	id := cfg.Node.ID
	if id == "" {
		host, herr := os.Hostname()
		if herr != nil {
			host = "switchback"
		}
		id = fleet.DefaultID(host, edge.Addr().String())
	}
	node, err = fleet.Start(ctx, fleet.Options{Store: store, ID: id, Log: log, NewTicker: heartbeats,
		Heartbeat: cfg.Node.Heartbeat.Duration(), TTL: cfg.Node.TTL.Duration()})
	if err != nil {
		ln.Close()
		return nil, fmt.Errorf("acquire the node's lease: %w", err)
	}
	reg.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "switchback_sip_calls", Help: "Calls the SIP edge holds."},
			func() float64 { return float64(edge.ActiveCalls()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "switchback_sip_pending_invites", Help: "New INVITEs not yet answered or refused."},
			func() float64 { return float64(edge.PendingInvites()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "switchback_sip_invites_shed_total", Help: "INVITEs refused with 503 because sip.maxPendingInvites were in progress."},
			func() float64 { return float64(edge.Shed()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "switchback_calls_active", Help: "Calls in progress on this node."},
			func() float64 { return float64(calls.Active()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "switchback_draining", Help: "1 while this node drains: it refuses new calls and lets its calls end."},
			func() float64 {
				if calls.Draining() {
					return 1
				}
				return 0
			}),
		endedCollector{calls},
		handBacksCollector{calls},
		answerLatency,
		fleetCollector{store: store, now: switchback.SystemClock},
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "switchback_sip_server_transactions_total", Help: "SIP requests given a server transaction (let through the stateless gate)."},
			func() float64 { return float64(edge.Transactions()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "switchback_sip_udp_pool_entries", Help: "Remote addresses in the SIP library's UDP connection pool."},
			func() float64 { return float64(edge.UDPPoolEntries()) }),
	)
	reg.MustRegister(nodeCollectors(node)...)
	for _, reason := range sipedge.RefusalReasons {
		reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "switchback_sip_requests_refused_total",
			Help: "SIP requests refused, or messages dropped, by reason.", ConstLabels: prometheus.Labels{"reason": reason}},
			func() float64 { return float64(edge.Refused(reason)) }))
	}

	srv, ln := httpapi.NewHTTPServer(api, ln, httpapi.ServerOptions{Log: log,
		ReadHeaderTimeout: cfg.API.ReadHeaderTimeout.Duration(), ReadBodyTimeout: cfg.API.ReadBodyTimeout.Duration(),
		WriteTimeout: cfg.API.WriteTimeout.Duration(), IdleTimeout: cfg.API.IdleTimeout.Duration(),
		MaxHeaderBytes: cfg.API.MaxHeaderBytes, MaxConnections: cfg.API.MaxConnections})
	return &gateway{log: log, svc: svc, calls: calls, edge: edge, ln: ln, srv: srv, node: node,
		drainTimeout: cfg.Shutdown.DrainTimeout.Duration()}, nil
}

// endedCollector exports how the node's calls ended.
type endedCollector struct{ calls *call.Runtime }

var endedDesc = prometheus.NewDesc("switchback_calls_terminated_total",
	"Calls ended on this node, by how: handback, caller, rtp-timeout, session-timer, shutdown, unanswered.", []string{"reason"}, nil)

func (c endedCollector) Describe(ch chan<- *prometheus.Desc) { ch <- endedDesc }

func (c endedCollector) Collect(ch chan<- prometheus.Metric) {
	for reason, n := range c.calls.Ended() {
		ch <- prometheus.MustNewConstMetric(endedDesc, prometheus.CounterValue, float64(n), reason)
	}
}

// apiAddr is the address the API is served on.
func (g *gateway) apiAddr() net.Addr { return g.ln.Addr() }

// serve runs the gateway, calling ready once it serves, until ctx ends or
// a drain (see withDrain) has let the calls end: then the SIP edge ends
// the calls still up, each outcome stored first, the node's lease is
// released, and the API finishes the requests in flight.
//
// A node that loses its lease meanwhile is fenced: it refuses new calls
// (503), ends the ones it holds at once (the store refuses their writes,
// so nothing another node decided is overwritten) and serve returns
// errFenced.
func (g *gateway) serve(ctx context.Context, ready func()) error {
	runCtx, cancel := context.WithCancel(context.Background())
	defer cancel()
	expiryDone := make(chan error, 1)
	go func() { expiryDone <- g.svc.Run(runCtx) }()
	nodeCtx, stopNode := context.WithCancel(context.Background())
	defer stopNode()
	nodeDone := make(chan error, 1)
	go func() { nodeDone <- g.node.Run(nodeCtx) }()
	serveDone := make(chan error, 1)
	go func() { serveDone <- g.srv.Serve(g.ln) }()
	sipCtx, stopSIP := context.WithCancel(context.Background())
	defer stopSIP()
	sipDone := make(chan error, 1)
	go func() { sipDone <- g.edge.Serve(sipCtx) }()
	if ready != nil {
		ready()
	}

	var err error
	fenced := false
	select {
	case err = <-serveDone:
	case <-ctx.Done():
	case <-drainRequested(ctx):
		fenced = g.drain(ctx)
	case <-g.node.Lost():
		fenced = true
	}
	if fenced {
		g.log.Error("node lease lost: ending the calls at once; their outcomes are the store's to decide", "calls", g.calls.Active(),
			"node", g.node.Lease().String())
		err = errFenced
	}
	// The calls end before the API: a client waiting on a transfer sees
	// its outcome.
	stopSIP()
	if serr := <-sipDone; serr != nil && err == nil {
		err = serr
	}
	// The lease goes once no call is left, so that no other node takes
	// over a call this one still holds.
	stopNode()
	<-nodeDone
	if !fenced {
		rctx, done := context.WithTimeout(context.Background(), 5*time.Second)
		if rerr := g.node.Release(rctx); rerr != nil {
			g.log.Warn("release the node lease; it lapses after its TTL", "err", rerr)
		}
		done()
	}
	shutdown, done := context.WithTimeout(context.Background(), 10*time.Second)
	defer done()
	if serr := g.srv.Shutdown(shutdown); serr != nil && err == nil {
		err = serr
	}
	cancel()
	<-expiryDone
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	g.log.Info("switchback stopped")
	return err
}

// drain refuses new calls and waits until the calls in progress have
// ended, for up to the drain timeout, or until ctx ends (a stop at once).
// It reports whether the node lost its lease meanwhile: the calls left
// are then ended at once too.
func (g *gateway) drain(ctx context.Context) (fenced bool) {
	idle := g.calls.Drain()
	g.log.Info("draining: new calls are refused; waiting for the calls in progress", "calls", g.calls.Active(),
		"drain_timeout", g.drainTimeout.String())
	t := time.NewTimer(g.drainTimeout)
	defer t.Stop()
	select {
	case <-idle:
		g.log.Info("drained: no call left")
	case <-t.C:
		g.log.Warn("drain timeout: ending the calls left", "calls", g.calls.Active())
	case <-ctx.Done():
		g.log.Warn("stopping at once: ending the calls left", "calls", g.calls.Active())
	case <-g.node.Lost():
		return true
	}
	return false
}

// ensureDemoKey gives the demo tenant an API key on the first start, and
// prints it: its secret is shown this once and only its hash is kept.
func ensureDemoKey(ctx context.Context, cfg config.Config, store switchback.Store, stdout io.Writer) error {
	if _, ok := cfg.Tenant(config.DefaultTenantID); !ok {
		return nil
	}
	keys, err := store.APIKeys(ctx, config.DefaultTenantID)
	if err != nil {
		return fmt.Errorf("read demo keys: %w", err)
	}
	for _, k := range keys {
		if !k.Revoked() {
			fmt.Fprintf(stdout, "Demo tenant API key id: %s (its secret was printed when it was created; make another with: switchback keys create --tenant demo)\n", k.ID)
			return nil
		}
	}
	k, secret, err := switchback.NewAPIKey(config.DefaultTenantID, "demo", []string{switchback.ScopeCallTransfers}, switchback.SystemClock())
	if err != nil {
		return err
	}
	if err := store.CreateAPIKey(ctx, k); err != nil {
		return fmt.Errorf("create demo key: %w", err)
	}
	fmt.Fprintf(stdout, "Demo tenant API key (shown once, keep it):\n  asapp-api-id: %s\n  asapp-api-secret: %s\n", k.ID, secret)
	fmt.Fprintf(stdout, "  export SWITCHBACK_API_ID=%s SWITCHBACK_API_SECRET=%s\n", k.ID, secret)
	return nil
}

func runConfig(args []string, stdout io.Writer) error {
	if len(args) != 1 || args[0] != "example" {
		return errors.New("usage: switchback config example")
	}
	fmt.Fprint(stdout, strings.TrimLeft(config.Example(), "\n"))
	return nil
}
