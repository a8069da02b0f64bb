package config

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
)

// writeConfig writes a config file named switchback.yaml in a fresh
// directory and returns its path.
func writeConfig(t *testing.T, contents string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "switchback.yaml")
	if err := os.WriteFile(path, []byte(contents), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// tenantYAML is what a tenant in a file needs besides its id to be valid: a
// way in for SIP transfers and an agent, as the fields of a flow mapping. The
// tenant helper builds the same tenant in Go.
const tenantYAML = "sip: {allow: [127.0.0.1]}, agents: [{menu: {default: {transferType: SYSTEM}}}]"

// mapEnv is a getenv over m.
func mapEnv(m map[string]string) func(string) string {
	return func(name string) string { return m[name] }
}

func TestLoad(t *testing.T) {
	tests := []struct {
		name string
		file string            // the config file's contents; "" loads no file
		env  map[string]string // the environment
		want func(c *Config)   // changes Default into the wanted config
	}{
		{name: "no file and no environment", want: func(c *Config) {}},
		{name: "empty file", file: "\n", want: func(c *Config) {}},
		{name: "only comments", file: "# nothing to see\n", want: func(c *Config) {}},
		{
			name: "a field of the file overrides its default alone",
			file: "api:\n  listen: 0.0.0.0:9000\n",
			want: func(c *Config) { c.API.Listen = "0.0.0.0:9000" },
		},
		{
			name: "every scalar from the file",
			file: `
api: {listen: ":1", maxBodyBytes: 2048, maxWait: 5s, readHeaderTimeout: 1s, readBodyTimeout: 2s, writeTimeout: 3s,
  idleTimeout: 4s, maxHeaderBytes: 8192, maxConnections: 10, authFailureLimit: {requestsPerSecond: 0.5, burst: 5}}
store: {driver: postgres, dsn: "postgres://db/sb"}
pool: {quarantine: 1m30s}
expiry: {sweepInterval: 250ms}
log: {level: debug, format: text}
`,
			want: func(c *Config) {
				c.API = API{Listen: ":1", MaxBodyBytes: 2048, MaxWait: Duration(5 * time.Second),
					ReadHeaderTimeout: Duration(time.Second), ReadBodyTimeout: Duration(2 * time.Second),
					WriteTimeout: Duration(3 * time.Second), IdleTimeout: Duration(4 * time.Second),
					MaxHeaderBytes: 8192, MaxConnections: 10, AuthFailureLimit: RateLimit{RequestsPerSecond: 0.5, Burst: 5}}
				c.Store = Store{Driver: "postgres", DSN: "postgres://db/sb"}
				c.Pool.Quarantine = Duration(90 * time.Second)
				c.Expiry.SweepInterval = Duration(250 * time.Millisecond)
				c.Log = Log{Level: "debug", Format: "text"}
			},
		},
		{
			name: "sqlite file named in the file",
			file: "store:\n  dsn: /var/lib/switchback/sb.db\n",
			want: func(c *Config) { c.Store.DSN = "/var/lib/switchback/sb.db" },
		},
		{
			name: "tenants replace the demo tenant and take the defaults",
			file: `
tenants:
  - {id: acme, ` + tenantYAML + `}
  - id: globex
    name: Globex
    sipTTL: 5s
    defaultReturnTransferType: INVITE
    rateLimit: {burst: 10}
    sip: {allow: [127.0.0.1]}
    agents: [{menu: {default: {transferType: SYSTEM}}}]
`,
			want: func(c *Config) {
				c.Tenants = []Tenant{tenant("acme"), tenant("globex")}
				c.Tenants[1].Name = "Globex"
				c.Tenants[1].SIPTTL = Duration(5 * time.Second)
				c.Tenants[1].DefaultReturnTransferType = "INVITE"
				c.Tenants[1].RateLimit.Burst = 10
			},
		},
		{
			name: "zero rate and ttl mean the defaults",
			file: "tenants:\n  - {id: acme, phoneNumberTTL: 0s, rateLimit: {requestsPerSecond: 0, burst: 0}, sip: {maxCalls: 0, allow: [127.0.0.1]}, " +
				"agents: [{menu: {default: {transferType: SYSTEM}}}]}\n",
			want: func(c *Config) { c.Tenants = []Tenant{tenant("acme")} },
		},
		{
			name: "pool numbers replace the demo pool",
			file: `
pool:
  numbers:
    - country: FR
      tenant: demo
      numbers: [+33100000001, "+33100000002-09"]
`,
			want: func(c *Config) {
				c.Pool.Numbers = []NumberBlock{{Country: "FR", Tenant: "demo", Numbers: []string{"+33100000001", "+33100000002-09"}}}
			},
		},
		{
			name: "an empty pool list empties the pool",
			file: "pool:\n  numbers: []\n",
			want: func(c *Config) { c.Pool.Numbers = []NumberBlock{} },
		},
		{
			name: "setting pool.quarantine keeps the demo numbers",
			file: "pool:\n  quarantine: 0s\n",
			want: func(c *Config) { c.Pool.Quarantine = 0 },
		},
		{
			name: "anchors and merge keys",
			file: `
tenants:
  - &base
    id: acme
    sipTTL: 5s
    sip: {allow: [127.0.0.1]}
    agents: [{menu: {default: {transferType: SYSTEM}}}]
  - <<: *base
    id: globex
`,
			want: func(c *Config) {
				c.Tenants = []Tenant{tenant("acme"), tenant("globex")}
				c.Tenants[0].SIPTTL = Duration(5 * time.Second)
				c.Tenants[1].SIPTTL = Duration(5 * time.Second)
			},
		},
		{
			name: "every variable",
			env: map[string]string{
				"SWITCHBACK_API_LISTEN":                             "0.0.0.0:80",
				"SWITCHBACK_API_MAXBODYBYTES":                       "4096",
				"SWITCHBACK_API_MAXWAIT":                            "2m",
				"SWITCHBACK_API_READHEADERTIMEOUT":                  "11s",
				"SWITCHBACK_API_READBODYTIMEOUT":                    "12s",
				"SWITCHBACK_API_WRITETIMEOUT":                       "13s",
				"SWITCHBACK_API_IDLETIMEOUT":                        "14s",
				"SWITCHBACK_API_MAXHEADERBYTES":                     "5000",
				"SWITCHBACK_API_MAXCONNECTIONS":                     "100",
				"SWITCHBACK_API_AUTHFAILURELIMIT_REQUESTSPERSECOND": "3",
				"SWITCHBACK_API_AUTHFAILURELIMIT_BURST":             "30",
				"SWITCHBACK_STORE_DRIVER":                           "postgres",
				"SWITCHBACK_STORE_DSN":                              "postgres://db/sb",
				"SWITCHBACK_POOL_QUARANTINE":                        "30s",
				"SWITCHBACK_EXPIRY_SWEEPINTERVAL":                   "500ms",
				"SWITCHBACK_NODE_ID":                                "sb-2",
				"SWITCHBACK_NODE_HEARTBEAT":                         "1s",
				"SWITCHBACK_NODE_TTL":                               "3s",
				"SWITCHBACK_LOG_LEVEL":                              "warn",
				"SWITCHBACK_LOG_FORMAT":                             "text",
			},
			want: func(c *Config) {
				c.API = API{Listen: "0.0.0.0:80", MaxBodyBytes: 4096, MaxWait: Duration(2 * time.Minute),
					ReadHeaderTimeout: Duration(11 * time.Second), ReadBodyTimeout: Duration(12 * time.Second),
					WriteTimeout: Duration(13 * time.Second), IdleTimeout: Duration(14 * time.Second),
					MaxHeaderBytes: 5000, MaxConnections: 100, AuthFailureLimit: RateLimit{RequestsPerSecond: 3, Burst: 30}}
				c.Store = Store{Driver: "postgres", DSN: "postgres://db/sb"}
				c.Pool.Quarantine = Duration(30 * time.Second)
				c.Expiry.SweepInterval = Duration(500 * time.Millisecond)
				c.Node = Node{ID: "sb-2", Heartbeat: Duration(time.Second), TTL: Duration(3 * time.Second)}
				c.Log = Log{Level: "warn", Format: "text"}
			},
		},
		{
			name: "the environment overrides the file",
			file: "api:\n  listen: 127.0.0.1:1\n  maxBodyBytes: 2048\nlog:\n  level: debug\n",
			env:  map[string]string{"SWITCHBACK_API_LISTEN": "127.0.0.1:2", "SWITCHBACK_LOG_LEVEL": "error"},
			want: func(c *Config) {
				c.API.Listen = "127.0.0.1:2"
				c.API.MaxBodyBytes = 2048
				c.Log.Level = "error"
			},
		},
		{
			name: "an empty variable is unset",
			file: "log:\n  level: debug\n",
			env:  map[string]string{"SWITCHBACK_LOG_LEVEL": "", "SWITCHBACK_API_MAXBODYBYTES": ""},
			want: func(c *Config) { c.Log.Level = "debug" },
		},
		{
			name: "other variables are ignored",
			env:  map[string]string{"SWITCHBACK_TENANTS_0_ID": "x", "SWITCHBACK_NOPE": "x", "API_LISTEN": "x"},
			want: func(c *Config) {},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := ""
			if tt.file != "" {
				path = writeConfig(t, tt.file)
			}
			got, err := Load(path, mapEnv(tt.env))
			if err != nil {
				t.Fatalf("Load() error:\n%v", err)
			}
			want := Default()
			tt.want(&want)
			if !reflect.DeepEqual(got, want) {
				t.Errorf("Load() =\n%+v\nwant\n%+v", got, want)
			}
		})
	}
}

