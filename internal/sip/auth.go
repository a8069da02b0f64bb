package sip

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"strings"

	"github.com/emiago/sipgo/sip"
	"github.com/switchback/switchback/internal/config"
	"github.com/switchback/switchback/internal/sip/digest"
)

// access is who may send requests as one tenant or trunk: sources by IP,
// and digest users. When both are configured, both must pass.
type access struct {
	name  string
	allow []netip.Prefix
	users map[string]string // username -> password
}

// tenantAccess is a tenant's SIP access.
type tenantAccess struct {
	access
	id   string
	user string // the user part of its static URI
	// returnAuth answers an INVITE hand-back's challenge when the
	// transfer brings no credentials of its own.
	returnAuth config.SIPUser
}

func parsePrefixes(field string, list []string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for i, s := range list {
		if p, err := netip.ParsePrefix(s); err == nil {
			out = append(out, p.Masked())
			continue
		}
		a, err := netip.ParseAddr(s)
		if err != nil {
			return nil, fmt.Errorf("%s[%d]: %q is not an IP address or CIDR", field, i, s)
		}
		out = append(out, netip.PrefixFrom(a, a.BitLen()))
	}
	return out, nil
}

func newAccess(name, field string, allow []string, users []config.SIPUser) (access, error) {
	a := access{name: name, users: map[string]string{}}
	var err error
	if a.allow, err = parsePrefixes(field+".allow", allow); err != nil {
		return a, err
	}
	for _, u := range users {
		a.users[u.Username] = u.Password
	}
	return a, nil
}

func (e *Edge) loadAccess(c config.Config) error {
	e.tenants = map[string]*tenantAccess{}
	e.tenantsByID = map[string]*tenantAccess{}
	for i, t := range c.Tenants {
		a, err := newAccess("tenant "+t.ID, fmt.Sprintf("tenants[%d].sip", i), t.SIP.Allow, t.SIP.Users)
		if err != nil {
			return err
		}
		ta := &tenantAccess{access: a, id: t.ID, user: t.SIP.User, returnAuth: t.SIP.ReturnAuth}
		e.tenants[t.SIP.User] = ta
		e.tenantsByID[t.ID] = ta
		if len(a.allow) == 0 && len(a.users) > 0 {
			e.openToAll = true
		}
	}
	for i, t := range c.SIP.Trunks {
		a, err := newAccess("trunk "+t.Name, fmt.Sprintf("sip.trunks[%d]", i), t.Allow, t.Users)
		if err != nil {
			return err
		}
		e.trunks = append(e.trunks, &a)
		if len(a.allow) == 0 && len(a.users) > 0 {
			e.openToAll = true
		}
	}
	return nil
}

