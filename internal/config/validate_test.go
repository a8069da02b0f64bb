package config

import (
	"math"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/switchback/switchback"
	"gopkg.in/yaml.v3"
)

// errorLines splits a joined error into its messages.
func errorLines(err error) []string {
	if err == nil {
		return nil
	}
	return strings.Split(err.Error(), "\n")
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(c *Config)
		want   []string // every message, in order; none means valid
	}{
		{name: "default is valid", mutate: func(c *Config) {}},
		{
			name:   "listen without a port",
			mutate: func(c *Config) { c.API.Listen = "localhost" },
			want:   []string{`api.listen: "localhost" is not host:port (e.g. 127.0.0.1:8080, or :8080 for every interface)`},
		},
		{
			name:   "listen on every interface is valid",
			mutate: func(c *Config) { c.API.Listen = ":8080" },
		},
		{
			name:   "listen port out of range",
			mutate: func(c *Config) { c.API.Listen = "127.0.0.1:65536" },
			want:   []string{`api.listen: port "65536" is not a number from 0 to 65535`},
		},
		{
			name:   "listen port by name",
			mutate: func(c *Config) { c.API.Listen = "127.0.0.1:http" },
			want:   []string{`api.listen: port "http" is not a number from 0 to 65535`},
		},
		{
			name:   "max body below 1024",
			mutate: func(c *Config) { c.API.MaxBodyBytes = 1023 },
			want:   []string{`api.maxBodyBytes: must be at least 1024, got 1023`},
		},
		{
			name:   "max body of exactly 1024 is valid",
			mutate: func(c *Config) { c.API.MaxBodyBytes = 1024 },
		},
		{
			name:   "max wait zero",
			mutate: func(c *Config) { c.API.MaxWait = 0 },
			want:   []string{`api.maxWait: must be positive`},
		},
		{
			name: "connection limits zero",
			mutate: func(c *Config) {
				c.API.ReadHeaderTimeout, c.API.ReadBodyTimeout, c.API.WriteTimeout, c.API.IdleTimeout = 0, 0, -1, 0
				c.API.MaxHeaderBytes, c.API.MaxConnections = 4095, 0
			},
			want: []string{
				`api.readHeaderTimeout: must be positive`,
				`api.readBodyTimeout: must be positive`,
				`api.writeTimeout: must be positive`,
				`api.idleTimeout: must be positive`,
				`api.maxHeaderBytes: must be at least 4096, got 4095`,
				`api.maxConnections: must be at least 1, got 0`,
			},
		},
		{
			name:   "auth failure limit off is valid",
			mutate: func(c *Config) { c.API.AuthFailureLimit = RateLimit{} },
		},
		{
			name:   "auth failure limit negative",
			mutate: func(c *Config) { c.API.AuthFailureLimit.RequestsPerSecond = -1 },
			want:   []string{`api.authFailureLimit.requestsPerSecond: must be 0 (no limit) or positive, got -1`},
		},
		{
			name:   "auth failure limit without burst",
			mutate: func(c *Config) { c.API.AuthFailureLimit.Burst = 0 },
			want:   []string{`api.authFailureLimit.burst: must be at least 1, got 0`},
		},
		{
			name:   "unknown driver",
			mutate: func(c *Config) { c.Store.Driver = "mysql" },
			want:   []string{`store.driver: must be sqlite or postgres, got "mysql"`},
		},
		{
			name:   "sqlite without a file",
			mutate: func(c *Config) { c.Store.DSN = "" },
			want:   []string{`store.dsn: required: the path of the sqlite database file`},
		},
		{
			name:   "postgres without a dsn",
			mutate: func(c *Config) { c.Store = Store{Driver: DriverPostgres} },
			want:   []string{`store.dsn: required for postgres`},
		},
		{
			name:   "postgres with a dsn is valid",
			mutate: func(c *Config) { c.Store = Store{Driver: DriverPostgres, DSN: "postgres://db/switchback"} },
		},
		{
			name:   "negative quarantine",
			mutate: func(c *Config) { c.Pool.Quarantine = Duration(-time.Second) },
			want:   []string{`pool.quarantine: must not be negative`},
		},
		{
			name:   "zero quarantine is valid",
			mutate: func(c *Config) { c.Pool.Quarantine = 0 },
		},
		{
			name:   "zero sweep interval",
			mutate: func(c *Config) { c.Expiry.SweepInterval = 0 },
			want:   []string{`expiry.sweepInterval: must be positive`},
		},
		{
			name:   "max call duration too short",
			mutate: func(c *Config) { c.Expiry.MaxCallDuration = Duration(time.Second) },
			want:   []string{`expiry.maxCallDuration: must be 0 (never) or at least 1m, got 1s`},
		},
		{
			name:   "no tenants",
			mutate: func(c *Config) { c.Tenants = nil },
			want:   []string{`tenants: at least one tenant is required`},
		},
		{
			name:   "tenant without an id",
			mutate: func(c *Config) { c.Tenants[0].ID = "" },
			want:   []string{`tenants[0].id: required`},
		},
		{
			name:   "tenant id with a space",
			mutate: func(c *Config) { c.Tenants[0].ID = "a b" },
			want:   []string{`tenants[0].id: "a b" is not a valid id: use 1 to 128 of A-Z a-z 0-9 - . _ ~`},
		},
		{
			name:   "tenant id too long",
			mutate: func(c *Config) { c.Tenants[0].ID = strings.Repeat("a", 129) },
			want:   []string{`tenants[0].id: "` + strings.Repeat("a", 129) + `" is not a valid id: use 1 to 128 of A-Z a-z 0-9 - . _ ~`},
		},
		{
			name: "duplicate tenant ids",
			mutate: func(c *Config) {
				c.Tenants = append(c.Tenants, tenant("acme"), tenant("demo"))
			},
			want: []string{
				`tenants[2].id: "demo" is also the id of tenants[0]`,
				`tenants[2].sip.user: "demo" is also the sip.user of tenants[0]`,
			},
		},
		{
			name:   "zero phone number ttl",
			mutate: func(c *Config) { c.Tenants = append(c.Tenants, tenant("acme")); c.Tenants[1].PhoneNumberTTL = 0 },
			want:   []string{`tenants[1].phoneNumberTTL: must be positive`},
		},
		{
			name:   "negative sip ttl",
			mutate: func(c *Config) { c.Tenants[0].SIPTTL = Duration(-time.Second) },
			want:   []string{`tenants[0].sipTTL: must be positive`},
		},
		{
			name:   "lower-case return transfer type",
			mutate: func(c *Config) { c.Tenants[0].DefaultReturnTransferType = "bye" },
			want:   []string{`tenants[0].defaultReturnTransferType: must be BYE, REFER or INVITE, got "bye"`},
		},
		{
			name:   "empty return transfer type",
			mutate: func(c *Config) { c.Tenants[0].DefaultReturnTransferType = "" },
			want:   []string{`tenants[0].defaultReturnTransferType: must be BYE, REFER or INVITE, got ""`},
		},
		{
			name: "REFER and INVITE are valid",
			mutate: func(c *Config) {
				c.Tenants[0].DefaultReturnTransferType = "REFER"
				c.Tenants = append(c.Tenants, tenant("acme"))
				c.Tenants[1].DefaultReturnTransferType = "INVITE"
			},
		},
		{
			name:   "negative requests per second",
			mutate: func(c *Config) { c.Tenants[0].RateLimit.RequestsPerSecond = -1 },
			want:   []string{`tenants[0].rateLimit.requestsPerSecond: must be positive`},
		},
		{
			name:   "NaN requests per second",
			mutate: func(c *Config) { c.Tenants[0].RateLimit.RequestsPerSecond = math.NaN() },
			want:   []string{`tenants[0].rateLimit.requestsPerSecond: must be positive`},
		},
		{
			name:   "zero burst",
			mutate: func(c *Config) { c.Tenants[0].RateLimit.Burst = 0 },
			want:   []string{`tenants[0].rateLimit.burst: must be positive`},
		},
		{
			name:   "unknown country",
			mutate: func(c *Config) { c.Pool.Numbers[0].Country = "XX" },
			want:   []string{`pool.numbers[0].country: "XX" is not an ISO 3166 alpha-2 code`},
		},
		{
			name:   "lower-case country",
			mutate: func(c *Config) { c.Pool.Numbers[1].Country = "gb" },
			want:   []string{`pool.numbers[1].country: "gb" is not an ISO 3166 alpha-2 code (did you mean "GB"?)`},
		},
		{
			name:   "block of an unknown tenant",
			mutate: func(c *Config) { c.Pool.Numbers[0].Tenant = "acme" },
			want:   []string{`pool.numbers[0].tenant: "acme" is not a configured tenant`},
		},
		{
			name:   "block of a configured tenant is valid",
			mutate: func(c *Config) { c.Pool.Numbers[0].Tenant = DefaultTenantID },
		},
		{
			name:   "block without numbers",
			mutate: func(c *Config) { c.Pool.Numbers[0].Numbers = nil },
			want:   []string{`pool.numbers[0].numbers: must list at least one number or range`},
		},
		{
			name:   "no pool at all is valid",
			mutate: func(c *Config) { c.Pool.Numbers = nil },
		},
		{
			name: "bad number named by block and entry",
			mutate: func(c *Config) {
				c.Pool.Numbers = append(c.Pool.Numbers, NumberBlock{Country: "FR", Numbers: []string{
					"+33100000001", "+33100000002", "+33100000003", "+3310000000x",
				}})
			},
			want: []string{`pool.numbers[2].numbers[3]: "+3310000000x" is not an E.164 number (+ and 7 to 15 digits)`},
		},
		{
			name: "bad range",
			mutate: func(c *Config) {
				c.Pool.Numbers[0].Numbers = append(c.Pool.Numbers[0].Numbers, "+12025550300-0200")
			},
			want: []string{`pool.numbers[0].numbers[1]: range "+12025550300-0200": end is before start`},
		},
		{
			name: "same number in two blocks",
			mutate: func(c *Config) {
				c.Pool.Numbers = append(c.Pool.Numbers, NumberBlock{Country: "US", Tenant: "demo", Numbers: []string{"+12025550150"}})
			},
			want: []string{`pool.numbers[2].numbers[0]: +12025550150 is already listed at pool.numbers[0].numbers[0]`},
		},
		{
			name: "overlapping ranges are one message",
			mutate: func(c *Config) {
				c.Pool.Numbers = append(c.Pool.Numbers, NumberBlock{Country: "US", Numbers: []string{"+12025550150-+12025550249"}})
			},
			want: []string{`pool.numbers[2].numbers[0]: +12025550150 is already listed at pool.numbers[0].numbers[0], and 49 more of this entry's numbers are listed twice`},
		},
		{
			name: "same number twice in one block",
			mutate: func(c *Config) {
				c.Pool.Numbers[1].Numbers = append(c.Pool.Numbers[1].Numbers, "+442079460000")
			},
			want: []string{`pool.numbers[1].numbers[1]: +442079460000 is already listed at pool.numbers[1].numbers[0]`},
		},
		{
			name:   "node id with a space",
			mutate: func(c *Config) { c.Node.ID = "sb 1" },
			want:   []string{`node.id: must not hold spaces or control characters, got "sb 1"`},
		},
		{
			name:   "node id too long",
			mutate: func(c *Config) { c.Node.ID = strings.Repeat("n", 201) },
			want:   []string{`node.id: must be at most 200 bytes, got 201`},
		},
		{
			name:   "node heartbeat zero",
			mutate: func(c *Config) { c.Node.Heartbeat = 0 },
			want:   []string{`node.heartbeat: must be positive, got 0s`},
		},
		{
			name:   "node ttl under two heartbeats",
			mutate: func(c *Config) { c.Node.TTL = Duration(9 * time.Second) },
			want:   []string{`node.ttl: must be at least twice node.heartbeat (5s), got 9s`},
		},
		{
			name: "node ttl of exactly two heartbeats",
			mutate: func(c *Config) {
				c.Node = Node{ID: "sb-1/10.0.0.5:5060", Heartbeat: Duration(time.Second), TTL: Duration(2 * time.Second)}
			},
			want: nil,
		},
		{
			name:   "unknown log level",
			mutate: func(c *Config) { c.Log.Level = "verbose" },
			want:   []string{`log.level: must be debug, info, warn or error, got "verbose"`},
		},
		{
			name:   "unknown log format",
			mutate: func(c *Config) { c.Log.Format = "xml" },
			want:   []string{`log.format: must be json or text, got "xml"`},
		},
		{
			name: "every problem at once, in field order",
			mutate: func(c *Config) {
				c.API.Listen = "nowhere"
				c.Store.Driver = "postgres"
				c.Store.DSN = ""
				c.Pool.Numbers[0].Country = "XX"
				c.Pool.Numbers[1].Tenant = "nobody"
				c.Expiry.SweepInterval = -1
				c.Tenants = append(c.Tenants, Tenant{ID: "bad id"})
				c.Log.Format = ""
			},
			want: []string{
				`api.listen: "nowhere" is not host:port (e.g. 127.0.0.1:8080, or :8080 for every interface)`,
				`store.dsn: required for postgres`,
				`tenants[1].id: "bad id" is not a valid id: use 1 to 128 of A-Z a-z 0-9 - . _ ~`,
				`tenants[1].phoneNumberTTL: must be positive`,
				`tenants[1].sipTTL: must be positive`,
				`tenants[1].defaultReturnTransferType: must be BYE, REFER or INVITE, got ""`,
				`tenants[1].rateLimit.requestsPerSecond: must be positive`,
				`tenants[1].rateLimit.burst: must be positive`,
				`tenants[1].sip.user: required`,
				`tenants[1].sip.maxCalls: must be at least 1, got 0`,
				`pool.numbers[0].country: "XX" is not an ISO 3166 alpha-2 code`,
				`pool.numbers[1].tenant: "nobody" is not a configured tenant`,
				`expiry.sweepInterval: must be positive`,
				`log.format: must be json or text, got ""`,
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := Default()
			tt.mutate(&c)
			got := errorLines(c.Validate())
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("Validate() =\n  %s\nwant\n  %s", strings.Join(got, "\n  "), strings.Join(tt.want, "\n  "))
			}
		})
	}
}

