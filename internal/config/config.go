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
	"github.com/switchback/switchback/internal/agent/websocket"
	"github.com/switchback/switchback/internal/fleet"
)

// Config is everything `switchback serve` is configured with. Start from
// Default or Load: the zero value does not validate.
type Config struct {
	API      API      `yaml:"api"`
	Store    Store    `yaml:"store"`
	Pool     Pool     `yaml:"pool"`
	Expiry   Expiry   `yaml:"expiry"`
	SIP      SIP      `yaml:"sip"`
	Tenants  []Tenant `yaml:"tenants"`
	Node     Node     `yaml:"node"`
	Shutdown Shutdown `yaml:"shutdown"`
	Log      Log      `yaml:"log"`
}

// Node is this node's place among the nodes sharing the store (DESIGN.md
// "Multi-node"): the lease it holds while it runs. The node renews the
// lease every Heartbeat; a node that has not renewed it for TTL is taken
// for lost, and the other nodes complete its calls. A node that finds its
// own lease lost is fenced: it ends its calls at once and exits with an
// error, for its supervisor to start it again under a new lease.
type Node struct {
	// ID names the node in the store, the same across its restarts; ""
	// derives one from the host name and the SIP address it listens on.
	// Two nodes running at once must not share one: the second start
	// takes the first one's lease.
	ID        string   `yaml:"id"`
	Heartbeat Duration `yaml:"heartbeat"` // how often the lease is renewed; default DefaultNodeHeartbeat
	TTL       Duration `yaml:"ttl"`       // how long it lasts unrenewed; at least twice Heartbeat; default DefaultNodeTTL
}

// Shutdown configures how a node stops. SIGTERM drains it: new calls are
// refused (503), calls in progress run to their normal end and hand-back,
// for up to DrainTimeout; then the rest are ended, each outcome stored
// first. SIGINT, or a second SIGTERM, ends every call at once.
type Shutdown struct {
	// DrainTimeout is the longest a drain waits for the calls in progress;
	// 0 ends them at once. Default DefaultDrainTimeout.
	DrainTimeout Duration `yaml:"drainTimeout"`
}

// API configures the REST API.
type API struct {
	Listen       string   `yaml:"listen"`       // host:port; default DefaultListen
	MaxBodyBytes int64    `yaml:"maxBodyBytes"` // largest request body; default DefaultMaxBodyBytes
	MaxWait      Duration `yaml:"maxWait"`      // longest ?timeout= of a wait; default DefaultMaxWait
	// ReadHeaderTimeout is how long a client has to send a request's
	// headers; default DefaultReadHeaderTimeout.
	ReadHeaderTimeout Duration `yaml:"readHeaderTimeout"`
	// ReadBodyTimeout is how long a client has to send a request's body
	// once its headers are in (408 beyond); default DefaultReadBodyTimeout.
	ReadBodyTimeout Duration `yaml:"readBodyTimeout"`
	// WriteTimeout is how long writing an answer may take from its first
	// byte, so a wait is not cut short; default DefaultWriteTimeout.
	WriteTimeout Duration `yaml:"writeTimeout"`
	// IdleTimeout is how long a kept-alive connection may wait for its
	// next request; default DefaultIdleTimeout.
	IdleTimeout    Duration `yaml:"idleTimeout"`
	MaxHeaderBytes int      `yaml:"maxHeaderBytes"` // largest request headers (431 beyond); default DefaultMaxHeaderBytes
	// MaxConnections caps the API's open connections; past it new ones
	// wait in the listen queue. Default DefaultMaxConnections.
	MaxConnections int `yaml:"maxConnections"`
	// AuthFailureLimit is, per source address, the rate of failed
	// authentications past which a key id this node does not know is
	// answered 429 without a store lookup; requestsPerSecond 0 turns it
	// off. Default DefaultAuthFailuresPerSecond and DefaultAuthFailureBurst.
	AuthFailureLimit RateLimit `yaml:"authFailureLimit"`
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
	// MaxCallDuration is how long after its call arrived an ONGOING transfer
	// is taken for abandoned by a node that died with the call, and
	// completed as CALLER_DISCONNECT; default DefaultMaxCallDuration.
	MaxCallDuration Duration `yaml:"maxCallDuration"`
}

