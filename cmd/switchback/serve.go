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
	"runtime/debug"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/switchback/switchback"
	"github.com/switchback/switchback/internal/agent"
	"github.com/switchback/switchback/internal/config"
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
	g, err := listenGateway(cfg, store, log)
	if err != nil {
		return err
	}
	return g.serve(ctx, func() {
		log.Info("switchback serving", "api", "http://"+g.apiAddr().String(), "sip", g.edge.Addr().String(), "store", cfg.Store.Driver)
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
	log  *slog.Logger
	svc  *transfer.Service
	edge *sipedge.Edge
	ln   net.Listener
	srv  *http.Server
}

// listenGateway builds the transfer service, the API and the SIP edge on
// store, and binds the configured API and SIP addresses.
func listenGateway(cfg config.Config, store switchback.Store, log *slog.Logger) (*gateway, error) {
	svc := transfer.New(transfer.Options{
		Store: store, Log: log,
		Policy: func(id string) (transfer.Policy, bool) {
			t, ok := cfg.Tenant(id)
			return transfer.Policy{PhoneNumberTTL: t.PhoneNumberTTL.Duration(), SIPTTL: t.SIPTTL.Duration(),
				DefaultReturn: switchback.ReturnTransferType(t.DefaultReturnTransferType), MaxCalls: t.SIP.MaxCalls}, ok
		},
		SweepInterval: cfg.Expiry.SweepInterval.Duration(), MaxCallDuration: cfg.Expiry.MaxCallDuration.Duration(),
	})
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	api := httpapi.NewServer(httpapi.Deps{
		Store: store, Transfers: svc, Log: log, Registry: reg,
		MaxBodyBytes: cfg.API.MaxBodyBytes, MaxWait: cfg.API.MaxWait.Duration(),
		Tenant: func(id string) (httpapi.Tenant, bool) {
			t, ok := cfg.Tenant(id)
			return httpapi.Tenant{RequestsPerSecond: t.RateLimit.RequestsPerSecond, Burst: t.RateLimit.Burst}, ok
		},
	})

	agents, err := agent.Load(cfg.Tenants)
	if err != nil {
		return nil, err
	}
	edge, err := sipedge.New(sipedge.Options{Config: cfg, Transfers: svc, Nonces: store, Agents: agents, Log: log})
	if err != nil {
		return nil, err
	}
	if err := edge.Listen(); err != nil {
		return nil, err
	}
	reg.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "switchback_sip_calls", Help: "Calls the SIP edge holds."},
			func() float64 { return float64(edge.ActiveCalls()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "switchback_sip_pending_invites", Help: "New INVITEs not yet answered or refused."},
			func() float64 { return float64(edge.PendingInvites()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "switchback_sip_invites_shed_total", Help: "INVITEs refused with 503 because sip.maxPendingInvites were in progress."},
			func() float64 { return float64(edge.Shed()) }),
	)

	ln, err := net.Listen("tcp", cfg.API.Listen)
	if err != nil {
		return nil, fmt.Errorf("api.listen: %w", err)
	}
	srv := &http.Server{Handler: api, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute,
		ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)}
	return &gateway{log: log, svc: svc, edge: edge, ln: ln, srv: srv}, nil
}

// apiAddr is the address the API is served on.
func (g *gateway) apiAddr() net.Addr { return g.ln.Addr() }

// serve runs the gateway, calling ready once it serves, until ctx ends;
// then the API finishes the requests in flight and the SIP edge the calls
// still up.
func (g *gateway) serve(ctx context.Context, ready func()) error {
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	expiryDone := make(chan error, 1)
	go func() { expiryDone <- g.svc.Run(runCtx) }()
	serveDone := make(chan error, 1)
	go func() { serveDone <- g.srv.Serve(g.ln) }()
	sipDone := make(chan error, 1)
	go func() { sipDone <- g.edge.Serve(runCtx) }()
	if ready != nil {
		ready()
	}

	var err error
	select {
	case err = <-serveDone:
	case <-ctx.Done():
		shutdown, done := context.WithTimeout(context.Background(), 10*time.Second)
		defer done()
		err = g.srv.Shutdown(shutdown)
	}
	cancel()
	if serr := <-sipDone; serr != nil && err == nil {
		err = serr
	}
	<-expiryDone
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	g.log.Info("switchback stopped")
	return err
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