func (a *access) allows(ip netip.Addr) bool {
	for _, p := range a.allow {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// knownSource reports whether ip is in any tenant's or trunk's allowlist.
func (e *Edge) knownSource(ip netip.Addr) bool {
	for _, t := range e.tenants {
		if t.allows(ip) {
			return true
		}
	}
	for _, t := range e.trunks {
		if t.allows(ip) {
			return true
		}
	}
	return false
}

// source is the address a request came from.
func source(req *sip.Request) netip.Addr {
	ap, err := netip.ParseAddrPort(req.Source())
	if err != nil {
		host, _, _ := net.SplitHostPort(req.Source())
		a, _ := netip.ParseAddr(host)
		return a.Unmap()
	}
	return ap.Addr().Unmap()
}

// verdict is what authentication decided about a request.
type verdict int

const (
	passed verdict = iota
	challenged
	refused
)

// refusal is the answer to a request that authentication did not pass.
type refusal struct {
	code    int
	reason  string
	headers []sip.Header
	result  digest.Result // what the digest credentials were, when they were checked
}

// authenticate decides whether req, from ip, may call as a: the source
// must be allowlisted when an allowlist is configured, and digest must
// pass when users are. With claim, the nonce of credentials that pass is
// used up (digest.Authenticator.Verify); without, the credentials are only
// checked (digest.Authenticator.Check), as the gate does before anything
// is kept for the request. Otherwise it returns the answer to give: 403,
// 401 with a challenge, 400 for credentials that do not parse, 503 when
// the store fails.
func (e *Edge) authenticate(ctx context.Context, a *access, req *sip.Request, ip netip.Addr, claim bool) (refusal, bool) {
	forbidden := refusal{code: 403, reason: "Forbidden"}
	if len(a.allow) > 0 && !a.allows(ip) {
		return forbidden, false
	}
	if len(a.users) == 0 {
		if len(a.allow) == 0 {
			return forbidden, false // a tenant without SIP access
		}
		return refusal{}, true
	}
	unavailable := refusal{code: 503, reason: "Service Unavailable", headers: []sip.Header{sip.NewHeader("Retry-After", "5")}}
	verify := e.auth.Check
	if claim {
		verify = e.auth.Verify
	}
	result := digest.Missing
	for _, h := range req.GetHeaders("Authorization") {
		_, r, err := verify(ctx, string(req.Method), h.Value(), func(u string) (string, bool) {
			p, ok := a.users[u]
			return p, ok
		})
		if err != nil {
			return unavailable, false
		}
		if r == digest.OK {
			return refusal{}, true
		}
		result = r
	}
	if result == digest.Malformed {
		return refusal{code: 400, reason: "Bad Request", result: result}, false
	}
	var opts []digest.ChallengeOption
	if result == digest.Stale {
		opts = append(opts, digest.StaleNonce)
	}
	challenges, err := e.auth.Challenge(ctx, opts...)
	if err != nil {
		return unavailable, false
	}
	r := refusal{code: 401, reason: "Unauthorized", result: result}
	for _, c := range challenges {
		r.headers = append(r.headers, sip.NewHeader("WWW-Authenticate", c))
	}
	return r, false
}

// check authenticates req, which has a transaction, against a (see
// authenticate), using up the nonce of credentials that pass. On failure
// it has answered the request.
func (e *Edge) check(ctx context.Context, a *access, req *sip.Request, tx sip.ServerTransaction) verdict {
	r, ok := e.authenticate(ctx, a, req, source(req), true)
	if ok {
		return passed
	}
	respond(tx, req, r.code, r.reason, r.headers...)
	e.count(reasonFor(r.code))
	if r.code != 401 {
		return refused
	}
	e.log.Info("sip request challenged", "from", req.Source(), "as", a.name, "result", r.result.String())
	return challenged
}

// tenantFor returns the tenant whose static SIP URI req is addressed to.
func (e *Edge) tenantFor(req *sip.Request) (*tenantAccess, bool) {
	t, ok := e.tenants[req.Recipient.User]
	if !ok {
		for user, ta := range e.tenants {
			if strings.EqualFold(user, req.Recipient.User) {
				return ta, true
			}
		}
	}
	return t, ok
}

// trunkAccess is the trunk a call to a temporary number from ip
// authenticates against: the first trunk whose allowlist has ip, else the
// first that takes digest credentials from anywhere; nil when there is
// none.
func (e *Edge) trunkAccess(ip netip.Addr) *access {
	for _, t := range e.trunks {
		if t.allows(ip) {
			return t
		}
	}
	for _, t := range e.trunks {
		if len(t.allow) == 0 && len(t.users) > 0 {
			return t
		}
	}
	return nil
}

// trunkFor authenticates a call to a temporary number against the trunks
// (see trunkAccess).
func (e *Edge) trunkFor(ctx context.Context, req *sip.Request, tx sip.ServerTransaction) verdict {
	t := e.trunkAccess(source(req))
	if t == nil {
		respond(tx, req, 403, "Forbidden")
		e.count(ReasonForbidden)
		return refused
	}
	return e.check(ctx, t, req, tx)
}

// accessFor is who a new INVITE from ip must authenticate as, read the way
// onInvite reads it: the tenant its Request-URI names, else the trunks for
// a dialled number (nil when no trunk may send it). found is false when it
// is addressed to neither (404).
func (e *Edge) accessFor(req *sip.Request, ip netip.Addr) (a *access, found bool) {
	if t, ok := e.tenantFor(req); ok {
		return &t.access, true
	}
	if dialledNumber(req) != "" {
		return e.trunkAccess(ip), true
	}
	return nil, false
}
