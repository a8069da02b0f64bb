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

	"github.com/switchback/switchback"
	"github.com/switchback/switchback/internal/agent"
	"github.com/switchback/switchback/internal/config"
	"github.com/switchback/switchback/internal/httpapi"
	sipedge "github.com/switchback/switchback/internal/sip"
	"github.com/switchback/switchback/internal/sqlite"
	"github.com/switchback/switchback/internal/transfer"
)

// runServe is `switchback serve` on SQLite, wired the same way (the
// SQLite transfer cache, GOGC=200), with Go's profiler on -pprof: for
// finding where a benchmark's time goes, which `switchback serve` has no
// endpoint for. It is not used by bench/sip.sh; see docs/benchmarks.md.
//
//	sipbench serve -config FILE -pprof 127.0.0.1:6060 [-block] [-mutex]
//	go tool pprof -top http://127.0.0.1:6060/debug/pprof/profile?seconds=8
func runServe(args []string) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	path := fs.String("config", "", "Switchback YAML config (store.driver must be sqlite)")
	pprofAddr := fs.String("pprof", "127.0.0.1:6060", "where /debug/pprof/ listens")
	block := fs.Bool("block", false, "record every blocking event (runtime.SetBlockProfileRate(1))")
	mutex := fs.Bool("mutex", false, "record every mutex contention (runtime.SetMutexProfileFraction(1))")
	if err := fs.Parse(args); err != nil {
		return err
	}
	cfg, err := config.Load(*path, os.Getenv)
	if err != nil {
		return err
	}
	if cfg.Store.Driver != config.DriverSQLite {
		return errors.New("sipbench serve runs on SQLite only")
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
	log := slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))

	store, err := sqlite.Open(ctx, cfg.Store.DSN, sqlite.Options{Quarantine: cfg.Pool.Quarantine.Duration(), Cache: true})
	if err != nil {
		return err
	}
	defer store.Close()
	numbers, err := cfg.PoolNumbers()
	if err != nil {
		return err
	}
	if _, err := store.AddNumbers(ctx, numbers); err != nil {
		return err
	}
	svc := transfer.New(transfer.Options{
		Store: store, Log: log,
		Policy: func(id string) (transfer.Policy, bool) {
			t, ok := cfg.Tenant(id)
			return transfer.Policy{PhoneNumberTTL: t.PhoneNumberTTL.Duration(), SIPTTL: t.SIPTTL.Duration(),
				DefaultReturn: switchback.ReturnTransferType(t.DefaultReturnTransferType)}, ok
		},
		SweepInterval: cfg.Expiry.SweepInterval.Duration(), MaxCallDuration: cfg.Expiry.MaxCallDuration.Duration(),
	})
	api := httpapi.NewServer(httpapi.Deps{
		Store: store, Transfers: svc, Log: log,
		MaxBodyBytes: cfg.API.MaxBodyBytes, MaxWait: cfg.API.MaxWait.Duration(),
		Tenant: func(id string) (httpapi.Tenant, bool) {
			t, ok := cfg.Tenant(id)
			return httpapi.Tenant{RequestsPerSecond: t.RateLimit.RequestsPerSecond, Burst: t.RateLimit.Burst}, ok
		},
	})
	agents, err := agent.Load(cfg.Tenants, agent.Deps{Log: log})
	if err != nil {
		return err
	}
	edge, err := sipedge.New(sipedge.Options{Config: cfg, Transfers: svc, Nonces: store, Agents: agents, Log: log})
	if err != nil {
		return err
	}
	if err := edge.Listen(); err != nil {
		return err
	}
	ln, err := net.Listen("tcp", cfg.API.Listen)
	if err != nil {
		return err
	}
	pl, err := net.Listen("tcp", *pprofAddr)
	if err != nil {
		return err
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	go http.Serve(pl, mux)
	srv := &http.Server{Handler: api, ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln)
	go svc.Run(ctx)
	fmt.Printf("Switchback API on http://%s (store: sqlite)\nSwitchback SIP on %s (UDP and TCP)\npprof on http://%s/debug/pprof/\n",
		ln.Addr(), edge.Addr(), pl.Addr())
	err = edge.Serve(ctx)
	srv.Close()
	return err
}
