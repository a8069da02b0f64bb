package httpapi_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"

	"github.com/switchback/switchback"
)

// oaDocPath is the API's OpenAPI document, relative to this package.
const oaDocPath = "../../api/openapi.yaml"

// oaLoad loads and validates the document.
func oaLoad(t *testing.T) *openapi3.T {
	t.Helper()
	loader := openapi3.NewLoader()
	doc, err := loader.LoadFromFile(oaDocPath)
	if err != nil {
		t.Fatalf("load %s: %v", oaDocPath, err)
	}
	if err := doc.Validate(loader.Context); err != nil {
		t.Fatalf("%s is not a valid OpenAPI document: %v", oaDocPath, err)
	}
	return doc
}

func TestOpenAPIDocumentIsValid(t *testing.T) {
	doc := oaLoad(t)
	if !strings.HasPrefix(doc.OpenAPI, "3.0.") {
		t.Errorf("openapi = %q, want 3.0.x", doc.OpenAPI)
	}
	// The vendor's security schemes are kept as they are.
	for name, header := range map[string]string{"API-ID": "asapp-api-id", "API-Secret": "asapp-api-secret"} {
		s := doc.Components.SecuritySchemes[name]
		if s == nil || s.Value.Type != "apiKey" || s.Value.In != "header" || s.Value.Name != header {
			t.Errorf("security scheme %s is not the apiKey header %s", name, header)
		}
	}
	// Every error response of every operation is the error envelope with
	// the three fields required, and says which request it was.
	for path, item := range doc.Paths.Map() {
		for method, op := range item.Operations() {
			for status, ref := range op.Responses.Map() {
				r := ref.Value
				if r.Headers["X-Request-Id"] == nil {
					t.Errorf("%s %s %s: no X-Request-Id header", method, path, status)
				}
				if (status == "429" || status == "503") && r.Headers["Retry-After"] == nil {
					t.Errorf("%s %s %s: no Retry-After header", method, path, status)
				}
				if status == "405" && r.Headers["Allow"] == nil {
					t.Errorf("%s %s %s: no Allow header", method, path, status)
				}
				if status[0] == '2' || (path == "/metrics" && status == "500") {
					continue
				}
				mt := r.Content.Get("application/json")
				if mt == nil {
					t.Errorf("%s %s %s: no application/json error body", method, path, status)
					continue
				}
				if err := mt.Schema.Value.VisitJSON(map[string]any{"error": map[string]any{"code": status + "-01"}}); err == nil {
					t.Errorf("%s %s %s: an error without requestId and message passes", method, path, status)
				}
			}
		}
	}
}

// TestOpenAPIDocumentsEveryRoute compares the patterns addRoutes registers
// with the document's paths and operations, both ways.
func TestOpenAPIDocumentsEveryRoute(t *testing.T) {
	doc := oaLoad(t)
	routes := oaRegisteredRoutes(t, "routes.go")
	if len(routes) < 8 {
		t.Fatalf("found only %d routes in routes.go: %q", len(routes), routes)
	}
	norm := regexp.MustCompile(`\{[^}]*\}`)
	docPaths := map[string]*openapi3.PathItem{}
	for p, item := range doc.Paths.Map() {
		docPaths[norm.ReplaceAllString(p, "{}")] = item
	}
	served := map[string]bool{} // "METHOD path" with normalised parameters
	for _, pattern := range routes {
		method, path, hasMethod := strings.Cut(pattern, " ")
		if !hasMethod {
			method, path = "", pattern
		}
		path = norm.ReplaceAllString(path, "{}")
		if path == "/" {
			continue // the catch-all 404, described in info.description
		}
		item := docPaths[path]
		if item == nil {
			t.Errorf("route %q: path not in the document", pattern)
			continue
		}
		if method != "" {
			served[method+" "+path] = true
			op := item.GetOperation(method)
			if op == nil {
				t.Errorf("route %q: %s not in the document", pattern, method)
			}
			continue
		}
		// A pattern without a method answers every method the document
		// does not list with 405; TestOpenAPIUndocumentedMethodsAre405
		// checks that against the server.
	}
	for path, item := range docPaths {
		for method := range item.Operations() {
			if !served[method+" "+path] {
				t.Errorf("the document has %s %s, which routes.go does not serve", method, path)
			}
		}
	}
}

