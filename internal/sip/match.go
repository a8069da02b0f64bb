package sip

import (
	"net/url"
	"strings"

	"github.com/emiago/sipgo/sip"
	"github.com/switchback/switchback"
)

// TransferIDHeader carries the call transfer id on a SIP transfer's INVITE.
const TransferIDHeader = "X-ASAPP-CallTransferId"

// transferID returns the call transfer id an INVITE carries: the
// X-ASAPP-CallTransferId header (its name in any case), or, for PBXs that
// cannot set headers, the same name as a header of the Request-URI
// (sip:agent@host?X-ASAPP-CallTransferId=...). It returns "" when there is
// none, and an EINVALID error when the id is there but malformed.
func transferID(req *sip.Request) (string, error) {
	id, found := "", false
	if h := req.GetHeader(TransferIDHeader); h != nil {
		id, found = strings.TrimSpace(h.Value()), true
	} else if req.Recipient.Headers != nil {
		for k, v := range req.Recipient.Headers.Items() {
			if strings.EqualFold(k, TransferIDHeader) {
				// URI header values are escaped (RFC 3261 §19.1.1).
				unescaped, err := url.PathUnescape(v)
				if err != nil {
					return "", switchback.Errorf(switchback.EINVALID, "%s in the Request-URI is badly escaped", TransferIDHeader)
				}
				id, found = unescaped, true
				break
			}
		}
	}
	if !found {
		return "", nil
	}
	if !switchback.ValidID(id) {
		return "", switchback.Errorf(switchback.EINVALID, "%s is not a valid call transfer id", TransferIDHeader)
	}
	return id, nil
}

// dialledNumber returns the E.164 number an INVITE dials, from the user part
// of the Request-URI (or of the To header when the Request-URI has none):
// "+12025550100", "12025550100" and "tel:+12025550100" all give
// "+12025550100". It returns "" when the user is not a phone number.
func dialledNumber(req *sip.Request) string {
	user := req.Recipient.User
	if user == "" && req.To() != nil {
		user = req.To().Address.User
	}
	user = strings.TrimPrefix(user, "tel:")
	// Visual separators are allowed in telephone-subscriber (RFC 3966).
	user = strings.NewReplacer("-", "", ".", "", "(", "", ")", "").Replace(user)
	if !strings.HasPrefix(user, "+") {
		user = "+" + user
	}
	if !switchback.ValidE164(user) {
		return ""
	}
	return user
}
