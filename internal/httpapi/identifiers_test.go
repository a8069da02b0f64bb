package httpapi_test

import (
	"bufio"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/switchback/switchback/internal/httpapi"
)

// rawResponse is an answer read off a raw TCP connection.
type rawResponse struct {
	Status int
	Header http.Header
	Body   []byte
	JSON   map[string]any
}

// raw sends request, byte for byte, to the server at url and reads one
// response. It lets a test send what net/http's client refuses to (NUL
// bytes, invalid UTF-8 in headers, broken framing).
func raw(t *testing.T, url, request string) *rawResponse {
	t.Helper()
	return rawWith(t, net.Dial, url, request)
}

// rawWith is raw with the connection opened by dial.
func rawWith(t *testing.T, dial func(network, address string) (net.Conn, error), url, request string) *rawResponse {
	t.Helper()
	c, err := dial("tcp", strings.TrimPrefix(url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := c.Write([]byte(request)); err != nil {
		t.Fatal(err)
	}
	res, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("read the answer to %q: %v", request, err)
	}
	defer res.Body.Close()
	out := &rawResponse{Status: res.StatusCode, Header: res.Header}
	out.Body, _ = io.ReadAll(res.Body) // a server closing at the end of the answer is no error here
	json.Unmarshal(out.Body, &out.JSON)
	return out
}

// errorCode returns the code of the error envelope, failing t when the
// answer is not one whose requestId is its X-Request-Id.
func (r *rawResponse) errorCode(t *testing.T) string {
	t.Helper()
	e, ok := r.JSON["error"].(map[string]any)
	if !ok {
		t.Fatalf("status %d body %q: not an error envelope", r.Status, r.Body)
	}
	if id, _ := e["requestId"].(string); id == "" || id != r.Header.Get("X-Request-Id") {
		t.Fatalf("requestId %q does not match X-Request-Id %q", id, r.Header.Get("X-Request-Id"))
	}
	if m, _ := e["message"].(string); m == "" {
		t.Fatalf("error without a message: %s", r.Body)
	}
	c, _ := e["code"].(string)
	return c
}

// forEachStore runs f on a harness over SQLite and one over PostgreSQL,
// each logging into its own buffer.
func forEachStore(t *testing.T, o harnessOptions, f func(t *testing.T, h *harness, logs *syncBuffer)) {
	for _, pg := range []bool{false, true} {
		name := "sqlite"
		if pg {
			name = "postgres"
		}
		t.Run(name, func(t *testing.T) {
			logs := &syncBuffer{}
			o := o
			o.Postgres = pg
			o.Log = slog.New(slog.NewJSONHandler(logs, nil))
			f(t, newHarness(t, o), logs)
		})
	}
}

// TestIdentifiersAreCheckedBeforeTheStore sends identifiers no transfer,
// conversation or key can have (invalid UTF-8, NUL, overlong encodings,
// control characters) in every place the API reads one. Both stores answer
// alike, from the validation and not from the store: 401 for a key id, 404
// for a transfer id, 400 naming the field for a conversation id or a query
// parameter, and nothing is logged as an error.
func TestIdentifiersAreCheckedBeforeTheStore(t *testing.T) {
	forEachStore(t, harnessOptions{}, func(t *testing.T, h *harness, logs *syncBuffer) {
		auth := "asapp-api-id: " + h.KeyID + "\r\nasapp-api-secret: " + h.Secret + "\r\n"
		get := func(target, headers string) string {
			return "GET " + target + " HTTP/1.1\r\nHost: x\r\n" + headers + "Connection: close\r\n\r\n"
		}
		cases := []struct {
			name, request string
			status        int
			code, msgHas  string
		}{
			{"transfer id with NUL", get(transfersPath+"/a%00b", auth), 404, "404-01", ""},
			{"transfer id not UTF-8", get(transfersPath+"/%ff", auth), 404, "404-01", ""},
			{"transfer id overlong NUL", get(transfersPath+"/%c0%80", auth), 404, "404-01", ""},
			{"transfer id with a slash", get(transfersPath+"/a%2fb", auth), 404, "404-01", ""},
			{"transfer id too long", get(transfersPath+"/"+strings.Repeat("a", 129), auth), 404, "404-01", ""},
			{"waiting on a transfer id not UTF-8", get(transfersPath+"/%ff?waitForStatus=COMPLETED&timeout=0s", auth), 404, "404-01", ""},
			{"key id not UTF-8", get(transfersPath+"/x", "asapp-api-id: \xff\r\nasapp-api-secret: s\r\n"), 401, "401-01", ""},
			{"key id overlong", get(transfersPath+"/x", "asapp-api-id: \xc0\x80\r\nasapp-api-secret: s\r\n"), 401, "401-01", ""},
			{"key id too long", get(transfersPath+"/x", "asapp-api-id: "+strings.Repeat("k", 200)+"\r\nasapp-api-secret: s\r\n"), 401, "401-01", ""},
			{"secret not UTF-8", get(transfersPath+"/x", "asapp-api-id: "+h.KeyID+"\r\nasapp-api-secret: \xff\r\n"), 401, "401-01", ""},
			{"conversation id with NUL", get(conversationsPath+"/a%00b", auth), 400, "400-02", "externalConversationId"},
			{"conversation id not UTF-8", get(conversationsPath+"/%ff", auth), 400, "400-02", "externalConversationId: is not valid UTF-8"},
			{"conversation id overlong NUL", get(conversationsPath+"/%c0%80", auth), 400, "400-02", "externalConversationId"},
			{"listing by a conversation id with NUL", get(transfersPath+"?externalConversationId=a%00b", auth), 400, "400-02", "externalConversationId"},
			{"listing by a conversation id not UTF-8", get(transfersPath+"?externalConversationId=%ff", auth), 400, "400-02", "externalConversationId"},
			{"listing by a conversation id too long", get(transfersPath+"?externalConversationId="+strings.Repeat("c", 257), auth), 400, "400-02", "externalConversationId"},
			{"page token far in the future", get(transfersPath+"?pageToken="+cursor("9223372036854775807", "x"), auth), 400, "400-02", "pageToken"},
			{"page token far in the past", get(transfersPath+"?pageToken="+cursor("-9223372036854775808", "x"), auth), 400, "400-02", "pageToken"},
		}
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				r := raw(t, h.URL, tc.request)
				if r.Status != tc.status {
					t.Fatalf("status %d, want %d: %s", r.Status, tc.status, r.Body)
				}
				if code := r.errorCode(t); code != tc.code {
					t.Fatalf("code %s, want %s: %s", code, tc.code, r.Body)
				}
				if !strings.Contains(string(r.Body), tc.msgHas) {
					t.Fatalf("message lacks %q: %s", tc.msgHas, r.Body)
				}
			})
		}

		// Create bodies whose strings a store cannot keep: PostgreSQL's
		// text refuses NUL, in a column or in JSON.
		for _, body := range []string{
			`{"id":"n1","externalConversationId":"c\u0000","type":"SIP"}`,
			`{"id":"n2","externalConversationId":"c","type":"SIP","inputContext":{"taskName":"a\u0000"}}`,
			`{"id":"n3","externalConversationId":"c","type":"SIP","inputContext":{"inputVariables":{"k":"v\u0000"}}}`,
			`{"id":"n4","externalConversationId":"c","type":"SIP","inputContext":{"inputVariables":{"k\u0000":"v"}}}`,
			`{"id":"n5","externalConversationId":"c","type":"SIP","sip":{"returnURI":"sip:a@b","returnTransferType":"INVITE","returnInviteAuthentication":{"username":"u\u0000","password":"p"}}}`,
			`{"id":"n6","externalConversationId":"c","type":"SIP","sip":{"returnURI":"sip:a@b","returnTransferType":"INVITE","returnInviteAuthentication":{"username":"u","password":"p\u0000"}}}`,
		} {
			r := h.do("POST", transfersPath, body)
			if code, _ := r.errorOf(t); r.Status != 400 || code != "400-02" {
				t.Errorf("create %s: %d %s, want 400-02", body, r.Status, r.Body)
			}
		}
		if out := logs.String(); strings.Contains(out, `"level":"ERROR"`) {
			t.Fatalf("hostile identifiers were logged as errors:\n%s", out)
		}
	})
}