// TestOpenAPIUndocumentedMethodsAre405 sends every method the document does
// not list for a path: each is 405-01 in the envelope the document's
// MethodNotAllowed response describes, before any authentication, with
// Allow naming exactly the methods the document lists.
func TestOpenAPIUndocumentedMethodsAre405(t *testing.T) {
	doc := oaLoad(t)
	h := newHarness(t, harnessOptions{})
	schema := doc.Components.Responses["MethodNotAllowed"].Value.Content.Get("application/json").Schema.Value
	params := regexp.MustCompile(`\{[^}]*\}`)
	for path, item := range doc.Paths.Map() {
		var documented []string
		for m := range item.Operations() {
			documented = append(documented, m)
		}
		slices.Sort(documented)
		for _, m := range []string{"GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE"} {
			if slices.Contains(documented, m) {
				continue
			}
			r := h.do(m, params.ReplaceAllString(path, "x"), "", "asapp-api-id", "", "asapp-api-secret", "")
			if r.Status != 405 {
				t.Errorf("%s %s: %d, want 405", m, path, r.Status)
				continue
			}
			if code, _ := r.errorOf(t); code != "405-01" {
				t.Errorf("%s %s: code %s", m, path, code)
			}
			var body any
			json.Unmarshal(r.Body, &body)
			if err := schema.VisitJSON(body); err != nil {
				t.Errorf("%s %s: the body does not match MethodNotAllowed: %v", m, path, err)
			}
			allow := strings.Split(r.Header.Get("Allow"), ", ")
			slices.Sort(allow)
			if !slices.Equal(allow, documented) {
				t.Errorf("%s %s: Allow %q, the document lists %v", m, path, r.Header.Get("Allow"), documented)
			}
		}
	}
}

// oaRegisteredRoutes returns the patterns of the mux.Handle calls in file,
// evaluating string constants and concatenations.
func oaRegisteredRoutes(t *testing.T, file string) []string {
	t.Helper()
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, file, nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	consts := map[string]string{}
	var eval func(e ast.Expr) (string, bool)
	eval = func(e ast.Expr) (string, bool) {
		switch e := e.(type) {
		case *ast.BasicLit:
			if e.Kind == token.STRING {
				s, err := strconv.Unquote(e.Value)
				return s, err == nil
			}
		case *ast.Ident:
			s, ok := consts[e.Name]
			return s, ok
		case *ast.BinaryExpr:
			if e.Op == token.ADD {
				a, ok1 := eval(e.X)
				b, ok2 := eval(e.Y)
				return a + b, ok1 && ok2
			}
		case *ast.ParenExpr:
			return eval(e.X)
		}
		return "", false
	}
	var out []string
	ast.Inspect(f, func(n ast.Node) bool {
		switch n := n.(type) {
		case *ast.GenDecl:
			if n.Tok == token.CONST {
				for _, spec := range n.Specs {
					vs := spec.(*ast.ValueSpec)
					for i, name := range vs.Names {
						if i < len(vs.Values) {
							if s, ok := eval(vs.Values[i]); ok {
								consts[name.Name] = s
							}
						}
					}
				}
			}
		case *ast.CallExpr:
			sel, ok := n.Fun.(*ast.SelectorExpr)
			if !ok || (sel.Sel.Name != "Handle" && sel.Sel.Name != "HandleFunc") || len(n.Args) == 0 {
				return true
			}
			s, ok := eval(n.Args[0])
			if !ok {
				t.Errorf("%s: cannot evaluate the pattern of this Handle call", fset.Position(n.Pos()))
				return true
			}
			out = append(out, s)
		}
		return true
	})
	return out
}

// oaCheck drives a harness and validates every request and response
// against the OpenAPI document.
type oaCheck struct {
	t      *testing.T
	h      *harness
	doc    *openapi3.T
	router routers.Router
}

func newOACheck(t *testing.T, h *harness) *oaCheck {
	t.Helper()
	doc := oaLoad(t)
	doc.Servers = openapi3.Servers{{URL: h.URL}}
	router, err := gorillamux.NewRouter(doc)
	if err != nil {
		t.Fatal(err)
	}
	return &oaCheck{t: t, h: h, doc: doc, router: router}
}

// oaCall is one exchange: what is sent, whether the document accepts the
// request, and the status and (for errors) code the server must answer.
type oaCall struct {
	method, path, body string
	headers            []string // pairs, as for harness.do
	// badRequest says the document itself refuses the request (a request
	// the server must refuse too).
	badRequest bool
	status     int
	code       string // the error code, for an error status
}

// oaHeaderAuth is the security check of request validation: an apiKey
// header must be present (whether it is right is the server's business).
func oaHeaderAuth(_ context.Context, in *openapi3filter.AuthenticationInput) error {
	s := in.SecurityScheme
	if s.Type != "apiKey" || s.In != "header" {
		return fmt.Errorf("unexpected security scheme %s", in.SecuritySchemeName)
	}
	if in.RequestValidationInput.Request.Header.Get(s.Name) == "" {
		return fmt.Errorf("header %s is missing", s.Name)
	}
	return nil
}

