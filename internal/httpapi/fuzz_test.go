package httpapi

import (
	"bufio"
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

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
		`{"ID":"t","externalConversationId":"c","type":"SIP"}`, `{"id":"A","id":"B","externalConversationId":"c","type":"SIP"}`,
		`{"id":"t","externalConversationId":"c","type":"SIP","ſip":{}}`, `{"id":"t","externalConversationId":"c","type":"SIP","sip":{},"sip":{}}`,
		`{"id":"t","externalConversationId":"\ud800","type":"SIP"}`, `{"id":"t","externalConversationId":"\ud83d\ude00","type":"SIP"}`,
		`{"id":"t","externalConversationId":"c","type":"SIP","inputContext":{"inputVariables":{"k":"1","k":"2"}}}`,
		`{"id":"t","externalConversationId":"c","type":"SIP","sip":null}`, `{"a":[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]}`,
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
		// Whatever is accepted was read with exact names only: a generic
		// decoder, which keeps names as written, finds no other.
		var generic map[string]any
		if err := json.Unmarshal([]byte(body), &generic); err != nil {
			t.Fatalf("accepted %q, which encoding/json refuses: %v", body, err)
		}
		checkExactNames(t, body, generic, reflect.TypeOf(req))
		if !utf8.ValidString(body) || hasNUL(generic) {
			t.Fatalf("accepted %q", body)
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

// checkExactNames fails t if an object of v, decoded generically from
// body, has a member that is not exactly a field of typ at its level.
func checkExactNames(t *testing.T, body string, v any, typ reflect.Type) {
	for typ.Kind() == reflect.Pointer {
		typ = typ.Elem()
	}
	m, ok := v.(map[string]any)
	if !ok {
		return
	}
	switch typ.Kind() {
	case reflect.Struct:
		fields := jsonFields(typ)
		for k, sub := range m {
			ft, ok := fields[k]
			if !ok {
				t.Fatalf("accepted %q with member %q", body, k)
			}
			checkExactNames(t, body, sub, ft)
		}
	case reflect.Map:
		for _, sub := range m {
			checkExactNames(t, body, sub, typ.Elem())
		}
	}
}

// hasNUL reports whether a generically decoded value holds a NUL in a
// string or a member name.
func hasNUL(v any) bool {
	switch v := v.(type) {
	case string:
		return strings.ContainsRune(v, 0)
	case []any:
		for _, e := range v {
			if hasNUL(e) {
				return true
			}
		}
	case map[string]any:
		for k, e := range v {
			if strings.ContainsRune(k, 0) || hasNUL(e) {
				return true
			}
		}
	}
	return false
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
		if us < 0 || us > maxCursorMicros {
			// No transfer was created before 1970 or after 9999.
			if ok {
				t.Fatalf("cursor of %d %q accepted", us, id)
			}
			return
		}
		if !ok || c.ID != id || !c.CreatedAt.Equal(created) {
			t.Fatalf("cursor round trip of %d %q gave %+v %v", us, id, c, ok)
		}
	})
}

// FuzzEnvelopeOf feeds arbitrary writes to the recogniser of net/http's own
// error answers: it never panics, leaves alone any write with a handler's
// X-Request-Id or without a whole status line and header block, and what
// it rewrites is one well-formed answer in the error envelope with the
// same status.
func FuzzEnvelopeOf(f *testing.F) {
	for _, s := range []string{
		"HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n\r\n400 Bad Request",
		"HTTP/1.1 431 Request Header Fields Too Large\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n\r\n431 Request Header Fields Too Large",
		"HTTP/1.1 505 HTTP Version Not Supported: unsupported protocol version\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n\r\n505 HTTP Version Not Supported: unsupported protocol version",
		"HTTP/1.1 417 Expectation Failed\r\nConnection: close\r\nDate: Thu, 03 Dec 2026 10:00:02 GMT\r\nContent-Length: 0\r\n\r\n",
		"HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\nX-Request-Id: 1\r\n\r\n{}",
		"HTTP/1.1 200 OK\r\n\r\n", "HTTP/1.1 400 X", `{"error":{}}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, p []byte) {
		out, ok := envelopeOf(p)
		if !ok {
			return
		}
		if bytes.Contains(p, []byte("\r\nX-Request-Id:")) && bytes.Index(p, []byte("\r\nX-Request-Id:")) < bytes.Index(p, []byte("\r\n\r\n")) {
			t.Fatalf("rewrote a handler's answer %q", p)
		}
		res, err := http.ReadResponse(bufio.NewReader(bytes.NewReader(out)), nil)
		if err != nil {
			t.Fatalf("rewrote %q into %q: %v", p, out, err)
		}
		body, err := io.ReadAll(res.Body)
		var env struct {
			Error struct{ RequestID, Code, Message string }
		}
		if err != nil || json.Unmarshal(body, &env) != nil || env.Error.RequestID != res.Header.Get("X-Request-Id") ||
			env.Error.Code != strconv.Itoa(res.StatusCode)+"-01" || env.Error.Message == "" || string(p[9:12]) != strconv.Itoa(res.StatusCode) {
			t.Fatalf("rewrote %q into %q", p, out)
		}
	})
}