func TestLoadErrors(t *testing.T) {
	tests := []struct {
		name string
		file string            // the config file's contents; "" loads no file
		env  map[string]string // the environment
		want []string          // substrings of the error, each its own message, in order
	}{
		{
			name: "unknown top-level key",
			file: "apii:\n  listen: x\n",
			want: []string{"switchback.yaml:1: apii: unknown field; known fields here are api, expiry, log, node, pool, shutdown, sip, store, tenants"},
		},
		{
			name: "unknown nested key",
			file: "api:\n  listen: :1\n  listn: :2\n",
			want: []string{"switchback.yaml:3: api.listn: unknown field; known fields here are authFailureLimit, idleTimeout, listen, maxBodyBytes, maxConnections, maxHeaderBytes, maxWait, readBodyTimeout, readHeaderTimeout, writeTimeout"},
		},
		{
			name: "key in the wrong case",
			file: "api:\n  maxbodybytes: 2048\n",
			want: []string{"switchback.yaml:2: api.maxbodybytes: unknown field; did you mean maxBodyBytes?"},
		},
		{
			name: "unknown key of a tenant",
			file: "tenants:\n  - id: a\n  - id: b\n    ttl: 5s\n",
			want: []string{"switchback.yaml:4: tenants[1].ttl: unknown field; known fields here are agents, defaultReturnTransferType, id, name, phoneNumberTTL, rateLimit, sip, sipTTL"},
		},
		{
			name: "unknown key of a rate limit",
			file: "tenants:\n  - id: a\n    rateLimit: {rps: 5}\n",
			want: []string{"switchback.yaml:3: tenants[0].rateLimit.rps: unknown field; known fields here are burst, requestsPerSecond"},
		},
		{
			name: "unknown key of a pool block",
			file: "pool:\n  numbers:\n    - country: US\n      number: [+12025550100]\n",
			want: []string{"switchback.yaml:4: pool.numbers[0].number: unknown field; known fields here are country, numbers, tenant"},
		},
		{
			name: "unknown key in a merged mapping",
			file: "tenants:\n  - &t {id: a, colour: red}\n  - <<: *t\n    id: b\n",
			want: []string{
				"switchback.yaml:2: tenants[0].colour: unknown field",
				"switchback.yaml:2: tenants[1].colour: unknown field",
			},
		},
		{
			name: "every unknown key at once",
			file: "api:\n  port: 1\nlogs: {}\n",
			want: []string{"switchback.yaml:2: api.port: unknown field", "switchback.yaml:3: logs: unknown field"},
		},
		{
			name: "duration without a unit",
			file: "pool:\n  quarantine: 10\n",
			want: []string{`switchback.yaml:2: "10" is not a duration: write it with a unit, like 10s, 1m30s or 250ms`},
		},
		{
			name: "every bad value at once",
			file: "api:\n  maxBodyBytes: big\ntenants:\n  - id: a\n    sipTTL: later\n",
			want: []string{"switchback.yaml:2: cannot unmarshal !!str `big` into int64", `switchback.yaml:5: "later" is not a duration`},
		},
		{
			name: "unknown keys and bad values together, in the order of the file",
			file: "api:\n  maxBodyBytes: big\n  listn: x\ntenants:\n  - id: a\n    sipTTL: later\n    nmae: A\n",
			want: []string{
				"switchback.yaml:2: cannot unmarshal !!str `big` into int64",
				"switchback.yaml:3: api.listn: unknown field",
				`switchback.yaml:6: "later" is not a duration`,
				"switchback.yaml:7: tenants[0].nmae: unknown field",
			},
		},
		{
			name: "a list where a mapping belongs",
			file: "api: [listen]\n",
			want: []string{"switchback.yaml:1: cannot unmarshal !!seq into config.API"},
		},
		{
			name: "not YAML",
			file: "api: [\n",
			want: []string{"switchback.yaml: yaml: line 1:"},
		},
		{
			name: "two documents",
			file: "api: {}\n---\nlog: {}\n",
			want: []string{"switchback.yaml: holds more than one YAML document; a config is one"},
		},
		{
			name: "file that fails validation",
			file: "tenants: []\nlog: {level: loud}\n",
			want: []string{`tenants: at least one tenant is required`, `log.level: must be debug, info, warn or error, got "loud"`},
		},
		{
			name: "postgres without a dsn does not fall back to the sqlite file",
			file: "store:\n  driver: postgres\n",
			want: []string{"store.dsn: required for postgres"},
		},
		{
			name: "negative tenant fields are not defaulted",
			file: "tenants:\n  - {id: a, " + tenantYAML + "}\n  - {id: b, phoneNumberTTL: -1s, rateLimit: {requestsPerSecond: -5, burst: -1}, " + tenantYAML + "}\n",
			want: []string{
				"tenants[1].phoneNumberTTL: must be positive",
				"tenants[1].rateLimit.requestsPerSecond: must be positive",
				"tenants[1].rateLimit.burst: must be positive",
			},
		},
		{
			name: "dedicated block of a tenant the file does not list",
			file: "tenants: [{id: acme, " + tenantYAML + "}]\npool:\n  numbers: [{country: US, tenant: demo, numbers: [+12025550100]}]\n",
			want: []string{`pool.numbers[0].tenant: "demo" is not a configured tenant`},
		},
		{
			name: "variable that is not an integer",
			env:  map[string]string{"SWITCHBACK_API_MAXBODYBYTES": "64k"},
			want: []string{`SWITCHBACK_API_MAXBODYBYTES: "64k" is not an integer`},
		},
		{
			name: "variable out of range",
			env:  map[string]string{"SWITCHBACK_API_MAXBODYBYTES": "99999999999999999999"},
			want: []string{`SWITCHBACK_API_MAXBODYBYTES: "99999999999999999999" is out of range`},
		},
		{
			name: "variable that is not a duration",
			env:  map[string]string{"SWITCHBACK_POOL_QUARANTINE": "10"},
			want: []string{`SWITCHBACK_POOL_QUARANTINE: "10" is not a duration: write it with a unit, like 10s, 1m30s or 250ms`},
		},
		{
			name: "every bad variable at once",
			env:  map[string]string{"SWITCHBACK_API_MAXWAIT": "long", "SWITCHBACK_EXPIRY_SWEEPINTERVAL": "often"},
			want: []string{`SWITCHBACK_API_MAXWAIT: "long" is not a duration`, `SWITCHBACK_EXPIRY_SWEEPINTERVAL: "often" is not a duration`},
		},
		{
			name: "variable that fails validation",
			env:  map[string]string{"SWITCHBACK_STORE_DRIVER": "postgres", "SWITCHBACK_LOG_FORMAT": "xml"},
			want: []string{"store.dsn: required for postgres", `log.format: must be json or text, got "xml"`},
		},
		{
			name: "variable that breaks what the file set",
			file: "api:\n  maxBodyBytes: 4096\n",
			env:  map[string]string{"SWITCHBACK_API_MAXBODYBYTES": "10"},
			want: []string{"api.maxBodyBytes: must be at least 1024, got 10"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := ""
			if tt.file != "" {
				path = writeConfig(t, tt.file)
			}
			got, err := Load(path, mapEnv(tt.env))
			if err == nil {
				t.Fatalf("Load() = %+v, want an error", got)
			}
			if !reflect.DeepEqual(got, Config{}) {
				t.Errorf("Load() returned %+v with its error, want the zero Config", got)
			}
			msg := err.Error()
			if strings.Contains(msg, "not found in type") {
				t.Errorf("Load() error names a Go type for an unknown key:\n%s", msg)
			}
			if n := len(strings.Split(msg, "\n")); n != len(tt.want) {
				t.Errorf("Load() error has %d messages, want %d:\n%s", n, len(tt.want), msg)
			}
			rest := msg
			for _, want := range tt.want {
				i := strings.Index(rest, want)
				if i < 0 {
					t.Fatalf("Load() error:\n%s\nwant, in order:\n%s", msg, strings.Join(tt.want, "\n"))
				}
				rest = rest[i+len(want):]
			}
		})
	}
}

func TestLoadMissingFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "missing.yaml")
	_, err := Load(path, nil)
	if !errors.Is(err, fs.ErrNotExist) || !strings.HasPrefix(err.Error(), "read config: ") {
		t.Errorf("Load(missing) error = %v, want a wrapped fs.ErrNotExist", err)
	}
}

func TestLoadNilGetenv(t *testing.T) {
	got, err := Load("", nil)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, Default()) {
		t.Errorf("Load(\"\", nil) = %+v, want Default()", got)
	}
}

// A config written out by yaml.Marshal loads back as the same config.
func TestLoadRoundTrip(t *testing.T) {
	c := Default()
	c.Store = Store{Driver: DriverPostgres, DSN: "postgres://db/sb"}
	c.SIP.TLS = SIPTLS{} // stays off: a round trip does not need files
	c.SIP.ExternalAddress = "sip.example.com"
	c.SIP.Trunks = append(c.SIP.Trunks, Trunk{Name: "carrier", Users: []SIPUser{{Username: "u", Password: "p"}}})
	c.Tenants = append(c.Tenants, Tenant{ID: "acme", Name: "Acme", PhoneNumberTTL: Duration(90 * time.Second),
		SIPTTL: Duration(1500 * time.Millisecond), DefaultReturnTransferType: "REFER",
		RateLimit: RateLimit{RequestsPerSecond: 2.5, Burst: 5},
		SIP:       TenantSIP{User: "acme+sip", Users: []SIPUser{{Username: "a", Password: "b"}}, MaxCalls: 3},
		Agents: []AgentConfig{{Task: "t", Menu: &Menu{
			Collect:      []Collect{{Name: "n", MaxDigits: 2, Terminator: ""}, {Name: "m", MaxDigits: 64, Terminator: "*"}},
			Choices:      map[string]Outcome{"#": {TransferType: "AGENT", Set: map[string]string{"k": "v"}}},
			DigitTimeout: 0,
			Default:      Outcome{TransferType: "SYSTEM", TransferVariables: []string{"n"}},
		}}}})
	c.Pool.Numbers = append(c.Pool.Numbers, NumberBlock{Country: "FR", Tenant: "acme", Numbers: []string{"+33100000001"}})
	data, err := yaml.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	got, err := Load(writeConfig(t, string(data)), nil)
	if err != nil {
		t.Fatalf("Load of\n%s\nerror: %v", data, err)
	}
	if !reflect.DeepEqual(got, c) {
		t.Errorf("round trip of\n%s\ngave %+v", data, got)
	}
}