// do sends c through the harness, checks its status and error code, and
// validates the request and the response against the document.
func (a *oaCheck) do(c oaCall) *response {
	t := a.t
	t.Helper()
	name := c.method + " " + c.path

	// The request as harness.do sends it.
	var body io.Reader
	if c.body != "" {
		body = strings.NewReader(c.body)
	}
	req, err := http.NewRequest(c.method, a.h.URL+c.path, body)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("asapp-api-id", a.h.KeyID)
	req.Header.Set("asapp-api-secret", a.h.Secret)
	req.Header.Set("Content-Type", "application/json")
	for i := 0; i+1 < len(c.headers); i += 2 {
		if c.headers[i+1] == "" {
			req.Header.Del(c.headers[i])
		} else {
			req.Header.Set(c.headers[i], c.headers[i+1])
		}
	}

	route, params, err := a.router.FindRoute(req)
	if err != nil {
		t.Fatalf("%s: no operation of the document: %v", name, err)
	}
	reqIn := &openapi3filter.RequestValidationInput{
		Request: req, PathParams: params, Route: route,
		Options: &openapi3filter.Options{AuthenticationFunc: oaHeaderAuth, MultiError: true, SkipSettingDefaults: true},
	}
	err = openapi3filter.ValidateRequest(context.Background(), reqIn)
	switch {
	case c.badRequest && err == nil:
		t.Errorf("%s: the document accepts this request, which the server must refuse: %s", name, c.body)
	case !c.badRequest && err != nil:
		t.Errorf("%s: request does not match the document: %v", name, err)
	}

	res := a.h.do(c.method, c.path, c.body, c.headers...)
	if res.Status != c.status {
		t.Fatalf("%s: status %d, want %d; body %s", name, res.Status, c.status, res.Body)
	}
	if c.code != "" {
		if code, msg := res.errorOf(t); code != c.code {
			t.Errorf("%s: error code %s (%s), want %s", name, code, msg, c.code)
		}
	}

	// The status must be documented for the operation itself, not only
	// caught by a default response.
	if route.Operation.Responses.Status(res.Status) == nil {
		t.Errorf("%s: status %d is not documented for %s %s", name, res.Status, route.Method, route.Path)
	}
	resIn := &openapi3filter.ResponseValidationInput{
		RequestValidationInput: reqIn, Status: res.Status, Header: res.Header,
		Options: &openapi3filter.Options{IncludeResponseStatus: true, MultiError: true},
	}
	resIn.SetBodyBytes(res.Body)
	if err := openapi3filter.ValidateResponse(context.Background(), resIn); err != nil {
		t.Errorf("%s: response %d does not match the document: %v\nheaders %v\nbody %s", name, res.Status, err, res.Header, res.Body)
	}
	// Every field of a JSON response is documented.
	if ref := route.Operation.Responses.Status(res.Status); ref != nil && res.JSON != nil {
		if mt := ref.Value.Content.Get(res.Header.Get("Content-Type")); mt != nil {
			for _, p := range oaUndocumentedFields(mt.Schema.Value, res.JSON, "") {
				t.Errorf("%s: response field %s is not in the document", name, p)
			}
		}
	}
	return res
}

// oaUndocumentedFields lists the object members of v that schema s does not
// describe (through properties, allOf/oneOf/anyOf or additionalProperties).
func oaUndocumentedFields(s *openapi3.Schema, v any, at string) []string {
	var out []string
	switch v := v.(type) {
	case map[string]any:
		props := map[string][]*openapi3.Schema{}
		open := false
		var collect func(s *openapi3.Schema)
		collect = func(s *openapi3.Schema) {
			for k, p := range s.Properties {
				props[k] = append(props[k], p.Value)
			}
			if s.AdditionalProperties.Schema != nil || (s.AdditionalProperties.Has != nil && *s.AdditionalProperties.Has) {
				open = true
			}
			for _, subs := range []openapi3.SchemaRefs{s.AllOf, s.OneOf, s.AnyOf} {
				for _, sub := range subs {
					collect(sub.Value)
				}
			}
		}
		collect(s)
		for k, x := range v {
			ps, ok := props[k]
			if !ok {
				if !open {
					out = append(out, at+"."+k)
				}
				continue
			}
			// The member is described by every schema naming it at once.
			merged := &openapi3.Schema{}
			for _, p := range ps {
				merged.AllOf = append(merged.AllOf, openapi3.NewSchemaRef("", p))
			}
			out = append(out, oaUndocumentedFields(merged, x, at+"."+k)...)
		}
	case []any:
		items := &openapi3.Schema{}
		var collect func(s *openapi3.Schema)
		collect = func(s *openapi3.Schema) {
			if s.Items != nil {
				items.AllOf = append(items.AllOf, s.Items)
			}
			for _, sub := range s.AllOf {
				collect(sub.Value)
			}
		}
		collect(s)
		for i, x := range v {
			out = append(out, oaUndocumentedFields(items, x, fmt.Sprintf("%s[%d]", at, i))...)
		}
	}
	return slices.Compact(slices.Sorted(slices.Values(out)))
}

const oaBase = "/generativeagent/v1/call-transfers"

// oaReturnPassword is a SIP return password that must never be answered.
const oaReturnPassword = "pa55-word-never-returned"

