package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/switchback/switchback/internal/config"
)

// The Grafana dashboard shipped in deploy/grafana queries only metrics that
// a running node exports: a metric renamed or dropped fails here, not on
// an operator's screen.
func TestDashboardQueriesExistingMetrics(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join("..", "..", "deploy", "grafana", "switchback.json"))
	if err != nil {
		t.Fatal(err)
	}
	var dash dashboard
	if err := json.Unmarshal(raw, &dash); err != nil {
		t.Fatalf("deploy/grafana/switchback.json: %v", err)
	}
	queried := map[string][]string{} // metric -> the panels that query it
	for _, q := range dash.queries() {
		names, err := promqlMetrics(q.expr)
		if err != nil {
			t.Errorf("panel %q: %v", q.panel, err)
		}
		for _, n := range names {
			queried[n] = append(queried[n], q.panel)
		}
	}
	// What an operator of a fleet needs to see, whatever else it shows.
	for _, want := range []string{"switchback_calls_active", "switchback_calls_terminated_total",
		"switchback_sip_invite_answer_seconds_bucket", "switchback_handbacks_total", "switchback_pool_numbers",
		"switchback_http_request_duration_seconds_bucket", "switchback_http_requests_total", "switchback_store_up",
		"switchback_node_lease_live", "switchback_fleet_nodes", "switchback_calls_taken_over_total"} {
		if queried[want] == nil {
			t.Errorf("the dashboard does not query %s", want)
		}
	}

	// A live node, with a call handed back and an API request made, so
	// that the series that only exist once something happened do.
	g := startNodeGateway(t, func(c *config.Config) { c.Node.ID = "sb-dashboard" })
	g.create(t, "dash-1", "instant")
	if out, err := g.call("--transfer-id", "dash-1"); err != nil {
		t.Fatalf("call: %v\n%s", err, out)
	}
	// The call leaves the runtime's count of ended calls just after its
	// BYE: scrape until it has.
	var missing []string
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		exported := exportedMetrics(g.metrics(t))
		missing = missing[:0]
		for name, panels := range queried {
			if !exported[name] {
				missing = append(missing, name+" (in "+strings.Join(panels, ", ")+")")
			}
		}
		if len(missing) == 0 || time.Now().After(deadline) {
			break
		}
	}
	sort.Strings(missing)
	if len(missing) > 0 {
		t.Errorf("the dashboard queries metrics a node does not export:\n  %s", strings.Join(missing, "\n  "))
	}
}

// dashboard is what the test reads of a Grafana dashboard (the classic
// JSON model): panels, rows' panels, their queries, and the variables'.
type dashboard struct {
	Panels     []panel `json:"panels"`
	Templating struct {
		List []struct {
			Name  string          `json:"name"`
			Type  string          `json:"type"`
			Query json.RawMessage `json:"query"`
		} `json:"list"`
	} `json:"templating"`
}

type panel struct {
	Title   string  `json:"title"`
	Panels  []panel `json:"panels"` // a collapsed row's
	Targets []struct {
		Expr string `json:"expr"`
	} `json:"targets"`
}

type dashboardQuery struct{ panel, expr string }

// labelValues is Grafana's label_values(METRIC, LABEL) of a variable.
var labelValues = regexp.MustCompile(`^\s*label_values\((.*),\s*[A-Za-z_][A-Za-z0-9_]*\s*\)\s*$`)

// queries are every PromQL expression of the dashboard: its panels'
// targets, and its query variables' (label_values reduced to its metric).
func (d dashboard) queries() []dashboardQuery {
	var out []dashboardQuery
	var walk func([]panel)
	walk = func(ps []panel) {
		for _, p := range ps {
			for _, tg := range p.Targets {
				out = append(out, dashboardQuery{p.Title, tg.Expr})
			}
			walk(p.Panels)
		}
	}
	walk(d.Panels)
	for _, v := range d.Templating.List {
		if v.Type != "query" {
			continue
		}
		var q struct {
			Query string `json:"query"`
		}
		if err := json.Unmarshal(v.Query, &q.Query); err != nil {
			json.Unmarshal(v.Query, &q)
		}
		expr := q.Query
		if m := labelValues.FindStringSubmatch(expr); m != nil {
			expr = m[1]
		}
		out = append(out, dashboardQuery{"variable " + v.Name, expr})
	}
	return out
}

// promqlKeywords are PromQL words that are not metric names: binary
// operators' and modifiers', and the aggregations, which may come before
// their grouping rather than their "(".
var promqlKeywords = map[string]bool{"and": true, "or": true, "unless": true, "bool": true, "offset": true,
	"inf": true, "nan": true, "sum": true, "min": true, "max": true, "avg": true, "group": true, "stddev": true,
	"stdvar": true, "count": true, "count_values": true, "bottomk": true, "topk": true, "quantile": true,
	"limitk": true, "limit_ratio": true}

// promqlGrouping are the words followed by a list of labels.
var promqlGrouping = map[string]bool{"by": true, "without": true, "on": true, "ignoring": true,
	"group_left": true, "group_right": true}

