package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/switchback/switchback"
	"github.com/switchback/switchback/internal/config"
)

// withStore loads the config of a store command and opens its store.
func withStore(ctx context.Context, fs *flag.FlagSet, args []string, getenv func(string) string,
	fn func(cfg config.Config, store switchback.Store) error) error {
	cfg, err := loadConfig(fs, args, getenv)
	if err != nil {
		return err
	}
	store, err := openStore(ctx, cfg, false)
	if err != nil {
		return fmt.Errorf("open %s store: %w", cfg.Store.Driver, err)
	}
	defer store.Close()
	return fn(cfg, store)
}

func runKeys(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return errors.New("usage: switchback keys create|revoke|list [flags]")
	}
	fs := flag.NewFlagSet("keys "+args[0], flag.ContinueOnError)
	fs.SetOutput(stderr)
	switch args[0] {
	case "create":
		tenant := fs.String("tenant", config.DefaultTenantID, "tenant the key belongs to")
		name := fs.String("name", "", "a label for the key")
		scopes := fs.String("scopes", switchback.ScopeCallTransfers, "space-separated scopes; empty for none")
		return withStore(ctx, fs, args[1:], getenv, func(cfg config.Config, store switchback.Store) error {
			if _, ok := cfg.Tenant(*tenant); !ok {
				return fmt.Errorf("--tenant: %q is not a configured tenant", *tenant)
			}
			k, secret, err := switchback.NewAPIKey(*tenant, *name, strings.Fields(*scopes), switchback.SystemClock())
			if err != nil {
				return err
			}
			if err := store.CreateAPIKey(ctx, k); err != nil {
				return err
			}
			fmt.Fprintf(stdout, "asapp-api-id: %s\nasapp-api-secret: %s\n(the secret is shown once; only its hash is stored)\n", k.ID, secret)
			return nil
		})
	case "revoke":
		return withStore(ctx, fs, args[1:], getenv, func(cfg config.Config, store switchback.Store) error {
			if fs.NArg() != 1 {
				return errors.New("usage: switchback keys revoke [--config FILE] KEY_ID")
			}
			if err := store.RevokeAPIKey(ctx, fs.Arg(0), switchback.SystemClock()); err != nil {
				return err
			}
			fmt.Fprintf(stdout, "revoked %s (running servers stop accepting it within seconds)\n", fs.Arg(0))
			return nil
		})
	case "list":
		tenant := fs.String("tenant", "", "only this tenant's keys")
		return withStore(ctx, fs, args[1:], getenv, func(cfg config.Config, store switchback.Store) error {
			keys, err := store.APIKeys(ctx, *tenant)
			if err != nil {
				return err
			}
			tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tTENANT\tNAME\tSCOPES\tCREATED\tREVOKED")
			for _, k := range keys {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", k.ID, k.TenantID, k.Name, strings.Join(k.Scopes, " "),
					stamp(k.CreatedAt), stamp(k.RevokedAt))
			}
			return tw.Flush()
		})
	}
	return fmt.Errorf("unknown keys command %q (create, revoke, list)", args[0])
}

func stamp(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format(time.RFC3339)
}

