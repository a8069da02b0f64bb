package config

import (
	"errors"
	"fmt"
	"math"
	"net"
	"strconv"
	"strings"

	"github.com/switchback/switchback"
)

// minMaxBodyBytes is the smallest api.maxBodyBytes accepted: below it, an
// ordinary create request with an input context would not fit.
const minMaxBodyBytes = 1024

// Validate reports every problem of c at once, joined with errors.Join, so a
// user fixes them all in one go. Each names its field by its YAML path, as in
// "tenants[1].phoneNumberTTL: must be positive".
func (c Config) Validate() error {
	var p problems
	c.validateAPI(&p)
	c.validateStore(&p)
	tenants := c.validateTenants(&p)
	c.validatePool(&p, tenants)
	if c.Expiry.SweepInterval <= 0 {
		p.add("expiry.sweepInterval", "must be positive")
	}
	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		p.add("log.level", "must be debug, info, warn or error, got %q", c.Log.Level)
	}
	switch c.Log.Format {
	case "json", "text":
	default:
		p.add("log.format", "must be json or text, got %q", c.Log.Format)
	}
	return errors.Join(p...)
}

// problems collects Validate's findings, each prefixed with its field's path.
type problems []error

func (p *problems) add(path, format string, args ...any) {
	*p = append(*p, errors.New(path+": "+fmt.Sprintf(format, args...)))
}

func (c Config) validateAPI(p *problems) {
	if _, port, err := net.SplitHostPort(c.API.Listen); err != nil {
		p.add("api.listen", "%q is not host:port (e.g. 127.0.0.1:8080, or :8080 for every interface)", c.API.Listen)
	} else if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		p.add("api.listen", "port %q is not a number from 0 to 65535", port)
	}
	if c.API.MaxBodyBytes < minMaxBodyBytes {
		p.add("api.maxBodyBytes", "must be at least %d, got %d", minMaxBodyBytes, c.API.MaxBodyBytes)
	}
	if c.API.MaxWait <= 0 {
		p.add("api.maxWait", "must be positive")
	}
}

func (c Config) validateStore(p *problems) {
	switch c.Store.Driver {
	case DriverSQLite:
		if c.Store.DSN == "" {
			p.add("store.dsn", "required: the path of the sqlite database file")
		}
	case DriverPostgres:
		if c.Store.DSN == "" {
			p.add("store.dsn", "required for postgres")
		}
	default:
		p.add("store.driver", "must be sqlite or postgres, got %q", c.Store.Driver)
	}
}

// validateTenants checks the tenants and returns the set of their ids, valid
// or not, so a pool block naming a misspelt tenant is reported once.
func (c Config) validateTenants(p *problems) map[string]bool {
	if len(c.Tenants) == 0 {
		p.add("tenants", "at least one tenant is required")
	}
	ids := make(map[string]bool, len(c.Tenants))
	first := make(map[string]int, len(c.Tenants))
	for i, t := range c.Tenants {
		path := fmt.Sprintf("tenants[%d]", i)
		switch {
		case t.ID == "":
			p.add(path+".id", "required")
		case !switchback.ValidID(t.ID):
			p.add(path+".id", "%q is not a valid id: use 1 to %d of A-Z a-z 0-9 - . _ ~",
				t.ID, switchback.MaxIDLength)
		}
		if j, dup := first[t.ID]; dup && t.ID != "" {
			p.add(path+".id", "%q is also the id of tenants[%d]", t.ID, j)
		} else {
			first[t.ID] = i
		}
		ids[t.ID] = true
		if t.PhoneNumberTTL <= 0 {
			p.add(path+".phoneNumberTTL", "must be positive")
		}
		if t.SIPTTL <= 0 {
			p.add(path+".sipTTL", "must be positive")
		}
		switch switchback.ReturnTransferType(t.DefaultReturnTransferType) {
		case switchback.ReturnBYE, switchback.ReturnREFER, switchback.ReturnINVITE:
		default:
			p.add(path+".defaultReturnTransferType", "must be BYE, REFER or INVITE, got %q", t.DefaultReturnTransferType)
		}
		if rps := t.RateLimit.RequestsPerSecond; rps <= 0 || math.IsNaN(rps) {
			p.add(path+".rateLimit.requestsPerSecond", "must be positive")
		}
		if t.RateLimit.Burst <= 0 {
			p.add(path+".rateLimit.burst", "must be positive")
		}
	}
	return ids
}

func (c Config) validatePool(p *problems, tenants map[string]bool) {
	if c.Pool.Quarantine < 0 {
		p.add("pool.quarantine", "must not be negative")
	}
	listedAt := make(map[string]string) // number -> path of the entry that listed it first
	for i, b := range c.Pool.Numbers {
		path := fmt.Sprintf("pool.numbers[%d]", i)
		if !switchback.ValidCountry(b.Country) {
			hint := ""
			if up := strings.ToUpper(b.Country); up != b.Country && switchback.ValidCountry(up) {
				hint = fmt.Sprintf(" (did you mean %q?)", up)
			}
			p.add(path+".country", "%q is not an ISO 3166 alpha-2 code%s", b.Country, hint)
		}
		if b.Tenant != "" && !tenants[b.Tenant] {
			p.add(path+".tenant", "%q is not a configured tenant", b.Tenant)
		}
		if len(b.Numbers) == 0 {
			p.add(path+".numbers", "must list at least one number or range")
		}
		for j, spec := range b.Numbers {
			entry := fmt.Sprintf("%s.numbers[%d]", path, j)
			nums, err := switchback.ParseNumbers([]string{spec})
			if err != nil {
				p.add(entry, "%v", err)
				continue
			}
			// A range overlapping another would give one line per number:
			// report the first and count the rest.
			var dup, dupAt string
			dups := 0
			for _, n := range nums {
				if at, seen := listedAt[n]; seen {
					if dups == 0 {
						dup, dupAt = n, at
					}
					dups++
					continue
				}
				listedAt[n] = entry
			}
			switch {
			case dups == 1:
				p.add(entry, "%s is already listed at %s", dup, dupAt)
			case dups > 1:
				p.add(entry, "%s is already listed at %s, and %d more of this entry's numbers are listed twice",
					dup, dupAt, dups-1)
			}
		}
	}
}