func TestEnvVars(t *testing.T) {
	want := []string{
		"SWITCHBACK_API_LISTEN",
		"SWITCHBACK_API_MAXBODYBYTES",
		"SWITCHBACK_API_MAXWAIT",
		"SWITCHBACK_API_READHEADERTIMEOUT",
		"SWITCHBACK_API_READBODYTIMEOUT",
		"SWITCHBACK_API_WRITETIMEOUT",
		"SWITCHBACK_API_IDLETIMEOUT",
		"SWITCHBACK_API_MAXHEADERBYTES",
		"SWITCHBACK_API_MAXCONNECTIONS",
		"SWITCHBACK_API_AUTHFAILURELIMIT_REQUESTSPERSECOND",
		"SWITCHBACK_API_AUTHFAILURELIMIT_BURST",
		"SWITCHBACK_STORE_DRIVER",
		"SWITCHBACK_STORE_DSN",
		"SWITCHBACK_POOL_QUARANTINE",
		"SWITCHBACK_EXPIRY_SWEEPINTERVAL",
		"SWITCHBACK_EXPIRY_MAXCALLDURATION",
		"SWITCHBACK_SIP_LISTEN",
		"SWITCHBACK_SIP_TLS_LISTEN",
		"SWITCHBACK_SIP_TLS_CERTFILE",
		"SWITCHBACK_SIP_TLS_KEYFILE",
		"SWITCHBACK_SIP_EXTERNALADDRESS",
		"SWITCHBACK_SIP_REALM",
		"SWITCHBACK_SIP_RTPPORTS_MIN",
		"SWITCHBACK_SIP_RTPPORTS_MAX",
		"SWITCHBACK_SIP_RTPTIMEOUT",
		"SWITCHBACK_SIP_ANSWERDELAY",
		"SWITCHBACK_SIP_SESSIONEXPIRES",
		"SWITCHBACK_SIP_NONCETTL",
		"SWITCHBACK_SIP_MAXPENDINGINVITES",
		"SWITCHBACK_SIP_REFERTIMEOUT",
		"SWITCHBACK_SIP_RETURNTIMEOUT",
		"SWITCHBACK_NODE_ID",
		"SWITCHBACK_NODE_HEARTBEAT",
		"SWITCHBACK_NODE_TTL",
		"SWITCHBACK_SHUTDOWN_DRAINTIMEOUT",
		"SWITCHBACK_LOG_LEVEL",
		"SWITCHBACK_LOG_FORMAT",
	}
	if got := EnvVars(); !reflect.DeepEqual(got, want) {
		t.Errorf("EnvVars() = %q, want %q", got, want)
	}
}