// promqlMetrics returns the metric names expr selects, in order, by a
// tokenizer that knows just enough PromQL: it skips strings, label
// matchers {...}, ranges [...], numbers, function and aggregation names
// (an identifier followed by "("), grouping label lists (by (...)) and
// operators' keywords.
func promqlMetrics(expr string) ([]string, error) {
	var out []string
	skipTo := func(i int, open, close byte) (int, error) {
		depth := 0
		for ; i < len(expr); i++ {
			switch expr[i] {
			case '"', '\'', '`':
				q := expr[i]
				for i++; i < len(expr) && expr[i] != q; i++ {
					if expr[i] == '\\' {
						i++
					}
				}
			case open:
				depth++
			case close:
				depth--
				if depth == 0 {
					return i + 1, nil
				}
			}
		}
		return i, &promqlError{expr, "unbalanced " + string(open)}
	}
	isStart := func(c byte) bool { return c == '_' || c == ':' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' }
	isPart := func(c byte) bool { return isStart(c) || c >= '0' && c <= '9' }
	for i := 0; i < len(expr); {
		c := expr[i]
		switch {
		case c == '{':
			j, err := skipTo(i, '{', '}')
			if err != nil {
				return out, err
			}
			i = j
		case c == '[':
			j, err := skipTo(i, '[', ']')
			if err != nil {
				return out, err
			}
			i = j
		case c == '"' || c == '\'' || c == '`':
			j := i + 1
			for j < len(expr) && expr[j] != c {
				if expr[j] == '\\' {
					j++
				}
				j++
			}
			i = j + 1
		case c >= '0' && c <= '9' || c == '.':
			for i < len(expr) && (isPart(expr[i]) || expr[i] == '.') {
				i++
			}
		case c == '$':
			for i++; i < len(expr) && isPart(expr[i]); i++ {
			}
		case isStart(c):
			j := i
			for j < len(expr) && isPart(expr[j]) {
				j++
			}
			word := expr[i:j]
			k := j
			for k < len(expr) && (expr[k] == ' ' || expr[k] == '\t' || expr[k] == '\n') {
				k++
			}
			switch {
			case promqlGrouping[strings.ToLower(word)]:
				if k < len(expr) && expr[k] == '(' {
					next, err := skipTo(k, '(', ')')
					if err != nil {
						return out, err
					}
					j = next
				}
			case k < len(expr) && expr[k] == '(':
				// a function or an aggregation
			case promqlKeywords[strings.ToLower(word)]:
			default:
				out = append(out, word)
			}
			i = j
		default:
			i++
		}
	}
	return out, nil
}

type promqlError struct{ expr, why string }

func (e *promqlError) Error() string { return e.why + " in " + e.expr }

// exportedMetrics are the names of the samples in a /metrics text.
func exportedMetrics(text string) map[string]bool {
	out := map[string]bool{}
	for _, line := range strings.Split(text, "\n") {
		if line == "" || line[0] == '#' {
			continue
		}
		if i := strings.IndexAny(line, "{ "); i > 0 {
			out[line[:i]] = true
		}
	}
	return out
}

func TestPromQLMetrics(t *testing.T) {
	for _, tc := range []struct{ expr string }{
		{`switchback_calls_active`},
		{`sum by (instance) (switchback_calls_active{instance=~"$instance"})`},
		{`histogram_quantile(0.99, sum by (le, route) (rate(switchback_http_request_duration_seconds_bucket{route!="x{y}"}[$__rate_interval])))`},
		{`max by (country) (a_metric{state="leased"}) / on (country) group_left (x) max without (state) (b_metric) > bool 0.5 or c:recorded:rate5m offset 5m`},
		{`sum(increase(switchback_calls_taken_over_total[$__range])) and vector(1)`},
		{`rate(x_total{l="a\"b by (q)"}[1m]) * 1e3`},
	} {
		got, err := promqlMetrics(tc.expr)
		if err != nil {
			t.Errorf("%s: %v", tc.expr, err)
		}
		want := map[string][]string{
			`switchback_calls_active`: {"switchback_calls_active"},
			`sum by (instance) (switchback_calls_active{instance=~"$instance"})`:                                                                                 {"switchback_calls_active"},
			`histogram_quantile(0.99, sum by (le, route) (rate(switchback_http_request_duration_seconds_bucket{route!="x{y}"}[$__rate_interval])))`:              {"switchback_http_request_duration_seconds_bucket"},
			`max by (country) (a_metric{state="leased"}) / on (country) group_left (x) max without (state) (b_metric) > bool 0.5 or c:recorded:rate5m offset 5m`: {"a_metric", "b_metric", "c:recorded:rate5m"},
			`sum(increase(switchback_calls_taken_over_total[$__range])) and vector(1)`:                                                                           {"switchback_calls_taken_over_total"},
			`rate(x_total{l="a\"b by (q)"}[1m]) * 1e3`:                                                                                                           {"x_total"},
		}[tc.expr]
		if !reflect.DeepEqual(got, want) {
			t.Errorf("promqlMetrics(%s) = %q, want %q", tc.expr, got, want)
		}
	}
	if _, err := promqlMetrics(`sum(rate(x{a="b"[5m]))`); err == nil {
		t.Error("an unbalanced expression passed")
	}
	if got := exportedMetrics("# HELP a x\n# TYPE a counter\na 1\nb_bucket{le=\"1\"} 2\nc{x=\"y\"} 3\n"); !reflect.DeepEqual(got, map[string]bool{"a": true, "b_bucket": true, "c": true}) {
		t.Errorf("exportedMetrics = %v", got)
	}
}
