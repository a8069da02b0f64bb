package httpapi

import (
	"context"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/switchback/switchback"
)

// metrics are the API's Prometheus series: requests and their latency by
// route and status, and, read from the store at scrape time, transfers by
// status and the pool by country and state.
type metrics struct {
	gatherer prometheus.Gatherer
	requests *prometheus.CounterVec
	latency  *prometheus.HistogramVec
	series   sync.Map // routeStatus -> *series
}

func newMetrics(reg *prometheus.Registry, store switchback.Store, clock switchback.Clock) *metrics {
	m := &metrics{
		gatherer: reg,
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "switchback_http_requests_total", Help: "API requests by route and status.",
		}, []string{"route", "status"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "switchback_http_request_duration_seconds", Help: "API request latency by route.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 30, 60},
		}, []string{"route"}),
	}
	reg.MustRegister(m.requests, m.latency, &storeCollector{store: store, clock: clock})
	return m
}

func (m *metrics) observe(route string, status int, elapsed time.Duration) {
	k := routeStatus{route, status}
	s, ok := m.series.Load(k)
	if !ok {
		s, _ = m.series.LoadOrStore(k, &series{
			requests: m.requests.WithLabelValues(route, strconv.Itoa(status)),
			latency:  m.latency.WithLabelValues(route),
		})
	}
	s.(*series).requests.Inc()
	s.(*series).latency.Observe(elapsed.Seconds())
}

// series are one route and status's metrics, looked up once rather than by
// label hashing on every request.
type series struct {
	requests prometheus.Counter
	latency  prometheus.Observer
}

type routeStatus struct {
	route  string
	status int
}

var (
	transfersDesc = prometheus.NewDesc("switchback_transfers", "Call transfers in the store by status.", []string{"status"}, nil)
	poolDesc      = prometheus.NewDesc("switchback_pool_numbers", "Pool numbers by country and state.", []string{"country", "state"}, nil)
	storeUpDesc   = prometheus.NewDesc("switchback_store_up", "1 if the store answered the last scrape.", nil, nil)
)

// storeCollector reads counts from the store when scraped.
type storeCollector struct {
	store switchback.Store
	clock switchback.Clock
}

func (c *storeCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- transfersDesc
	ch <- poolDesc
	ch <- storeUpDesc
}

func (c *storeCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	counts, err := c.store.CountTransfers(ctx)
	sums, err2 := c.store.PoolSummaries(ctx, c.clock())
	if err != nil || err2 != nil {
		ch <- prometheus.MustNewConstMetric(storeUpDesc, prometheus.GaugeValue, 0)
		return
	}
	ch <- prometheus.MustNewConstMetric(storeUpDesc, prometheus.GaugeValue, 1)
	for _, s := range switchback.Statuses {
		ch <- prometheus.MustNewConstMetric(transfersDesc, prometheus.GaugeValue, float64(counts[s]), string(s))
	}
	for _, s := range sums {
		for state, n := range map[string]int{"size": s.Size, "leased": s.Leased, "quarantined": s.Quarantined, "free": s.Free} {
			ch <- prometheus.MustNewConstMetric(poolDesc, prometheus.GaugeValue, float64(n), s.Country, state)
		}
	}
}
