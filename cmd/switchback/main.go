// Command switchback is the Switchback call-transfer gateway: the server
// (serve), administration of its store (keys, numbers), a client for its
// API (transfers, conversations), a test softphone (call) and a self-contained demo of the
// whole round trip (demo).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := stopOnSignals()
	defer stop()
	if err := run(ctx, os.Args[1:], os.Getenv, os.Stdin, os.Stdout, os.Stderr); err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "switchback:", err)
		}
		os.Exit(exitCode(err))
	}
}

// stopOnSignals returns a context that SIGINT, or a second SIGTERM, ends:
// a stop at once. The first SIGTERM only asks for a drain (see
// withDrain): a server lets its calls finish first.
func stopOnSignals() (context.Context, func()) {
	ctx, cancel := context.WithCancel(context.Background())
	drain := make(chan struct{})
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	done := make(chan struct{})
	go func() {
		draining := false
		for {
			select {
			case <-done:
				return
			case s := <-sigs:
				if s == syscall.SIGTERM && !draining {
					draining = true
					close(drain)
					continue
				}
				cancel()
			}
		}
	}()
	return withDrain(ctx, drain), func() {
		signal.Stop(sigs)
		close(done)
		cancel()
	}
}

const usage = `Switchback: a call-transfer gateway for voice AI agents.

Usage:
  switchback serve [--config FILE]            run the gateway
  switchback transfers create|get|list|wait   use the API of a running gateway
  switchback conversations get EXTERNAL_ID    show a conversation's legs, state and events
  switchback keys create|revoke|list          manage API keys in the store
  switchback numbers list|add|remove          manage the temporary-number pool
  switchback config example                   print a commented example config
  switchback call [flags] TARGET              call a gateway from a softphone
  switchback demo [--phone-number] [--agent menu|websocket]
                                              a whole transfer round trip, in-process

Run "switchback COMMAND -h" for a command's flags.
`

// run is the whole program, with its environment passed in so tests can
// call it directly.
func run(ctx context.Context, args []string, getenv func(string) string, stdin io.Reader, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return errors.New("no command given")
	}
	cmd, rest := args[0], args[1:]
	switch cmd {
	case "serve":
		return runServe(ctx, rest, getenv, stdout, stderr)
	case "transfers":
		return runTransfers(ctx, rest, getenv, stdin, stdout, stderr)
	case "conversations":
		return runConversations(ctx, rest, getenv, stdout, stderr)
	case "keys":
		return runKeys(ctx, rest, getenv, stdout, stderr)
	case "numbers":
		return runNumbers(ctx, rest, getenv, stdout, stderr)
	case "config":
		return runConfig(rest, stdout)
	case "call":
		return runCall(ctx, rest, getenv, stdout, stderr)
	case "demo":
		return runDemo(ctx, rest, stdout, stderr)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	}
	fmt.Fprint(stderr, usage)
	return fmt.Errorf("unknown command %q", cmd)
}