func TestOpenAPIConformance(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	a := newOACheck(t, h)
	ctx := context.Background()

	// Creates of every kind.
	pn := a.do(oaCall{method: "POST", path: oaBase, status: 200, body: `{
		"id": "pn-1", "externalConversationId": "conv-a", "type": "PHONE_NUMBER",
		"phoneNumber": {"country": "US"},
		"inputContext": {"taskName": "call_routing", "inputVariables": {"accountNumber": "3434", "name": "John Doe"}}}`})
	if pn.field("status") != "ACTIVE" || pn.field("phoneNumber.transferNumber") == nil {
		t.Errorf("create PHONE_NUMBER: %s", pn.Body)
	}
	exp := pn.field("expiresAt")
	for _, f := range []string{"expireAt", "phoneNumber.expiresAt", "phoneNumber.expireAt"} {
		if pn.field(f) != exp {
			t.Errorf("create PHONE_NUMBER: %s = %v, want expiresAt %v", f, pn.field(f), exp)
		}
	}
	sipBare := a.do(oaCall{method: "POST", path: oaBase, status: 200,
		body: `{"id": "sip-1", "externalConversationId": "conv-a", "type": "SIP"}`})
	if sipBare.field("sip.returnTransferType") != "BYE" || sipBare.field("phoneNumber") != nil {
		t.Errorf("create SIP without sip: %s", sipBare.Body)
	}
	sipRefer := a.do(oaCall{method: "POST", path: oaBase, status: 200, body: `{
		"id": "sip-2", "externalConversationId": "conv-b", "type": "SIP",
		"sip": {"returnURI": "sip:user@customer-sbc.example.com;User-to-User=UUI-12345", "returnTransferType": "REFER"},
		"inputContext": {"taskName": "call_routing"}}`})
	if u := sipRefer.field("sip.returnURI"); u != "sip:user@customer-sbc.example.com;User-to-User=UUI-12345" || sipRefer.field("sip.returnUri") != u {
		t.Errorf("create SIP REFER: %s", sipRefer.Body)
	}
	a.do(oaCall{method: "POST", path: oaBase, status: 200, body: `{
		"id": "sip-3", "externalConversationId": "conv-b", "type": "SIP",
		"sip": {"returnUri": "sips:pbx.example.com:5061", "returnTransferType": "BYE"}}`})
	sipAuth := a.do(oaCall{method: "POST", path: oaBase, status: 200, body: `{
		"id": "sip-4", "externalConversationId": "conv-c", "type": "SIP",
		"sip": {"returnURI": "sip:back@pbx.example.com", "returnTransferType": "INVITE",
			"returnInviteAuthentication": {"username": "sip_user", "password": "` + oaReturnPassword + `"}}}`})
	if sipAuth.field("sip.returnInviteAuthentication.username") != "sip_user" {
		t.Errorf("create SIP INVITE: username not returned: %s", sipAuth.Body)
	}
	oaNoPassword(t, sipAuth)

	// A retry of the same request answers the same transfer.
	retry := a.do(oaCall{method: "POST", path: oaBase, status: 200, body: `{
		"id": "pn-1", "externalConversationId": "conv-a", "type": "PHONE_NUMBER",
		"phoneNumber": {"country": "us"},
		"inputContext": {"taskName": "call_routing", "inputVariables": {"name": "John Doe", "accountNumber": "3434"}}}`})
	if retry.field("phoneNumber.transferNumber") != pn.field("phoneNumber.transferNumber") {
		t.Errorf("retry answered %s, first create %s", retry.Body, pn.Body)
	}

	// GET of each.
	for _, id := range []string{"pn-1", "sip-1", "sip-2", "sip-3", "sip-4"} {
		r := a.do(oaCall{method: "GET", path: oaBase + "/" + id, status: 200})
		if r.field("id") != id || r.field("status") != "ACTIVE" {
			t.Errorf("GET %s: %s", id, r.Body)
		}
		if r.Header.Get("Switchback-Wait-Result") != "" {
			t.Errorf("GET %s without waitForStatus has Switchback-Wait-Result", id)
		}
		oaNoPassword(t, r)
	}

	// Move transfers on: a call arrives and the agent completes.
	out := &switchback.OutputContext{TransferType: switchback.TransferSystem, CurrentTaskName: "AccountInquiry",
		ReferenceVariables: map[string]string{"account_balance": "1250.00"},
		TransferVariables:  map[string]string{"next_action": "schedule_callback"}}
	for _, id := range []string{"sip-2", "sip-4"} {
		if _, err := h.Svc.Match(ctx, "acme", id); err != nil {
			t.Fatal(err)
		}
		if _, err := h.Svc.Complete(ctx, "acme", id, out); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := h.Svc.MatchNumber(ctx, pn.field("phoneNumber.transferNumber").(string)); err != nil {
		t.Fatal(err)
	}
	ongoing := a.do(oaCall{method: "GET", path: oaBase + "/pn-1", status: 200})
	if ongoing.field("status") != "ONGOING" || ongoing.field("callReceivedAt") == nil || ongoing.field("completedAt") != nil {
		t.Errorf("GET after match: %s", ongoing.Body)
	}
	done := a.do(oaCall{method: "GET", path: oaBase + "/sip-2", status: 200})
	if done.field("status") != "COMPLETED" || done.field("completedAt") == nil || done.field("outputContext.transferType") != "SYSTEM" {
		t.Errorf("GET after completion: %s", done.Body)
	}
	oaNoPassword(t, a.do(oaCall{method: "GET", path: oaBase + "/sip-4", status: 200}))

	// How the hand-back went, once known.
	if err := h.Svc.SetReturnResult(ctx, "acme", "sip-2", &switchback.ReturnResult{Method: switchback.ReturnREFER,
		SIPStatus: 202, NotifyStatus: 200}); err != nil {
		t.Fatal(err)
	}
	if err := h.Svc.SetReturnResult(ctx, "acme", "sip-4", &switchback.ReturnResult{Method: switchback.ReturnINVITE,
		SIPStatus: 486, Fallback: true, Reason: "the return target was busy"}); err != nil {
		t.Fatal(err)
	}
	handedBack := a.do(oaCall{method: "GET", path: oaBase + "/sip-2", status: 200})
	if handedBack.field("returnResult.method") != "REFER" || handedBack.field("returnResult.fallback") != false ||
		handedBack.field("returnResult.notifyStatus") != 200.0 {
		t.Errorf("GET after the hand-back: %s", handedBack.Body)
	}
	oaNoPassword(t, a.do(oaCall{method: "GET", path: oaBase + "/sip-4", status: 200}))

	// Conversations: one with a record, one of legs alone.
	if err := h.Svc.RecordConversation(ctx, &switchback.ConversationRecord{TenantID: "acme", ExternalID: "conv-b",
		State: json.RawMessage(`{"step":"goodbye","collected":["accountNumber"]}`),
		Events: []switchback.ConversationEvent{
			{TransferID: "sip-2", Type: switchback.EventCallStarted, Data: map[string]string{"from": "sip:caller@example.com", "transport": "udp"}},
			{TransferID: "sip-2", Type: switchback.EventDigit, Data: map[string]string{"digit": "5", "leg": "caller"}},
			{TransferID: "sip-2", Type: switchback.EventCallEnded},
		}}); err != nil {
		t.Fatal(err)
	}
	convRecord := a.do(oaCall{method: "GET", path: "/generativeagent/v1/conversations/conv-b", status: 200})
	if len(convRecord.JSON["legs"].([]any)) != 2 || len(convRecord.JSON["events"].([]any)) != 3 || convRecord.field("state.step") != "goodbye" {
		t.Errorf("GET conversation conv-b: %s", convRecord.Body)
	}
	oaNoPassword(t, convRecord)
	convLegs := a.do(oaCall{method: "GET", path: "/generativeagent/v1/conversations/conv-c", status: 200})
	if len(convLegs.JSON["legs"].([]any)) != 1 || convLegs.JSON["state"] != nil {
		t.Errorf("GET conversation conv-c: %s", convLegs.Body)
	}
	oaNoPassword(t, convLegs)

	// Listings.
	all := a.do(oaCall{method: "GET", path: oaBase, status: 200})
	if got := oaListIDs(all); !slices.Equal(got, []string{"sip-4", "sip-3", "sip-2", "sip-1", "pn-1"}) {
		t.Errorf("list: %v", got)
	}
	if all.field("nextPageToken") != nil {
		t.Errorf("list of 5 with page size 20 has a nextPageToken: %s", all.Body)
	}
	oaNoPassword(t, all)
	convB := a.do(oaCall{method: "GET", path: oaBase + "?externalConversationId=conv-b", status: 200})
	if got := oaListIDs(convB); len(got) != 2 || !slices.Contains(got, "sip-2") || !slices.Contains(got, "sip-3") {
		t.Errorf("list of conv-b: %v", got)
	}
	var paged []string
	path := oaBase + "?pageSize=2"
	for pages := 0; ; pages++ {
		if pages > 5 {
			t.Fatal("paging does not end")
		}
		r := a.do(oaCall{method: "GET", path: path, status: 200})
		paged = append(paged, oaListIDs(r)...)
		next, _ := r.field("nextPageToken").(string)
		if next == "" {
			break
		}
		path = oaBase + "?pageSize=2&pageToken=" + next
	}
	if slices.Sort(paged); !slices.Equal(paged, []string{"pn-1", "sip-1", "sip-2", "sip-3", "sip-4"}) {
		t.Errorf("pages held %v", paged)
	}
	convPaged := a.do(oaCall{method: "GET", path: oaBase + "?externalConversationId=conv-a&pageSize=1", status: 200})
	if tok, _ := convPaged.field("nextPageToken").(string); tok == "" {
		t.Errorf("a full page has no nextPageToken: %s", convPaged.Body)
	} else {
		a.do(oaCall{method: "GET", path: oaBase + "?externalConversationId=conv-a&pageSize=1&pageToken=" + tok, status: 200})
	}

	// Waits.
	reached := a.do(oaCall{method: "GET", path: oaBase + "/sip-2?waitForStatus=COMPLETED,EXPIRED&timeout=5s", status: 200})
	if reached.Header.Get("Switchback-Wait-Result") != "reached" {
		t.Errorf("wait for a status the transfer has: %v", reached.Header)
	}
	// A wait that is woken by a move.
	a.do(oaCall{method: "POST", path: oaBase, status: 200, body: `{"id": "sip-5", "externalConversationId": "conv-d", "type": "SIP"}`})
	matched := make(chan error, 1)
	go func() {
		time.Sleep(100 * time.Millisecond)
		_, err := h.Svc.Match(ctx, "acme", "sip-5")
		matched <- err
	}()
	woken := a.do(oaCall{method: "GET", path: oaBase + "/sip-5?waitForStatus=ONGOING&timeout=10s", status: 200})
	if err := <-matched; err != nil {
		t.Fatal(err)
	}
	if woken.Header.Get("Switchback-Wait-Result") != "reached" || woken.field("status") != "ONGOING" {
		t.Errorf("wait woken by a match: %v %s", woken.Header, woken.Body)
	}
	timedOut := a.do(oaCall{method: "GET", path: oaBase + "/sip-1?waitForStatus=COMPLETED&timeout=100ms", status: 200})
	if timedOut.Header.Get("Switchback-Wait-Result") != "timeout" || timedOut.field("status") != "ACTIVE" {
		t.Errorf("wait that times out: %v %s", timedOut.Header, timedOut.Body)
	}
	a.do(oaCall{method: "GET", path: oaBase + "/sip-1?waitForStatus=ONGOING&timeout=0", status: 200})

	// Operations endpoints.
	a.do(oaCall{method: "GET", path: "/healthz", status: 200, headers: []string{"asapp-api-id", "", "asapp-api-secret", ""}})
	a.do(oaCall{method: "GET", path: "/readyz", status: 200, headers: []string{"asapp-api-id", "", "asapp-api-secret", ""}})
	m := a.do(oaCall{method: "GET", path: "/metrics", status: 200, headers: []string{"asapp-api-id", "", "asapp-api-secret", ""}})
	if !strings.Contains(string(m.Body), "switchback_http_requests_total") {
		t.Errorf("metrics: %.300s", m.Body)
	}
}

func TestOpenAPIErrorResponses(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	a := newOACheck(t, h)
	a.do(oaCall{method: "POST", path: oaBase, status: 200,
		body: `{"id": "taken", "externalConversationId": "conv-a", "type": "SIP"}`})
	a.do(oaCall{method: "POST", path: oaBase, status: 200,
		body: `{"id": "pn-1", "externalConversationId": "conv-a", "type": "PHONE_NUMBER", "phoneNumber": {"country": "US"}}`})
	a.do(oaCall{method: "POST", path: oaBase, status: 200,
		body: `{"id": "live-1", "externalConversationId": "conv-live", "type": "SIP"}`})
	if _, err := h.Svc.Match(context.Background(), "acme", "live-1"); err != nil {
		t.Fatal(err)
	}
	const convPath = "/generativeagent/v1/conversations"

	noKey := []string{"asapp-api-id", "", "asapp-api-secret", ""}
	forbiddenID, forbiddenSecret := h.newKey("acme")
	otherID, otherSecret := h.newKey("globex", switchback.ScopeCallTransfers)
	big := `{"id": "big", "externalConversationId": "conv-a", "type": "SIP", "inputContext": {"inputVariables": {`
	for i := range 10 {
		if i > 0 {
			big += ","
		}
		big += fmt.Sprintf(`"v%d": "%s"`, i, strings.Repeat("x", 8<<10))
	}
	big += `}}}`

	for _, c := range []oaCall{
		// 400-01: not a JSON object.
		{method: "POST", path: oaBase, body: `{"id": "x", `, badRequest: true, status: 400, code: "400-01"},
		{method: "POST", path: oaBase, body: `{not json}`, badRequest: true, status: 400, code: "400-01"},
		{method: "POST", path: oaBase, body: `[1, 2]`, badRequest: true, status: 400, code: "400-01"},
		// (kin-openapi's decoder ignores data after the first JSON value,
		// so only the server refuses this one.)
		{method: "POST", path: oaBase, body: `{"id": "a", "externalConversationId": "c", "type": "SIP"} {}`, status: 400, code: "400-01"},
		// 400-02: a field is wrong.
		{method: "POST", path: oaBase, body: `{"id": "bad id!", "externalConversationId": "c", "type": "SIP"}`, badRequest: true, status: 400, code: "400-02"},
		{method: "POST", path: oaBase, body: `{"externalConversationId": "c", "type": "SIP"}`, badRequest: true, status: 400, code: "400-02"},
		{method: "POST", path: oaBase, body: `{"id": "a", "externalConversationId": "c", "type": "FAX"}`, badRequest: true, status: 400, code: "400-02"},
		{method: "POST", path: oaBase, body: `{"id": "a", "externalConversationId": "c", "type": "SIP", "color": "red"}`, badRequest: true, status: 400, code: "400-02"},
		{method: "POST", path: oaBase, body: `{"id": "a", "externalConversationId": "c", "type": "SIP", "sip": {"returnURI": "http://x"}}`, badRequest: true, status: 400, code: "400-02"},
		{method: "POST", path: oaBase, body: `{"id": "a", "externalConversationId": "c", "type": "SIP", "sip": {"returnTransferType": "PIGEON"}}`, badRequest: true, status: 400, code: "400-02"},
		{method: "POST", path: oaBase, body: `{"id": "a", "externalConversationId": "c", "type": "SIP", "sip": {"returnInviteAuthentication": {"password": "p"}}}`, badRequest: true, status: 400, code: "400-02"},
		{method: "POST", path: oaBase, body: `{"id": "a", "externalConversationId": "c", "type": "SIP", "phoneNumber": {"country": "US"}}`, badRequest: true, status: 400, code: "400-02"},
		{method: "POST", path: oaBase, body: `{"id": "a", "externalConversationId": "c", "type": "PHONE_NUMBER"}`, badRequest: true, status: 400, code: "400-02"},
		{method: "POST", path: oaBase, body: `{"id": "a", "externalConversationId": "c", "type": "PHONE_NUMBER", "phoneNumber": {"country": "USA"}}`, badRequest: true, status: 400, code: "400-02"},
		{method: "POST", path: oaBase, body: `{"id": "a", "externalConversationId": "c", "type": "SIP", "inputContext": {"taskName": 7}}`, badRequest: true, status: 400, code: "400-02"},
		{method: "GET", path: oaBase + "?pageSize=0", badRequest: true, status: 400, code: "400-02"},
		{method: "GET", path: oaBase + "?pageSize=101", badRequest: true, status: 400, code: "400-02"},
		{method: "GET", path: oaBase + "?pageToken=not-a-token", status: 400, code: "400-02"},
		{method: "GET", path: oaBase + "/taken?waitForStatus=DONE", badRequest: true, status: 400, code: "400-02"},
		{method: "GET", path: oaBase + "/taken?waitForStatus=COMPLETED&timeout=forever", badRequest: true, status: 400, code: "400-02"},
		{method: "GET", path: oaBase + "/taken?waitForStatus=COMPLETED&timeout=2h", status: 400, code: "400-02"},
		{method: "GET", path: oaBase + "/taken?timeout=1s", status: 400, code: "400-02"},
		{method: "GET", path: convPath + "/" + strings.Repeat("c", 257), badRequest: true, status: 400, code: "400-02"},
		// 401-01: no credentials, or wrong ones.
		{method: "POST", path: oaBase, body: `{"id": "a", "externalConversationId": "c", "type": "SIP"}`, headers: noKey, badRequest: true, status: 401, code: "401-01"},
		{method: "GET", path: oaBase + "/taken", headers: noKey, badRequest: true, status: 401, code: "401-01"},
		{method: "GET", path: oaBase, headers: []string{"asapp-api-secret", ""}, badRequest: true, status: 401, code: "401-01"},
		{method: "GET", path: oaBase + "/taken", headers: []string{"asapp-api-secret", "wrong"}, status: 401, code: "401-01"},
		{method: "GET", path: oaBase, headers: []string{"asapp-api-id", "no-such-key"}, status: 401, code: "401-01"},
		{method: "GET", path: convPath + "/conv-a", headers: noKey, badRequest: true, status: 401, code: "401-01"},
		// 403-01: a key without the call-transfers scope.
		{method: "GET", path: oaBase + "/taken", headers: []string{"asapp-api-id", forbiddenID, "asapp-api-secret", forbiddenSecret}, status: 403, code: "403-01"},
		{method: "POST", path: oaBase, body: `{"id": "a", "externalConversationId": "c", "type": "SIP"}`, headers: []string{"asapp-api-id", forbiddenID, "asapp-api-secret", forbiddenSecret}, status: 403, code: "403-01"},
		{method: "GET", path: convPath + "/conv-a", headers: []string{"asapp-api-id", forbiddenID, "asapp-api-secret", forbiddenSecret}, status: 403, code: "403-01"},
		// 404-01: unknown, or another tenant's.
		{method: "GET", path: oaBase + "/no-such-transfer", status: 404, code: "404-01"},
		{method: "GET", path: oaBase + "/taken", headers: []string{"asapp-api-id", otherID, "asapp-api-secret", otherSecret}, status: 404, code: "404-01"},
		{method: "GET", path: oaBase + "/taken?waitForStatus=COMPLETED&timeout=1s", headers: []string{"asapp-api-id", otherID, "asapp-api-secret", otherSecret}, status: 404, code: "404-01"},
		{method: "GET", path: convPath + "/no-such-conversation", status: 404, code: "404-01"},
		{method: "GET", path: convPath + "/conv-a", headers: []string{"asapp-api-id", otherID, "asapp-api-secret", otherSecret}, status: 404, code: "404-01"},
		// 409-01: the id with a different request.
		{method: "POST", path: oaBase, body: `{"id": "taken", "externalConversationId": "conv-other", "type": "SIP"}`, status: 409, code: "409-01"},
		{method: "POST", path: oaBase, body: `{"id": "pn-1", "externalConversationId": "conv-a", "type": "PHONE_NUMBER", "phoneNumber": {"country": "CA"}}`, status: 409, code: "409-01"},
		// 409-01: another leg of the conversation has a call in progress.
		{method: "POST", path: oaBase, body: `{"id": "live-2", "externalConversationId": "conv-live", "type": "SIP"}`, status: 409, code: "409-01"},
		// 413-01: a body over the limit (a valid request otherwise).
		{method: "POST", path: oaBase, body: big, status: 413, code: "413-01"},
		// 422-01: no pool for the country.
		{method: "POST", path: oaBase, body: `{"id": "fr-1", "externalConversationId": "c", "type": "PHONE_NUMBER", "phoneNumber": {"country": "FR"}}`, status: 422, code: "422-01"},
		// 503-01: the two US numbers are both leased.
		{method: "POST", path: oaBase, body: `{"id": "pn-2", "externalConversationId": "c", "type": "PHONE_NUMBER", "phoneNumber": {"country": "US"}}`, status: 200},
		{method: "POST", path: oaBase, body: `{"id": "pn-3", "externalConversationId": "c", "type": "PHONE_NUMBER", "phoneNumber": {"country": "US"}}`, status: 503, code: "503-01"},
	} {
		r := a.do(c)
		if c.status == 429 || c.status == 503 {
			if n, err := strconv.Atoi(r.Header.Get("Retry-After")); err != nil || n < 1 {
				t.Errorf("%s %s: Retry-After %q", c.method, c.path, r.Header.Get("Retry-After"))
			}
		}
	}

	// Another tenant's listing does not show acme's transfers.
	other := a.do(oaCall{method: "GET", path: oaBase, headers: []string{"asapp-api-id", otherID, "asapp-api-secret", otherSecret}, status: 200})
	if got := oaListIDs(other); len(got) != 0 {
		t.Errorf("globex lists %v", got)
	}
}

func TestOpenAPIRateLimit(t *testing.T) {
	h := newHarness(t, harnessOptions{RequestsPerSecond: 1, Burst: 1})
	a := newOACheck(t, h)
	a.do(oaCall{method: "GET", path: oaBase, status: 200})
	r := a.do(oaCall{method: "GET", path: oaBase, status: 429, code: "429-01"})
	if r.Header.Get("Retry-After") != "1" {
		t.Errorf("Retry-After %q, want 1", r.Header.Get("Retry-After"))
	}
	a.do(oaCall{method: "POST", path: oaBase, body: `{"id": "a", "externalConversationId": "c", "type": "SIP"}`, status: 429, code: "429-01"})
}

func TestOpenAPIStoreUnavailable(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	a := newOACheck(t, h)
	a.do(oaCall{method: "POST", path: oaBase, body: `{"id": "a", "externalConversationId": "c", "type": "SIP"}`, status: 200})
	if err := h.Store.Close(); err != nil {
		t.Fatal(err)
	}
	noKey := []string{"asapp-api-id", "", "asapp-api-secret", ""}
	a.do(oaCall{method: "GET", path: "/readyz", headers: noKey, status: 503, code: "503-02"})
	for _, c := range []oaCall{
		{method: "GET", path: oaBase + "/a", status: 503, code: "503-02"},
		{method: "GET", path: oaBase, status: 503, code: "503-02"},
		{method: "POST", path: oaBase, body: `{"id": "b", "externalConversationId": "c", "type": "SIP"}`, status: 503, code: "503-02"},
	} {
		r := a.do(c)
		if r.Header.Get("Retry-After") == "" {
			t.Errorf("%s %s: 503 without Retry-After", c.method, c.path)
		}
		if _, msg := r.errorOf(t); strings.Contains(msg, "sql") || strings.Contains(msg, "closed") {
			t.Errorf("%s %s: the store's error leaks to the client: %q", c.method, c.path, msg)
		}
	}
}

// oaNoPassword fails the test if the SIP return password is anywhere in r.
func oaNoPassword(t *testing.T, r *response) {
	t.Helper()
	if strings.Contains(string(r.Body), oaReturnPassword) {
		t.Errorf("response carries the return password: %s", r.Body)
	}
	var walk func(v any) error
	walk = func(v any) error {
		switch v := v.(type) {
		case map[string]any:
			for k, x := range v {
				if k == "password" {
					return errors.New("a password field")
				}
				if err := walk(x); err != nil {
					return err
				}
			}
		case []any:
			for _, x := range v {
				if err := walk(x); err != nil {
					return err
				}
			}
		}
		return nil
	}
	if err := walk(r.JSON); err != nil {
		t.Errorf("response has %v: %s", err, r.Body)
	}
}

// oaListIDs returns the ids of a listing, in order.
func oaListIDs(r *response) []string {
	var ids []string
	items, _ := r.field("callTransfers").([]any)
	for _, it := range items {
		if m, ok := it.(map[string]any); ok {
			id, _ := m["id"].(string)
			ids = append(ids, id)
		}
	}
	return ids
}