// SIP configures the SIP edge: where calls arrive, how their senders are
// authenticated and the RTP ports their media uses.
type SIP struct {
	Listen          string    `yaml:"listen"`          // host:port for UDP and TCP; default DefaultSIPListen
	TLS             SIPTLS    `yaml:"tls"`             // off by default
	ExternalAddress string    `yaml:"externalAddress"` // IP or host name put in Contact and SDP; "" = the listen host
	Realm           string    `yaml:"realm"`           // digest realm; default DefaultSIPRealm
	RTPPorts        PortRange `yaml:"rtpPorts"`        // default DefaultRTPPortMin to DefaultRTPPortMax
	RTPTimeout      Duration  `yaml:"rtpTimeout"`      // no RTP for this long ends a call as a caller disconnect; default DefaultRTPTimeout
	// AnswerDelay is how long an INVITE rings (180) before it is matched
	// and answered; default 0, answer at once. A CANCEL while it rings
	// leaves the transfer ACTIVE.
	AnswerDelay    Duration `yaml:"answerDelay"`
	SessionExpires Duration `yaml:"sessionExpires"` // RFC 4028 interval asked for; at least MinSessionExpires; default DefaultSessionExpires
	NonceTTL       Duration `yaml:"nonceTTL"`       // digest nonce lifetime; default DefaultNonceTTL
	// DigestAlgorithms are the digest challenges offered, in this order;
	// default SHA-256 then MD5 (RFC 8760). Put MD5 first for clients that
	// read only the first challenge and know only MD5.
	DigestAlgorithms []string `yaml:"digestAlgorithms,omitempty"`
	Trunks           []Trunk  `yaml:"trunks"` // default: one trunk, "local", allowing the loopback addresses
	// MaxPendingInvites is how many new INVITEs may be in progress (not yet
	// answered or refused) at once; more are refused at once with 503 and
	// Retry-After, so an overload sheds calls instead of slowing them all.
	// Default DefaultMaxPendingInvites.
	MaxPendingInvites int `yaml:"maxPendingInvites"`
	// ReferTimeout is how long a REFER hand-back waits for the final
	// NOTIFY before ending the call by BYE; default DefaultReferTimeout.
	ReferTimeout Duration `yaml:"referTimeout"`
	// ReturnTimeout is how long an INVITE hand-back waits for the return
	// leg to answer before ending the call by BYE; default DefaultReturnTimeout.
	ReturnTimeout Duration `yaml:"returnTimeout"`
}

// SIPTLS configures SIP over TLS. It is off unless Listen is set.
type SIPTLS struct {
	Listen   string `yaml:"listen"`   // host:port; "" (default) = off
	CertFile string `yaml:"certFile"` // PEM certificate chain; required with Listen
	KeyFile  string `yaml:"keyFile"`  // PEM private key; required with Listen
}

// PortRange is the ports from Min to Max, both included.
type PortRange struct {
	Min int `yaml:"min"`
	Max int `yaml:"max"`
}

// Trunk is a carrier delivering PSTN calls to leased numbers. A call is
// accepted from a trunk when its source address is allowed and, if the trunk
// lists users, it answers a digest challenge as one of them: when both Allow
// and Users are set, both must pass.
type Trunk struct {
	Name  string    `yaml:"name"`            // required, unique; names the trunk in logs and metrics
	Allow []string  `yaml:"allow,omitempty"` // source IP addresses or CIDRs
	Users []SIPUser `yaml:"users,omitempty"` // digest credentials
}

// SIPUser is one set of digest credentials.
type SIPUser struct {
	Username string `yaml:"username"`
	Password string `yaml:"password"`
}

