package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"syscall"
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

// runServe is `switchback serve` wired the same way (cmd/switchback's
// listenGateway: the store, the node's lease, the transfer service with
// each tenant's policy, its limit of calls included, the agents, the call
// runtime, the SIP edge, the API with a metrics registry; GOGC=200), with
// Go's profiler on -pprof, which `switchback serve` has no endpoint for,
// and one switch serve does not have: -call-limit=false matches calls
// without claiming a call slot (Policy.MaxCalls 0), to measure what the
// fleet-wide tenants[].sip.maxCalls costs. bench/fleet.sh runs it both
// ways; see docs/benchmarks.md.
//
//	sipbench serve -config FILE -pprof 127.0.0.1:6060 [-call-limit=false] [-block] [-mutex]
//	go tool pprof -top http://127.0.0.1:6060/debug/pprof/profile?seconds=8
//
// Left out: serve's gauges and counters read only when /metrics is
// scraped, the demo key, and the drain on SIGTERM (it stops at once).
func runServe(args []string) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	path := fs.String("config", "", "Switchback YAML config")
	pprofAddr := fs.String("pprof", "127.0.0.1:6060", "where /debug/pprof/ listens (127.0.0.1:0 for a free port)")
	callLimit := fs.Bool("call-limit", true, "apply tenants[].sip.maxCalls as serve does; false claims no call slot")
	block := fs.Bool("block", false, "record every blocking event (runtime.SetBlockProfileRate(1))")
	mutex := fs.Bool("mutex", false, "record every mutex contention (runtime.SetMutexProfileFraction(1))")
	if err := fs.Parse(args); err != nil {
		return err
	}
	cfg, err := config.Load(*path, os.Getenv)
	if err != nil {
		return err
	}
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(200) // as switchback serve
	}
	if *block {
		runtime.SetBlockProfileRate(1)
	}
	if *mutex {
		runtime.SetMutexProfileFraction(1)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var level slog.Level
	level.UnmarshalText([]byte(cfg.Log.Level))
	log := slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: level}))

	var store switchback.Store
	q := cfg.Pool.Quarantine.Duration()
	switch cfg.Store.Driver {
	case config.DriverPostgres:
		store, err = postgres.Open(ctx, cfg.Store.DSN, postgres.Options{Quarantine: q})
	default:
		store, err = sqlite.Open(ctx, cfg.Store.DSN, sqlite.Options{Quarantine: q, Cache: true})
	}
	if err != nil {
		return fmt.Errorf("open %s store: %w", cfg.Store.Driver, err)
	}
	defer store.Close()
	numbers, err := cfg.PoolNumbers()
	if err != nil {
		return err
	}
	if _, err := store.AddNumbers(ctx, numbers); err != nil {
		return err
	}

	var node *fleet.Node
	svc := transfer.New(transfer.Options{
		Node:  func() switchback.NodeLease { return node.Lease() },
		Store: store, Log: log,
		Policy: func(id string) (transfer.Policy, bool) {
			t, ok := cfg.Tenant(id)
			p := transfer.Policy{PhoneNumberTTL: t.PhoneNumberTTL.Duration(), SIPTTL: t.SIPTTL.Duration(),
				DefaultReturn: switchback.ReturnTransferType(t.DefaultReturnTransferType), MaxCalls: t.SIP.MaxCalls}
			if !*callLimit {
				p.MaxCalls = 0
			}
			return p, ok
		},
		SweepInterval: cfg.Expiry.SweepInterval.Duration(), MaxCallDuration: cfg.Expiry.MaxCallDuration.Duration(),
	})
	hangUps := websocket.NewRegistry()
	agents, err := agent.Load(cfg.Tenants, agent.Deps{HangUps: hangUps, Log: log})
	if err != nil {
		return err
	}
	calls := call.New(call.Options{Transfers: svc, Agents: agents, Log: log})
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	// Observed once per call, as serve's.
	answerLatency := prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "switchback_sip_invite_answer_seconds",
		Help:    "Time from a new INVITE's arrival to its 200 OK, for the calls answered.",
		Buckets: []float64{.002, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
	})
	reg.MustRegister(answerLatency)
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
	edge, err := sipedge.New(sipedge.Options{Config: cfg, Transfers: svc, Nonces: store, Calls: calls, Log: log,
		Answered: func(d time.Duration) { answerLatency.Observe(d.Seconds()) }})
	if err != nil {
		return err
	}
	if err := edge.Listen(); err != nil {
		return err
	}
	ln, err := net.Listen("tcp", cfg.API.Listen)
	if err != nil {
		return fmt.Errorf("api.listen: %w", err)
	}
	defer ln.Close()
	id := cfg.Node.ID
	if id == "" {
		host, herr := os.Hostname()
		if herr != nil {
			host = "switchback"
		}
		id = fleet.DefaultID(host, edge.Addr().String())
	}
	node, err = fleet.Start(ctx, fleet.Options{Store: store, ID: id, Log: log,
		Heartbeat: cfg.Node.Heartbeat.Duration(), TTL: cfg.Node.TTL.Duration()})
	if err != nil {
		return fmt.Errorf("acquire the node's lease: %w", err)
	}
	pl, err := net.Listen("tcp", *pprofAddr)
	if err != nil {
		return err
	}
	defer pl.Close()
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	go http.Serve(pl, mux)

	runCtx, cancel := context.WithCancel(context.Background())
	defer cancel()
	expiryDone := make(chan error, 1)
	go func() { expiryDone <- svc.Run(runCtx) }()
	nodeDone := make(chan error, 1)
	go func() { nodeDone <- node.Run(runCtx) }()
	srv := &http.Server{Handler: api, ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln)
	limit := "as configured"
	if !*callLimit {
		limit = "off"
	}
	fmt.Printf("Switchback SIP on %s (UDP and TCP)\nSwitchback API on http://%s (store: %s)\npprof on http://%s/debug/pprof/\ncall limit %s, node %s\n",
		edge.Addr(), ln.Addr(), cfg.Store.Driver, pl.Addr(), limit, node.Lease())

	sipCtx, stopSIP := context.WithCancel(context.Background())
	defer stopSIP()
	sipDone := make(chan error, 1)
	go func() { sipDone <- edge.Serve(sipCtx) }()
	select {
	case <-ctx.Done():
	case <-node.Lost():
		err = errors.New("the node lost its lease")
	}
	stopSIP()
	if serr := <-sipDone; serr != nil && err == nil {
		err = serr
	}
	cancel()
	<-nodeDone
	rctx, done := context.WithTimeout(context.Background(), 5*time.Second)
	defer done()
	node.Release(rctx)
	srv.Shutdown(rctx)
	<-expiryDone
	return err
}
