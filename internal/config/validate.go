package config

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"math"
	"net"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/switchback/switchback"
)

// minMaxBodyBytes is the smallest api.maxBodyBytes accepted: below it, an
// ordinary create request with an input context would not fit.
const minMaxBodyBytes = 1024

// minMaxHeaderBytes is the smallest api.maxHeaderBytes accepted: the API's
// own headers with a load balancer's additions need a few KiB.
const minMaxHeaderBytes = 4096

// Validate reports every problem of c at once, joined with errors.Join, so a
// user fixes them all in one go. Each names its field by its YAML path, as in
// "tenants[1].phoneNumberTTL: must be positive".
func (c Config) Validate() error {
	var p problems
	c.validateAPI(&p)
	c.validateStore(&p)
	tenants := c.validateTenants(&p)
	numbers := c.validatePool(&p, tenants)
	c.validateSIPUsersAreNotNumbers(&p, numbers)
	if c.Expiry.SweepInterval <= 0 {
		p.add("expiry.sweepInterval", "must be positive")
	}
	if d := c.Expiry.MaxCallDuration.Duration(); d < 0 || d > 0 && d < time.Minute {
		p.add("expiry.maxCallDuration", "must be 0 (never) or at least 1m, got %v", d)
	}
	if c.Shutdown.DrainTimeout < 0 {
		p.add("shutdown.drainTimeout", "must be 0 (end calls at once) or positive, got %v", c.Shutdown.DrainTimeout)
	}
	c.validateSIP(&p)
	c.validateNode(&p)
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

// validateListen checks that addr, at path, is host:port with a numeric port;
// example is the port shown in the message.
func validateListen(p *problems, path, addr string, example int) {
	if _, port, err := net.SplitHostPort(addr); err != nil {
		p.add(path, "%q is not host:port (e.g. 127.0.0.1:%d, or :%d for every interface)", addr, example, example)
	} else if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		p.add(path, "port %q is not a number from 0 to 65535", port)
	}
}

