package main

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/switchback/switchback"
	"github.com/switchback/switchback/internal/config"
	"github.com/switchback/switchback/internal/fleet"
)

// nodeGateway is a gateway run by the test with its store at hand, whose
// end (serve's error) the test reads.
type nodeGateway struct {
	*testGateway
	store switchback.Store
	stop  context.CancelFunc
	done  chan error
}

// startNodeGateway runs the demo configuration, changed by change, on a
// fresh SQLite store with its number pool, as serve does.
func startNodeGateway(t *testing.T, change func(*config.Config)) *nodeGateway {
	t.Helper()
	ctx := context.Background()
	cfg := demoConfig(filepath.Join(t.TempDir(), "sb.db"), false)
	if change != nil {
		change(&cfg)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	store, err := openStore(ctx, cfg, true)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	if err := loadPool(ctx, cfg, store, slog.New(slog.DiscardHandler)); err != nil {
		t.Fatal(err)
	}
	key, secret, err := switchback.NewAPIKey(config.DefaultTenantID, "test", []string{switchback.ScopeCallTransfers}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if err := store.CreateAPIKey(ctx, key); err != nil {
		t.Fatal(err)
	}
	g, err := listenOnFreePorts(ctx, cfg, store, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	runCtx, cancel := context.WithCancel(ctx)
	n := &nodeGateway{store: store, stop: cancel, done: make(chan error, 1),
		testGateway: &testGateway{gateway: g, api: &apiClient{base: "http://" + g.apiAddr().String(), id: key.ID, secret: secret,
			http: &http.Client{Timeout: 10 * time.Second}, timeout: 10 * time.Second}}}
	go func() { n.done <- g.serve(runCtx, nil) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-n.done:
		case <-time.After(30 * time.Second):
			t.Error("the gateway did not stop")
		}
	})
	return n
}

// end waits for serve to return, and returns its error.
func (n *nodeGateway) end(t *testing.T, within time.Duration) error {
	t.Helper()
	select {
	case err := <-n.done:
		n.done <- err // for the cleanup
		return err
	case <-time.After(within):
		t.Fatalf("the gateway did not stop within %v", within)
		return nil
	}
}

// metrics returns the text of the gateway's /metrics.
func (n *nodeGateway) metrics(t *testing.T) string {
	t.Helper()
	res, err := http.Get(n.api.base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(body)
}

// TestServeHoldsTheNodeLease: serve acquires the node's lease before its
// first call, records it as the owner of its calls, shows it in /metrics,
// and releases it on a clean exit.
func TestServeHoldsTheNodeLease(t *testing.T) {
	g := startNodeGateway(t, func(c *config.Config) { c.Node.ID = "sb-test" })
	ctx := context.Background()
	nodes, err := g.store.Nodes(ctx, time.Now())
	if err != nil || len(nodes) != 1 || !nodes[0].Live || nodes[0].NodeLease != (switchback.NodeLease{Node: "sb-test", Epoch: 1}) {
		t.Fatalf("nodes at start: %+v, %v", nodes, err)
	}

	g.create(t, "owned-1", "instant")
	if out, err := g.call("--transfer-id", "owned-1"); err != nil {
		t.Fatalf("call: %v\n%s", err, out)
	}
	tr, err := g.store.Transfer(ctx, config.DefaultTenantID, "owned-1")
	if err != nil || tr.Status != switchback.StatusCompleted || tr.Owner != (switchback.NodeLease{Node: "sb-test", Epoch: 1}) {
		t.Fatalf("the call's transfer: %+v, %v", tr, err)
	}
	m := g.metrics(t)
	for _, want := range []string{
		`switchback_node_lease_live{node="sb-test"} 1`,
		`switchback_node_lease_epoch{node="sb-test"} 1`,
		`switchback_fleet_nodes{state="live"} 1`,
		`switchback_fleet_nodes{state="expired"} 0`,
		`switchback_calls_taken_over_total 0`,
		`switchback_handbacks_total{fallback="false",method="BYE"} 1`,
		`switchback_sip_invite_answer_seconds_count 1`,
	} {
		if !strings.Contains(m, want+"\n") {
			t.Errorf("/metrics lacks %q", want)
		}
	}

	g.stop()
	if err := g.end(t, 30*time.Second); err != nil {
		t.Fatalf("serve: %v", err)
	}
	nodes, err = g.store.Nodes(ctx, time.Now())
	if err != nil || len(nodes) != 1 || nodes[0].Live || nodes[0].ReleasedAt.IsZero() {
		t.Fatalf("nodes after a clean exit: %+v, %v", nodes, err)
	}
}

// handTicker is a heartbeat the test drives.
type handTicker struct{ c chan time.Time }

func (h *handTicker) C() <-chan time.Time { return h.c }
func (h *handTicker) Stop()               {}

// TestFencedNodeEndsItsCallsAndStops steals a node's lease, as a second
// start under its id would, while the node holds a call. Before the node
// notices, the store refuses its new calls (503); another node completes
// its call; on its next heartbeat the node finds the lease lost, hangs up
// its call without overwriting that outcome, and serve returns errFenced
// for the process to exit with an error.
func TestFencedNodeEndsItsCallsAndStops(t *testing.T) {
	tick := &handTicker{c: make(chan time.Time)}
	heartbeats = func(time.Duration) fleet.Ticker { return tick }
	t.Cleanup(func() { heartbeats = fleet.NewTicker })
	g := startNodeGateway(t, func(c *config.Config) {
		c.Node = config.Node{ID: "sb-fenced", Heartbeat: config.Duration(30 * time.Second), TTL: config.Duration(time.Minute)}
		c.Tenants[0].Agents[0].Menu.DigitTimeout = config.Duration(30 * time.Second)
	})
	ctx := context.Background()

	g.create(t, "held-1", "")
	called := make(chan string, 1)
	go func() {
		out, err := g.call("--transfer-id", "held-1", "--timeout", "20s")
		if err != nil {
			out += "\nerror: " + err.Error()
		}
		called <- out
	}()
	deadline := time.Now().Add(10 * time.Second)
	for g.get(t, "held-1").Status != "ONGOING" {
		if time.Now().After(deadline) {
			t.Fatal("the call never got going")
		}
		time.Sleep(20 * time.Millisecond)
	}

	stolen, err := g.store.AcquireNode(ctx, "sb-fenced", time.Minute, time.Now())
	if err != nil || stolen.Epoch != 2 {
		t.Fatalf("steal the lease: %v, %v", stolen, err)
	}
	// The node has not noticed yet; the store refuses its match.
	g.create(t, "late-1", "instant")
	if out, err := g.call("--transfer-id", "late-1"); err == nil || !strings.Contains(out, "503 Service Unavailable") {
		t.Fatalf("a call to the fenced node: %v\n%s", err, out)
	}
	if tr := g.get(t, "late-1"); tr.Status != "ACTIVE" {
		t.Fatalf("the refused call used its transfer: %+v", tr)
	}
	// The other node completes the call.
	taken, err := g.store.TakeOverCalls(ctx, stolen, time.Now(), 10)
	if err != nil || len(taken) != 1 || taken[0].ID != "held-1" || taken[0].Reason != switchback.LeaseSuperseded {
		t.Fatalf("takeover: %+v, %v", taken, err)
	}

	tick.c <- time.Now()
	if err := g.end(t, 20*time.Second); !errors.Is(err, errFenced) {
		t.Fatalf("serve returned %v, want errFenced", err)
	}
	if g.node.Live() {
		t.Error("the node still says its lease is live")
	}
	select {
	case out := <-called:
		if !strings.Contains(out, "received BYE") {
			t.Fatalf("the caller was not hung up:\n%s", out)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the call is still up")
	}

	tr, err := g.store.Transfer(ctx, config.DefaultTenantID, "held-1")
	if err != nil || tr.Status != switchback.StatusCompleted || tr.OutputContext == nil ||
		tr.OutputContext.TransferType != switchback.TransferCallerDisconnect || tr.ReturnResult == nil ||
		!strings.Contains(tr.ReturnResult.Reason, `node "sb-fenced" lost (lease superseded)`) {
		t.Fatalf("the taken-over call: %+v, %v", tr, err)
	}
	conv, err := g.store.Conversation(ctx, config.DefaultTenantID, "conv-held-1")
	if err != nil {
		t.Fatal(err)
	}
	var ended []map[string]string
	for _, e := range conv.Events {
		if e.Type == switchback.EventCallEnded {
			ended = append(ended, e.Data)
		}
	}
	if len(ended) != 1 || ended[0]["by"] != switchback.EndedByNodeLost {
		t.Fatalf("call.ended events %v: the fenced node wrote over the takeover", ended)
	}
}