// tenant is a valid tenant with the defaults: the one tenantYAML describes.
func tenant(id string) Tenant {
	return Tenant{
		ID:  id,
		SIP: TenantSIP{Allow: []string{"127.0.0.1"}},
		Agents: []AgentConfig{{Menu: &Menu{
			DigitTimeout: Duration(DefaultDigitTimeout),
			Default:      Outcome{TransferType: "SYSTEM"},
		}}},
	}.withDefaults()
}

func TestDefault(t *testing.T) {
	c := Default()
	if err := c.Validate(); err != nil {
		t.Fatalf("Default().Validate() = %v", err)
	}
	loopback := []string{"127.0.0.0/8", "::1/128"}
	want := Tenant{
		ID:                        "demo",
		Name:                      "Demo tenant",
		PhoneNumberTTL:            Duration(60 * time.Second),
		SIPTTL:                    Duration(60 * time.Second),
		DefaultReturnTransferType: "BYE",
		RateLimit:                 RateLimit{RequestsPerSecond: 200, Burst: 400},
		SIP:                       TenantSIP{User: "demo", Allow: loopback, MaxCalls: 100},
		Agents: []AgentConfig{
			{Task: "", Menu: &Menu{
				Greeting: "builtin:chime",
				Choices: map[string]Outcome{
					"1": {TransferType: "AGENT", TaskName: "agent_escalation", ReferenceVariables: []string{"accountNumber"},
						Set: map[string]string{"reason": "caller asked for an agent"}},
					"2": {TransferType: "SYSTEM", TaskName: "self_service_complete", ReferenceVariables: []string{"accountNumber"},
						Set: map[string]string{"next_action": "close"}},
				},
				DigitTimeout: Duration(5 * time.Second),
				Default:      Outcome{TransferType: "SYSTEM", TaskName: "no_input", Set: map[string]string{"next_action": "retry_ivr"}},
			}},
			{Task: "account", Menu: &Menu{
				Greeting: "builtin:chime",
				Collect:  []Collect{{Name: "pin", MaxDigits: 4, Terminator: "#"}},
				Choices: map[string]Outcome{
					"1": {TransferType: "AGENT", TaskName: "account_agent", ReferenceVariables: []string{"accountNumber", "pin"}},
				},
				DigitTimeout: Duration(5 * time.Second),
				Default:      Outcome{TransferType: "SYSTEM", TaskName: "account_done", TransferVariables: []string{"pin"}},
			}},
			// No greeting and no wait: the call goes back at once.
			{Task: "instant", Menu: &Menu{DigitTimeout: 0, Default: Outcome{TransferType: "SYSTEM", TaskName: "instant"}}},
		},
	}
	if !reflect.DeepEqual(c.Tenants, []Tenant{want}) {
		t.Errorf("Default().Tenants =\n%s\nwant\n%s", dump(t, c.Tenants), dump(t, []Tenant{want}))
	}
	if c.API.Listen != "127.0.0.1:8080" || c.API.MaxBodyBytes != 65536 || c.API.MaxWait.Duration() != time.Minute ||
		c.Store != (Store{Driver: "sqlite", DSN: "switchback.db"}) ||
		c.Pool.Quarantine.Duration() != 10*time.Second || c.Expiry.SweepInterval.Duration() != time.Second || c.Expiry.MaxCallDuration.Duration() != 4*time.Hour ||
		c.Log != (Log{Level: "info", Format: "json"}) {
		t.Errorf("Default() = %+v", c)
	}
	wantSIP := SIP{
		Listen:            "127.0.0.1:5060",
		Realm:             "switchback",
		RTPPorts:          PortRange{Min: 20000, Max: 20999},
		RTPTimeout:        Duration(30 * time.Second),
		SessionExpires:    Duration(1800 * time.Second),
		NonceTTL:          Duration(30 * time.Second),
		MaxPendingInvites: 1000,
		ReferTimeout:      Duration(30 * time.Second),
		ReturnTimeout:     Duration(30 * time.Second),
		DigestAlgorithms:  []string{"SHA-256", "MD5"},
		Trunks:            []Trunk{{Name: "local", Allow: loopback}},
	}
	if !reflect.DeepEqual(c.SIP, wantSIP) {
		t.Errorf("Default().SIP = %+v, want %+v", c.SIP, wantSIP)
	}
	if !reflect.DeepEqual(c.SIP.withDefaults(), c.SIP) {
		t.Errorf("Default().SIP lacks a default")
	}
	// Each call builds its own lists: changing one must not change the next.
	c.Tenants[0].ID = "changed"
	c.Pool.Numbers[0].Numbers[0] = "changed"
	c.SIP.Trunks[0].Allow[0] = "changed"
	c.Tenants[0].SIP.Allow[0] = "changed"
	c.Tenants[0].Agents[0].Menu.Greeting = "changed"
	c.Tenants[0].Agents[0].Menu.Choices["1"] = Outcome{}
	d := Default()
	if d.Tenants[0].ID != "demo" || d.Pool.Numbers[0].Numbers[0] != demoUSNumbers ||
		d.SIP.Trunks[0].Allow[0] != "127.0.0.0/8" || d.Tenants[0].SIP.Allow[0] != "127.0.0.0/8" ||
		d.Tenants[0].Agents[0].Menu.Greeting != BuiltinChime || d.Tenants[0].Agents[0].Menu.Choices["1"].TaskName != "agent_escalation" {
		t.Errorf("Default() shares its lists between calls")
	}
}