func (c Config) validateAPI(p *problems) {
	validateListen(p, "api.listen", c.API.Listen, 8080)
	if c.API.MaxBodyBytes < minMaxBodyBytes {
		p.add("api.maxBodyBytes", "must be at least %d, got %d", minMaxBodyBytes, c.API.MaxBodyBytes)
	}
	if c.API.MaxWait <= 0 {
		p.add("api.maxWait", "must be positive")
	}
	for _, d := range []struct {
		path string
		v    Duration
	}{
		{"api.readHeaderTimeout", c.API.ReadHeaderTimeout},
		{"api.readBodyTimeout", c.API.ReadBodyTimeout},
		{"api.writeTimeout", c.API.WriteTimeout},
		{"api.idleTimeout", c.API.IdleTimeout},
	} {
		if d.v <= 0 {
			p.add(d.path, "must be positive")
		}
	}
	if c.API.MaxHeaderBytes < minMaxHeaderBytes {
		p.add("api.maxHeaderBytes", "must be at least %d, got %d", minMaxHeaderBytes, c.API.MaxHeaderBytes)
	}
	if c.API.MaxConnections < 1 {
		p.add("api.maxConnections", "must be at least 1, got %d", c.API.MaxConnections)
	}
	if l := c.API.AuthFailureLimit; l.RequestsPerSecond < 0 || math.IsNaN(l.RequestsPerSecond) || math.IsInf(l.RequestsPerSecond, 0) {
		p.add("api.authFailureLimit.requestsPerSecond", "must be 0 (no limit) or positive, got %v", l.RequestsPerSecond)
	} else if l.RequestsPerSecond > 0 && l.Burst < 1 {
		p.add("api.authFailureLimit.burst", "must be at least 1, got %d", l.Burst)
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

// maxNodeIDBytes bounds node.id, which names the node in logs, metrics
// and the store.
const maxNodeIDBytes = 200

func (c Config) validateNode(p *problems) {
	n := c.Node
	if len(n.ID) > maxNodeIDBytes {
		p.add("node.id", "must be at most %d bytes, got %d", maxNodeIDBytes, len(n.ID))
	}
	for _, r := range n.ID {
		if r <= ' ' || r == 0x7f {
			p.add("node.id", "must not hold spaces or control characters, got %q", n.ID)
			break
		}
	}
	if n.Heartbeat <= 0 {
		p.add("node.heartbeat", "must be positive, got %v", n.Heartbeat)
	}
	// One late heartbeat must not lose the lease.
	if n.Heartbeat > 0 && n.TTL < 2*n.Heartbeat {
		p.add("node.ttl", "must be at least twice node.heartbeat (%v), got %v", n.Heartbeat, n.TTL)
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
	sipUsers := make(map[string]string, len(c.Tenants)) // sip.user -> path of the tenant that has it
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
		validateTenantSIP(p, path+".sip", t.SIP, sipUsers)
		validateAgents(p, path+".agents", t.Agents)
	}
	return ids
}

// validatePool checks the pool and returns where each of its valid numbers is
// listed first.
func (c Config) validatePool(p *problems, tenants map[string]bool) map[string]string {
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
	return listedAt
}

// validateSIPUsersAreNotNumbers refuses a tenant sip.user that is also a pool
// number, with or without its +: an INVITE to it could be a SIP transfer of
// the tenant or a call to the leased number.
func (c Config) validateSIPUsersAreNotNumbers(p *problems, numbers map[string]string) {
	for i, t := range c.Tenants {
		at, ok := numbers[t.SIP.User]
		if !ok {
			at, ok = numbers["+"+t.SIP.User]
		}
		if ok {
			p.add(fmt.Sprintf("tenants[%d].sip.user", i), "%q is also a pool number, listed at %s: INVITEs to it would be ambiguous", t.SIP.User, at)
		}
	}
}

func (c Config) validateSIP(p *problems) {
	s := c.SIP
	validateListen(p, "sip.listen", s.Listen, 5060)
	switch {
	case s.TLS.Listen != "":
		validateListen(p, "sip.tls.listen", s.TLS.Listen, 5061)
		readable := true
		for _, f := range []struct{ path, name, what string }{
			{"sip.tls.certFile", s.TLS.CertFile, "the PEM certificate chain"},
			{"sip.tls.keyFile", s.TLS.KeyFile, "the PEM private key"},
		} {
			if f.name == "" {
				p.add(f.path, "required with sip.tls.listen: %s", f.what)
				readable = false
			} else if why := unreadable(f.name); why != "" {
				p.add(f.path, "%s", why)
				readable = false
			}
		}
		if readable {
			if _, err := tls.LoadX509KeyPair(s.TLS.CertFile, s.TLS.KeyFile); err != nil {
				p.add("sip.tls", "certFile and keyFile do not load as a key pair: %v", err)
			}
		}
	default:
		if s.TLS.CertFile != "" {
			p.add("sip.tls.certFile", "set without sip.tls.listen: set listen to serve SIP over TLS, or leave both out")
		}
		if s.TLS.KeyFile != "" {
			p.add("sip.tls.keyFile", "set without sip.tls.listen: set listen to serve SIP over TLS, or leave both out")
		}
	}
	if a := s.ExternalAddress; a != "" && net.ParseIP(a) == nil && !validHostName(a) {
		p.add("sip.externalAddress", "%q is not an IP address or host name (write it without a port or brackets)", a)
	}
	switch {
	case s.Realm == "":
		p.add("sip.realm", "required")
	case strings.ContainsFunc(s.Realm, func(r rune) bool { return r == '"' || r == '\\' || r < ' ' || r == 0x7f }):
		// The realm is a quoted-string of WWW-Authenticate (RFC 3261 section 25.1).
		p.add("sip.realm", "%q must not contain a double quote, a backslash or a control character", s.Realm)
	}
	validateRTPPorts(p, s.RTPPorts)
	if s.RTPTimeout <= 0 {
		p.add("sip.rtpTimeout", "must be positive")
	}
	if s.SessionExpires.Duration() < MinSessionExpires {
		p.add("sip.sessionExpires", "must be at least %v (RFC 4028 section 4), got %v", MinSessionExpires, s.SessionExpires)
	}
	seen := map[string]bool{}
	for i, alg := range s.DigestAlgorithms {
		if alg != "SHA-256" && alg != "MD5" {
			p.add(fmt.Sprintf("sip.digestAlgorithms[%d]", i), "%q is not SHA-256 or MD5", alg)
		} else if seen[alg] {
			p.add(fmt.Sprintf("sip.digestAlgorithms[%d]", i), "%s is listed twice", alg)
		}
		seen[alg] = true
	}
	if s.AnswerDelay < 0 || s.AnswerDelay.Duration() > 10*time.Second {
		p.add("sip.answerDelay", "must be between 0s and 10s")
	}
	if s.NonceTTL <= 0 {
		p.add("sip.nonceTTL", "must be positive")
	}
	if s.MaxPendingInvites < 0 {
		p.add("sip.maxPendingInvites", "must be positive")
	}
	if s.ReferTimeout <= 0 || s.ReferTimeout.Duration() > 10*time.Minute {
		p.add("sip.referTimeout", "must be between 1ms and 10m")
	}
	if s.ReturnTimeout <= 0 || s.ReturnTimeout.Duration() > 10*time.Minute {
		p.add("sip.returnTimeout", "must be between 1ms and 10m")
	}

	names := make(map[string]int, len(s.Trunks))
	for i, tr := range s.Trunks {
		path := fmt.Sprintf("sip.trunks[%d]", i)
		if tr.Name == "" {
			p.add(path+".name", "required")
		} else if j, dup := names[tr.Name]; dup {
			p.add(path+".name", "%q is also the name of sip.trunks[%d]", tr.Name, j)
		} else {
			names[tr.Name] = i
		}
		if len(tr.Allow) == 0 && len(tr.Users) == 0 {
			p.add(path, "needs allow, users or both: calls from a trunk must be authenticated")
		}
		validateAllow(p, path+".allow", tr.Allow)
		validateUsers(p, path+".users", tr.Users)
	}
}

func validateRTPPorts(p *problems, r PortRange) {
	inRange := true
	if r.Min < 1024 || r.Min > 65535 {
		p.add("sip.rtpPorts.min", "must be from 1024 to 65535, got %d", r.Min)
		inRange = false
	} else if r.Min%2 != 0 {
		// RTP takes an even port and RTCP the odd one above it (RFC 3550 section 11).
		p.add("sip.rtpPorts.min", "must be even: RTP takes even ports, got %d", r.Min)
	}
	if r.Max < 1024 || r.Max > 65535 {
		p.add("sip.rtpPorts.max", "must be from 1024 to 65535, got %d", r.Max)
		inRange = false
	}
	if inRange && r.Min >= r.Max {
		p.add("sip.rtpPorts", "min (%d) must be below max (%d): a call needs an even port for RTP and the odd one above it for RTCP", r.Min, r.Max)
	}
}

// validateAllow checks a list of source IP addresses and CIDRs.
func validateAllow(p *problems, path string, allow []string) {
	for i, a := range allow {
		if net.ParseIP(a) != nil {
			continue
		}
		if _, _, err := net.ParseCIDR(a); err != nil {
			p.add(fmt.Sprintf("%s[%d]", path, i), "%q is not an IP address or CIDR (e.g. 192.0.2.10, 192.0.2.0/24 or 2001:db8::/32)", a)
		}
	}
}

// validateUsers checks a list of digest credentials.
func validateUsers(p *problems, path string, users []SIPUser) {
	first := make(map[string]int, len(users))
	for i, u := range users {
		upath := fmt.Sprintf("%s[%d]", path, i)
		if u.Username == "" {
			p.add(upath+".username", "required")
		} else if j, dup := first[u.Username]; dup {
			p.add(upath+".username", "%q is also the username of %s[%d]", u.Username, path, j)
		} else {
			first[u.Username] = i
		}
		if u.Password == "" {
			p.add(upath+".password", "required")
		}
	}
}

// validateTenantSIP checks a tenant's sip at path; users maps each sip.user
// already seen to the tenant that has it.
func validateTenantSIP(p *problems, path string, s TenantSIP, users map[string]string) {
	switch {
	case s.User == "":
		p.add(path+".user", "required")
	case !validSIPUser(s.User):
		p.add(path+".user", "%q is not a SIP user part: use A-Z a-z 0-9 and - _ . ! ~ * ' ( ) & = + $ , ; ? /", s.User)
	default:
		if at, dup := users[s.User]; dup {
			p.add(path+".user", "%q is also the sip.user of %s", s.User, at)
		} else {
			users[s.User] = strings.TrimSuffix(path, ".sip")
		}
	}
	// A tenant with neither allow nor users is valid: it uses the API only,
	// and every SIP request for it is refused with 403.
	validateAllow(p, path+".allow", s.Allow)
	validateUsers(p, path+".users", s.Users)
	if s.MaxCalls < 1 {
		p.add(path+".maxCalls", "must be at least 1, got %d", s.MaxCalls)
	}
	if ra := s.ReturnAuth; ra.Username != "" && ra.Password == "" {
		p.add(path+".returnAuth.password", "required with a username")
	} else if ra.Username == "" && ra.Password != "" {
		p.add(path+".returnAuth.username", "required with a password")
	}
}

// validSIPUser reports whether user is made only of the characters RFC 3261
// section 25.1 allows unescaped in a user part: unreserved and
// user-unreserved.
func validSIPUser(user string) bool {
	for i := 0; i < len(user); i++ {
		c := user[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case strings.IndexByte("-_.!~*'()&=+$,;?/", c) >= 0:
		default:
			return false
		}
	}
	return user != ""
}

// validHostName reports whether name is a DNS host name (RFC 1123).
func validHostName(name string) bool {
	return len(name) <= 253 && hostName.MatchString(name)
}

var hostName = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?$`)

// choiceKey is the form of a menu choice: what the caller presses.
var choiceKey = regexp.MustCompile(`^[0-9*#A-D]{1,8}$`)

// maxCollectDigits is the largest collect maxDigits accepted.
const maxCollectDigits = 64

func validateAgents(p *problems, path string, agents []AgentConfig) {
	// A tenant without agents is valid: its calls are handed back at once
	// (SYSTEM, its task unchanged), and the log says there was no agent.
	tasks := make(map[string]int, len(agents))
	for i, a := range agents {
		apath := fmt.Sprintf("%s[%d]", path, i)
		if j, dup := tasks[a.Task]; dup {
			if a.Task == "" {
				p.add(apath+".task", `"" (any task) is also the task of agents[%d]`, j)
			} else {
				p.add(apath+".task", "%q is also the task of agents[%d]", a.Task, j)
			}
		} else {
			tasks[a.Task] = i
		}
		switch {
		case a.Menu != nil && a.WebSocket != nil:
			p.add(apath, "has both menu and websocket: an agent is of one kind")
		case a.Menu != nil:
			validateMenu(p, apath+".menu", a.Menu)
		case a.WebSocket != nil:
			if err := a.WebSocket.Check(apath + ".websocket"); err != nil {
				if joined, ok := err.(interface{ Unwrap() []error }); ok {
					*p = append(*p, joined.Unwrap()...)
				} else {
					*p = append(*p, err)
				}
			}
		default:
			p.add(apath, "names no kind of agent: give it a menu or a websocket")
		}
	}
	validateFallbacks(p, path, agents)
}

// validateFallbacks checks the websocket agents' fallback tasks: each an
// agent of the tenant, and no chain of fallbacks that comes back to
// where it started.
func validateFallbacks(p *problems, path string, agents []AgentConfig) {
	byTask := make(map[string]int, len(agents))
	for i, a := range agents {
		if _, dup := byTask[a.Task]; !dup {
			byTask[a.Task] = i
		}
	}
	for i, a := range agents {
		if a.WebSocket == nil || a.WebSocket.Fallback.Task == "" {
			continue
		}
		fpath := fmt.Sprintf("%s[%d].websocket.fallback.task", path, i)
		seen := map[int]bool{i: true}
		for at := i; ; {
			next, ok := byTask[agents[at].WebSocket.Fallback.Task]
			if !ok {
				p.add(fpath, "%q is not the task of any of this tenant's agents", agents[at].WebSocket.Fallback.Task)
				break
			}
			if seen[next] {
				p.add(fpath, "falls back in a circle (to agents[%d])", next)
				break
			}
			seen[next] = true
			if agents[next].WebSocket == nil || agents[next].WebSocket.Fallback.Task == "" {
				break
			}
			at = next
		}
	}
}

func validateMenu(p *problems, path string, m *Menu) {
	validateSound(p, path+".greeting", m.Greeting)
	names := make(map[string]int, len(m.Collect))
	for i, c := range m.Collect {
		cpath := fmt.Sprintf("%s.collect[%d]", path, i)
		if c.Name == "" {
			p.add(cpath+".name", "required: the variable the digits go into")
		} else if j, dup := names[c.Name]; dup {
			p.add(cpath+".name", "%q is also the name of collect[%d]", c.Name, j)
		} else {
			names[c.Name] = i
		}
		validateSound(p, cpath+".prompt", c.Prompt)
		if c.MaxDigits < 1 || c.MaxDigits > maxCollectDigits {
			p.add(cpath+".maxDigits", "must be from 1 to %d, got %d", maxCollectDigits, c.MaxDigits)
		}
		if c.Terminator != "" && (len(c.Terminator) != 1 || !choiceKey.MatchString(c.Terminator)) {
			p.add(cpath+".terminator", `must be one DTMF digit (0-9 * # A-D), or "" for none, got %q`, c.Terminator)
		}
	}
	for _, key := range slices.Sorted(maps.Keys(m.Choices)) {
		cpath := fmt.Sprintf("%s.choices[%q]", path, key)
		if !choiceKey.MatchString(key) {
			p.add(cpath, "the key is not 1 to 8 DTMF digits (0-9 * # A-D)")
		}
		validateOutcome(p, cpath, m.Choices[key])
	}
	validateSound(p, path+".choicePrompt", m.ChoicePrompt)
	if m.DigitTimeout < 0 {
		p.add(path+".digitTimeout", "must not be negative (0 means do not wait)")
	}
	validateOutcome(p, path+".default", m.Default)
}

func validateOutcome(p *problems, path string, o Outcome) {
	switch switchback.OutputTransferType(o.TransferType) {
	case switchback.TransferAgent, switchback.TransferSystem:
	case switchback.TransferCallerDisconnect:
		p.add(path+".transferType", "CALLER_DISCONNECT is the caller hanging up, not an outcome a menu chooses: use AGENT or SYSTEM")
	default:
		p.add(path+".transferType", "must be AGENT or SYSTEM, got %q", o.TransferType)
	}
	for _, list := range []struct {
		key   string
		names []string
	}{{"referenceVariables", o.ReferenceVariables}, {"transferVariables", o.TransferVariables}} {
		for i, name := range list.names {
			if name == "" {
				p.add(fmt.Sprintf("%s.%s[%d]", path, list.key, i), "a variable name must not be empty")
			}
		}
	}
	if _, ok := o.Set[""]; ok {
		p.add(path+".set", "a variable name must not be empty")
	}
}

// validateSound checks a menu's sound at path: "", a built-in sound or a
// file that can be read. Its contents are checked when the audio is loaded.
func validateSound(p *problems, path, name string) {
	switch {
	case name == "" || name == BuiltinChime:
	case strings.HasPrefix(name, builtinPrefix):
		p.add(path, "%q is not a built-in sound: the built-in sounds are %s", name, BuiltinChime)
	default:
		if why := unreadable(name); why != "" {
			p.add(path, "%s", why)
		}
	}
}

// unreadable says why the file name cannot be read, or returns "" if it can.
// A relative name is relative to the working directory.
func unreadable(name string) string {
	f, err := os.Open(name)
	if err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		return fmt.Sprintf("cannot read %q: %v", name, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	switch {
	case err != nil:
		return fmt.Sprintf("cannot read %q: %v", name, err)
	case fi.IsDir():
		return fmt.Sprintf("%q is a directory, not a file", name)
	}
	return ""
}