// Tenant is one customer of the gateway, with its own transfers and limits.
type Tenant struct {
	ID                        string        `yaml:"id"`
	Name                      string        `yaml:"name"`
	PhoneNumberTTL            Duration      `yaml:"phoneNumberTTL"`            // default DefaultPhoneNumberTTL
	SIPTTL                    Duration      `yaml:"sipTTL"`                    // default DefaultSIPTTL
	DefaultReturnTransferType string        `yaml:"defaultReturnTransferType"` // BYE (default) | REFER | INVITE
	RateLimit                 RateLimit     `yaml:"rateLimit"`
	SIP                       TenantSIP     `yaml:"sip"`
	Agents                    []AgentConfig `yaml:"agents,omitempty"` // at least one
}

// TenantSIP is how a tenant's system sends SIP transfers: INVITEs to the
// tenant's static URI sip:USER@host, authenticated by source address, digest
// credentials or both (when both are set, both must pass).
type TenantSIP struct {
	User     string    `yaml:"user"`            // the URI's user part; default the tenant id
	Allow    []string  `yaml:"allow,omitempty"` // source IP addresses or CIDRs
	Users    []SIPUser `yaml:"users,omitempty"` // digest credentials
	MaxCalls int       `yaml:"maxCalls"`        // concurrent calls; default DefaultMaxCalls
	// ReturnAuth answers the digest challenge of an INVITE hand-back when
	// the transfer has no sip.returnInviteAuthentication of its own.
	ReturnAuth SIPUser `yaml:"returnAuth"`
}

// AgentConfig says which agent answers a tenant's calls for one task. An
// agent is of one kind, configured under that kind's key; each kind owns
// its settings and their checks (internal/agent/... for the code).
type AgentConfig struct {
	Task string `yaml:"task"` // the inputContext.taskName it serves; "" = every task without an agent of its own
	// Menu is the built-in menu agent.
	Menu *Menu `yaml:"menu,omitempty"`
	// WebSocket is an external voice agent Switchback dials over a
	// WebSocket, speaking the Twilio Media Streams wire
	// (internal/agent/websocket, docs/agents.md).
	WebSocket *websocket.Config `yaml:"websocket,omitempty"`
}

// Menu is the built-in menu agent: it plays Greeting, gathers each Collect
// into a variable, then plays ChoicePrompt and waits for a choice, and hands
// the call back with the chosen Outcome, or Default.
//
// In a file, a menu left without a digitTimeout key gets DefaultDigitTimeout
// and a collect without a terminator key gets DefaultTerminator, while an
// explicit 0 or "" is kept: 0 means "do not wait" and "" means "no
// terminator". Load presets these two before decoding a menu rather than
// defaulting zero values afterwards, since their zero values are settings of
// their own. A Menu built in Go gets exactly what it is given.
type Menu struct {
	Greeting     string             `yaml:"greeting,omitempty"`     // a WAV file, BuiltinChime, or "" for none
	Collect      []Collect          `yaml:"collect,omitempty"`      // gathered in order after the greeting
	Choices      map[string]Outcome `yaml:"choices,omitempty"`      // keyed by 1 to 8 DTMF digits (0-9 * # A-D)
	ChoicePrompt string             `yaml:"choicePrompt,omitempty"` // a WAV file, BuiltinChime, or "" for none
	DigitTimeout Duration           `yaml:"digitTimeout"`           // the wait for each digit; 0 = do not wait
	Default      Outcome            `yaml:"default"`                // when no valid choice comes in time, or there are no choices
}

// Collect gathers the caller's digits into a variable.
type Collect struct {
	Name       string `yaml:"name"`             // the variable's name; required, unique in the menu
	Prompt     string `yaml:"prompt,omitempty"` // a WAV file, BuiltinChime, or "" for none
	MaxDigits  int    `yaml:"maxDigits"`        // stop after this many; default DefaultMaxDigits
	Terminator string `yaml:"terminator"`       // a digit that ends input early and is not kept; "" = none
}