func runNumbers(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return errors.New("usage: switchback numbers list|add|remove [flags]")
	}
	fs := flag.NewFlagSet("numbers "+args[0], flag.ContinueOnError)
	fs.SetOutput(stderr)
	switch args[0] {
	case "list":
		country := fs.String("country", "", "only this country's numbers")
		asJSON := fs.Bool("json", false, "print JSON instead of tables")
		return withStore(ctx, fs, args[1:], getenv, func(cfg config.Config, store switchback.Store) error {
			now := switchback.SystemClock()
			numbers, err := store.Numbers(ctx, strings.ToUpper(*country), now)
			if err != nil {
				return err
			}
			sums, err := store.PoolSummaries(ctx, now)
			if err != nil {
				return err
			}
			if *asJSON {
				return printNumbersJSON(stdout, numbers, sums)
			}
			return printNumbers(stdout, numbers, sums, strings.ToUpper(*country))
		})
	case "add":
		country := fs.String("country", "", "ISO 3166 alpha-2 country of the numbers (required)")
		tenant := fs.String("tenant", "", "dedicate the numbers to this tenant (default: shared)")
		return withStore(ctx, fs, args[1:], getenv, func(cfg config.Config, store switchback.Store) error {
			c := strings.ToUpper(*country)
			if !switchback.ValidCountry(c) {
				return fmt.Errorf("--country: %q is not an ISO 3166 alpha-2 code", *country)
			}
			if _, ok := cfg.Tenant(*tenant); *tenant != "" && !ok {
				return fmt.Errorf("--tenant: %q is not a configured tenant", *tenant)
			}
			e164s, err := switchback.ParseNumbers(fs.Args())
			if err != nil {
				return err
			}
			if len(e164s) == 0 {
				return errors.New("usage: switchback numbers add --country CC [--tenant ID] NUMBER|RANGE...")
			}
			var ns []switchback.Number
			for _, n := range e164s {
				ns = append(ns, switchback.Number{E164: n, Country: c, TenantID: *tenant})
			}
			added, err := store.AddNumbers(ctx, ns)
			if err != nil {
				return err
			}
			fmt.Fprintf(stdout, "added %d numbers (%d already in the pool)\n", added, len(ns)-added)
			return nil
		})
	case "remove":
		return withStore(ctx, fs, args[1:], getenv, func(cfg config.Config, store switchback.Store) error {
			e164s, err := switchback.ParseNumbers(fs.Args())
			if err != nil {
				return err
			}
			if len(e164s) == 0 {
				return errors.New("usage: switchback numbers remove NUMBER|RANGE...")
			}
			if err := store.RemoveNumbers(ctx, e164s); err != nil {
				return err
			}
			fmt.Fprintf(stdout, "removed %d numbers\n", len(e164s))
			return nil
		})
	}
	return fmt.Errorf("unknown numbers command %q (list, add, remove)", args[0])
}

func printNumbers(w io.Writer, numbers []switchback.NumberState, sums []switchback.PoolSummary, country string) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "COUNTRY\tSIZE\tLEASED\tQUARANTINED\tFREE")
	for _, s := range sums {
		if country == "" || s.Country == country {
			fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\n", s.Country, s.Size, s.Leased, s.Quarantined, s.Free)
		}
	}
	fmt.Fprintln(tw, "")
	fmt.Fprintln(tw, "NUMBER\tCOUNTRY\tTENANT\tSTATE\tDETAIL")
	for _, n := range numbers {
		tenant := n.TenantID
		if tenant == "" {
			tenant = "(shared)"
		}
		detail := ""
		switch n.State {
		case switchback.NumberLeased:
			detail = fmt.Sprintf("to %s/%s until %s", n.TransferTenant, n.TransferID, stamp(n.LeasedUntil))
		case switchback.NumberQuarantined:
			detail = "until " + stamp(n.QuarantineUntil)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", n.E164, n.Country, tenant, n.State, detail)
	}
	return tw.Flush()
}

func printNumbersJSON(w io.Writer, numbers []switchback.NumberState, sums []switchback.PoolSummary) error {
	type number struct {
		Number          string `json:"number"`
		Country         string `json:"country"`
		Tenant          string `json:"tenant,omitempty"`
		State           string `json:"state"`
		TransferTenant  string `json:"transferTenant,omitempty"`
		TransferID      string `json:"transferId,omitempty"`
		LeasedUntil     string `json:"leasedUntil,omitempty"`
		QuarantineUntil string `json:"quarantineUntil,omitempty"`
	}
	type summary struct {
		Country     string `json:"country"`
		Size        int    `json:"size"`
		Leased      int    `json:"leased"`
		Quarantined int    `json:"quarantined"`
		Free        int    `json:"free"`
	}
	out := struct {
		Pools   []summary `json:"pools"`
		Numbers []number  `json:"numbers"`
	}{Pools: []summary{}, Numbers: []number{}}
	for _, s := range sums {
		out.Pools = append(out.Pools, summary(s))
	}
	opt := func(t time.Time) string {
		if t.IsZero() {
			return ""
		}
		return stamp(t)
	}
	for _, n := range numbers {
		out.Numbers = append(out.Numbers, number{n.E164, n.Country, n.TenantID, string(n.State), n.TransferTenant,
			n.TransferID, opt(n.LeasedUntil), opt(n.QuarantineUntil)})
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(out)
}
