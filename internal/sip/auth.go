package sip

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync/atomic"

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
	id       string
	user     string // the user part of its static URI
	maxCalls int64
	// returnAuth answers an INVITE hand-back's challenge when the
	// transfer brings no credentials of its own.
	returnAuth config.SIPUser
	calls      atomic.Int64
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
		ta := &tenantAccess{access: a, id: t.ID, user: t.SIP.User, maxCalls: int64(t.SIP.MaxCalls), returnAuth: t.SIP.ReturnAuth}
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

// readFilter runs on every datagram before sipgo parses it. sipgo's UDP
// transport remembers every source address it reads from, so datagrams
// from sources no allowlist covers are answered here, statelessly, with 403
// and dropped, unless some tenant or trunk accepts digest credentials from
// anywhere. Returning an error would stop the listener: never do.
func (e *Edge) readFilter(props sip.TransportReadProps, data []byte) ([]byte, error) {
	if e.openToAll || !strings.EqualFold(props.Transport, "udp") {
		return data, nil
	}
	ua, ok := props.RemoteAddr.(*net.UDPAddr)
	if !ok {
		return data, nil
	}
	ip, _ := netip.AddrFromSlice(ua.IP)
	if e.knownSource(ip.Unmap()) {
		return data, nil
	}
	e.refuseStateless(data, ua)
	return nil, nil
}

// refuseStateless answers a request from an unknown source with 403,
// without a transaction (RFC 3261 §8.2.7 allows a stateless UAS), and
// ignores anything else it sent.
func (e *Edge) refuseStateless(data []byte, to *net.UDPAddr) {
	msg, err := sip.ParseMessage(data)
	if err != nil {
		return
	}
	req, ok := msg.(*sip.Request)
	if !ok || req.IsAck() {
		return
	}
	res := sip.NewResponseFromRequest(req, 403, "Forbidden", nil)
	e.udp.WriteTo([]byte(res.String()), to)
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

// check authenticates req against a: the source must be allowlisted when
// an allowlist is configured, and digest must pass when users are. On
// failure it has answered the request (401 with a challenge, or 403).
func (e *Edge) check(ctx context.Context, a *access, req *sip.Request, tx sip.ServerTransaction) verdict {
	ip := source(req)
	if len(a.allow) > 0 && !a.allows(ip) {
		respond(tx, req, 403, "Forbidden")
		return refused
	}
	if len(a.users) == 0 {
		if len(a.allow) == 0 {
			respond(tx, req, 403, "Forbidden")
			return refused
		}
		return passed
	}
	result := digest.Missing
	for _, h := range req.GetHeaders("Authorization") {
		_, r, err := e.auth.Verify(ctx, string(req.Method), h.Value(), func(u string) (string, bool) {
			p, ok := a.users[u]
			return p, ok
		})
		if err != nil {
			respond(tx, req, 503, "Service Unavailable", sip.NewHeader("Retry-After", "5"))
			return refused
		}
		if r == digest.OK {
			return passed
		}
		result = r
	}
	if result == digest.Malformed {
		respond(tx, req, 400, "Bad Request")
		return refused
	}
	var opts []digest.ChallengeOption
	if result == digest.Stale {
		opts = append(opts, digest.StaleNonce)
	}
	challenges, err := e.auth.Challenge(ctx, opts...)
	if err != nil {
		respond(tx, req, 503, "Service Unavailable", sip.NewHeader("Retry-After", "5"))
		return refused
	}
	var hs []sip.Header
	for _, c := range challenges {
		hs = append(hs, sip.NewHeader("WWW-Authenticate", c))
	}
	respond(tx, req, 401, "Unauthorized", hs...)
	e.log.Info("sip request challenged", "from", req.Source(), "as", a.name, "result", result.String())
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

// trunkFor authenticates a call to a temporary number against the trunks:
// the first trunk whose allowlist has the source, else the trunks that take
// digest credentials from anywhere.
func (e *Edge) trunkFor(ctx context.Context, req *sip.Request, tx sip.ServerTransaction) verdict {
	ip := source(req)
	for _, t := range e.trunks {
		if t.allows(ip) {
			return e.check(ctx, t, req, tx)
		}
	}
	for _, t := range e.trunks {
		if len(t.allow) == 0 && len(t.users) > 0 {
			return e.check(ctx, t, req, tx)
		}
	}
	respond(tx, req, 403, "Forbidden")
	return refused
}