// Outcome is how a menu hands the call back: the output context it leaves.
type Outcome struct {
	TransferType       string            `yaml:"transferType"`                 // AGENT or SYSTEM; required
	TaskName           string            `yaml:"taskName,omitempty"`           // outputContext.currentTaskName; "" = the input's taskName
	ReferenceVariables []string          `yaml:"referenceVariables,omitempty"` // input or collected variables copied into referenceVariables
	TransferVariables  []string          `yaml:"transferVariables,omitempty"`  // input or collected variables copied into transferVariables
	Set                map[string]string `yaml:"set,omitempty"`                // fixed transferVariables added
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
	DefaultListen            = "127.0.0.1:8080"
	DefaultMaxBodyBytes      = 65536
	DefaultMaxWait           = 60 * time.Second
	DefaultReadHeaderTimeout = 10 * time.Second
	DefaultReadBodyTimeout   = 5 * time.Second
	DefaultWriteTimeout      = 10 * time.Second
	DefaultIdleTimeout       = 2 * time.Minute
	DefaultMaxHeaderBytes    = 32 << 10
	DefaultMaxConnections    = 4096

	DefaultAuthFailuresPerSecond = 2.0
	DefaultAuthFailureBurst      = 20

	DefaultDriver             = DriverSQLite
	DefaultSQLiteDSN          = "switchback.db" // a file in the working directory
	DefaultQuarantine         = 10 * time.Second
	DefaultSweepInterval      = time.Second
	DefaultMaxCallDuration    = 4 * time.Hour
	DefaultTenantID           = "demo"
	DefaultTenantName         = "Demo tenant"
	DefaultPhoneNumberTTL     = 60 * time.Second
	DefaultSIPTTL             = 60 * time.Second
	DefaultReturnTransferType = string(switchback.ReturnBYE)
	DefaultRequestsPerSecond  = 200.0
	DefaultBurst              = 400
	DefaultDrainTimeout       = time.Hour
	DefaultNodeHeartbeat      = fleet.DefaultHeartbeat
	DefaultNodeTTL            = fleet.DefaultTTL
	DefaultLogLevel           = "info"
	DefaultLogFormat          = "json"

	// A file's menus and collects get DefaultDigitTimeout and
	// DefaultTerminator when they leave the key out (see Menu).
	DefaultSIPListen         = "127.0.0.1:5060"
	DefaultSIPRealm          = "switchback"
	DefaultRTPPortMin        = 20000
	DefaultRTPPortMax        = 20999
	DefaultRTPTimeout        = 30 * time.Second
	DefaultSessionExpires    = 1800 * time.Second
	DefaultNonceTTL          = 30 * time.Second
	DefaultMaxCalls          = 100
	DefaultMaxPendingInvites = 1000
	DefaultReferTimeout      = 30 * time.Second
	DefaultReturnTimeout     = 30 * time.Second
	DefaultDigitTimeout      = 5 * time.Second
	DefaultMaxDigits         = 16
	DefaultTerminator        = "#"
)

// MinSessionExpires is the smallest sip.sessionExpires accepted: RFC 4028
// section 4 forbids a Min-SE below 90 seconds.
const MinSessionExpires = 90 * time.Second

// BuiltinChime names the built-in tone where a menu takes a WAV file.
const BuiltinChime = "builtin:chime"

// builtinPrefix begins the name of every built-in sound.
const builtinPrefix = "builtin:"

// loopback is the IPv4 and IPv6 loopback networks: the default trunk and the
// demo tenant accept calls from the local host only.
func loopback() []string { return []string{"127.0.0.0/8", "::1/128"} }

// The demo pool: numbers reserved for fiction (NANPA's 555-0100 to 0199 and
// Ofcom's London drama range), so a demo can never ring a real subscriber.
const (
	demoUSNumbers = "+12025550100-+12025550199"
	demoGBNumbers = "+442079460000-+442079460099"
)