// dump shows v as YAML, which spells out what %+v leaves as pointers.
func dump(t *testing.T, v any) string {
	t.Helper()
	out, err := yaml.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(out)
}

// withDefaults fills in a copy: the tenant it was given, which may share its
// lists with a caller, is left alone.
func TestTenantWithDefaultsCopies(t *testing.T) {
	m := &Menu{Collect: []Collect{{Name: "pin"}}}
	in := Tenant{ID: "acme", Agents: []AgentConfig{{Menu: m}}}
	out := in.withDefaults()
	if got := out.Agents[0].Menu.Collect[0].MaxDigits; got != DefaultMaxDigits {
		t.Errorf("withDefaults() maxDigits = %d, want %d", got, DefaultMaxDigits)
	}
	if m.Collect[0].MaxDigits != 0 || in.Agents[0].Menu != m {
		t.Errorf("withDefaults() changed the tenant it was given")
	}
	// Zero values that are settings of their own stay as they are.
	if got := out.Agents[0].Menu; got.DigitTimeout != 0 || got.Collect[0].Terminator != "" {
		t.Errorf("withDefaults() = %+v, want digitTimeout 0 and no terminator kept", got)
	}
	if out.SIP.User != "acme" || out.SIP.MaxCalls != DefaultMaxCalls {
		t.Errorf("withDefaults().SIP = %+v", out.SIP)
	}
}