// The environment walk is generic: a scalar of any kind, in a nested struct,
// gets its variable without code of its own.
func TestEnvGeneric(t *testing.T) {
	type inner struct {
		On    bool     `yaml:"on"`
		Count uint16   `yaml:"count"`
		Ratio float32  `yaml:"ratio"`
		Wait  Duration `yaml:"wait"`
		Skip  string   `yaml:"-"`
		List  []string `yaml:"list"`
	}
	type outer struct {
		Name   string `yaml:"name"`
		Inner  inner  `yaml:"inner"`
		NoTag  int
		hidden int
		Ptr    *inner           `yaml:"ptr"`
		PtrDur *Duration        `yaml:"ptrDur"`
		Items  []inner          `yaml:"items"`
		ByName map[string]inner `yaml:"byName"`
	}
	env := map[string]string{
		"X_NAME":        "n",
		"X_INNER_ON":    "true",
		"X_INNER_COUNT": "7",
		"X_INNER_RATIO": "0.5",
		"X_INNER_WAIT":  "3s",
		"X_INNER_SKIP":  "no",
		"X_INNER_LIST":  "no",
		"X_NOTAG":       "9",
		"X_HIDDEN":      "no",
		"X_PTR_COUNT":   "no",
		"X_PTRDUR":      "no",
		"X_ITEMS_COUNT": "no",
		"X_BYNAME_A_ON": "no",
	}
	var got outer
	var names []string
	eachScalar(reflect.ValueOf(&got).Elem(), "X", func(name string, v reflect.Value) {
		names = append(names, name)
		if err := setScalar(v, env[name]); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	})
	wantNames := []string{"X_NAME", "X_INNER_ON", "X_INNER_COUNT", "X_INNER_RATIO", "X_INNER_WAIT", "X_NOTAG"}
	if !reflect.DeepEqual(names, wantNames) {
		t.Errorf("names = %q, want %q", names, wantNames)
	}
	want := outer{Name: "n", Inner: inner{On: true, Count: 7, Ratio: 0.5, Wait: Duration(3 * time.Second)}, NoTag: 9}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %+v, want %+v", got, want)
	}

	for _, tt := range []struct{ name, value, want string }{
		{"X_INNER_ON", "yes please", `"yes please" is not true or false`},
		{"X_INNER_COUNT", "-1", `"-1" is not a non-negative integer`},
		{"X_INNER_COUNT", "70000", `"70000" is out of range`},
		{"X_INNER_RATIO", "half", `"half" is not a number`},
	} {
		eachScalar(reflect.ValueOf(&got).Elem(), "X", func(name string, v reflect.Value) {
			if name != tt.name {
				return
			}
			if err := setScalar(v, tt.value); err == nil || err.Error() != tt.want {
				t.Errorf("%s=%s: error %v, want %q", tt.name, tt.value, err, tt.want)
			}
		})
	}
}
