// Command streambench is the Go side of bench/stream.sh, the benchmark of
// streamed calls: each call's audio streamed to an echo agent over a
// WebSocket and back (internal/agent/websocket dialing
// internal/agent/websocket/echo), against the same calls bridged by
// media.Bridge to an RTP echo, the RTP-only floor, in the same run.
// docs/benchmarks.md ("Streamed calls") explains the method and holds the
// figures of real runs.
//
//	streambench switchback -control 127.0.0.1:0 -ports 24000-31999 -agent ws://ADDR/stream
//	    the process under test: media Sessions and the call runtime with
//	    its websocket agent, without SIP; calls set up and torn down over
//	    a line protocol on a loopback TCP port (switchback.go); prints
//	    "control on ADDR"
//	streambench agent -listen 127.0.0.1:0
//	    the echo agent's process: the WebSocket echo agent, RTP echoes for
//	    bridged calls, and the time it held each frame (agent.go); prints
//	    "agent on http://ADDR"
//	streambench load -mode stream|bridge -control ADDR -agent http://ADDR -pids PID -agent-pid PID -calls N ...
//	    sets up N calls in one mode, sends 20 ms of stamped PCMU on each
//	    every 20 ms for a fixed time, measures what comes back and the
//	    processes' CPU and memory, tears the calls down, and prints one
//	    JSON line (load.go)
//	streambench report RESULTS.jsonl
//	    prints the markdown tables, the ratios and the targets' verdicts
package main

import (
	"fmt"
	"math"
	"os"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: streambench switchback|agent|load|report [flags]")
		os.Exit(2)
	}
	var err error
	args := os.Args[2:]
	switch os.Args[1] {
	case "switchback":
		err = runSwitchback(args)
	case "agent":
		err = runAgent(args)
	case "load":
		err = runLoad(args, os.Stdout)
	case "report":
		err = runReport(args, os.Stdout)
	default:
		err = fmt.Errorf("unknown command %q: want switchback, agent, load or report", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "streambench "+os.Args[1]+":", err)
		os.Exit(1)
	}
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "streambench: "+format+"\n", args...)
}

func round(x float64, places int) float64 {
	p := math.Pow(10, float64(places))
	return math.Round(x*p) / p
}
