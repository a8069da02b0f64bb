// Command bridgebench is the Go side of bench/bridge.sh, the benchmark of
// bridged calls: RTP relayed both ways between a caller's leg and a return
// leg, by Switchback's media.Bridge and by rtpengine, side by side.
// docs/benchmarks.md ("Bridged calls") explains the method and holds the
// figures of real runs.
//
//	bridgebench relay  -control 127.0.0.1:0 -ports 24000-31999
//	    Switchback's relay: pairs of media.Sessions bridged by media.Bridge,
//	    set up and torn down over a line protocol on a loopback TCP port
//	    (see relay.go); prints "control on ADDR"
//	bridgebench load   -relay switchback|rtpengine -control ADDR -pids PID -calls N ...
//	    sets up N bridged calls on one relay, sends 20 ms G.711 both ways on
//	    each for a fixed time, measures loss, added latency and the relay's
//	    CPU, tears the calls down, and prints one JSON line
//	bridgebench report RESULTS.jsonl
//	    prints the markdown tables, the ratios and the targets' verdicts
package main

import (
	"fmt"
	"math"
	"os"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: bridgebench relay|load|report [flags]")
		os.Exit(2)
	}
	var err error
	args := os.Args[2:]
	switch os.Args[1] {
	case "relay":
		err = runRelay(args)
	case "load":
		err = runLoad(args, os.Stdout)
	case "report":
		err = runReport(args, os.Stdout)
	default:
		err = fmt.Errorf("unknown command %q: want relay, load or report", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "bridgebench "+os.Args[1]+":", err)
		os.Exit(1)
	}
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "bridgebench: "+format+"\n", args...)
}

func round(x float64, places int) float64 {
	p := math.Pow(10, float64(places))
	return math.Round(x*p) / p
}
