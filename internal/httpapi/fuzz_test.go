package httpapi

import (
	"strings"
	"testing"
	"time"

	"github.com/switchback/switchback"
)

// FuzzCreateRequest feeds arbitrary bodies to the create decoder and
// validator: it never panics, every refusal is a domain error with a
// message, and everything it accepts is a transfer the rest of the system
// can rely on.
func FuzzCreateRequest(f *testing.F) {
	for _, s := range []string{
		`{"id":"t-1","externalConversationId":"c","type":"PHONE_NUMBER","phoneNumber":{"country":"US"}}`,
		`{"id":"t-1","externalConversationId":"c","type":"SIP","sip":{"returnURI":"sip:a@b;User-to-User=1","returnTransferType":"REFER"},"inputContext":{"taskName":"x","inputVariables":{"a":"1"}}}`,
		`{"id":"t","externalConversationId":"c","type":"SIP","sip":{"returnUri":"sip:a@b","returnTransferType":"INVITE","returnInviteAuthentication":{"username":"u","password":"p"}}}`,
		`{"id":5}`, `[]`, `null`, `{"id":"a/b"}`, `{"sip":{"returnURI":"sip:a@b","returnUri":"sip:c@d"}}`, `{"id":"x"}{"id":"y"}`, "\xff",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, body string) {
		var req createRequest
		err := decodeJSON(strings.NewReader(body), &req)
		if err != nil {
			if _, ok := err.(*malformedJSON); !ok && switchback.ErrorCode(err) == switchback.EINTERNAL {
				t.Fatalf("decode %q: not a domain error: %v", body, err)
			}
			return
		}
		tr, err := req.transfer("acme")
		if err != nil {
			if switchback.ErrorCode(err) != switchback.EINVALID || switchback.ErrorMessage(err) == "" {
				t.Fatalf("validate %q: %v", body, err)
			}
			return
		}
		if !switchback.ValidID(tr.ID) || tr.ExternalConversationID == "" || tr.RequestHash == "" {
			t.Fatalf("accepted %q as %+v", body, tr)
		}
		switch tr.Type {
		case switchback.TypePhoneNumber:
			if tr.PhoneNumber == nil || !switchback.ValidCountry(tr.PhoneNumber.Country) || tr.SIP != nil {
				t.Fatalf("accepted phone transfer %q as %+v", body, tr)
			}
		case switchback.TypeSIP:
			if tr.SIP == nil || tr.PhoneNumber != nil {
				t.Fatalf("accepted sip transfer %q as %+v", body, tr)
			}
			if tr.SIP.ReturnURI != "" {
				if _, ok := switchback.ValidReturnURI(tr.SIP.ReturnURI); !ok {
					t.Fatalf("accepted return URI %q", tr.SIP.ReturnURI)
				}
			}
		default:
			t.Fatalf("accepted type %q", tr.Type)
		}
		again, _ := req.transfer("acme")
		if again.RequestHash != tr.RequestHash {
			t.Fatal("request hash is not deterministic")
		}
	})
}

func FuzzCursor(f *testing.F) {
	f.Add(int64(1795281713154612), "t-1")
	f.Add(int64(0), "~")
	f.Fuzz(func(t *testing.T, us int64, id string) {
		if !switchback.ValidID(id) {
			return
		}
		created := time.UnixMicro(us).UTC()
		c, ok := decodeCursor(encodeCursor(created, id))
		if !ok || c.ID != id || !c.CreatedAt.Equal(created) {
			t.Fatalf("cursor round trip of %d %q gave %+v %v", us, id, c, ok)
		}
	})
}
