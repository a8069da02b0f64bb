package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/switchback/switchback/internal/media"
	"github.com/switchback/switchback/internal/softphone"
)

const callUsage = `Usage: switchback call [flags] TARGET

A softphone for trying Switchback. It calls TARGET, a SIP URI such as
sip:demo@127.0.0.1:5060, or a phone number such as +12025550100 (called as
sip:+12025550100@HOST:PORT, the --proxy address), presses the --dtmf digits
once the greeting is over, and waits for the far end to hand the call back:
by BYE, or by REFER, which it accepts (202, then a NOTIFY reporting the new
call answered, without dialling it) or, with --decline-refer, refuses with
603. It prints one line per event, then how the call went.

Exit status: 0 when the call was answered and ended normally (the far end
hung up, or --hangup-after passed); 1 otherwise.

Flags:
`

// Defaults of switchback call; demo uses them too.
const (
	defaultDTMFDelay   = 1500 * time.Millisecond
	defaultCallTimeout = 60 * time.Second
	defaultPhoneRTP    = "40000-40999"
)

func runCall(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("call", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, callUsage)
		fs.PrintDefaults()
	}
	transferID := fs.String("transfer-id", "", "call transfer id, sent as the "+softphone.TransferIDHeader+" header")
	proxy := fs.String("proxy", "", "host:port the INVITE goes to (default: the URI's host and port; 127.0.0.1:5060 for a phone number)")
	transport := fs.String("transport", "udp", "SIP transport: udp or tcp")
	user := fs.String("user", "", "username answering a digest challenge")
	password := fs.String("password", "", "password answering a digest challenge (default $SWITCHBACK_SIP_PASSWORD)")
	play := fs.String("play", "", "WAV file to play once answered")
	dtmf := fs.String("dtmf", "", `digits to press, e.g. "1#"`)
	dtmfDelay := fs.Duration("dtmf-delay", defaultDTMFDelay, "how long after the answer to press the digits (later if the far end is still playing)")
	info := fs.Bool("info", false, "send the digits as SIP INFO (application/dtmf-relay) instead of RFC 4733 events")
	record := fs.String("record", "", "save what is heard to this WAV file (8 kHz 16-bit mono)")
	hangupAfter := fs.Duration("hangup-after", 0, "hang up this long after the answer (default: wait for the far end)")
	timeout := fs.Duration("timeout", defaultCallTimeout, "give up on the call after this long, answered or not")
	localIP := fs.String("local-ip", "127.0.0.1", "local address for SIP and RTP")
	rtpPorts := fs.String("rtp-ports", defaultPhoneRTP, "UDP ports for RTP, MIN-MAX")
	declineRefer := fs.Bool("decline-refer", false, "refuse a REFER with 603 instead of accepting it")
	pos, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 || pos[0] == "" {
		fs.Usage()
		return errors.New("usage: switchback call [flags] TARGET")
	}

	opts := softphone.Options{Events: stdout,
		Log: slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))}
	plan := softphone.Plan{Target: pos[0], DialOptions: softphone.DialOptions{Proxy: *proxy, TransferID: *transferID,
		Username: *user, Password: firstNonEmpty(*password, getenv("SWITCHBACK_SIP_PASSWORD")),
		DeclineRefer: *declineRefer, Record: *record != ""},
		DTMF: *dtmf, DTMFDelay: *dtmfDelay, InfoDTMF: *info, HangupAfter: *hangupAfter, Timeout: *timeout}
	if plan.Password != "" && plan.Username == "" {
		return errors.New("--password needs --user")
	}
	switch strings.ToLower(*transport) {
	case "udp", "tcp":
		opts.Transport = *transport
	default:
		return fmt.Errorf("--transport: %q is not udp or tcp", *transport)
	}
	if opts.LocalIP, err = netip.ParseAddr(*localIP); err != nil {
		return fmt.Errorf("--local-ip: %q is not an IP address", *localIP)
	}
	if opts.RTPPorts, err = parsePortRange(*rtpPorts); err != nil {
		return fmt.Errorf("--rtp-ports: %w", err)
	}
	if _, _, err := softphone.ParseTarget(plan.Target, plan.Proxy); err != nil {
		return err
	}
	for _, d := range plan.DTMF {
		if _, ok := media.DigitEvent(d); !ok {
			return fmt.Errorf("--dtmf: %q is not a DTMF digit (0-9, *, #, A-D)", d)
		}
	}
	switch {
	case plan.DTMFDelay < 0:
		return errors.New("--dtmf-delay: must not be negative")
	case plan.HangupAfter < 0:
		return errors.New("--hangup-after: must not be negative")
	case plan.Timeout <= 0:
		return errors.New("--timeout: must be more than 0")
	}
	if *play != "" {
		if plan.Play, err = softphone.LoadWAV(*play); err != nil {
			return fmt.Errorf("--play: %w", err)
		}
		plan.PlayName = *play
	}

	phone, err := softphone.New(opts)
	if err != nil {
		return err
	}
	defer phone.Close()
	r := phone.Run(ctx, plan)
	if *record != "" && r.Answered {
		if err := softphone.SaveWAV(*record, r.Recording); err != nil {
			printCallReport(stdout, r, "")
			return fmt.Errorf("--record: %w", err)
		}
	}
	printCallReport(stdout, r, *record)
	return r.Err
}

// parsePortRange reads "MIN-MAX".
func parsePortRange(s string) (media.PortRange, error) {
	lo, hi, ok := strings.Cut(s, "-")
	first, err1 := strconv.Atoi(lo)
	last, err2 := strconv.Atoi(hi)
	if !ok || err1 != nil || err2 != nil || first < 1 || last > 65535 || first >= last {
		return media.PortRange{}, fmt.Errorf("%q is not a port range such as %s", s, defaultPhoneRTP)
	}
	return media.PortRange{Min: first, Max: last}, nil
}

// printCallReport writes the summary of the call, naming the recording
// if saved.
func printCallReport(w io.Writer, r *softphone.Report, recording string) {
	fmt.Fprintf(w, "\ncall ended: %s\n", r.End)
	if !r.Answered {
		return
	}
	fmt.Fprintf(w, "answer:     %s\n", r.Answer)
	fmt.Fprintf(w, "duration:   %.2f s from the answer\n", r.Duration.Seconds())
	fmt.Fprintf(w, "RTP:        %d packets sent, %d received\n", r.Stats.PacketsSent, r.Stats.PacketsReceived)
	verdict := "silent"
	if r.Level > softphone.SilenceRMS {
		verdict = "not silent"
	}
	fmt.Fprintf(w, "audio:      %.2f s received, RMS %.0f (%s)\n", r.Heard.Seconds(), r.Level, verdict)
	if recording != "" {
		fmt.Fprintf(w, "recording:  %s\n", recording)
	}
}