func TestPoolNumbers(t *testing.T) {
	got, err := Default().PoolNumbers()
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 200 {
		t.Fatalf("Default().PoolNumbers() has %d numbers, want 200", len(got))
	}
	for i, want := range map[int]switchback.Number{
		0:   {E164: "+12025550100", Country: "US"},
		99:  {E164: "+12025550199", Country: "US"},
		100: {E164: "+442079460000", Country: "GB"},
		199: {E164: "+442079460099", Country: "GB"},
	} {
		if got[i] != want {
			t.Errorf("PoolNumbers()[%d] = %+v, want %+v", i, got[i], want)
		}
	}

	c := Default()
	c.Pool.Numbers = []NumberBlock{{Country: "FR", Tenant: "demo", Numbers: []string{"+33100000001", "+33100000009-10"}}}
	got, err = c.PoolNumbers()
	if err != nil {
		t.Fatal(err)
	}
	want := []switchback.Number{
		{E164: "+33100000001", Country: "FR", TenantID: "demo"},
		{E164: "+33100000009", Country: "FR", TenantID: "demo"},
		{E164: "+33100000010", Country: "FR", TenantID: "demo"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("PoolNumbers() = %+v, want %+v", got, want)
	}

	c.Pool.Numbers = append(c.Pool.Numbers, NumberBlock{Country: "FR", Numbers: []string{"+33100000020", "nope"}})
	_, err = c.PoolNumbers()
	if want := `pool.numbers[1].numbers[1]: "nope" is not an E.164 number`; err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("PoolNumbers() error = %v, want one containing %q", err, want)
	}
}

func TestTenant(t *testing.T) {
	c := Default()
	c.Tenants = append(c.Tenants, Tenant{ID: "acme", Name: "Acme"})
	tests := []struct {
		name   string
		id     string
		want   string
		wantOK bool
	}{
		{name: "first", id: "demo", want: "Demo tenant", wantOK: true},
		{name: "second", id: "acme", want: "Acme", wantOK: true},
		{name: "unknown", id: "globex"},
		{name: "ids are case-sensitive", id: "ACME"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := c.Tenant(tt.id)
			if ok != tt.wantOK || got.Name != tt.want {
				t.Errorf("Tenant(%q) = %+v, %v; want name %q, %v", tt.id, got, ok, tt.want, tt.wantOK)
			}
		})
	}
}
