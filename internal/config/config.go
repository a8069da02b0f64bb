// Package config holds what `switchback serve` is configured with: the
// defaults it runs on when given nothing (Default), one YAML file and
// SWITCHBACK_* environment variables layered over them (Load), and checks
// that name every mistake by its YAML path so a user fixes them all in one go
// (Validate).
package config

import (
	"fmt"
	"time"

	"github.com/switchback/switchback"
)

// Config is everything `switchback serve` is configured with. Start from
// Default or Load: the zero value does not validate.
type Config struct {
	API     API      `yaml:"api"`
	Store   Store    `yaml:"store"`
	Pool    Pool     `yaml:"pool"`
	Expiry  Expiry   `yaml:"expiry"`
	Tenants []Tenant `yaml:"tenants"`
	Log     Log      `yaml:"log"`
}

// API configures the REST API.
type API struct {
	Listen       string   `yaml:"listen"`       // host:port; default DefaultListen
	MaxBodyBytes int64    `yaml:"maxBodyBytes"` // largest request body; default DefaultMaxBodyBytes
	MaxWait      Duration `yaml:"maxWait"`      // longest ?timeout= of a wait; default DefaultMaxWait
}

// Store says which database keeps transfers, leases and keys.
type Store struct {
	Driver string `yaml:"driver"` // DriverSQLite (default) or DriverPostgres
	DSN    string `yaml:"dsn"`    // default DefaultSQLiteDSN for sqlite; required for postgres
}

// Pool is the temporary phone numbers leased to PHONE_NUMBER transfers.
type Pool struct {
	Quarantine Duration      `yaml:"quarantine"` // rest after release; default DefaultQuarantine
	Numbers    []NumberBlock `yaml:"numbers"`
}

// NumberBlock is numbers of one country, shared by every tenant or
// dedicated to one.
type NumberBlock struct {
	Country string   `yaml:"country"` // ISO 3166 alpha-2
	Tenant  string   `yaml:"tenant"`  // "" = shared by all tenants, else a configured tenant id
	Numbers []string `yaml:"numbers"` // E.164 numbers or ranges, see switchback.ParseNumbers
}

// Expiry configures the sweep that expires ACTIVE transfers past their expiry.
type Expiry struct {
	SweepInterval Duration `yaml:"sweepInterval"` // default DefaultSweepInterval
}

// Tenant is one customer of the gateway, with its own transfers and limits.
type Tenant struct {
	ID                        string    `yaml:"id"`
	Name                      string    `yaml:"name"`
	PhoneNumberTTL            Duration  `yaml:"phoneNumberTTL"`            // default DefaultPhoneNumberTTL
	SIPTTL                    Duration  `yaml:"sipTTL"`                    // default DefaultSIPTTL
	DefaultReturnTransferType string    `yaml:"defaultReturnTransferType"` // BYE (default) | REFER | INVITE
	RateLimit                 RateLimit `yaml:"rateLimit"`
}

// RateLimit is a tenant's token bucket for API requests.
type RateLimit struct {
	RequestsPerSecond float64 `yaml:"requestsPerSecond"` // default DefaultRequestsPerSecond
	Burst             int     `yaml:"burst"`             // default DefaultBurst
}

// Log configures the process log.
type Log struct {
	Level  string `yaml:"level"`  // debug | info (default) | warn | error
	Format string `yaml:"format"` // json (default) | text
}

// The store drivers.
const (
	DriverSQLite   = "sqlite"
	DriverPostgres = "postgres"
)

// The defaults of the scalar fields, as Default sets them.
const (
	DefaultListen             = "127.0.0.1:8080"
	DefaultMaxBodyBytes       = 65536
	DefaultMaxWait            = 60 * time.Second
	DefaultDriver             = DriverSQLite
	DefaultSQLiteDSN          = "switchback.db" // a file in the working directory
	DefaultQuarantine         = 10 * time.Second
	DefaultSweepInterval      = time.Second
	DefaultTenantID           = "demo"
	DefaultTenantName         = "Demo tenant"
	DefaultPhoneNumberTTL     = 60 * time.Second
	DefaultSIPTTL             = 60 * time.Second
	DefaultReturnTransferType = string(switchback.ReturnBYE)
	DefaultRequestsPerSecond  = 200.0
	DefaultBurst              = 400
	DefaultLogLevel           = "info"
	DefaultLogFormat          = "json"
)

// The demo pool: numbers reserved for fiction (NANPA's 555-0100 to 0199 and
// Ofcom's London drama range), so a demo can never ring a real subscriber.
const (
	demoUSNumbers = "+12025550100-+12025550199"
	demoGBNumbers = "+442079460000-+442079460099"
)

// Default is the configuration of `switchback serve` run with no file and no
// environment: an SQLite file in the working directory, the API on
// 127.0.0.1:8080, one demo tenant and a demo pool shared by all tenants.
func Default() Config {
	return Config{
		API: API{
			Listen:       DefaultListen,
			MaxBodyBytes: DefaultMaxBodyBytes,
			MaxWait:      Duration(DefaultMaxWait),
		},
		Store: Store{Driver: DefaultDriver, DSN: DefaultSQLiteDSN},
		Pool: Pool{
			Quarantine: Duration(DefaultQuarantine),
			Numbers: []NumberBlock{
				{Country: "US", Numbers: []string{demoUSNumbers}},
				{Country: "GB", Numbers: []string{demoGBNumbers}},
			},
		},
		Expiry:  Expiry{SweepInterval: Duration(DefaultSweepInterval)},
		Tenants: []Tenant{Tenant{ID: DefaultTenantID, Name: DefaultTenantName}.withDefaults()},
		Log:     Log{Level: DefaultLogLevel, Format: DefaultLogFormat},
	}
}

// withDefaults fills t's zero fields with the defaults. The file's tenants
// are list items decoded from zero, not over Default's demo tenant, so this is
// how a field left out of one gets its default.
func (t Tenant) withDefaults() Tenant {
	if t.PhoneNumberTTL == 0 {
		t.PhoneNumberTTL = Duration(DefaultPhoneNumberTTL)
	}
	if t.SIPTTL == 0 {
		t.SIPTTL = Duration(DefaultSIPTTL)
	}
	if t.DefaultReturnTransferType == "" {
		t.DefaultReturnTransferType = DefaultReturnTransferType
	}
	if t.RateLimit.RequestsPerSecond == 0 {
		t.RateLimit.RequestsPerSecond = DefaultRequestsPerSecond
	}
	if t.RateLimit.Burst == 0 {
		t.RateLimit.Burst = DefaultBurst
	}
	return t
}

// Tenant returns the configured tenant with the given id.
func (c Config) Tenant(id string) (Tenant, bool) {
	for _, t := range c.Tenants {
		if t.ID == id {
			return t, true
		}
	}
	return Tenant{}, false
}

// PoolNumbers expands every block of the pool into its numbers, in the order
// they are listed. It does not look for duplicates: Validate does.
func (c Config) PoolNumbers() ([]switchback.Number, error) {
	var out []switchback.Number
	for i, b := range c.Pool.Numbers {
		for j, spec := range b.Numbers {
			nums, err := switchback.ParseNumbers([]string{spec})
			if err != nil {
				return nil, fmt.Errorf("pool.numbers[%d].numbers[%d]: %w", i, j, err)
			}
			for _, n := range nums {
				out = append(out, switchback.Number{E164: n, Country: b.Country, TenantID: b.Tenant})
			}
		}
	}
	return out, nil
}
