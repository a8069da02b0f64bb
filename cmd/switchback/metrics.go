package main

import (
	"context"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/switchback/switchback"
	"github.com/switchback/switchback/internal/call"
	"github.com/switchback/switchback/internal/fleet"
)

// The node's metrics beyond the API's and the SIP edge's counters: named as
// other SIP gateways name theirs (LiveKit's livekit_sip_calls_active and
// friends), so a dashboard built for one reads the other.

// newAnswerLatency is the histogram of how long a new INVITE waits for its
// 200 OK: authentication, the store's match, the agent connecting.
func newAnswerLatency() prometheus.Histogram {
	return prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "switchback_sip_invite_answer_seconds",
		Help:    "Time from a new INVITE's arrival to its 200 OK, for the calls answered.",
		Buckets: []float64{.002, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
	})
}

// handBacksCollector exports how the node's calls were handed back.
type handBacksCollector struct{ calls *call.Runtime }

var handBacksDesc = prometheus.NewDesc("switchback_handbacks_total",
	"Calls handed back by this node, by method (BYE, REFER, INVITE) and whether the method failed and the call was ended by BYE instead (fallback).",
	[]string{"method", "fallback"}, nil)

func (c handBacksCollector) Describe(ch chan<- *prometheus.Desc) { ch <- handBacksDesc }

func (c handBacksCollector) Collect(ch chan<- prometheus.Metric) {
	for k, n := range c.calls.HandBacks() {
		ch <- prometheus.MustNewConstMetric(handBacksDesc, prometheus.CounterValue, float64(n),
			string(k.Method), strconv.FormatBool(k.Fallback))
	}
}

// nodeCollectors are the node's lease, as the node sees it, and the
// calls it completed for nodes that were lost.
func nodeCollectors(n *fleet.Node) []prometheus.Collector {
	id := prometheus.Labels{"node": n.Lease().Node}
	return []prometheus.Collector{
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "switchback_node_lease_live", ConstLabels: id,
			Help: "1 while this node holds its lease in the store; 0 once it lost it (it is fenced and stops) or released it on its way out."},
			func() float64 {
				if n.Live() {
					return 1
				}
				return 0
			}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "switchback_node_lease_epoch", ConstLabels: id,
			Help: "The epoch of this node's lease: it grows at every start of a node with this id."},
			func() float64 { return float64(n.Lease().Epoch) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "switchback_calls_taken_over_total",
			Help: "Calls of lost nodes this node completed as caller disconnects (the node-lost reason)."},
			func() float64 { return float64(n.TakenOver()) }),
	}
}

// fleetCollector exports the leases of every node sharing the store, by
// state, as the store lists them when scraped: what any one node's
// /metrics says of the whole fleet.
type fleetCollector struct {
	store switchback.NodeStore
	now   switchback.Clock
}

// fleetWindow bounds the leases counted: a node gone for longer (a
// machine retired, a container under another name) no longer counts as
// lost.
const fleetWindow = 24 * time.Hour

// fleetScrapeTimeout bounds the store's answer to a scrape.
const fleetScrapeTimeout = 2 * time.Second

var fleetDesc = prometheus.NewDesc("switchback_fleet_nodes",
	"Nodes sharing the store, by the state of their lease: live, expired (lost without a clean exit), released (a clean exit); those gone for over 24 h are left out.",
	[]string{"state"}, nil)

func (c fleetCollector) Describe(ch chan<- *prometheus.Desc) { ch <- fleetDesc }

func (c fleetCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), fleetScrapeTimeout)
	defer cancel()
	now := c.now()
	nodes, err := c.store.Nodes(ctx, now)
	if err != nil {
		// switchback_store_up says why; a scrape without this metric is
		// better than a count of zero.
		return
	}
	counts := map[string]int{"live": 0, "expired": 0, "released": 0}
	for _, n := range nodes {
		switch {
		case n.Live:
			counts["live"]++
		case n.ExpiresAt.Before(now.Add(-fleetWindow)):
		case !n.ReleasedAt.IsZero():
			counts["released"]++
		default:
			counts["expired"]++
		}
	}
	for state, v := range counts {
		ch <- prometheus.MustNewConstMetric(fleetDesc, prometheus.GaugeValue, float64(v), state)
	}
}