// Default is the configuration of `switchback serve` run with no file and no
// environment: an SQLite file in the working directory, the API on
// 127.0.0.1:8080, SIP on 127.0.0.1:5060 with one trunk ("local") accepting
// calls from the loopback addresses, one demo tenant and a demo pool shared
// by all tenants.
func Default() Config {
	return Config{
		API: API{
			Listen:            DefaultListen,
			MaxBodyBytes:      DefaultMaxBodyBytes,
			MaxWait:           Duration(DefaultMaxWait),
			ReadHeaderTimeout: Duration(DefaultReadHeaderTimeout),
			ReadBodyTimeout:   Duration(DefaultReadBodyTimeout),
			WriteTimeout:      Duration(DefaultWriteTimeout),
			IdleTimeout:       Duration(DefaultIdleTimeout),
			MaxHeaderBytes:    DefaultMaxHeaderBytes,
			MaxConnections:    DefaultMaxConnections,
			AuthFailureLimit:  RateLimit{RequestsPerSecond: DefaultAuthFailuresPerSecond, Burst: DefaultAuthFailureBurst},
		},
		Store: Store{Driver: DefaultDriver, DSN: DefaultSQLiteDSN},
		Pool: Pool{
			Quarantine: Duration(DefaultQuarantine),
			Numbers: []NumberBlock{
				{Country: "US", Numbers: []string{demoUSNumbers}},
				{Country: "GB", Numbers: []string{demoGBNumbers}},
			},
		},
		Expiry:   Expiry{SweepInterval: Duration(DefaultSweepInterval), MaxCallDuration: Duration(DefaultMaxCallDuration)},
		Node:     Node{Heartbeat: Duration(DefaultNodeHeartbeat), TTL: Duration(DefaultNodeTTL)},
		Shutdown: Shutdown{DrainTimeout: Duration(DefaultDrainTimeout)},
		SIP: SIP{
			Listen:            DefaultSIPListen,
			Realm:             DefaultSIPRealm,
			RTPPorts:          PortRange{Min: DefaultRTPPortMin, Max: DefaultRTPPortMax},
			RTPTimeout:        Duration(DefaultRTPTimeout),
			SessionExpires:    Duration(DefaultSessionExpires),
			NonceTTL:          Duration(DefaultNonceTTL),
			DigestAlgorithms:  []string{"SHA-256", "MD5"},
			Trunks:            []Trunk{{Name: "local", Allow: loopback()}},
			MaxPendingInvites: DefaultMaxPendingInvites,
			ReferTimeout:      Duration(DefaultReferTimeout),
			ReturnTimeout:     Duration(DefaultReturnTimeout),
		},
		Tenants: []Tenant{demoTenant()},
		Log:     Log{Level: DefaultLogLevel, Format: DefaultLogFormat},
	}
}

// demoTenant is the tenant of Default: SIP transfers from the local host, and
// three menus. The one for any task offers an agent (1) or self-service (2);
// the one for task "account" collects a 4-digit PIN first; the one for task
// "instant" plays nothing, waits for nothing and hands the call back at once,
// for benchmarks and load tests.
func demoTenant() Tenant {
	return Tenant{
		ID:   DefaultTenantID,
		Name: DefaultTenantName,
		SIP:  TenantSIP{User: DefaultTenantID, Allow: loopback()},
		Agents: []AgentConfig{
			{Menu: &Menu{
				Greeting: BuiltinChime,
				Choices: map[string]Outcome{
					"1": {
						TransferType:       string(switchback.TransferAgent),
						TaskName:           "agent_escalation",
						ReferenceVariables: []string{"accountNumber"},
						Set:                map[string]string{"reason": "caller asked for an agent"},
					},
					"2": {
						TransferType:       string(switchback.TransferSystem),
						TaskName:           "self_service_complete",
						ReferenceVariables: []string{"accountNumber"},
						Set:                map[string]string{"next_action": "close"},
					},
				},
				DigitTimeout: Duration(DefaultDigitTimeout),
				Default: Outcome{
					TransferType: string(switchback.TransferSystem),
					TaskName:     "no_input",
					Set:          map[string]string{"next_action": "retry_ivr"},
				},
			}},
			{Task: "account", Menu: &Menu{
				Greeting: BuiltinChime,
				Collect:  []Collect{{Name: "pin", MaxDigits: 4, Terminator: DefaultTerminator}},
				Choices: map[string]Outcome{
					"1": {
						TransferType:       string(switchback.TransferAgent),
						TaskName:           "account_agent",
						ReferenceVariables: []string{"accountNumber", "pin"},
					},
				},
				DigitTimeout: Duration(DefaultDigitTimeout),
				Default: Outcome{
					TransferType:      string(switchback.TransferSystem),
					TaskName:          "account_done",
					TransferVariables: []string{"pin"},
				},
			}},
			{Task: "instant", Menu: &Menu{
				DigitTimeout: 0, // no greeting, no choices, no wait
				Default:      Outcome{TransferType: string(switchback.TransferSystem), TaskName: "instant"},
			}},
		},
	}.withDefaults()
}

