package softphone

import (
	"fmt"
	"net"
	"regexp"
	"strconv"
	"strings"

	"github.com/emiago/sipgo/sip"
)

// DefaultProxy is where a call to a phone number goes when no proxy is
// named: a gateway on this machine, on the SIP port.
const DefaultProxy = "127.0.0.1:5060"

// phoneNumberPattern is what a target that is a phone number looks like.
var phoneNumberPattern = regexp.MustCompile(`^\+?[0-9]{2,15}$`)

// ParseTarget returns the Request-URI of a call to target and the
// host:port the INVITE is sent to. A target is a SIP URI such as
// sip:demo@127.0.0.1:5060, or a phone number such as +12025550100, called
// as sip:+12025550100@HOST:PORT of the proxy (DefaultProxy if proxy is
// empty). The INVITE goes to proxy if set, else to the URI's host and
// port (5060 if it names none).
func ParseTarget(target, proxy string) (sip.Uri, string, error) {
	if proxy != "" {
		host, port, err := net.SplitHostPort(proxy)
		if n, perr := strconv.Atoi(port); err != nil || host == "" || perr != nil || n < 1 || n > 65535 {
			return sip.Uri{}, "", fmt.Errorf("proxy %q is not host:port", proxy)
		}
	}
	lower := strings.ToLower(target)
	switch {
	case strings.HasPrefix(lower, "sip:"):
		var uri sip.Uri
		if err := sip.ParseUri(target, &uri); err != nil || uri.Host == "" {
			return sip.Uri{}, "", fmt.Errorf("%q is not a SIP URI such as sip:demo@127.0.0.1:5060", target)
		}
		if proxy != "" {
			return uri, proxy, nil
		}
		return uri, uriHostPort(uri), nil
	case strings.HasPrefix(lower, "sips:"):
		return sip.Uri{}, "", fmt.Errorf("%q: sips: (TLS) is not supported; use sip: over UDP or TCP", target)
	case phoneNumberPattern.MatchString(target):
		if proxy == "" {
			proxy = DefaultProxy
		}
		host, port, _ := net.SplitHostPort(proxy)
		n, _ := strconv.Atoi(port)
		return sip.Uri{Scheme: "sip", User: target, Host: host, Port: n}, proxy, nil
	}
	return sip.Uri{}, "", fmt.Errorf("%q is neither a SIP URI (sip:user@host:port) nor a phone number (+12025550100)", target)
}

// uriHostPort is where a request to uri goes without a proxy: its host and
// port, 5060 if it names none.
func uriHostPort(uri sip.Uri) string {
	port := uri.Port
	if port == 0 {
		port = 5060
	}
	return net.JoinHostPort(uri.Host, strconv.Itoa(port))
}
