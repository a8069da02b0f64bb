package main

import (
	"runtime"

	"github.com/switchback/switchback/bench/internal/procstat"
)

// Where the machine's CPU went during a run, read from /proc (Linux): the
// load generator's, the server's (the -server-pids and their descendants,
// e.g. PostgreSQL's backends) and everything else's, which on a shared
// machine is the noise. Elsewhere the figures are left out.

// cpuShares returns the load generator's, the server's and the rest's
// share of the machine between a and b, in percent of all its cores.
func cpuShares(a, b procstat.Sample, seconds float64) (self, server, other float64, ok bool) {
	if !a.OK || !b.OK || seconds <= 0 {
		return 0, 0, 0, false
	}
	capacity := seconds * procstat.TicksPerSecond * float64(runtime.NumCPU())
	srv := procstat.ServerTicks(a, b)
	busy, mine := b.Busy-a.Busy, b.Client-a.Client
	rest := max(busy-mine-srv, 0)
	pct := func(t int64) float64 { return round(100*float64(t)/capacity, 1) }
	return pct(mine), pct(srv), pct(rest), true
}