// withDefaults fills s's zero fields with the defaults. The file decodes over
// Default, so a field left out already has its default; this restores the
// default of one set to zero. Trunks is a list: the file's replaces the
// default one, and an empty list means no trunk.
func (s SIP) withDefaults() SIP {
	if s.Listen == "" {
		s.Listen = DefaultSIPListen
	}
	if s.Realm == "" {
		s.Realm = DefaultSIPRealm
	}
	if s.RTPPorts.Min == 0 {
		s.RTPPorts.Min = DefaultRTPPortMin
	}
	if s.RTPPorts.Max == 0 {
		s.RTPPorts.Max = DefaultRTPPortMax
	}
	if s.RTPTimeout == 0 {
		s.RTPTimeout = Duration(DefaultRTPTimeout)
	}
	if s.SessionExpires == 0 {
		s.SessionExpires = Duration(DefaultSessionExpires)
	}
	if len(s.DigestAlgorithms) == 0 {
		s.DigestAlgorithms = []string{"SHA-256", "MD5"}
	}
	if s.NonceTTL == 0 {
		s.NonceTTL = Duration(DefaultNonceTTL)
	}
	if s.MaxPendingInvites == 0 {
		s.MaxPendingInvites = DefaultMaxPendingInvites
	}
	if s.ReferTimeout == 0 {
		s.ReferTimeout = Duration(DefaultReferTimeout)
	}
	if s.ReturnTimeout == 0 {
		s.ReturnTimeout = Duration(DefaultReturnTimeout)
	}
	return s
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
	if t.SIP.User == "" {
		t.SIP.User = t.ID
	}
	if t.SIP.MaxCalls == 0 {
		t.SIP.MaxCalls = DefaultMaxCalls
	}
	// Copied before they are changed: t shares its lists with the caller's.
	// A menu's DigitTimeout and a collect's Terminator are not defaulted
	// here: their zero values mean something (see Menu).
	if t.Agents != nil {
		agents := make([]AgentConfig, len(t.Agents))
		for i, a := range t.Agents {
			if a.Menu != nil {
				m := *a.Menu
				if m.Collect != nil {
					m.Collect = append([]Collect(nil), m.Collect...)
					for j := range m.Collect {
						if m.Collect[j].MaxDigits == 0 {
							m.Collect[j].MaxDigits = DefaultMaxDigits
						}
					}
				}
				a.Menu = &m
			}
			agents[i] = a
		}
		t.Agents = agents
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

// TenantBySIPUser returns the tenant whose sip.user is user, the user part of
// the Request-URI of a SIP transfer's INVITE. User parts compare
// case-sensitively (RFC 3261 section 19.1.4).
func (c Config) TenantBySIPUser(user string) (Tenant, bool) {
	for _, t := range c.Tenants {
		if t.SIP.User == user {
			return t, true
		}
	}
	return Tenant{}, false
}

// Agent returns the agent that answers t's calls for task: the one
// configured for exactly that task, else the one for any task (task "").
func (t Tenant) Agent(task string) (AgentConfig, bool) {
	var fallback AgentConfig
	found := false
	for _, a := range t.Agents {
		if a.Task == task {
			return a, true
		}
		if a.Task == "" && !found {
			fallback, found = a, true
		}
	}
	return fallback, found
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
