package config

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

// writeKeyPair writes a self-signed certificate and its key as PEM files in
// dir and returns their paths.
func writeKeyPair(t *testing.T, dir, name string) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "sip.example.com"},
		DNSNames:     []string{"sip.example.com"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile = filepath.Join(dir, name+".crt")
	keyFile = filepath.Join(dir, name+".key")
	writeFile(t, certFile, string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})))
	writeFile(t, keyFile, string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})))
	return certFile, keyFile
}

func writeFile(t *testing.T, path, contents string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(contents), 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestValidateSIP(t *testing.T) {
	dir := t.TempDir()
	cert, key := writeKeyPair(t, dir, "a")
	_, otherKey := writeKeyPair(t, dir, "b")
	garbage := filepath.Join(dir, "garbage.pem")
	writeFile(t, garbage, "not PEM\n")
	missing := filepath.Join(dir, "missing.pem")

	tests := []struct {
		name   string
		mutate func(s *SIP)
		want   []string // every message, in order; none means valid
	}{
		{name: "default is valid", mutate: func(s *SIP) {}},
		{
			name:   "listen without a port",
			mutate: func(s *SIP) { s.Listen = "localhost" },
			want:   []string{`sip.listen: "localhost" is not host:port (e.g. 127.0.0.1:5060, or :5060 for every interface)`},
		},
		{
			name:   "listen port by name",
			mutate: func(s *SIP) { s.Listen = "127.0.0.1:sip" },
			want:   []string{`sip.listen: port "sip" is not a number from 0 to 65535`},
		},
		{name: "listen on every interface is valid", mutate: func(s *SIP) { s.Listen = ":5060" }},
		{name: "listen on port 0 is valid", mutate: func(s *SIP) { s.Listen = "[::1]:0" }},
		{
			name:   "tls with a key pair is valid",
			mutate: func(s *SIP) { s.TLS = SIPTLS{Listen: ":5061", CertFile: cert, KeyFile: key} },
		},
		{
			name:   "tls without files",
			mutate: func(s *SIP) { s.TLS = SIPTLS{Listen: ":5061"} },
			want: []string{
				`sip.tls.certFile: required with sip.tls.listen: the PEM certificate chain`,
				`sip.tls.keyFile: required with sip.tls.listen: the PEM private key`,
			},
		},
		{
			name:   "tls listen without a port",
			mutate: func(s *SIP) { s.TLS = SIPTLS{Listen: "sip.example.com", CertFile: cert, KeyFile: key} },
			want:   []string{`sip.tls.listen: "sip.example.com" is not host:port (e.g. 127.0.0.1:5061, or :5061 for every interface)`},
		},
		{
			name:   "tls certificate missing",
			mutate: func(s *SIP) { s.TLS = SIPTLS{Listen: ":5061", CertFile: missing, KeyFile: key} },
			want:   []string{`sip.tls.certFile: cannot read "` + missing + `": no such file or directory`},
		},
		{
			name:   "tls key is a directory",
			mutate: func(s *SIP) { s.TLS = SIPTLS{Listen: ":5061", CertFile: cert, KeyFile: dir} },
			want:   []string{`sip.tls.keyFile: "` + dir + `" is a directory, not a file`},
		},
		{
			name:   "tls key of another certificate",
			mutate: func(s *SIP) { s.TLS = SIPTLS{Listen: ":5061", CertFile: cert, KeyFile: otherKey} },
			want:   []string{`sip.tls: certFile and keyFile do not load as a key pair: tls: private key does not match public key`},
		},
		{
			name:   "tls certificate not PEM",
			mutate: func(s *SIP) { s.TLS = SIPTLS{Listen: ":5061", CertFile: garbage, KeyFile: key} },
			want:   []string{`sip.tls: certFile and keyFile do not load as a key pair: tls: failed to find any PEM data in certificate input`},
		},
		{
			name:   "tls files without listen",
			mutate: func(s *SIP) { s.TLS = SIPTLS{CertFile: cert, KeyFile: key} },
			want: []string{
				`sip.tls.certFile: set without sip.tls.listen: set listen to serve SIP over TLS, or leave both out`,
				`sip.tls.keyFile: set without sip.tls.listen: set listen to serve SIP over TLS, or leave both out`,
			},
		},
		{name: "external IPv4 address", mutate: func(s *SIP) { s.ExternalAddress = "203.0.113.5" }},
		{name: "external IPv6 address", mutate: func(s *SIP) { s.ExternalAddress = "2001:db8::5" }},
		{name: "external host name", mutate: func(s *SIP) { s.ExternalAddress = "sip-1.example.com" }},
		{
			name:   "external address with a port",
			mutate: func(s *SIP) { s.ExternalAddress = "203.0.113.5:5060" },
			want:   []string{`sip.externalAddress: "203.0.113.5:5060" is not an IP address or host name (write it without a port or brackets)`},
		},
		{
			name:   "external address in brackets",
			mutate: func(s *SIP) { s.ExternalAddress = "[2001:db8::5]" },
			want:   []string{`sip.externalAddress: "[2001:db8::5]" is not an IP address or host name (write it without a port or brackets)`},
		},
		{
			name:   "empty realm",
			mutate: func(s *SIP) { s.Realm = "" },
			want:   []string{`sip.realm: required`},
		},
		{
			name:   "realm with a quote",
			mutate: func(s *SIP) { s.Realm = `sw"b` },
			want:   []string{`sip.realm: "sw\"b" must not contain a double quote, a backslash or a control character`},
		},
		{
			name:   "realm with a line break",
			mutate: func(s *SIP) { s.Realm = "a\r\nX-Injected: 1" },
			want:   []string{`sip.realm: "a\r\nX-Injected: 1" must not contain a double quote, a backslash or a control character`},
		},
		{name: "realm with spaces is valid", mutate: func(s *SIP) { s.Realm = "Acme SIP" }},
		{
			name:   "odd rtp min",
			mutate: func(s *SIP) { s.RTPPorts.Min = 20001 },
			want:   []string{`sip.rtpPorts.min: must be even: RTP takes even ports, got 20001`},
		},
		{
			name:   "rtp min below 1024",
			mutate: func(s *SIP) { s.RTPPorts.Min = 1000 },
			want:   []string{`sip.rtpPorts.min: must be from 1024 to 65535, got 1000`},
		},
		{
			name:   "rtp max above 65535",
			mutate: func(s *SIP) { s.RTPPorts.Max = 65536 },
			want:   []string{`sip.rtpPorts.max: must be from 1024 to 65535, got 65536`},
		},
		{
			name:   "rtp range of one port",
			mutate: func(s *SIP) { s.RTPPorts = PortRange{Min: 30000, Max: 30000} },
			want:   []string{`sip.rtpPorts: min (30000) must be below max (30000): a call needs an even port for RTP and the odd one above it for RTCP`},
		},
		{
			name:   "rtp range upside down",
			mutate: func(s *SIP) { s.RTPPorts = PortRange{Min: 30000, Max: 20000} },
			want:   []string{`sip.rtpPorts: min (30000) must be below max (20000): a call needs an even port for RTP and the odd one above it for RTCP`},
		},
		{
			name:   "both rtp ends out of range",
			mutate: func(s *SIP) { s.RTPPorts = PortRange{Min: -2, Max: 0} },
			want: []string{
				`sip.rtpPorts.min: must be from 1024 to 65535, got -2`,
				`sip.rtpPorts.max: must be from 1024 to 65535, got 0`,
			},
		},
		{name: "rtp range of two ports is valid", mutate: func(s *SIP) { s.RTPPorts = PortRange{Min: 1024, Max: 1025} }},
		{name: "rtp range to 65535 is valid", mutate: func(s *SIP) { s.RTPPorts = PortRange{Min: 65534, Max: 65535} }},
		{
			name:   "zero rtp timeout",
			mutate: func(s *SIP) { s.RTPTimeout = 0 },
			want:   []string{`sip.rtpTimeout: must be positive`},
		},
		{
			name:   "session expires below 90s",
			mutate: func(s *SIP) { s.SessionExpires = Duration(89 * time.Second) },
			want:   []string{`sip.sessionExpires: must be at least 1m30s (RFC 4028 section 4), got 1m29s`},
		},
		{name: "session expires of 90s is valid", mutate: func(s *SIP) { s.SessionExpires = Duration(90 * time.Second) }},
		{
			name:   "negative nonce ttl",
			mutate: func(s *SIP) { s.NonceTTL = Duration(-time.Second) },
			want:   []string{`sip.nonceTTL: must be positive`},
		},
		{name: "no trunks is valid", mutate: func(s *SIP) { s.Trunks = nil }},
		{
			name: "trunk without a name",
			mutate: func(s *SIP) {
				s.Trunks = append(s.Trunks, Trunk{Allow: []string{"192.0.2.1"}})
			},
			want: []string{`sip.trunks[1].name: required`},
		},
		{
			name: "trunks of the same name",
			mutate: func(s *SIP) {
				s.Trunks = append(s.Trunks, Trunk{Name: "b", Allow: []string{"192.0.2.1"}}, Trunk{Name: "local", Allow: []string{"192.0.2.2"}})
			},
			want: []string{`sip.trunks[2].name: "local" is also the name of sip.trunks[0]`},
		},
		{
			name:   "trunk without allow or users",
			mutate: func(s *SIP) { s.Trunks[0].Allow = nil },
			want:   []string{`sip.trunks[0]: needs allow, users or both: calls from a trunk must be authenticated`},
		},
		{
			name: "trunk allow entries that are not addresses",
			mutate: func(s *SIP) {
				s.Trunks[0].Allow = []string{"192.0.2.0/24", "192.0.2.300", "10.0.0.0/33", "carrier.example.com", "2001:db8::/32"}
			},
			want: []string{
				`sip.trunks[0].allow[1]: "192.0.2.300" is not an IP address or CIDR (e.g. 192.0.2.10, 192.0.2.0/24 or 2001:db8::/32)`,
				`sip.trunks[0].allow[2]: "10.0.0.0/33" is not an IP address or CIDR (e.g. 192.0.2.10, 192.0.2.0/24 or 2001:db8::/32)`,
				`sip.trunks[0].allow[3]: "carrier.example.com" is not an IP address or CIDR (e.g. 192.0.2.10, 192.0.2.0/24 or 2001:db8::/32)`,
			},
		},
		{
			name:   "trunk with users only is valid",
			mutate: func(s *SIP) { s.Trunks[0] = Trunk{Name: "carrier", Users: []SIPUser{{Username: "u", Password: "p"}}} },
		},
		{
			name: "trunk users incomplete or twice",
			mutate: func(s *SIP) {
				s.Trunks[0].Users = []SIPUser{{Username: "u", Password: "p"}, {Password: "p"}, {Username: "v"}, {Username: "u", Password: "q"}}
			},
			want: []string{
				`sip.trunks[0].users[1].username: required`,
				`sip.trunks[0].users[2].password: required`,
				`sip.trunks[0].users[3].username: "u" is also the username of sip.trunks[0].users[0]`,
			},
		},
		{
			name: "the same username on two trunks is valid",
			mutate: func(s *SIP) {
				s.Trunks = []Trunk{
					{Name: "a", Users: []SIPUser{{Username: "u", Password: "p"}}},
					{Name: "b", Users: []SIPUser{{Username: "u", Password: "q"}}},
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := Default()
			tt.mutate(&c.SIP)
			got := errorLines(c.Validate())
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("Validate() =\n  %s\nwant\n  %s", strings.Join(got, "\n  "), strings.Join(tt.want, "\n  "))
			}
		})
	}
}

func TestValidateTenantSIP(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(c *Config)
		want   []string // every message, in order; none means valid
	}{
		{
			name:   "no user",
			mutate: func(c *Config) { c.Tenants[0].SIP.User = "" },
			want:   []string{`tenants[0].sip.user: required`},
		},
		{
			name:   "user with an at sign",
			mutate: func(c *Config) { c.Tenants[0].SIP.User = "demo@example.com" },
			want:   []string{`tenants[0].sip.user: "demo@example.com" is not a SIP user part: use A-Z a-z 0-9 and - _ . ! ~ * ' ( ) & = + $ , ; ? /`},
		},
		{
			name:   "user with a space",
			mutate: func(c *Config) { c.Tenants[0].SIP.User = "de mo" },
			want:   []string{`tenants[0].sip.user: "de mo" is not a SIP user part: use A-Z a-z 0-9 and - _ . ! ~ * ' ( ) & = + $ , ; ? /`},
		},
		{
			name:   "user with an escape",
			mutate: func(c *Config) { c.Tenants[0].SIP.User = "de%20mo" },
			want:   []string{`tenants[0].sip.user: "de%20mo" is not a SIP user part: use A-Z a-z 0-9 and - _ . ! ~ * ' ( ) & = + $ , ; ? /`},
		},
		{
			name:   "user with every mark is valid",
			mutate: func(c *Config) { c.Tenants[0].SIP.User = "Az09-_.!~*'()&=+$,;?/" },
		},
		{
			name: "two tenants with one user",
			mutate: func(c *Config) {
				c.Tenants = append(c.Tenants, tenant("acme"), tenant("globex"))
				c.Tenants[2].SIP.User = "acme"
			},
			want: []string{`tenants[2].sip.user: "acme" is also the sip.user of tenants[1]`},
		},
		{
			name: "users differing in case are two users",
			mutate: func(c *Config) {
				c.Tenants = append(c.Tenants, tenant("acme"))
				c.Tenants[1].SIP.User = "Demo"
			},
		},
		{
			name:   "no allow and no users is valid (SIP is refused)",
			mutate: func(c *Config) { c.Tenants[0].SIP.Allow = nil },
		},
		{
			name: "users only is valid",
			mutate: func(c *Config) {
				c.Tenants[0].SIP.Allow = nil
				c.Tenants[0].SIP.Users = []SIPUser{{Username: "demo", Password: "secret"}}
			},
		},
		{
			name:   "allow entry that is not an address",
			mutate: func(c *Config) { c.Tenants[0].SIP.Allow = append(c.Tenants[0].SIP.Allow, "::1/129") },
			want:   []string{`tenants[0].sip.allow[2]: "::1/129" is not an IP address or CIDR (e.g. 192.0.2.10, 192.0.2.0/24 or 2001:db8::/32)`},
		},
		{
			name: "users incomplete or twice",
			mutate: func(c *Config) {
				c.Tenants[0].SIP.Users = []SIPUser{{Username: "a"}, {Password: "p"}, {Username: "a", Password: "p"}}
			},
			want: []string{
				`tenants[0].sip.users[0].password: required`,
				`tenants[0].sip.users[1].username: required`,
				`tenants[0].sip.users[2].username: "a" is also the username of tenants[0].sip.users[0]`,
			},
		},
		{
			name:   "return auth without a password",
			mutate: func(c *Config) { c.Tenants[0].SIP.ReturnAuth = SIPUser{Username: "u"} },
			want:   []string{`tenants[0].sip.returnAuth.password: required with a username`},
		},
		{
			name: "timeouts out of range",
			mutate: func(c *Config) {
				c.SIP.ReferTimeout, c.SIP.ReturnTimeout, c.SIP.MaxPendingInvites = Duration(-1), Duration(time.Hour), -1
			},
			want: []string{`sip.maxPendingInvites: must be positive`, `sip.referTimeout: must be between 1ms and 10m`, `sip.returnTimeout: must be between 1ms and 10m`},
		},
		{
			name:   "zero max calls",
			mutate: func(c *Config) { c.Tenants[0].SIP.MaxCalls = 0 },
			want:   []string{`tenants[0].sip.maxCalls: must be at least 1, got 0`},
		},
		{
			name:   "user that is a pool number",
			mutate: func(c *Config) { c.Tenants[0].SIP.User = "+12025550150" },
			want:   []string{`tenants[0].sip.user: "+12025550150" is also a pool number, listed at pool.numbers[0].numbers[0]: INVITEs to it would be ambiguous`},
		},
		{
			name:   "user that is a pool number without its plus",
			mutate: func(c *Config) { c.Tenants[0].SIP.User = "442079460042" },
			want:   []string{`tenants[0].sip.user: "442079460042" is also a pool number, listed at pool.numbers[1].numbers[0]: INVITEs to it would be ambiguous`},
		},
		{
			name:   "user of digits outside the pool is valid",
			mutate: func(c *Config) { c.Tenants[0].SIP.User = "12025550200" },
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

func TestLoadSIP(t *testing.T) {
	tests := []struct {
		name string
		file string
		want func(c *Config) // changes Default into the wanted config
	}{
		{
			name: "sip.listen alone keeps the other SIP defaults",
			file: "sip:\n  listen: 0.0.0.0:5080\n",
			want: func(c *Config) { c.SIP.Listen = "0.0.0.0:5080" },
		},
		{
			name: "one end of the rtp ports alone",
			file: "sip:\n  rtpPorts: {max: 29999}\n",
			want: func(c *Config) { c.SIP.RTPPorts.Max = 29999 },
		},
		{
			name: "zero sip scalars take the defaults",
			file: `
sip:
  listen: ""
  realm: ""
  rtpPorts: {min: 0, max: 0}
  rtpTimeout: 0s
  sessionExpires: 0s
  nonceTTL: 0s
`,
			want: func(c *Config) {},
		},
		{
			name: "every sip scalar from the file",
			file: `
sip:
  listen: "[::]:5070"
  externalAddress: sip.example.com
  realm: example.com
  rtpPorts: {min: 40000, max: 40099}
  rtpTimeout: 1m
  sessionExpires: 90s
  nonceTTL: 10s
`,
			want: func(c *Config) {
				c.SIP.Listen = "[::]:5070"
				c.SIP.ExternalAddress = "sip.example.com"
				c.SIP.Realm = "example.com"
				c.SIP.RTPPorts = PortRange{Min: 40000, Max: 40099}
				c.SIP.RTPTimeout = Duration(time.Minute)
				c.SIP.SessionExpires = Duration(90 * time.Second)
				c.SIP.NonceTTL = Duration(10 * time.Second)
			},
		},
		{
			name: "trunks replace the local trunk",
			file: `
sip:
  trunks:
    - name: carrier
      allow: [192.0.2.0/24]
      users: [{username: u, password: p}]
`,
			want: func(c *Config) {
				c.SIP.Trunks = []Trunk{{Name: "carrier", Allow: []string{"192.0.2.0/24"}, Users: []SIPUser{{Username: "u", Password: "p"}}}}
			},
		},
		{
			name: "an empty trunk list means no trunk",
			file: "sip:\n  trunks: []\n",
			want: func(c *Config) { c.SIP.Trunks = []Trunk{} },
		},
		{
			name: "a tenant's sip takes the defaults",
			file: "tenants:\n  - {id: acme, " + tenantYAML + "}\n  - {id: globex, sip: {user: gx, maxCalls: 7, users: [{username: u, password: p}]}, " +
				"agents: [{menu: {default: {transferType: SYSTEM}}}]}\n",
			want: func(c *Config) {
				c.Tenants = []Tenant{tenant("acme"), tenant("globex")}
				c.Tenants[0].SIP = TenantSIP{User: "acme", Allow: []string{"127.0.0.1"}, MaxCalls: 100}
				c.Tenants[1].SIP = TenantSIP{User: "gx", Users: []SIPUser{{Username: "u", Password: "p"}}, MaxCalls: 7}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Load(writeConfig(t, tt.file), nil)
			if err != nil {
				t.Fatalf("Load() error:\n%v", err)
			}
			want := Default()
			tt.want(&want)
			if !reflect.DeepEqual(got, want) {
				t.Errorf("Load() =\n%s\nwant\n%s", dump(t, got), dump(t, want))
			}
		})
	}
}

func TestLoadSIPFromEnvironment(t *testing.T) {
	cert, key := writeKeyPair(t, t.TempDir(), "sip")
	env := map[string]string{
		"SWITCHBACK_SIP_LISTEN":          "0.0.0.0:5070",
		"SWITCHBACK_SIP_TLS_LISTEN":      "0.0.0.0:5071",
		"SWITCHBACK_SIP_TLS_CERTFILE":    cert,
		"SWITCHBACK_SIP_TLS_KEYFILE":     key,
		"SWITCHBACK_SIP_EXTERNALADDRESS": "203.0.113.5",
		"SWITCHBACK_SIP_REALM":           "example.com",
		"SWITCHBACK_SIP_RTPPORTS_MIN":    "30000",
		"SWITCHBACK_SIP_RTPPORTS_MAX":    "30099",
		"SWITCHBACK_SIP_RTPTIMEOUT":      "10s",
		"SWITCHBACK_SIP_SESSIONEXPIRES":  "5m",
		"SWITCHBACK_SIP_NONCETTL":        "1m",
		// Lists have no variables.
		"SWITCHBACK_SIP_TRUNKS_0_NAME": "x",
		"SWITCHBACK_SIP_TRUNKS_NAME":   "x",
	}
	// The environment overrides the file.
	file := writeConfig(t, "sip:\n  listen: 127.0.0.1:1\n  realm: file\n  nonceTTL: 5s\n")
	got, err := Load(file, mapEnv(env))
	if err != nil {
		t.Fatalf("Load() error:\n%v", err)
	}
	want := Default().SIP
	want.Listen = "0.0.0.0:5070"
	want.TLS = SIPTLS{Listen: "0.0.0.0:5071", CertFile: cert, KeyFile: key}
	want.ExternalAddress = "203.0.113.5"
	want.Realm = "example.com"
	want.RTPPorts = PortRange{Min: 30000, Max: 30099}
	want.RTPTimeout = Duration(10 * time.Second)
	want.SessionExpires = Duration(5 * time.Minute)
	want.NonceTTL = Duration(time.Minute)
	if !reflect.DeepEqual(got.SIP, want) {
		t.Errorf("Load().SIP = %+v, want %+v", got.SIP, want)
	}
}

func TestLoadSIPErrors(t *testing.T) {
	tests := []struct {
		name string
		file string
		env  map[string]string
		want []string // every message, in order
	}{
		{
			name: "unknown key of sip",
			file: "sip:\n  listen: :5060\n  realms: x\n",
			want: []string{"switchback.yaml:3: sip.realms: unknown field; " +
				"known fields here are answerDelay, digestAlgorithms, externalAddress, listen, maxPendingInvites, nonceTTL, realm, referTimeout, returnTimeout, rtpPorts, rtpTimeout, sessionExpires, tls, trunks"},
		},
		{
			name: "unknown key of the rtp ports",
			file: "sip:\n  rtpPorts: {low: 20000}\n",
			want: []string{"switchback.yaml:2: sip.rtpPorts.low: unknown field; known fields here are max, min"},
		},
		{
			name: "key of tls in the wrong case",
			file: "sip:\n  tls:\n    certfile: x\n",
			want: []string{"switchback.yaml:3: sip.tls.certfile: unknown field; did you mean certFile?"},
		},
		{
			name: "unknown key of a trunk user",
			file: "sip:\n  trunks:\n    - name: a\n      users:\n        - {user: u, password: p}\n",
			want: []string{"switchback.yaml:5: sip.trunks[0].users[0].user: unknown field; known fields here are password, username"},
		},
		{
			name: "unknown key of a tenant's sip",
			file: "tenants:\n  - id: a\n    sip: {allowed: [127.0.0.1]}\n",
			want: []string{"switchback.yaml:3: tenants[0].sip.allowed: unknown field; known fields here are allow, maxCalls, returnAuth, user, users"},
		},
		{
			name: "rtp port that is not a number",
			file: "sip:\n  rtpPorts:\n    min: low\n",
			want: []string{"switchback.yaml:3: cannot unmarshal !!str `low` into int"},
		},
		{
			name: "a file failing sip validation",
			file: "sip:\n  rtpPorts: {min: 20001}\n  trunks: [{name: carrier}]\n",
			want: []string{
				"sip.rtpPorts.min: must be even: RTP takes even ports, got 20001",
				"sip.trunks[0]: needs allow, users or both: calls from a trunk must be authenticated",
			},
		},
		{
			name: "negative max calls is not defaulted",
			file: "tenants:\n  - {id: a, sip: {maxCalls: -1, allow: [127.0.0.1]}, agents: [{menu: {default: {transferType: SYSTEM}}}]}\n",
			want: []string{"tenants[0].sip.maxCalls: must be at least 1, got -1"},
		},
		{
			name: "variable that is not an integer",
			env:  map[string]string{"SWITCHBACK_SIP_RTPPORTS_MIN": "low"},
			want: []string{`SWITCHBACK_SIP_RTPPORTS_MIN: "low" is not an integer`},
		},
		{
			name: "variables that fail validation",
			env:  map[string]string{"SWITCHBACK_SIP_SESSIONEXPIRES": "60s", "SWITCHBACK_SIP_TLS_CERTFILE": "cert.pem"},
			want: []string{
				"sip.tls.certFile: set without sip.tls.listen",
				"sip.sessionExpires: must be at least 1m30s (RFC 4028 section 4), got 1m0s",
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := ""
			if tt.file != "" {
				path = writeConfig(t, tt.file)
			}
			_, err := Load(path, mapEnv(tt.env))
			if err == nil {
				t.Fatal("Load() succeeded, want an error")
			}
			got := errorLines(err)
			if len(got) != len(tt.want) {
				t.Fatalf("Load() error has %d messages, want %d:\n%s", len(got), len(tt.want), err)
			}
			for i, want := range tt.want {
				if !strings.Contains(got[i], want) {
					t.Errorf("message %d = %q, want it to contain %q", i, got[i], want)
				}
			}
		})
	}
}

func TestTenantBySIPUser(t *testing.T) {
	c := Default()
	c.Tenants = append(c.Tenants, tenant("acme"))
	c.Tenants[1].SIP.User = "acme-sip"
	tests := []struct {
		name   string
		user   string
		wantID string // "" = not found
	}{
		{name: "the demo tenant's default user", user: "demo", wantID: "demo"},
		{name: "a configured user", user: "acme-sip", wantID: "acme"},
		{name: "a tenant id that is not its user", user: "acme"},
		{name: "users are case-sensitive", user: "DEMO"},
		{name: "empty", user: ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := c.TenantBySIPUser(tt.user)
			if ok != (tt.wantID != "") || got.ID != tt.wantID {
				t.Errorf("TenantBySIPUser(%q) = %q, %v; want %q", tt.user, got.ID, ok, tt.wantID)
			}
		})
	}
}