// cursor is a page token holding microseconds us and id, built the way the
// API builds its own.
func cursor(us, id string) string {
	return base64.RawURLEncoding.EncodeToString([]byte(fmt.Sprintf("%s:%s", us, id)))
}

// TestNumericQueryParametersAreRangeChecked sends numbers a sloppy parse
// would wrap around or read loosely: every one is 400-02 naming the
// parameter, at once (a wrapped timeout used to answer after 0.3 s).
func TestNumericQueryParametersAreRangeChecked(t *testing.T) {
	h := newHarness(t, harnessOptions{RealClock: true, Change: func(d *httpapi.Deps) { d.MaxWait = time.Second }})
	if r := h.do("POST", transfersPath, sipBody("t-1")); r.Status != 200 {
		t.Fatalf("create: %d %s", r.Status, r.Body)
	}
	wait := transfersPath + "/t-1?waitForStatus=COMPLETED&timeout="
	bad := map[string]string{
		wait + "18446744074":             "timeout",
		wait + "9223372037":              "timeout",
		wait + "99999999999999999999":    "timeout",
		wait + "2562048h":                "timeout",
		wait + "2":                       "timeout",
		wait + "1001ms":                  "timeout",
		wait + "%2B5":                    "timeout",
		wait + "-1":                      "timeout",
		wait + "-0s":                     "timeout",
		wait + ".5s":                     "timeout",
		wait + "5e3":                     "timeout",
		wait + "%205":                    "timeout",
		wait + "5s%20":                   "timeout",
		wait:                             "timeout",
		transfersPath + "?pageSize=0":    "pageSize",
		transfersPath + "?pageSize=101":  "pageSize",
		transfersPath + "?pageSize=-1":   "pageSize",
		transfersPath + "?pageSize=%2B5": "pageSize",
		transfersPath + "?pageSize=1e2":  "pageSize",
		transfersPath + "?pageSize=5.0":  "pageSize",
		transfersPath + "?pageSize=":     "pageSize",
		transfersPath + "?pageSize=0x10": "pageSize",
		transfersPath + "?pageSize=1%20": "pageSize",
		transfersPath + "?pageSize=" + strings.Repeat("9", 30): "pageSize",
	}
	for path, field := range bad {
		start := time.Now()
		r := h.do("GET", path, "")
		if r.Status != 400 {
			t.Errorf("GET %s: %d %s, want 400", path, r.Status, r.Body)
			continue
		}
		if code, msg := r.errorOf(t); code != "400-02" || !strings.HasPrefix(msg, field+":") {
			t.Errorf("GET %s: %s %q, want 400-02 about %s", path, code, msg, field)
		}
		if el := time.Since(start); el > 5*time.Second {
			t.Errorf("GET %s took %v before it was refused", path, el)
		}
	}
	for _, path := range []string{wait + "0", wait + "0s", wait + "1", wait + "0.1s", wait + "100ms", wait + "1s",
		transfersPath + "?pageSize=1", transfersPath + "?pageSize=100", transfersPath + "?pageSize=007"} {
		if r := h.do("GET", path, ""); r.Status != 200 {
			t.Errorf("GET %s: %d %s", path, r.Status, r.Body)
		}
	}
}
